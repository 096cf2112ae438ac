"""What this worker's GPU can really do: open NVDEC and NVENC, once per process.

Checking for CUDA and a successful import is not enough: A100, H100 and H200 have NVDEC
engines but no NVENC, and the wheel imports there. So the probe decodes a tiny H.264
stream (made here with libx264) and encodes a few frames, and reports what worked.
"""

from __future__ import annotations

import functools
import os
import tempfile
from dataclasses import dataclass
from fractions import Fraction

from . import api

#: what the manifest's `encoder` column says per path
ENCODER_NAMES = {"cpu": "libx264", "nvdec": "nvdec+libx264", "nvenc": "nvenc"}


@dataclass(frozen=True)
class GpuCaps:
    cuda: bool
    nvdec: bool
    nvenc: bool
    reason: str  # why not everything works ("" when it does)


def _write_tiny_h264(path: str) -> None:
    """Three 128x96 frames of H.264 in an mp4 (PyAV's libx264; no process-wide settings)."""
    import av
    import numpy as np

    with av.open(path, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.full((96, 128, 3), 40 * i, np.uint8), format="rgb24")
            out.mux(stream.encode(frame.reformat(format="yuv420p")))
        out.mux(stream.encode())


def _try_nvdec(nvc) -> str:
    fd, path = tempfile.mkstemp(suffix=".mp4", prefix="curator-probe-")
    os.close(fd)
    try:
        _write_tiny_h264(path)
        frames = sum(1 for _ in api.Decoded(nvc, path))
        return "" if frames == 3 else f"NVDEC decoded {frames} of 3 probe frames"
    except Exception as exc:
        return f"NVDEC does not open: {exc}"
    finally:
        os.unlink(path)


def _try_nvenc(nvc) -> str:
    import torch

    try:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        enc = api.H264Encoder(nvc, 256, 144, Fraction(25), 1.0)
        for i in range(3):
            enc.write(torch.full((144 * 3 // 2, 256), 16 + 30 * i, dtype=torch.uint8, device=device))
        data = enc.finish()
        return "" if data else "NVENC returned no bitstream"
    except Exception as exc:
        return f"NVENC does not open: {exc}"


@functools.lru_cache(maxsize=1)
def probe() -> GpuCaps:
    """This process's GPU video capabilities (cached; `probe.cache_clear()` re-probes)."""
    if not api.has_cuda():
        return GpuCaps(False, False, False, "no CUDA device")
    try:
        nvc = api.load()
    except ImportError:
        return GpuCaps(True, False, False, f"PyNvVideoCodec is not installed ({api.INSTALL_HINT})")
    except Exception as exc:  # the wheel's import loads libnvidia-encode
        return GpuCaps(True, False, False, f"PyNvVideoCodec cannot load: {str(exc).splitlines()[0]}")
    dec_why = _try_nvdec(nvc)
    enc_why = _try_nvenc(nvc)
    return GpuCaps(True, not dec_why, not enc_why, "; ".join(w for w in (dec_why, enc_why) if w))


def choose_encoder(requested: str, caps: GpuCaps) -> str:
    """'cpu' | 'nvdec' | 'nvenc' for a config value; explicit GPU choices the device
    cannot do raise RuntimeError with the reason. 'gpu' is the old name of 'nvenc'."""
    asked = requested
    if requested == "gpu":
        requested = "nvenc"
    if requested == "auto":
        return "nvenc" if caps.nvdec and caps.nvenc else "nvdec" if caps.nvdec else "cpu"
    if requested == "nvenc" and not (caps.nvdec and caps.nvenc):
        hint = " (A100, H100 and H200 have no NVENC: use encoder=nvdec or auto)" if caps.nvdec else ""
        raise RuntimeError(f"stages.transcode.encoder={asked} but this worker cannot use NVENC: "
                           f"{caps.reason or 'no NVENC'}{hint}")
    if requested == "nvdec" and not caps.nvdec:
        raise RuntimeError(f"stages.transcode.encoder=nvdec but this worker cannot use NVDEC: {caps.reason}")
    return requested
