"""Frame arithmetic on torch tensors (CUDA on a GPU, CPU in tests) and the Annex-B muxer."""

from __future__ import annotations

import os
import tempfile
from fractions import Fraction
from typing import Any


def nv12_planes(nv12: Any, width: int, height: int) -> tuple[Any, Any]:
    """Split an NV12 surface [H*3/2, W] into Y [H, W] and interleaved UV [H/2, W/2, 2]."""
    y = nv12[:height, :width]
    uv = nv12[height:height + height // 2, :width].reshape(height // 2, width // 2, 2)
    return y, uv


def _area(x: Any, size: tuple[int, int]) -> Any:
    """Area-resize an [H, W] or [H, W, C] uint8 tensor to size (h, w); returns float."""
    import torch.nn.functional as F

    chw = x[None, None].float() if x.dim() == 2 else x.permute(2, 0, 1)[None].float()
    out = F.interpolate(chw, size=size, mode="area")[0]
    return out[0] if x.dim() == 2 else out.permute(1, 2, 0)


def _u8(x: Any) -> Any:
    import torch

    return x.round().clamp(0, 255).to(torch.uint8)


def transform_nv12(nv12: Any, width: int, height: int, rotation: int, out_w: int, out_h: int) -> Any:
    """Rotate (display-matrix degrees, counter-clockwise), resize and even-crop an NV12
    frame held in a torch tensor; returns a new contiguous NV12 tensor [out_h*3/2, out_w]
    on the same device (so the decoder's surface can be reused at once)."""
    import torch

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
            y, uv = _u8(_area(y, (out_h, out_w))), _u8(_area(uv, (out_h // 2, out_w // 2)))
    return torch.cat([y.reshape(out_h, out_w), uv.reshape(out_h // 2, out_w)], dim=0).contiguous()


def nv12_to_i420(nv12: Any, width: int, height: int) -> Any:
    """NV12 [H*3/2, W] -> planar yuv420p laid out as PyAV's from_ndarray wants it ([H*3/2, W])."""
    import torch

    y, uv = nv12_planes(nv12, width, height)
    return torch.cat([y.reshape(-1), uv[..., 0].reshape(-1), uv[..., 1].reshape(-1)]).reshape(height * 3 // 2, width)


def nv12_to_small_rgb(nv12: Any, width: int, height: int, size: tuple[int, int]) -> Any:
    """NV12 -> uint8 RGB [h, w, 3] at size (w, h): area-scale the planes, then BT.601
    limited-range to RGB, in the order swscale works (scale in YUV, convert at the end)."""
    import torch

    out_w, out_h = size
    y, uv = nv12_planes(nv12, width, height)
    yf = _area(y, (out_h, out_w)) - 16.0
    uvf = _area(uv, (out_h, out_w)) - 128.0
    u, v = uvf[..., 0], uvf[..., 1]
    r = 1.164 * yf + 1.596 * v
    g = 1.164 * yf - 0.392 * u - 0.813 * v
    b = 1.164 * yf + 2.017 * u
    return _u8(torch.stack([r, g, b], dim=-1))


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
