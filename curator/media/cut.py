"""Detect shots and encode them in one decode pass (CPU transcoding).

The two-pass way decodes a video twice: once at the detector's size to find the shots,
once at full size to encode them. Decoding is a fifth to a third of the cost of a libx264
encode at 720p, so the second pass alone puts a run ~25 % above the floor (one decode
plus one encode). Here every frame is decoded once; the detector sees its small copy and
the full-size frame waits in a short queue until the detector's online label for it is
settled (TransNetV2: at most `window_frames` - 25 frames, 175 by default; PySceneDetect: a few), then goes into the
encoder of the shot it belongs to. A shot is kept when it ends within the length rules
as a single clip.

The pass only *guesses* which clips will exist. The spans are decided afterwards exactly
as before (:meth:`Detector.shots` then ``make_spans``), and a guessed clip is used only
when its frame range equals a decided span; the rest (pieces of shots longer than
``max_s``, or a cut reported later than the queue waited) are encoded by a second pass
over just those spans. Both ways feed the same frames to the same encoder settings, so a
clip's bytes do not depend on which way made it.

Encoding runs on a thread of its own (:class:`curator.media.encode.EncoderThread`): while
libx264 encodes frame N, this thread decodes and labels frame N+1, so one video keeps two
cores busy where the encode alone would not (small frames, or an encoder thread count
fixed for reproducible bytes).
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .decode import DecodeStats, Source, iter_frames
from .encode import EncodedClip, EncoderThread, Span, X264Writer, finish_clip, plan_output
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
    #: seconds the encoder thread spent encoding and muxing (it overlaps decoding)
    encode_s: float = 0.0


@dataclass
class _Shot:
    start: int
    writer: X264Writer | None = None
    frames: int = 0  # handed to the writer (counted here: the writer counts on the encoder thread)
    too_long: bool = False


def detect_and_encode(source: Source, detector: Detector, *, fps: float, min_s: float, max_s: float,
                      rotation: int = 0, crf: int = 18, preset: str = "veryfast", threads: int = 1,
                      max_short_side: int | None = None, stats: DecodeStats | None = None) -> CutResult:
    """One decode pass: feed `detector`, encode the shots it settles as they pass."""
    stats = stats if stats is not None else DecodeStats()
    plan = plan_output(source, rotation=rotation, fps=fps, max_short_side=max_short_side)
    graph = plan.graph()
    times = detector.times
    frame_dur = 1.0 / fps if fps > 0 else 0.0
    result = CutResult([], times)
    queue: deque[tuple[int, float, Any]] = deque()
    current: _Shot | None = None
    encoder = EncoderThread()

    def t_at(i: int) -> float:
        return times[i] if i < len(times) else times[-1] + frame_dur

    def drop(shot: _Shot) -> None:
        if shot.writer is not None:
            result.wasted_frames += shot.frames
            encoder.submit(shot.writer.abort)
            shot.writer = None

    def keep(key: tuple[int, int], span: Span, writer: X264Writer) -> None:  # on the encoder thread
        result.encoded[key] = finish_clip(span, writer, plan.rate)

    def close(end: int) -> None:
        nonlocal current
        shot, current = current, None
        if shot is None or shot.writer is None:
            return
        dur = t_at(end) - t_at(shot.start)
        if dur + 1e-9 < min_s or dur > max_s + 1e-9:
            drop(shot)
            return
        span = Span(shot.start, end, round(t_at(shot.start), 6), round(t_at(end), 6))
        encoder.submit(keep, (shot.start, end), span, shot.writer)

    def write(idx: int, t: float, out: Any) -> None:
        shot = current
        if shot is None or shot.too_long:
            return
        if t - t_at(shot.start) > max_s + 1e-9:  # will be cut into pieces: the second pass does it
            shot.too_long = True
            drop(shot)
            return
        if shot.writer is None:
            shot.writer = X264Writer(out.width, out.height, plan.rate, crf, preset, threads)
        encoder.submit(shot.writer.write, out)
        shot.frames += 1

    def feed(idx: int, t: float, out: Any) -> None:
        nonlocal current
        label = detector.label(idx)
        if label is Label.OUT:
            close(idx)
            return
        if label is Label.START or current is None:
            close(idx)
            current = _Shot(idx)
        write(idx, t, out)
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
        encoder.close()
    finally:
        encoder.close(raise_error=False)  # after an error: let queued calls finish before aborting
        if current is not None and current.writer is not None:
            current.writer.abort()
    result.encode_s = encoder.busy_s
    result.shots = detector.shots()
    return result
