"""Tokenizer windows: a clip resampled to a fixed fps, resized and centre-cropped to a
fixed size, cut into non-overlapping windows of 1 + factor*k frames, each re-encoded.

The arithmetic is pure and exact (Fractions), so the shard planner can say from the
manifest alone how many windows of which length a clip gives, and the writer produces
exactly those frames:

    output frame j (at dst fps)  <-  source frame floor(j * src / dst)

Frames are dropped (dst < src) or repeated (dst > src); nothing is interpolated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from curator.media.frames import even

from .decode import FrameGraph, Source, iter_frames
from .encode import X264Writer


def rate(fps: float) -> Fraction:
    """A float frame rate as the Fraction it stands for (29.97003 -> 30000/1001)."""
    return Fraction(fps).limit_denominator(1001)


def resampled_count(src_frames: int, src: Fraction, dst: Fraction) -> int:
    """How many output frames j have a source frame floor(j*src/dst) < src_frames."""
    if src_frames <= 0:
        return 0
    return math.ceil(Fraction(src_frames) * dst / src)


def source_index(j: int, src: Fraction, dst: Fraction) -> int:
    return math.floor(Fraction(j) * src / dst)


@dataclass(frozen=True)
class Window:
    index: int  # 0, 1, ... within the clip
    start: int  # first output frame (at the target fps)
    frames: int  # 1 + factor * k


def windows(total: int, max_frames: int, min_frames: int, factor: int) -> list[Window]:
    """Full windows of max_frames, then the rest as one window of the largest 1 + factor*k
    frames that fits, if that is at least min_frames."""
    out = [Window(i, i * max_frames, max_frames) for i in range(total // max_frames)]
    rest = total - len(out) * max_frames
    if rest >= 1:
        tail = 1 + factor * ((rest - 1) // factor)
        if tail >= min_frames:
            out.append(Window(len(out), len(out) * max_frames, tail))
    return out


def _nearest_multiple(x: float, m: int) -> int:
    return max(m, int(round(x / m)) * m)


def target_size(ratio: str, short_side: int, multiple: int, sizes: dict[str, list[int]] | None = None) -> tuple[int, int]:
    """(width, height) for an aspect-ratio bucket 'W:H': the short side given, the long side
    following the ratio, both multiples of `multiple` (or the exact size configured)."""
    if sizes and ratio in sizes:
        w, h = sizes[ratio]
        return int(w), int(h)
    a, _, b = ratio.partition(":")
    rw, rh = int(a), int(b)
    if rw >= rh:
        return _nearest_multiple(short_side * rw / rh, multiple), short_side
    return short_side, _nearest_multiple(short_side * rh / rw, multiple)


def cover(width: int, height: int, out_w: int, out_h: int) -> tuple[int, int]:
    """The even size a (width x height) frame is scaled to so that it covers out_w x out_h
    with the aspect ratio kept; a centre crop then gives exactly out_w x out_h."""
    s = max(out_w / width, out_h / height)
    sw = max(out_w, math.ceil(width * s - 1e-9))
    sh = max(out_h, math.ceil(height * s - 1e-9))
    return even(sw, minimum=0, how="up"), even(sh, minimum=0, how="up")


def _window_frames(source: Source, wins: Sequence[Window], src_fps: Fraction, dst_fps: Fraction,
                   convert: Callable[[Any], Any]) -> Iterator[tuple[int, Any]]:
    """(j, convert(frame)) for every output frame j some window needs, in order: output frame
    j shows source frame floor(j * src / dst), converted once however often it repeats. A
    source that ends early repeats its last frame up to the windows' planned end."""
    last_j = max(w.start + w.frames for w in wins)
    j = min(w.start for w in wins)  # next output frame wanted

    def needed(j: int) -> bool:
        return any(w.start <= j < w.start + w.frames for w in wins)

    last: Any = None
    raw: Any = None
    raw_converted = False
    for idx, _, frame in iter_frames(source):
        if j >= last_j:
            break
        raw, raw_converted = frame, False
        js = []
        while j < last_j and source_index(j, src_fps, dst_fps) == idx:
            js.append(j)
            j += 1
        wanted = [x for x in js if needed(x)]
        if wanted:
            last, raw_converted = convert(frame), True
            for x in wanted:
                yield x, last
    if j < last_j:  # the source ended before the planned frame count
        if raw is None:
            raise ValueError("no frame could be decoded")
        last = last if raw_converted else convert(raw)
        for x in range(j, last_j):
            if needed(x):
                yield x, last


def _scaler(size: tuple[int, int], pix_fmt: str = "yuv420p") -> Callable[[Any], Any]:
    """A frame -> scaled to cover `size` (aspect kept) and centre-cropped to it; the filter
    graph is built from the first frame."""
    out_w, out_h = size
    graph: FrameGraph | None = None

    def scaled(frame: Any) -> Any:
        nonlocal graph
        if graph is None:
            sw, sh = cover(frame.width, frame.height, out_w, out_h)
            graph = FrameGraph(width=sw, height=sh, crop=(out_w, out_h), pix_fmt=pix_fmt)
        out = graph(frame)
        out.pict_type = 0  # NONE: do not force the source's frame types on an encoder
        return out

    return scaled


def encode_windows(source: Source, wins: Sequence[Window], *, src_fps: Fraction, dst_fps: Fraction,
                   size: tuple[int, int], crf: int = 18, preset: str = "veryfast", threads: int = 1) -> list[bytes]:
    """Decode `source` once and encode each window as an mp4 of exactly `frames` frames at
    `dst_fps` and `size`. A source that ends early repeats its last frame (the windows were
    planned from the manifest's frame count). Frame types are the encoder's own choice
    (the source's I/P/B flags are cleared); bytes are reproducible (see X264Writer)."""
    if not wins:
        return []
    out_w, out_h = size
    writers: dict[int, X264Writer] = {}
    results: dict[int, bytes] = {}
    try:
        for j, frame in _window_frames(source, wins, src_fps, dst_fps, _scaler(size)):
            for i, w in enumerate(wins):
                if w.start <= j < w.start + w.frames:
                    wr = writers.get(i)
                    if wr is None:
                        wr = writers[i] = X264Writer(out_w, out_h, dst_fps, crf, preset, threads)
                    wr.write(frame)
                    if j + 1 == w.start + w.frames:
                        results[i] = writers.pop(i).finish()
    finally:
        for wr in writers.values():
            wr.abort()
    return [results[i] for i in range(len(wins))]


def window_arrays(source: Source, wins: Sequence[Window], *, src_fps: Fraction, dst_fps: Fraction,
                  size: tuple[int, int]) -> Iterator[tuple[int, np.ndarray]]:
    """The frames of each window as uint8 RGB ``[T, H, W, 3]``, yielded as (window number,
    array) when the window is complete: the frames `encode_windows` encodes (same
    resampling, scaling, crop and yuv420p), converted to RGB as the loader converts a
    decoded window, without the lossy encode in between. Windows are non-overlapping, so
    memory holds about one window at a time."""
    if not wins:
        return
    out_w, out_h = size
    arrays: dict[int, np.ndarray] = {}
    scaled = _scaler(size)  # yuv420p, then to RGB as the loader converts decoded windows
    for j, rgb in _window_frames(source, wins, src_fps, dst_fps, lambda f: scaled(f).to_ndarray(format="rgb24")):
        for i, w in enumerate(wins):
            if w.start <= j < w.start + w.frames:
                arr = arrays.get(i)
                if arr is None:
                    arr = arrays[i] = np.empty((w.frames, out_h, out_w, 3), np.uint8)
                arr[j - w.start] = rgb
                if j + 1 == w.start + w.frames:
                    yield i, arrays.pop(i)
