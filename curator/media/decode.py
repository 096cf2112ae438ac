"""Decoding with PyAV: frame iterators that survive truncated files, rotation-aware
filter graphs, and uniform frame sampling for models.

Decoded frames never leave the process that decodes them; stages pass encoded clips and
small sampled arrays instead (see docs/architecture.md).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, BinaryIO, Iterator, Sequence

import av
import av.filter
import numpy as np

from curator.deadline import check as check_deadline

log = logging.getLogger(__name__)

Source = str | BinaryIO | bytes


def _open(source: Source) -> Any:
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(bytes(source))
    return av.open(source, metadata_errors="ignore")


def rotation_filters(rotation: int) -> list[tuple[str, str]]:
    """FFmpeg filters that make a frame upright, for a display-matrix rotation (ccw degrees)."""
    r = rotation % 360
    if r == 90:
        return [("transpose", "cclock")]
    if r == 270:
        return [("transpose", "clock")]
    if r == 180:
        return [("hflip", ""), ("vflip", "")]
    return []


@dataclass
class DecodeStats:
    """What a decode pass saw; `error` is set when the stream broke off early."""

    frames: int = 0
    error: str | None = None
    times: list[float] = field(default_factory=list)


class FrameGraph:
    """buffer -> [rotate] -> [scale] -> [crop] -> format -> buffersink, built from the first frame.

    Frames that the graph would leave as they are (upright, not scaled or cropped, even
    size, already in `pix_fmt`: most H.264 sources) are passed through without it, which
    saves a filter-graph round trip per frame."""

    def __init__(self, *, rotation: int = 0, width: int | None = None, height: int | None = None,
                 pix_fmt: str = "yuv420p", even: bool = False, crop: tuple[int, int] | None = None):
        self.rotation = rotation
        self.width = width
        self.height = height
        self.crop = crop  # (width, height) cut from the centre after scaling
        self.pix_fmt = pix_fmt
        self.even = even
        self._graph: Any = None
        self._identity: tuple[int, int, str] | None = None  # (width, height, format) passed through

    def _passes(self, frame: Any) -> bool:
        if self._identity is None and self._graph is None:
            w, h = frame.width, frame.height
            if (not rotation_filters(self.rotation) and not (self.width and self.height) and not self.crop
                    and w % 2 == 0 and h % 2 == 0 and frame.format.name == self.pix_fmt):
                self._identity = (w, h, self.pix_fmt)
        return self._identity == (frame.width, frame.height, frame.format.name)

    def _build(self, frame: Any) -> None:
        g = av.filter.Graph()
        node = g.add_buffer(width=frame.width, height=frame.height, format=frame.format.name,
                            time_base=frame.time_base or Fraction(1, 1000))
        chain: list[tuple[str, str]] = list(rotation_filters(self.rotation))
        if self.width and self.height:
            chain.append(("scale", f"{self.width}:{self.height}:flags=area"))
        elif self.even:
            chain.append(("scale", "trunc(iw/2)*2:trunc(ih/2)*2"))
        if self.crop:
            chain.append(("crop", f"{self.crop[0]}:{self.crop[1]}"))  # centred by default
        chain.append(("format", self.pix_fmt))
        for name, args in chain:
            nxt = g.add(name, args) if args else g.add(name)
            node.link_to(nxt)
            node = nxt
        sink = g.add("buffersink")
        node.link_to(sink)
        g.configure()
        self._graph = g

    def __call__(self, frame: Any) -> Any:
        if self._passes(frame):
            return frame
        if self._graph is None:
            self._build(frame)
        self._graph.push(frame)
        return self._graph.pull()


def iter_frames(source: Source, *, stats: DecodeStats | None = None, threads: bool = True) -> Iterator[tuple[int, float, Any]]:
    """Yield (index, time_s, av.VideoFrame) for every decodable frame of the first video stream.

    A stream that breaks off (truncated file, corrupt packet run) ends the iteration; the
    error is recorded in `stats.error` rather than raised, so the frames before it count.
    """
    stats = stats if stats is not None else DecodeStats()
    container = _open(source)
    try:
        vs = container.streams.video[0]
        if threads:
            vs.thread_type = "AUTO"
        tb = vs.time_base
        idx = 0
        last_t = -1.0
        gen = container.decode(vs)
        while True:
            try:
                frame = next(gen)
            except StopIteration:
                break
            except av.error.FFmpegError as exc:
                stats.error = f"decoding stopped after {idx} frames: {exc}"
                break
            if frame.pts is not None and tb is not None:
                t = float(frame.pts * tb)
            else:
                t = last_t + 1e-3 if last_t >= 0 else 0.0
            last_t = t
            stats.frames = idx + 1
            check_deadline()
            yield idx, t, frame
            idx += 1
    finally:
        container.close()


def video_stream(source: Source) -> Any:
    """Open a container and return (container, first video stream) — caller closes."""
    container = _open(source)
    return container, container.streams.video[0]


def uniform_indices(num_frames: int, n: int) -> list[int]:
    """n frame indices spread evenly over [0, num_frames - 1], first and last included."""
    if num_frames <= 0 or n <= 0:
        return []
    if n == 1:
        return [num_frames // 2]
    return [int(round(x)) for x in np.linspace(0, num_frames - 1, n)]


def sample_frames(source: Source, n: int, size: tuple[int, int] | None = None, *,
                  num_frames: int | None = None, fmt: str = "rgb24",
                  indices: Sequence[int] | None = None) -> tuple[np.ndarray, list[int]]:
    """Decode n uniformly spaced frames as uint8 [n, H, W, 3] (size = (width, height)).

    `num_frames` (known from the manifest) avoids a counting pass; when it is not given or
    is wrong, frames are counted first. Returns the array and the indices it holds.
    """
    if indices is None:
        total = num_frames
        if not total:
            total = sum(1 for _ in iter_frames(source, threads=False))
        indices = uniform_indices(total, n)
    wanted = sorted(set(indices))
    if not wanted:
        return np.zeros((0, 0, 0, 3), np.uint8), []
    got: dict[int, np.ndarray] = {}
    last = wanted[-1]
    for idx, _, frame in iter_frames(source):
        if idx in wanted:
            if size:
                arr = frame.to_ndarray(format=fmt, width=size[0], height=size[1], interpolation="AREA")
            else:
                arr = frame.to_ndarray(format=fmt)
            got[idx] = arr
        if idx >= last:
            break
    if not got:
        return np.zeros((0, 0, 0, 3), np.uint8), []
    # a clip shorter than its header claims: repeat the last decoded frame
    out, used = [], []
    last_arr = None
    for i in indices:
        arr = got.get(i)
        if arr is None:
            arr = last_arr if last_arr is not None else got[max(got)]
        last_arr = arr
        out.append(arr)
        used.append(i if i in got else max(got))
    return np.stack(out), used
