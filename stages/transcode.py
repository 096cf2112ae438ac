"""Transcode: cut every span of a video into an H.264 mp4 clip — one video in, many clips out.

The source is decoded once. `encoder` picks the path (:mod:`curator.media.nvcodec`):
NVDEC + NVENC where the worker's GPU has both, NVDEC + libx264 where it has NVDEC only
(A100, H100, H200), libx264 through PyAV otherwise; `auto` takes the best the probe
found. Clips are upright (rotation applied), yuv420p, even-sized, and hold exactly the
frames of their span. The manifest's `encoder` column names the path per clip.
"""

from __future__ import annotations

import logging
from typing import Any

from curator.config import TranscodeConfig
from curator.media import encode, nvcodec
from curator.media.decode import DecodeStats
from curator.media.source import source_of
from curator.records import ENCODED_SPANS, OK, PROVENANCE, Reason, Row, clip_id_for, stop
from curator.stage import Requirement, Stage

log = logging.getLogger(__name__)

#: video-level fields every clip row carries (and the input list's columns: RunContext.extra_columns)
INHERITED = ("video_id", "source_uri", "source_key", "width", "height", "fps", "codec", "rotation", "vfr",
             *PROVENANCE)


class TranscodeStage(Stage):
    name = "transcode"
    kind = "video"
    config: TranscodeConfig

    def requirements(self) -> list[Requirement]:
        run = self.ctx.config.run
        if run.runner == "ray" and run.address:
            # Joining a cluster: the driver (often a CPU head node) is not where this stage
            # runs; its resources (`nvenc`, GPUs) place it, and setup() checks the device there.
            return []
        if self.config.encoder in ("gpu", "nvenc", "nvdec"):
            try:
                nvcodec.choose_encoder(self.config.encoder, nvcodec.probe())
            except RuntimeError as exc:
                return [Requirement(f"GPU transcoding: {exc}",
                                    fix="pip install 'curator[gpu]' on a machine with the GPU engines, or set "
                                        "stages.transcode.encoder=auto (or cpu)")]
        return []

    def setup(self) -> None:
        # 'cpu' never touches the GPU; the others probe it (once per worker process)
        self.mode = "cpu" if self.config.encoder == "cpu" else nvcodec.choose_encoder(self.config.encoder,
                                                                                     nvcodec.probe())
        if self.config.encoder == "auto":
            why = nvcodec.probe().reason
            log.info("transcode: %s%s", nvcodec.ENCODER_NAMES[self.mode], f" ({why})" if why else "")

    def _encode(self, source: Any, spans: list[encode.Span],
                **kwargs: Any) -> tuple[list[encode.EncodedClip], str, DecodeStats]:
        cfg = self.config
        if self.mode != "cpu":
            stats = DecodeStats()
            try:
                return nvcodec.transcode_spans(source, spans, encoder=self.mode, bitrate_mbps=cfg.gpu_bitrate_mbps,
                                               crf=cfg.crf, preset=cfg.preset, stats=stats, **kwargs), self.mode, stats
            except nvcodec.UnsupportedSource as exc:  # e.g. 10-bit or 4:4:4: NVDEC is not NV12 there
                log.info("transcode: %s; this video goes through libx264", exc)
        stats = DecodeStats()
        clips = encode.transcode_spans(source, spans, crf=cfg.crf, preset=cfg.preset, threads=cfg.threads,
                                       stats=stats, **kwargs)
        return clips, "cpu", stats

    def process_row(self, row: Row) -> list[Row]:
        spans = [encode.Span(**s) for s in (row.get("spans") or [])]
        # clips split already encoded in its decode pass (CPU transcoding); the rest here
        done = {(c["start_frame"], c["end_frame"]): c for c in (row.pop(ENCODED_SPANS, None) or [])}
        todo = [s for s in spans if (s.start_frame, s.end_frame) not in done]
        made: list[encode.EncodedClip] = []
        mode, stats = "cpu", DecodeStats()
        if todo:
            made, mode, stats = self._encode(source_of(row), todo, rotation=int(row.get("rotation") or 0),
                                             fps=row.get("fps"), max_short_side=self.config.max_short_side)
        by_span = {(c.span.start_frame, c.span.end_frame): c for c in made}
        clips = [by_span.get((s.start_frame, s.end_frame)) or encode.EncodedClip.from_record(s, done[(s.start_frame, s.end_frame)])
                 for s in spans]
        encoder = nvcodec.ENCODER_NAMES[mode]
        row.pop("video_bytes", None)
        out: list[Row] = []
        for i, c in enumerate(clips):
            clip: Row = {k: row.get(k) for k in (*INHERITED, *self.ctx.extra_columns)}
            clip.update({
                "kind": "clip",
                "clip_id": clip_id_for(row["video_id"], i),
                "status": OK,
                "clip_index": i,
                "start_frame": c.span.start_frame,
                "end_frame": c.span.end_frame,
                "start_s": c.span.start_s,
                "end_s": c.span.end_s,
                "clip_width": c.width,
                "clip_height": c.height,
                "clip_fps": round(c.fps, 6),
                "clip_frames": c.frames,
                "clip_duration_s": round(c.frames / c.fps, 6) if c.fps else None,
                "encoder": encoder if (c.span.start_frame, c.span.end_frame) in by_span else nvcodec.ENCODER_NAMES["cpu"],
            })
            if c.data is None:
                stop(clip, self.name, Reason.TRANSCODE_FAILED, c.error or "encoding failed")
            else:
                clip["mp4"] = c.data
                clip["clip_bytes"] = len(c.data)
                clip["clip_sha256"] = c.sha256
            out.append(clip)
        row["num_clips"] = len(out)
        if not out:
            stop(row, self.name, Reason.TRANSCODE_FAILED, stats.error or "no clips encoded")
        return [row] + out

