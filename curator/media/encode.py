"""CPU clip extraction: decode the source once, encode every span with libx264.

Frame-accurate by construction: frames are counted as they decode, and span
[start_frame, end_frame) receives exactly those frames. Rotation is applied (clips are
stored upright with no display matrix) and pixel formats are normalised to yuv420p with
even dimensions. Output is constant frame rate at the source's average rate.
"""

from __future__ import annotations

import hashlib
import os
import queue
import tempfile
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Sequence

import av

from .decode import DecodeStats, FrameGraph, Source, _open, iter_frames
from .frames import even


@dataclass
class Span:
    start_frame: int
    end_frame: int  # exclusive
    start_s: float
    end_s: float


@dataclass
class EncodedClip:
    span: Span
    data: bytes | None  # mp4 bytes; None when the span could not be encoded
    width: int
    height: int
    fps: float
    frames: int
    sha256: str | None
    error: str | None = None

    def to_record(self) -> dict[str, Any]:
        """The clip as a row of the transient `encoded_spans` column (records.ENCODED_SPANS)."""
        return {"start_frame": self.span.start_frame, "end_frame": self.span.end_frame, "mp4": self.data,
                "width": self.width, "height": self.height, "fps": self.fps, "frames": self.frames,
                "sha256": self.sha256, "error": self.error}

    @classmethod
    def from_record(cls, span: Span, rec: dict[str, Any]) -> EncodedClip:
        return cls(span, rec["mp4"], rec["width"], rec["height"], rec["fps"], rec["frames"], rec["sha256"],
                   rec.get("error"))


def output_size(width: int, height: int, max_short_side: int | None) -> tuple[int, int]:
    """Even dimensions, optionally downscaled so the short side is at most max_short_side."""
    if max_short_side and min(width, height) > max_short_side:
        scale = max_short_side / min(width, height)
        width, height = round(width * scale), round(height * scale)
    return even(width, how="down"), even(height, how="down")


_HEAP_PERTURBED = False


def deterministic_heap() -> None:
    """Make libx264's output bit-identical from run to run.

    libx264 (as built into PyAV's FFmpeg) reads some heap memory it has not written, so
    the same frames can encode to slightly different bytes depending on what the process
    allocated before (seen here: 1 in 4 runs differed). glibc's M_PERTURB fills every
    allocation with a fixed byte, which makes those reads, and so the output,
    reproducible. Set once per worker process; a no-op where glibc is absent."""
    global _HEAP_PERTURBED
    if _HEAP_PERTURBED:
        return
    _HEAP_PERTURBED = True
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-6, 0x5A)  # M_PERTURB
    except (OSError, AttributeError):
        pass


class X264Writer:
    """One clip being written: libx264 into an mp4 (faststart) in a temp file."""

    def __init__(self, width: int, height: int, rate: Fraction, crf: int, preset: str, threads: int = 1):
        deterministic_heap()
        fd, self.path = tempfile.mkstemp(prefix="curator-clip-", suffix=".mp4")
        os.close(fd)
        self.container = av.open(self.path, "w", format="mp4", options={"movflags": "+faststart"})
        self.stream = self.container.add_stream("libx264", rate=rate, options={
            # one thread per clip by default: parallelism comes from the workers (0 = auto)
            "crf": str(crf), "preset": preset, "threads": str(threads) if threads else "auto",
        })
        self.stream.width = width
        self.stream.height = height
        self.stream.pix_fmt = "yuv420p"
        self.frames = 0

    def write(self, frame: Any) -> None:
        frame.pts = self.frames
        frame.time_base = Fraction(1, 1) / self.stream.codec_context.framerate
        for pkt in self.stream.encode(frame):
            self.container.mux(pkt)
        self.frames += 1

    def finish(self) -> bytes:
        try:
            for pkt in self.stream.encode():
                self.container.mux(pkt)
            self.container.close()
            with open(self.path, "rb") as fh:
                return fh.read()
        finally:
            self.abort()

    def abort(self) -> None:
        try:
            self.container.close()
        except Exception:
            pass
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class EncoderThread:
    """Encoder calls run in order on one background thread.

    The thread that decodes (and runs a shot detector) hands each frame over and goes on
    with the next one while libx264 and the muxer work; PyAV releases the GIL inside
    libavcodec, so on two cores decoding and encoding overlap. The encoder sees the same
    frames in the same order, so clip bytes do not change. At most `depth` calls wait
    (bounded memory). A call that raises does not stop the ones after it (aborts must
    still run); the first error is raised by :meth:`submit` or :meth:`close`."""

    def __init__(self, depth: int = 32):
        self._q: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self.busy_s = 0.0  # seconds the thread spent in calls
        self._thread = threading.Thread(target=self._run, name="curator-encoder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._q.get()) is not None:
            fn, args = item
            t0 = time.perf_counter()
            try:
                fn(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to the submitting thread
                self._error = self._error or exc
            self.busy_s += time.perf_counter() - t0

    def submit(self, fn: Any, *args: Any) -> None:
        if self._error is not None:
            raise self._error
        self._q.put((fn, args))

    def close(self, raise_error: bool = True) -> None:
        """Wait for every call submitted; then raise the first error (when asked)."""
        if self._thread.is_alive():
            self._q.put(None)
            self._thread.join()
        if raise_error and self._error is not None:
            raise self._error


@dataclass
class OutputPlan:
    """How a source's frames become clip frames: constant rate, upright, even size."""

    rate: Fraction
    disp_width: int
    disp_height: int
    width: int
    height: int
    rotation: int

    def graph(self) -> FrameGraph:
        scaled = (self.width, self.height) != (self.disp_width, self.disp_height)
        return FrameGraph(rotation=self.rotation, width=self.width if scaled else None,
                          height=self.height if scaled else None, even=True)


def plan_output(source: Source, *, rotation: int = 0, fps: float | None = None,
                max_short_side: int | None = None) -> OutputPlan:
    container = _open(source)
    try:
        vs = container.streams.video[0]
        rate = vs.average_rate or vs.guessed_rate or Fraction(fps or 25).limit_denominator(1001)
        cw, ch = vs.codec_context.width, vs.codec_context.height
    finally:
        container.close()
    if fps:
        rate = Fraction(fps).limit_denominator(1001)
    disp_w, disp_h = (ch, cw) if rotation % 180 == 90 else (cw, ch)
    out_w, out_h = output_size(disp_w, disp_h, max_short_side)
    return OutputPlan(rate, disp_w, disp_h, out_w, out_h, rotation)


def transcode_spans(source: Source, spans: Sequence[Span], *, rotation: int = 0, fps: float | None = None,
                    crf: int = 18, preset: str = "veryfast", threads: int = 1, max_short_side: int | None = None,
                    stats: DecodeStats | None = None) -> list[EncodedClip]:
    """Encode each span of `source` as an H.264 mp4, decoding the source once."""
    stats = stats if stats is not None else DecodeStats()
    plan = plan_output(source, rotation=rotation, fps=fps, max_short_side=max_short_side)
    rate, out_w, out_h = plan.rate, plan.width, plan.height

    order = sorted(range(len(spans)), key=lambda i: spans[i].start_frame)
    writers: dict[int, X264Writer] = {}
    results: dict[int, EncodedClip] = {}
    graph = None
    last_needed = max((s.end_frame for s in spans), default=0)
    try:
        for idx, _, frame in iter_frames(source, stats=stats):
            if idx >= last_needed:
                break
            active = [i for i in order if spans[i].start_frame <= idx < spans[i].end_frame]
            if not active:
                continue
            if graph is None:
                graph = plan.graph()
            out = graph(frame)
            for i in active:
                w = writers.get(i)
                if w is None:
                    w = writers[i] = X264Writer(out.width, out.height, rate, crf, preset, threads)
                # frames are shared between overlapping spans; the encoder copies them
                w.write(out)
            # close spans that end at this frame
            for i in active:
                if spans[i].end_frame == idx + 1:
                    results[i] = finish_clip(spans[i], writers.pop(i), rate)
        for i, w in list(writers.items()):  # stream ended early: keep what decoded
            results[i] = finish_clip(spans[i], writers.pop(i), rate)
    finally:
        for w in writers.values():
            w.abort()
    out_list = []
    for i, span in enumerate(spans):
        res = results.get(i)
        if res is None:
            res = EncodedClip(span, None, out_w, out_h, float(rate), 0, None,
                              error=stats.error or "no frames decoded in this span")
        out_list.append(res)
    return out_list


def finish_clip(span: Span, writer: X264Writer, rate: Fraction) -> EncodedClip:
    frames = writer.frames
    w, h = writer.stream.width, writer.stream.height
    try:
        data = writer.finish()
    except av.error.FFmpegError as exc:
        return EncodedClip(span, None, w, h, float(rate), frames, None, error=f"encoder failed: {exc}")
    return EncodedClip(span, data, w, h, float(rate), frames, hashlib.sha256(data).hexdigest())
