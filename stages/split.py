"""Shot split: TransNetV2 (default), PySceneDetect's adaptive detector, or a fixed stride.

The source is decoded once. When transcoding runs on the CPU, that same pass also encodes
the shots (curator.media.cut) and hands the clips to transcode in a transient column, so
a video is decoded once in all. Shots are half-open ranges of *decoded* frame indices, with times from the decoded timestamps, so variable
frame-rate sources are cut where their frames really are. Shots shorter than
`min_clip_s` are dropped; shots longer than `max_clip_s` are cut into equal pieces.
Every detected shot stays on the video row (`shots`: frames, times and fate — kept,
too_short, cut into N clips), so split decisions are as auditable as filter decisions.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import pyarrow as pa

from curator.config import SplitConfig
from curator.media.cut import detect_and_encode
from curator.media.decode import DecodeStats, iter_frames
from curator.media.shots import make_detector
from curator.media.source import source_of
from curator.records import ENCODED_SPANS, REJECTED, SHOT, Reason, Row, stop
from curator.stage import RunContext, Stage

log = logging.getLogger(__name__)


#: a detected shot's fate in the manifest's `shots` column
KEPT, TOO_SHORT, CUT, EMPTY = "kept", "too_short", "cut", "empty"


def plan_shots(shots: list[tuple[int, int]], times: list[float], fps: float,
               min_s: float, max_s: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Shots -> (spans obeying the length rules, one record per detected shot).

    Spans are [start_frame, end_frame). Each shot record (the `shots` column,
    :data:`curator.records.SHOT`) has the shot's frames and times and its fate: ``kept``
    (one clip), ``too_short`` (below `min_s`, dropped), ``cut`` (above `max_s`, cut into
    `clips` pieces) or ``empty`` (no decoded frame in its range); `first_clip` is the
    clip index of its first piece (clips are numbered in span order)."""
    n = len(times)
    frame_dur = 1.0 / fps if fps > 0 else 0.0

    def t_at(i: int) -> float:
        return times[i] if i < n else times[-1] + frame_dur

    spans: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    for a0, b0 in shots:
        a, b = max(0, a0), min(n, b0)
        rec: dict[str, Any] = {"start_frame": a0, "end_frame": b0, "start_s": None, "end_s": None,
                               "fate": EMPTY, "clips": 0, "first_clip": None}
        records.append(rec)
        if b <= a:
            continue
        rec.update(start_frame=a, end_frame=b, start_s=round(t_at(a), 6), end_s=round(t_at(b), 6))
        dur = t_at(b) - t_at(a)
        if dur + 1e-9 < min_s:
            rec["fate"] = TOO_SHORT
            continue
        if dur <= max_s + 1e-9:
            pieces = [(a, b)]
        else:
            k = math.ceil(dur / max_s - 1e-9)
            if dur / k + 1e-9 >= min_s:
                bounds = [a + round(i * (b - a) / k) for i in range(k + 1)]
                pieces = list(zip(bounds[:-1], bounds[1:]))
            else:  # pieces of max_s from the start; a remainder shorter than min_s is dropped
                per = max(1, int(round(max_s * fps)))
                pieces = [(s, min(b, s + per)) for s in range(a, b, per)]
                pieces = [(s, e) for s, e in pieces if t_at(e) - t_at(s) + 1e-9 >= min_s]
        first = len(spans)
        for s, e in pieces:
            if e <= s:  # fewer frames than pieces: only a broken time base spaces frames this far
                continue
            spans.append({"start_frame": s, "end_frame": e,
                          "start_s": round(t_at(s), 6), "end_s": round(t_at(e), 6)})
        made = len(spans) - first
        rec.update(fate=KEPT if dur <= max_s + 1e-9 else CUT, clips=made, first_clip=first if made else None)
    return spans, records


def make_spans(shots: list[tuple[int, int]], times: list[float], fps: float,
               min_s: float, max_s: float) -> list[dict[str, Any]]:
    """Shots -> spans obeying the length rules. Spans are [start_frame, end_frame)."""
    return plan_shots(shots, times, fps, min_s, max_s)[0]


class SplitStage(Stage):
    name = "split"
    kind = "video"
    stateful = True
    columns = [("num_shots", pa.int32()), ("shots", pa.list_(SHOT))]
    config: SplitConfig

    def __init__(self, config: SplitConfig, ctx: RunContext):
        super().__init__(config, ctx)
        # Only TransNetV2 loads a model. The other detectors run as Ray tasks, so they do
        # not hold a CPU in an actor pool that transcoding could use (measured on 2 cores).
        self.stateful = config.method == "transnetv2"  # type: ignore[misc]

    def setup(self) -> None:
        self.model = None
        if self.config.method == "transnetv2":
            from curator.models import transnetv2

            self.model = transnetv2.load(self.config.device)
            if str(self.model.device).startswith("cpu"):
                backend = transnetv2.cpu_backend(self.model)  # choose (and check) it now, not on a video
                log.warning("split: TransNetV2 is running on CPU (%s backend; the slowest stage of a CPU run); "
                            "on CPU-only machines stages.split.method=scenedetect is faster, with less accurate "
                            "cuts (benchmarks/pipeline_bench.py)", backend)
        self.encode_here = self.config.encode_shots and cpu_transcoding(self.ctx)
        # TransNetV2 on a GPU reads NVDEC frames resized there, when NVDEC works here
        self.gpu_frames = False
        if self.model is not None and str(self.model.device).startswith("cuda") and not self.encode_here:
            from curator.media import nvcodec

            self.gpu_frames = nvcodec.probe().nvdec

    # ---------------------------------------------------------------- process
    def process_row(self, row: Row) -> Row:
        cfg = self.config
        fps = float(row.get("fps") or 0) or 25.0
        stats = DecodeStats()
        source = source_of(row)
        detector = make_detector(cfg, row, self.model)
        encoded: dict = {}
        if self.encode_here:
            tc = self.ctx.config.stages.transcode
            cut = detect_and_encode(source, detector, fps=fps, min_s=cfg.min_clip_s, max_s=cfg.max_clip_s,
                                    rotation=int(row.get("rotation") or 0), crf=tc.crf, preset=tc.preset,
                                    threads=tc.threads, max_short_side=tc.max_short_side, stats=stats)
            shots, encoded = cut.shots, cut.encoded  # this stage's time includes those encodes
        else:
            if self.gpu_frames:
                from curator.media import nvcodec
                from curator.models import transnetv2

                for idx, img in enumerate(nvcodec.detector_frames(source, transnetv2.SIZE, stats)):
                    detector.push_small(idx, stats.times[idx], img)
            else:
                for idx, t, frame in iter_frames(source, stats=stats):
                    detector.push(idx, t, frame)
            detector.finish()
            shots = detector.shots()
        stats.times = detector.times
        row["split_method"] = cfg.method
        row["num_shots"] = len(shots)
        if stats.frames == 0:
            row.pop("video_bytes", None)
            return stop(row, self.name, Reason.NO_FRAMES, stats.error or "no frame decodes")
        if stats.error or (row.get("num_frames") and abs(row["num_frames"] - stats.frames) > 1):
            # the header lied (truncated file): keep what decodes, and say so
            row["detail"] = (f"header says {row.get('num_frames')} frames, {stats.frames} decode"
                             + (f" ({stats.error})" if stats.error else ""))[:1000]
            row["num_frames"] = stats.frames
            if len(stats.times) > 1:
                row["duration_s"] = round(stats.times[-1] - stats.times[0] + 1.0 / fps, 6)
        spans, row["shots"] = plan_shots(shots, stats.times, fps, cfg.min_clip_s, cfg.max_clip_s)
        row["spans"] = spans
        if not spans:
            row.pop("video_bytes", None)
            return stop(row, self.name, Reason.NO_SHOTS,
                        f"{len(shots)} shots, none at least stages.split.min_clip_s={cfg.min_clip_s} s",
                        status=REJECTED)
        made = [encoded[(s["start_frame"], s["end_frame"])] for s in spans
                if (s["start_frame"], s["end_frame"]) in encoded]
        if made:
            row[ENCODED_SPANS] = [c.to_record() for c in made]
        return row


def cpu_transcoding(ctx: RunContext) -> bool:
    """Whether this run's transcode stage encodes with libx264 from a CPU decode, so that
    split can encode the shots in its own decode pass. `auto` counts only when this
    worker's GPU offers neither path (curator.media.nvcodec.probe) and, under Ray, the
    cluster has no GPUs that transcoding could be sent to."""
    tc = ctx.config.stages.transcode
    if tc.encoder == "cpu":
        return True
    if tc.encoder != "auto":
        return False
    from curator.media import nvcodec

    if nvcodec.choose_encoder("auto", nvcodec.probe()) != "cpu":
        return False
    try:
        import ray

        if ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0:
            return False
    except ImportError:
        pass
    return True
