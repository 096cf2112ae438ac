"""Detect shots and encode them in one decode pass (CPU transcoding).

The two-pass way decodes a video twice: once at the detector's size to find the shots,
once at full size to encode them. Decoding is a fifth to a third of the cost of a libx264
encode at 720p, so the second pass alone puts a run ~25 % above the floor (one decode
plus one encode). Here every frame is decoded once; the detector sees its small copy and
the full-size frame waits in a short queue until the detector's online label for it is
settled (TransNetV2: at most 75 frames; PySceneDetect: a few), then goes into the
encoder of the shot it belongs to. A shot is kept when it ends within the length rules
as a single clip.

The pass only *guesses* which clips will exist. The spans are decided afterwards exactly
as before (:meth:`Detector.shots` then ``make_spans``), and a guessed clip is used only
when its frame range equals a decided span; the rest (pieces of shots longer than
``max_s``, or a cut reported later than the queue waited) are encoded by a second pass
over just those spans. Both ways feed the same frames to the same encoder settings, so a
clip's bytes do not depend on which way made it.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .decode import DecodeStats, Source, iter_frames
from .encode import EncodedClip, Span, X264Writer, finish_clip, plan_output
from .shots import Detector, Label

log = logging.getLogger(__name__)


@dataclass
class CutResult:
    shots: list[tuple[int, int]]
    times: list[float]
    #: clips encoded during the pass, by (start_frame, end_frame)
    encoded: dict[tuple[int, int], EncodedClip] = field(default_factory=dict)
    #: frames encoded into clips that the length rules then dropped (work spent for nothing)
    wasted_frames: int = 0
    encode_s: float = 0.0


@dataclass
class _Shot:
    start: int
    writer: X264Writer | None = None
    too_long: bool = False


def detect_and_encode(source: Source, detector: Detector, *, fps: float, min_s: float, max_s: float,
                      rotation: int = 0, crf: int = 18, preset: str = "veryfast", threads: int = 1,
                      max_short_side: int | None = None, stats: DecodeStats | None = None) -> CutResult:
    """One decode pass: feed `detector`, encode the shots it settles as they pass."""
    import time

    stats = stats if stats is not None else DecodeStats()
    plan = plan_output(source, rotation=rotation, fps=fps, max_short_side=max_short_side)
    graph = plan.graph()
    times = detector.times
    frame_dur = 1.0 / fps if fps > 0 else 0.0
    result = CutResult([], times)
    queue: deque[tuple[int, float, Any]] = deque()
    current: _Shot | None = None

    def t_at(i: int) -> float:
        return times[i] if i < len(times) else times[-1] + frame_dur

    def close(end: int) -> None:
        nonlocal current
        shot, current = current, None
        if shot is None or shot.writer is None:
            return
        dur = t_at(end) - t_at(shot.start)
        if dur + 1e-9 < min_s or dur > max_s + 1e-9:
            result.wasted_frames += shot.writer.frames
            shot.writer.abort()
            return
        span = Span(shot.start, end, round(t_at(shot.start), 6), round(t_at(end), 6))
        result.encoded[(shot.start, end)] = finish_clip(span, shot.writer, plan.rate)

    def write(idx: int, t: float, out: Any) -> None:
        shot = current
        if shot is None or shot.too_long:
            return
        if t - t_at(shot.start) > max_s + 1e-9:  # will be cut into pieces: the second pass does it
            shot.too_long = True
            if shot.writer is not None:
                result.wasted_frames += shot.writer.frames
                shot.writer.abort()
                shot.writer = None
            return
        if shot.writer is None:
            shot.writer = X264Writer(out.width, out.height, plan.rate, crf, preset, threads)
        shot.writer.write(out)

    def feed(idx: int, t: float, out: Any) -> None:
        nonlocal current
        label = detector.label(idx)
        if label is Label.OUT:
            close(idx)
            return
        if label is Label.START or current is None:
            close(idx)
            current = _Shot(idx)
        t0 = time.perf_counter()
        write(idx, t, out)
        result.encode_s += time.perf_counter() - t0
        if label is Label.LAST:
            close(idx + 1)

    try:
        for idx, t, frame in iter_frames(source, stats=stats):
            detector.push(idx, t, frame)
            queue.append((idx, t, graph(frame)))
            settled = detector.settled()
            while queue and queue[0][0] < settled:
                feed(*queue.popleft())
        detector.finish()
        while queue:
            feed(*queue.popleft())
        close(detector.n)
    finally:
        if current is not None and current.writer is not None:
            current.writer.abort()
    result.shots = detector.shots()
    return result
