"""GPU twin of :mod:`curator.media.encode`: PyNvVideoCodec NVDEC decode + NVENC encode.

    demux + NVDEC (frames stay on the GPU, NV12)
      -> rotate / downscale / even-crop on the GPU (torch, on the Y and UV planes)
      -> NVENC H.264 (Annex B)  -> mp4 by a stream copy through PyAV (no re-encode)

Spans are routed by decoded frame index exactly as on the CPU path, so clip
boundaries are the same. `PyNvVideoCodec` installs without a GPU but fails to import
without the NVIDIA encode library, so every entry point goes through
:func:`unavailable_reason`; the plane arithmetic and the muxing are plain functions
tested on CPU tensors.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import tempfile
from fractions import Fraction
from typing import Any, Sequence

from .decode import DecodeStats, Source
from .encode import EncodedClip, Span, output_size


@functools.lru_cache(maxsize=1)
def unavailable_reason() -> str | None:
    """None when NVDEC + NVENC are usable here, else one line saying why not."""
    try:
        import torch

        if not torch.cuda.is_available():
            return "no CUDA device"
    except Exception as exc:  # pragma: no cover - torch is a hard dependency
        return f"torch cannot query CUDA: {exc}"
    try:
        import PyNvVideoCodec  # noqa: F401
    except ImportError:
        return "PyNvVideoCodec is not installed (pip install 'curator[gpu]')"
    except Exception as exc:  # the wheel imports only where libnvidia-encode exists
        return f"PyNvVideoCodec cannot load: {exc}"
    return None


# ----------------------------------------------------------------- plane arithmetic
def nv12_planes(nv12: Any, width: int, height: int) -> tuple[Any, Any]:
    """Split an NV12 surface [H*3/2, W] into Y [H, W] and interleaved UV [H/2, W/2, 2]."""
    y = nv12[:height, :width]
    uv = nv12[height:height + height // 2, :width].reshape(height // 2, width // 2, 2)
    return y, uv


def transform_nv12(nv12: Any, width: int, height: int, rotation: int, out_w: int, out_h: int) -> Any:
    """Rotate (display-matrix degrees, counter-clockwise), resize and even-crop an NV12
    frame held in a torch tensor; returns a contiguous NV12 tensor [out_h*3/2, out_w]."""
    import torch
    import torch.nn.functional as F

    y, uv = nv12_planes(nv12, width, height)
    # The picture turns counter-clockwise by the display-matrix angle to be upright, as
    # ffmpeg's autorotate does (90 -> transpose=cclock, 270 -> transpose=clock).
    k = {90: 1, 180: 2, 270: 3}.get(rotation % 360, 0)
    if k:
        y = torch.rot90(y, k=k, dims=(0, 1))  # torch.rot90 turns counter-clockwise
        uv = torch.rot90(uv, k=k, dims=(0, 1))
    h, w = y.shape
    if (w, h) != (out_w, out_h):
        if abs(w - out_w) <= 1 and abs(h - out_h) <= 1:  # only an even-size crop
            y = y[:out_h, :out_w]
            uv = uv[:out_h // 2, :out_w // 2]
        else:
            y = F.interpolate(y[None, None].float(), size=(out_h, out_w), mode="area")[0, 0]
            uv = F.interpolate(uv.permute(2, 0, 1)[None].float(), size=(out_h // 2, out_w // 2),
                               mode="area")[0].permute(1, 2, 0)
            y, uv = y.round().clamp(0, 255).to(torch.uint8), uv.round().clamp(0, 255).to(torch.uint8)
    return torch.cat([y.reshape(out_h, out_w), uv.reshape(out_h // 2, out_w)], dim=0).contiguous()


# ------------------------------------------------------------------------- muxing
def annexb_to_mp4(bitstream: bytes, rate: Fraction) -> bytes:
    """Wrap an H.264 Annex-B elementary stream into an mp4 (stream copy, faststart).

    A raw stream has no timestamps; packets get pts = dts = frame number, which is
    right because the encoder is configured without B-frames (decode order is
    presentation order)."""
    import av

    fd_in, path_in = tempfile.mkstemp(suffix=".h264", prefix="curator-nvenc-")
    fd_out, path_out = tempfile.mkstemp(suffix=".mp4", prefix="curator-nvenc-")
    os.close(fd_out)
    try:
        with os.fdopen(fd_in, "wb") as fh:
            fh.write(bitstream)
        src = av.open(path_in, format="h264", options={"framerate": f"{rate.numerator}/{rate.denominator}"})
        dst = av.open(path_out, "w", format="mp4", options={"movflags": "+faststart"})
        try:
            ins = src.streams.video[0]
            outs = dst.add_stream_from_template(ins)
            outs.time_base = Fraction(1, 1) / rate / 1000 if rate else Fraction(1, 90000)
            frame_dur = int(round(1 / (rate * outs.time_base)))
            n = 0
            for pkt in src.demux(ins):
                if pkt.size == 0:
                    continue
                pkt.stream = outs
                pkt.dts = pkt.pts = n * frame_dur
                pkt.duration = frame_dur
                pkt.time_base = outs.time_base
                dst.mux(pkt)
                n += 1
        finally:
            dst.close()
            src.close()
        with open(path_out, "rb") as fh:
            return fh.read()
    finally:
        for p in (path_in, path_out):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass


# ---------------------------------------------------------------------- transcode
def _as_path(source: Source) -> tuple[str, bool]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        fd, path = tempfile.mkstemp(suffix=".mp4", prefix="curator-src-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(bytes(source))
        return path, True
    if isinstance(source, str):
        return source, False
    raise TypeError("the GPU path reads a path or bytes")


class _NvencClip:
    def __init__(self, nvc: Any, width: int, height: int, rate: Fraction, bitrate_mbps: float):
        fps = f"{float(rate):.6g}"
        self.enc = nvc.CreateEncoder(width, height, "NV12", True, codec="h264", preset="P4",
                                     bitrate=int(bitrate_mbps * 1_000_000), fps=fps, gop=int(round(float(rate))),
                                     bf=0)  # no B-frames: annexb_to_mp4 relies on decode order = display order
        self.buf = io.BytesIO()
        self.frames = 0
        self.width, self.height = width, height

    def write(self, nv12_host: Any) -> None:
        self.buf.write(bytes(self.enc.Encode(nv12_host)))
        self.frames += 1

    def finish(self) -> bytes:
        self.buf.write(bytes(self.enc.EndEncode()))
        return self.buf.getvalue()


def transcode_spans(source: Source, spans: Sequence[Span], *, rotation: int = 0, fps: float | None = None,
                    bitrate_mbps: float = 10.0, max_short_side: int | None = None,
                    stats: DecodeStats | None = None) -> list[EncodedClip]:
    """GPU twin of encode.transcode_spans (same spans in, same clips out)."""
    why = unavailable_reason()
    if why:
        raise RuntimeError(f"GPU transcoding unavailable: {why}")
    import PyNvVideoCodec as nvc
    import torch

    stats = stats if stats is not None else DecodeStats()
    path, temp = _as_path(source)
    writers: dict[int, _NvencClip] = {}
    results: dict[int, EncodedClip] = {}
    try:
        demuxer = nvc.CreateDemuxer(filename=path)
        width, height = demuxer.Width(), demuxer.Height()
        rate = Fraction(fps or demuxer.FrameRate()).limit_denominator(1001)
        decoder = nvc.CreateDecoder(gpuid=0, codec=demuxer.GetNvCodecId(), usedevicememory=True)
        disp_w, disp_h = (height, width) if rotation % 180 == 90 else (width, height)
        out_w, out_h = output_size(disp_w, disp_h, max_short_side)
        last_needed = max((s.end_frame for s in spans), default=0)
        idx = 0
        try:
            for packet in demuxer:
                for frame in decoder.Decode(packet):
                    if idx >= last_needed:
                        break
                    active = [i for i, s in enumerate(spans) if s.start_frame <= idx < s.end_frame]
                    if active:
                        surface = torch.from_dlpack(frame)
                        out = transform_nv12(surface, width, height, rotation, out_w, out_h).cpu().numpy().ravel()
                        for i in active:
                            w = writers.get(i)
                            if w is None:
                                w = writers[i] = _NvencClip(nvc, out_w, out_h, rate, bitrate_mbps)
                            w.write(out)
                            if spans[i].end_frame == idx + 1:
                                results[i] = _finish(spans[i], writers.pop(i), rate)
                    idx += 1
                    stats.frames = idx
                if idx >= last_needed:
                    break
        except Exception as exc:  # a broken stream ends decoding; what decoded counts
            stats.error = f"GPU decoding stopped after {idx} frames: {exc}"
        for i, w in list(writers.items()):
            results[i] = _finish(spans[i], writers.pop(i), rate)
    finally:
        if temp:
            os.unlink(path)
    out_list = []
    for i, span in enumerate(spans):
        res = results.get(i)
        if res is None:
            res = EncodedClip(span, None, 0, 0, 0.0, 0, None, error=stats.error or "no frames decoded in this span")
        out_list.append(res)
    return out_list


def _finish(span: Span, w: _NvencClip, rate: Fraction) -> EncodedClip:
    try:
        data = annexb_to_mp4(w.finish(), rate)
    except Exception as exc:
        return EncodedClip(span, None, w.width, w.height, float(rate), w.frames, None, error=f"NVENC/mux failed: {exc}")
    return EncodedClip(span, data, w.width, w.height, float(rate), w.frames, hashlib.sha256(data).hexdigest())
