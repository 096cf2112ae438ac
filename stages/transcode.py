"""Transcode: cut every span of a video into an H.264 mp4 clip — one video in, many clips out.

The source is decoded once. On GPU (PyNvVideoCodec NVDEC + NVENC, when the machine has
them and `encoder` allows) the GPU twin in :mod:`curator.media.nvcodec` is used; else
libx264 through PyAV. Clips are upright (rotation applied), yuv420p, even-sized, and
hold exactly the frames of their span.
"""

from __future__ import annotations

import logging

from curator.config import TranscodeConfig
from curator.media import encode, nvcodec
from curator.media.decode import DecodeStats
from curator.media.source import source_of
from curator.records import OK, Reason, Row, clip_id_for, stop
from curator.stage import Requirement, Stage

log = logging.getLogger(__name__)

#: video-level fields every clip row carries
INHERITED = ("video_id", "source_uri", "source_key", "width", "height", "fps", "codec", "rotation", "vfr")


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
        if self.config.encoder == "gpu":
            why = nvcodec.unavailable_reason()
            if why:
                return [Requirement(f"GPU transcoding (stages.transcode.encoder=gpu): {why}",
                                    fix="pip install 'curator[gpu]' on a machine with an NVENC-capable GPU, "
                                        "or set stages.transcode.encoder=cpu")]
        return []

    def setup(self) -> None:
        why = nvcodec.unavailable_reason() if self.config.encoder != "cpu" else "encoder=cpu"
        if self.config.encoder == "gpu" and why:
            raise RuntimeError(f"stages.transcode.encoder=gpu but this worker cannot use NVENC: {why}")
        self.use_gpu = why is None
        if self.config.encoder == "auto":
            log.info("transcode: %s", "GPU (PyNvVideoCodec)" if self.use_gpu else "CPU (libx264)")

    def process_row(self, row: Row) -> list[Row]:
        spans = [encode.Span(**s) for s in (row.get("spans") or [])]
        # clips split already encoded in its decode pass (CPU transcoding); the rest here
        done = {(c["start_frame"], c["end_frame"]): c for c in (row.pop("encoded_spans", None) or [])}
        todo = [s for s in spans if (s.start_frame, s.end_frame) not in done]
        stats = DecodeStats()
        encoder = "nvenc" if self.use_gpu else "libx264"
        made: list[encode.EncodedClip] = []
        if todo:
            source = source_of(row)
            kwargs = dict(rotation=int(row.get("rotation") or 0), fps=row.get("fps"),
                          max_short_side=self.config.max_short_side, stats=stats)
            if self.use_gpu:
                made = nvcodec.transcode_spans(source, todo, bitrate_mbps=self.config.gpu_bitrate_mbps, **kwargs)
            else:
                made = encode.transcode_spans(source, todo, crf=self.config.crf, preset=self.config.preset,
                                              threads=self.config.threads, **kwargs)
        by_span = {(c.span.start_frame, c.span.end_frame): c for c in made}
        clips = [by_span.get((s.start_frame, s.end_frame)) or from_record(s, done[(s.start_frame, s.end_frame)])
                 for s in spans]
        row.pop("video_bytes", None)
        out: list[Row] = []
        for i, c in enumerate(clips):
            clip: Row = {k: row.get(k) for k in INHERITED}
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
                "encoder": encoder if (c.span.start_frame, c.span.end_frame) in by_span else "libx264",
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


def from_record(span: encode.Span, rec: dict) -> encode.EncodedClip:
    """A clip that split encoded (see stages/split.py, `encoded_spans`)."""
    return encode.EncodedClip(span, rec["mp4"], rec["width"], rec["height"], rec["fps"], rec["frames"],
                              rec["sha256"], rec.get("error"))
