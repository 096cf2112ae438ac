"""The only module that calls PyNvVideoCodec. Written against the 2.2.4 wheel.

What it relies on (read in the wheel's bindings' docstrings and its samples
`samples/advanced/decode.py`, `samples/basic/encode.py`, `samples/advanced/transcode.py`,
`samples/utils/Utils.py`):

- ``CreateDemuxer(filename=path)`` -> demuxer with ``Width()``, ``Height()``,
  ``FrameRate()``, ``GetNvCodecId()``, ``GetTimebaseNum()``, ``GetTimebaseDen()`` and
  ``Demux()`` -> ``PacketData``; the packet with ``bsl == 0`` ends the stream, and handing
  it to the decoder flushes the frames the decoder still holds (transcode sample).
- ``CreateDecoder(gpuid=, codec=, cudacontext=, cudastream=, usedevicememory=True)`` ->
  decoder whose ``Decode(packet)`` returns a list of ``DecodedFrame``. A device-memory
  frame exports DLPack (``__dlpack__``), so ``torch.from_dlpack(frame)`` is a zero-copy
  CUDA tensor: NV12 is one ``uint8 [H*3/2, W]`` surface. ``frame.getPTS()`` is its
  presentation time in the demuxer's time base. A frame is only valid until the next
  ``Decode`` call: use it (or copy it on the GPU) before decoding on.
- ``CreateEncoder(width, height, "NV12", usecpuinputbuffer, **params)`` -> encoder; with
  ``usecpuinputbuffer=False`` ``Encode(frame)`` reads an object whose ``cuda()`` returns
  one ``__cuda_array_interface__`` per plane (Y ``[H, W, 1]``, UV ``[H/2, W/2, 2]``),
  as the sample's ``AppFrame`` does. From 2.2 on ``Encode`` and ``EndEncode`` return a
  list of packets, dicts with ``data`` (bytes), ``timestamp`` and ``picture_type`` (2.1
  returned one bytes-like array); ``EndEncode()`` must be called to flush the queue.
- ``cudacontext=0`` means the device's primary context, which is the one torch uses;
  decoder, encoder and torch share torch's current stream, so no extra synchronisation
  is needed between them.

The wheel installs without a GPU but its import loads ``libnvidia-encode``; every caller
goes through :func:`load` (imported lazily, never at ``import curator``).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any, Iterator

INSTALL_HINT = "pip install 'curator[gpu]'"


class UnsupportedSource(Exception):
    """The stream decodes on NVDEC, but not to 8-bit 4:2:0 (NV12): use the CPU path for it."""


def load() -> Any:
    """The PyNvVideoCodec module; ImportError / RuntimeError say why not."""
    import PyNvVideoCodec

    return PyNvVideoCodec


#: device nodes of the NVIDIA driver (Linux; /dev/dxg under WSL): without any, no CUDA device
NVIDIA_DEVICE_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg")


def has_cuda() -> bool:
    """Is there a CUDA device? (The one seam tests turn on to drive the CPU double.)

    On Linux without the driver's device nodes the answer is no without importing torch,
    which costs seconds in every worker process of a CPU-only run."""
    import os
    import sys

    if sys.platform.startswith("linux") and not any(os.path.exists(p) for p in NVIDIA_DEVICE_NODES):
        return False
    import torch

    return torch.cuda.is_available()


def stream_handle() -> int:
    """torch's current CUDA stream, shared with the codec (0 without CUDA)."""
    import torch

    return int(torch.cuda.current_stream().cuda_stream) if torch.cuda.is_available() else 0


class Decoded:
    """NVDEC frames of one file as zero-copy torch tensors (NV12, [H*3/2, W])."""

    def __init__(self, nvc: Any, path: str, gpu: int = 0):
        self.demuxer = nvc.CreateDemuxer(filename=path)
        self.width, self.height = int(self.demuxer.Width()), int(self.demuxer.Height())
        self.frame_rate = float(self.demuxer.FrameRate() or 0)
        self.time_base = Fraction(int(self.demuxer.GetTimebaseNum()), int(self.demuxer.GetTimebaseDen()))
        self.decoder = nvc.CreateDecoder(gpuid=gpu, codec=self.demuxer.GetNvCodecId(), cudacontext=0,
                                         cudastream=stream_handle(), usedevicememory=True)

    def __iter__(self) -> Iterator[tuple[float, Any]]:
        """(time_s, NV12 tensor) per decoded frame, in presentation order. The tensor is
        the decoder's own surface: valid until the next frame is asked for."""
        import torch

        while True:
            packet = self.demuxer.Demux()
            for frame in self.decoder.Decode(packet):
                t = torch.from_dlpack(frame)
                if t.dtype != torch.uint8 or t.dim() != 2 or t.shape[0] != self.height * 3 // 2:
                    raise UnsupportedSource(f"NVDEC output {tuple(t.shape)} {t.dtype} is not 8-bit NV12 "
                                            f"{self.width}x{self.height}")
                yield float(frame.getPTS() * self.time_base), t
            if packet.bsl == 0:  # the empty end-of-stream packet has just flushed the decoder
                return


class _Plane:
    def __init__(self, ptr: int, shape: tuple[int, ...], strides: tuple[int, ...]):
        self.__cuda_array_interface__ = {"shape": shape, "strides": strides, "data": (ptr, False),
                                         "typestr": "|u1", "version": 3}


class Nv12Surface:
    """A contiguous NV12 torch tensor [H*3/2, W] as the encoder reads device input: one
    array interface per plane (the wheel's samples/utils/Utils.py AppFrame layout)."""

    def __init__(self, nv12: Any, width: int, height: int):
        self.tensor = nv12.contiguous()  # held: the planes point into it
        ptr = int(self.tensor.data_ptr())
        self.planes = [_Plane(ptr, (height, width, 1), (width, 1, 1)),
                       _Plane(ptr + width * height, (height // 2, width // 2, 2), (width, 2, 1))]

    def cuda(self) -> list[_Plane]:
        return self.planes


class H264Encoder:
    """One NVENC H.264 session fed NV12 device surfaces; returns the Annex-B bytes."""

    def __init__(self, nvc: Any, width: int, height: int, rate: Fraction, bitrate_mbps: float, gpu: int = 0):
        fps = max(1, round(float(rate)))
        self.enc = nvc.CreateEncoder(width, height, "NV12", False, codec="h264", preset="P4", rc="vbr",
                                     bitrate=int(bitrate_mbps * 1_000_000), fps=fps, gop=fps,
                                     bf=0,  # no B-frames: annexb_to_mp4 relies on decode order = display order
                                     gpu_id=gpu, cudacontext=0, cudastream=stream_handle())
        self.width, self.height = width, height
        self.chunks: list[bytes] = []
        self.frames = 0

    def _take(self, packets: list[dict[str, Any]]) -> None:
        self.chunks.extend(bytes(p["data"]) for p in packets)

    def write(self, nv12: Any) -> None:
        self._take(self.enc.Encode(Nv12Surface(nv12, self.width, self.height)))
        self.frames += 1

    def finish(self) -> bytes:
        self._take(self.enc.EndEncode())
        return b"".join(self.chunks)

    def close(self) -> None:
        """End the session after a failure (flush and drop what it held)."""
        try:
            self.enc.EndEncode()
        except Exception:
            pass
