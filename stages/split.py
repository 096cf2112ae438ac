"""Shot split: TransNetV2 (default), PySceneDetect's adaptive detector, or a fixed stride.

The source is decoded once, at the small size the detector needs. Shots are half-open
ranges of *decoded* frame indices, with times from the decoded timestamps, so variable
frame-rate sources are cut where their frames really are. Shots shorter than
`min_clip_s` are dropped; shots longer than `max_clip_s` are cut into equal pieces.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import pyarrow as pa

from curator.config import SplitConfig
from curator.media.decode import DecodeStats, iter_frames
from curator.media.source import source_of
from curator.records import REJECTED, Reason, Row, stop
from curator.stage import RunContext, Stage

log = logging.getLogger(__name__)

SCENEDETECT_WIDTH = 256


def make_spans(shots: list[tuple[int, int]], times: list[float], fps: float,
               min_s: float, max_s: float) -> list[dict[str, Any]]:
    """Shots -> spans obeying the length rules. Spans are [start_frame, end_frame)."""
    n = len(times)
    frame_dur = 1.0 / fps if fps > 0 else 0.0

    def t_at(i: int) -> float:
        return times[i] if i < n else times[-1] + frame_dur

    spans = []
    for a, b in shots:
        a, b = max(0, a), min(n, b)
        if b <= a:
            continue
        dur = t_at(b) - t_at(a)
        if dur + 1e-9 < min_s:
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
        for s, e in pieces:
            if e <= s:  # fewer frames than pieces: only a broken time base spaces frames this far
                continue
            spans.append({"start_frame": s, "end_frame": e,
                          "start_s": round(t_at(s), 6), "end_s": round(t_at(e), 6)})
    return spans


class SplitStage(Stage):
    name = "split"
    kind = "video"
    stateful = True
    columns = [("num_shots", pa.int32())]
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
                log.warning("split: TransNetV2 is running on CPU (about 50 frames/s per core, the slowest stage "
                            "of a CPU run); on CPU-only machines stages.split.method=scenedetect "
                            "was 8x faster in benchmarks/pipeline_bench.py")

    # -------------------------------------------------------------- detectors
    def _transnet(self, source: Any, stats: DecodeStats) -> list[tuple[int, int]]:
        from curator.models import transnetv2

        def frames():
            for _, t, f in iter_frames(source, stats=stats):
                stats.times.append(t)
                yield f.to_ndarray(format="rgb24", width=transnetv2.SIZE[0], height=transnetv2.SIZE[1],
                                   interpolation="AREA")

        chosen = frames()
        if str(self.model.device).startswith("cuda"):  # NVDEC where it works: frames stay on the GPU
            from curator.media import nvcodec

            if nvcodec.probe().nvdec:
                chosen = nvcodec.detector_frames(source, transnetv2.SIZE, stats)
        preds = transnetv2.predict(self.model, chosen)
        return transnetv2.scenes(preds, self.config.threshold)

    def _scenedetect(self, source: Any, stats: DecodeStats, fps: float, width: int, height: int,
                     rotation: int) -> list[tuple[int, int]]:
        from scenedetect import AdaptiveDetector
        from scenedetect.common import FrameTimecode

        detector = AdaptiveDetector(adaptive_threshold=self.config.scenedetect_threshold)
        coded_w, coded_h = (height, width) if rotation % 180 == 90 else (width, height)
        w = min(SCENEDETECT_WIDTH, coded_w)
        h = max(2, int(round(coded_h * w / max(1, coded_w))))
        cuts: list[int] = []
        for idx, t, f in iter_frames(source, stats=stats):
            stats.times.append(t)
            img = f.to_ndarray(format="bgr24", width=w, height=h, interpolation="AREA")
            for tc in detector.process_frame(FrameTimecode(idx, fps), img):
                cuts.append(int(tc.frame_num))
        n = stats.frames
        if n:
            for tc in detector.post_process(FrameTimecode(n - 1, fps)) if hasattr(detector, "post_process") else []:
                cuts.append(int(tc.frame_num))
        bounds = [0] + sorted(c for c in set(cuts) if 0 < c < n) + [n]
        return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]

    def _fixed(self, source: Any, stats: DecodeStats, fps: float) -> list[tuple[int, int]]:
        for _, t, _f in iter_frames(source, stats=stats):
            stats.times.append(t)
        n = stats.frames
        if not n:
            return []
        shots, start = [], 0
        t0 = stats.times[0]
        k = 1
        for i, t in enumerate(stats.times):
            if t - t0 >= k * self.config.stride_s - 1e-9:
                shots.append((start, i))
                start, k = i, k + 1
        shots.append((start, n))
        return shots

    # ---------------------------------------------------------------- process
    def process_row(self, row: Row) -> Row:
        cfg = self.config
        fps = float(row.get("fps") or 0) or 25.0
        stats = DecodeStats()
        source = source_of(row)
        if cfg.method == "transnetv2":
            shots = self._transnet(source, stats)
        elif cfg.method == "scenedetect":
            shots = self._scenedetect(source, stats, fps, int(row.get("width") or 0),
                                      int(row.get("height") or 0), int(row.get("rotation") or 0))
        else:
            shots = self._fixed(source, stats, fps)
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
        spans = make_spans(shots, stats.times, fps, cfg.min_clip_s, cfg.max_clip_s)
        row["spans"] = spans
        if not spans:
            row.pop("video_bytes", None)
            return stop(row, self.name, Reason.NO_SHOTS,
                        f"{len(shots)} shots, none at least stages.split.min_clip_s={cfg.min_clip_s} s",
                        status=REJECTED)
        return row

