"""GPU twins of :func:`curator.media.encode.transcode_spans` and of the detector's frames.

    demux + NVDEC (NV12 surface on the GPU, zero-copy into torch)
      -> rotate / area-downscale / even-crop on the GPU (torch, Y and UV planes)
      -> nvenc:  NVENC H.264 from device memory (no host copy) -> mp4 by stream copy
         nvdec:  one download of the finished NV12->I420 frame -> libx264 (CPU), same
                 crf / preset as the CPU path

Spans are [start_frame, end_frame) of decoded frames, routed exactly as on the CPU path.
A failing encoder fails its clip only; a failing decoder ends the pass and every span
keeps what decoded, as on the CPU.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from fractions import Fraction
from typing import Any, Callable, Iterator, Sequence

from ..decode import DecodeStats, Source
from ..encode import EncodedClip, Span, X264Writer, output_size
from . import api
from .planes import annexb_to_mp4, nv12_to_i420, nv12_to_small_rgb, transform_nv12


class _Path:
    """The source as a file path (the demuxer opens files), a temp file for bytes."""

    def __init__(self, source: Source):
        self.temp = None
        if isinstance(source, (bytes, bytearray, memoryview)):
            fd, self.temp = tempfile.mkstemp(suffix=".mp4", prefix="curator-src-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(bytes(source))
            self.path = self.temp
        elif isinstance(source, str):
            self.path = source
        else:
            raise TypeError("the GPU path reads a path or bytes")

    def __enter__(self) -> str:
        return self.path

    def __exit__(self, *exc: Any) -> None:
        if self.temp:
            os.unlink(self.temp)


class _NvencClip:
    def __init__(self, nvc: Any, w: int, h: int, rate: Fraction, bitrate_mbps: float):
        self.enc = api.H264Encoder(nvc, w, h, rate, bitrate_mbps)
        self.width, self.height, self.rate = w, h, rate

    @property
    def frames(self) -> int:
        return self.enc.frames

    def write(self, nv12: Any) -> None:
        self.enc.write(nv12)

    def finish(self) -> bytes:
        return annexb_to_mp4(self.enc.finish(), self.rate)

    def abort(self) -> None:
        self.enc.close()


class _X264Clip:
    def __init__(self, w: int, h: int, rate: Fraction, crf: int, preset: str):
        self.writer = X264Writer(w, h, rate, crf, preset)
        self.width, self.height = w, h

    @property
    def frames(self) -> int:
        return self.writer.frames

    def write(self, i420: Any) -> None:
        import av

        self.writer.write(av.VideoFrame.from_ndarray(i420, format="yuv420p"))

    def finish(self) -> bytes:
        return self.writer.finish()

    def abort(self) -> None:
        self.writer.abort()


def transcode_spans(source: Source, spans: Sequence[Span], *, encoder: str = "nvenc", rotation: int = 0,
                    fps: float | None = None, bitrate_mbps: float = 10.0, crf: int = 18,
                    preset: str = "veryfast", max_short_side: int | None = None,
                    stats: DecodeStats | None = None) -> list[EncodedClip]:
    """Encode each span of `source`, decoding it once on NVDEC. `encoder` is 'nvenc'
    (NVENC, frames never leave the GPU) or 'nvdec' (libx264 on the CPU, crf/preset).

    Raises :class:`api.UnsupportedSource` before any clip is made when NVDEC does not
    give 8-bit 4:2:0 for this stream (the caller uses the CPU path), and RuntimeError
    when the GPU path is not usable here at all."""
    from .probe import choose_encoder, probe

    encoder = choose_encoder(encoder, probe())
    if encoder == "cpu":
        raise RuntimeError(f"GPU transcoding unavailable: {probe().reason}")
    nvc = api.load()
    stats = stats if stats is not None else DecodeStats()
    with _Path(source) as path:
        try:
            frames = api.Decoded(nvc, path)
        except Exception as exc:
            stats.error = f"NVDEC could not open the stream: {exc}"
            return [_failed(s, 0, 0, 0.0, stats.error) for s in spans]
        w, h = frames.width, frames.height
        rate = Fraction(fps or frames.frame_rate or 25).limit_denominator(1001)
        disp_w, disp_h = (h, w) if rotation % 180 == 90 else (w, h)
        out_w, out_h = output_size(disp_w, disp_h, max_short_side)

        if encoder == "nvenc":
            def make() -> Any:
                return _NvencClip(nvc, out_w, out_h, rate, bitrate_mbps)

            def prepare(nv12: Any) -> Any:
                return transform_nv12(nv12, w, h, rotation, out_w, out_h)
        else:
            def make() -> Any:
                return _X264Clip(out_w, out_h, rate, crf, preset)

            def prepare(nv12: Any) -> Any:  # the one host copy of this path
                return nv12_to_i420(transform_nv12(nv12, w, h, rotation, out_w, out_h), out_w, out_h).cpu().numpy()

        return _route(iter(frames), spans, make, prepare, stats, (out_w, out_h, float(rate)))


def _failed(span: Span, w: int, h: int, fps: float, why: str, frames: int = 0) -> EncodedClip:
    return EncodedClip(span, None, w, h, fps, frames, None, error=why)


def _route(frames: Iterator[tuple[float, Any]], spans: Sequence[Span], make: Callable[[], Any],
           prepare: Callable[[Any], Any], stats: DecodeStats, geom: tuple[int, int, float]) -> list[EncodedClip]:
    """Feed decoded frame idx to every span with start <= idx < end; finish a span at its
    end frame. An encoder error fails that span only; a decoder error ends the pass."""
    out_w, out_h, fps = geom
    writers: dict[int, Any] = {}
    results: dict[int, EncodedClip] = {}
    last_needed = max((s.end_frame for s in spans), default=0)
    idx = 0
    try:
        while idx < last_needed:
            try:
                item = next(frames, None)
            except api.UnsupportedSource:
                raise
            except Exception as exc:  # a broken stream ends decoding; what decoded counts
                stats.error = f"GPU decoding stopped after {idx} frames: {exc}"
                break
            if item is None:
                break
            active = [i for i, s in enumerate(spans) if s.start_frame <= idx < s.end_frame and i not in results]
            if active:
                frame = prepare(item[1])
                for i in active:
                    try:
                        wr = writers.get(i)
                        if wr is None:
                            wr = writers[i] = make()
                        wr.write(frame)
                    except Exception as exc:
                        bad = writers.pop(i, None)
                        if bad is not None:
                            bad.abort()
                        results[i] = _failed(spans[i], out_w, out_h, fps, f"encoder failed at frame {idx}: {exc}",
                                             bad.frames if bad is not None else 0)
                        continue
                    if spans[i].end_frame == idx + 1:
                        results[i] = _finish(spans[i], writers.pop(i), fps)
            idx += 1
            stats.frames = idx
        for i in list(writers):  # stream ended early: keep what decoded
            results[i] = _finish(spans[i], writers.pop(i), fps)
    finally:
        for wr in writers.values():
            wr.abort()
    return [results.get(i) or _failed(s, out_w, out_h, fps, stats.error or "no frames decoded in this span")
            for i, s in enumerate(spans)]


def _finish(span: Span, wr: Any, fps: float) -> EncodedClip:
    frames = wr.frames
    try:
        data = wr.finish()
    except Exception as exc:
        wr.abort()
        return _failed(span, wr.width, wr.height, fps, f"encoder failed at the end of the clip: {exc}", frames)
    return EncodedClip(span, data, wr.width, wr.height, fps, frames, hashlib.sha256(data).hexdigest())


def iter_model_frames(source: Source, size: tuple[int, int], *,
                      stats: DecodeStats | None = None) -> Iterator[tuple[int, float, Any]]:
    """(index, time_s, uint8 RGB tensor [h, w, 3] on the GPU) per decoded frame at size
    (w, h): NVDEC + a resize on the GPU, nothing copied to the host. Same contract as
    :func:`curator.media.decode.iter_frames` (coded orientation, decoded timestamps; a
    broken stream ends the iteration with `stats.error` set)."""
    stats = stats if stats is not None else DecodeStats()
    nvc = api.load()
    with _Path(source) as path:
        try:
            frames = api.Decoded(nvc, path)
        except Exception as exc:
            stats.error = f"NVDEC could not open the stream: {exc}"
            return
        it = iter(frames)
        idx = 0
        while True:
            try:
                item = next(it, None)
            except api.UnsupportedSource:
                raise
            except Exception as exc:
                stats.error = f"GPU decoding stopped after {idx} frames: {exc}"
                return
            if item is None:
                return
            t, nv12 = item
            stats.frames = idx + 1
            yield idx, t, nv12_to_small_rgb(nv12, frames.width, frames.height, size)
            idx += 1


def detector_frames(source: Source, size: tuple[int, int], stats: DecodeStats) -> Iterator[Any]:
    """The split stage's frames on the GPU: :func:`iter_model_frames`, times into
    `stats.times`. A stream NVDEC does not give as NV12 (10-bit, 4:4:4) is decoded by PyAV
    instead, its frames uploaded to the GPU."""
    try:
        for _, t, frame in iter_model_frames(source, size, stats=stats):
            stats.times.append(t)
            yield frame
        return
    except api.UnsupportedSource:
        if stats.times:  # the format changed mid-stream: nothing sensible to resume
            raise
    import torch

    from ..decode import iter_frames

    device = "cuda" if torch.cuda.is_available() else "cpu"
    for _, t, f in iter_frames(source, stats=stats):
        stats.times.append(t)
        rgb = f.to_ndarray(format="rgb24", width=size[0], height=size[1], interpolation="AREA")
        yield torch.from_numpy(rgb).to(device)
