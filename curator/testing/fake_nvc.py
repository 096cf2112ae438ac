"""A CPU double of the PyNvVideoCodec module, for tests without a GPU.

It follows the API of the pynvvideocodec 2.2.4 wheel as read in its bindings'
docstrings and samples (`samples/advanced/decode.py`, `samples/basic/encode.py`,
`samples/advanced/transcode.py`, `samples/utils/Utils.py`), and it is strict where the
real library is:

- ``CreateDemuxer(filename=)``: ``Width()``, ``Height()``, ``FrameRate()``,
  ``GetNvCodecId()``, ``GetTimebaseNum()/Den()``, ``Demux()`` -> ``PacketData`` whose
  ``bsl`` is 0 for the final, empty packet (no more ``Demux()`` after it).
- ``CreateDecoder(gpuid=, codec=, cudacontext=, cudastream=, usedevicememory=)``:
  ``Decode(packet)`` returns a list of ``DecodedFrame``; the empty packet flushes.
  Frames export DLPack (here: CPU memory instead of CUDA) as NV12 ``uint8 [H*3/2, W]``
  for 8-bit 4:2:0, P016 (``uint16``) for 10-bit, planar ``[3H, W]`` for 4:4:4, and have
  ``getPTS()``, ``framesize()``. A frame is the decoder's surface: the next ``Decode``
  call overwrites the ones it returned before (filled with 0xAB here), so code that
  keeps a surface across calls sees garbage, as on the GPU.
- ``CreateEncoder(w, h, "NV12", usecpuinputbuffer, **params)`` (the wheel's Python
  wrapper: ``cudacontext``/``cudastream`` as ints, other params turned to strings):
  ``Encode(frame)`` reads device input through ``frame.cuda()`` -> one
  ``__cuda_array_interface__`` per plane and returns a *list* of packet dicts
  (``data``, ``timestamp``, ``picture_type``), often empty while the encoder looks
  ahead; ``EndEncode()`` returns the rest. A real libx264 encoder (PyAV) runs
  underneath, so the bytes are a real H.264 Annex-B stream. ``Encode`` after
  ``EndEncode`` raises; :attr:`FakeNvc.sessions` lets a test check every session ended.

Capabilities and faults are set per instance: ``nvdec=False`` / ``nvenc=False`` make
``CreateDecoder`` / ``CreateEncoder`` raise like a GPU without the engine;
``fail_encode_at=(session, frame)`` and ``fail_decode_at=frame`` raise mid-stream.
Install it with ``monkeypatch.setitem(sys.modules, "PyNvVideoCodec", FakeNvc())``.
"""

from __future__ import annotations

import ctypes
import types
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

VERSION = "2.2.4"


class PyNvVCException(Exception):
    pass


class PyNvVCExceptionUnsupported(PyNvVCException):
    pass


class PacketData:
    def __init__(self, packet: Any = None):
        self._packet = packet
        self.bsl = int(packet.size) if packet is not None else 0
        self.pts = int(packet.pts) if packet is not None and packet.pts is not None else 0
        self.is_video = True


@dataclass
class _CodecId:
    name: str
    extradata: bytes | None


class _Demuxer:
    def __init__(self, filename: str):
        import av

        self._c = av.open(filename)
        self._s = self._c.streams.video[0]
        self._packets = self._c.demux(self._s)
        self._ended = False

    def Width(self) -> int:
        return self._s.codec_context.width

    def Height(self) -> int:
        return self._s.codec_context.height

    def FrameRate(self) -> float:
        return float(self._s.average_rate or self._s.guessed_rate or 0)

    def GetNvCodecId(self) -> _CodecId:
        return _CodecId(self._s.codec_context.name, self._s.codec_context.extradata)

    def GetTimebaseNum(self) -> int:
        return self._s.time_base.numerator if self._s.time_base else 1

    def GetTimebaseDen(self) -> int:
        return self._s.time_base.denominator if self._s.time_base else 1

    def Demux(self) -> PacketData:
        if self._ended:
            raise PyNvVCException("Demux() after the end-of-stream packet")
        for pkt in self._packets:
            if pkt.size:
                return PacketData(pkt)
        self._ended = True
        self._c.close()
        return PacketData(None)


class DecodedFrame:
    def __init__(self, surface: Any, pts: int):
        self._surface = surface  # an array owned by the decoder (DLPack on the CPU)
        self._pts = pts

    def __dlpack__(self, *args: Any, **kwargs: Any) -> Any:
        return self._surface.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self) -> Any:
        return self._surface.__dlpack_device__()

    @property
    def shape(self) -> list[int]:
        return list(self._surface.shape)

    def getPTS(self) -> int:
        return self._pts

    def framesize(self) -> int:
        return int(self._surface.nbytes)


def _native(frame: Any) -> np.ndarray:
    """What NVDEC's native output would hold for this frame."""
    name = frame.format.name
    if name in ("yuv420p", "yuvj420p", "nv12"):
        nv = frame.reformat(format="nv12")
        w, h = frame.width, frame.height
        y = np.frombuffer(bytes(nv.planes[0]), np.uint8).reshape(h, nv.planes[0].line_size)[:, :w]
        uv = np.frombuffer(bytes(nv.planes[1]), np.uint8).reshape(h // 2, nv.planes[1].line_size)[:, :w]
        return np.concatenate([y, uv])
    if "10" in name or "12" in name:
        p = frame.reformat(format="p016le").to_ndarray()
        return np.ascontiguousarray(p.reshape(-1, frame.width)).view(np.uint16)
    return frame.reformat(format="yuv444p").to_ndarray().reshape(3 * frame.height, frame.width)


class _Decoder:
    def __init__(self, owner: FakeNvc, codec: _CodecId):
        import av

        self._owner = owner
        self._ctx = av.CodecContext.create(codec.name, "r")
        if codec.extradata:
            self._ctx.extradata = codec.extradata
        self._issued: list[Any] = []
        self.frames = 0

    def Decode(self, packet: PacketData) -> list[DecodedFrame]:
        for surface in self._issued:  # the surfaces handed out last time are reused now
            surface.fill(0xAB)
        self._issued = []
        out = []
        for frame in self._ctx.decode(packet._packet):  # type: ignore[attr-defined]  # a VideoCodecContext; None flushes
            if self._owner.fail_decode_at is not None and self.frames >= self._owner.fail_decode_at:
                raise PyNvVCException(f"cuvidDecodePicture failed at frame {self.frames}")
            surface = np.array(_native(frame))
            self._issued.append(surface)
            out.append(DecodedFrame(surface, frame.pts or 0))
            self.frames += 1
        return out


@dataclass
class Session:
    width: int
    height: int
    params: dict[str, str]
    frames_in: int = 0
    packets_out: int = 0
    ended: bool = False
    errors: list[str] = field(default_factory=list)


def _read_plane(cai_owner: Any) -> np.ndarray:
    cai = cai_owner.__cuda_array_interface__
    if cai.get("version") != 3 or cai.get("typestr") != "|u1":
        raise PyNvVCException(f"unsupported array interface {cai}")
    ptr, _readonly = cai["data"]
    shape, strides = tuple(cai["shape"]), tuple(cai["strides"])
    span = sum((n - 1) * s for n, s in zip(shape, strides)) + 1
    raw = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_uint8)), shape=(span,))
    return np.lib.stride_tricks.as_strided(raw, shape=shape, strides=strides).copy()


class _Encoder:
    def __init__(self, owner: FakeNvc, width: int, height: int, fmt: str, cpu_input: bool, params: dict[str, str]):
        import av

        if fmt != "NV12":
            raise PyNvVCExceptionUnsupported(f"format {fmt} not handled by this double")
        if params.get("codec", "h264") != "h264":
            raise PyNvVCExceptionUnsupported("this double encodes h264 only")
        self._owner = owner
        self._cpu_input = cpu_input
        self.session = Session(width, height, params)
        self._index = len(owner.sessions)
        owner.sessions.append(self.session)
        self._ctx = av.CodecContext.create("libx264", "w")
        self._ctx.width, self._ctx.height, self._ctx.pix_fmt = width, height, "yuv420p"
        fps = int(params.get("fps", "30"))
        self._ctx.time_base = Fraction(1, fps)
        self._ctx.framerate = Fraction(fps)
        self._ctx.options = {"preset": "veryfast", "bf": params.get("bf", "0"), "crf": "30"}

    def _packets(self, pkts: list[Any]) -> list[dict[str, Any]]:
        out = [{"data": bytes(p), "timestamp": int(p.pts or 0), "picture_type": 1 if p.is_keyframe else 2}
               for p in pkts]
        self.session.packets_out += len(out)
        return out

    def Encode(self, frame: Any, pic_params: Any = None) -> list[dict[str, Any]]:
        import av

        s = self.session
        if s.ended:
            raise PyNvVCException("Encode() after EndEncode()")
        fail = self._owner.fail_encode_at
        if fail is not None and fail == (self._index, s.frames_in):
            raise PyNvVCException(f"nvEncEncodePicture failed (session {self._index}, frame {s.frames_in})")
        if self._cpu_input:
            nv12 = np.asarray(frame, np.uint8).reshape(s.height * 3 // 2, s.width)
        else:
            planes = frame.cuda()
            if len(planes) != 2:
                raise PyNvVCException("NV12 device input needs a Y and a UV plane")
            y, uv = _read_plane(planes[0]), _read_plane(planes[1])
            if y.shape != (s.height, s.width, 1) or uv.shape != (s.height // 2, s.width // 2, 2):
                raise PyNvVCException(f"plane shapes {y.shape} {uv.shape} for a {s.width}x{s.height} encoder")
            nv12 = np.concatenate([y.reshape(s.height, s.width), uv.reshape(s.height // 2, s.width)])
        vf = av.VideoFrame(s.width, s.height, "nv12")
        for plane, rows in zip(vf.planes, (nv12[:s.height], nv12[s.height:])):
            buf = np.zeros((rows.shape[0], plane.line_size), np.uint8)
            buf[:, :s.width] = rows
            plane.update(buf.tobytes())
        vf = vf.reformat(format="yuv420p")
        vf.pts = s.frames_in
        s.frames_in += 1
        return self._packets(self._ctx.encode(vf))

    def EndEncode(self) -> list[dict[str, Any]]:
        if self.session.ended:
            return []
        self.session.ended = True
        return self._packets(self._ctx.encode(None))

    def GetNumBFrames(self) -> int:
        return int(self.session.params.get("bf", "0"))


def _stringify(params: dict[str, Any]) -> dict[str, str]:
    return {k: str(v).replace("[", "").replace("]", "") for k, v in params.items()}


class FakeNvc(types.ModuleType):
    """A module object standing in for ``PyNvVideoCodec`` (see the module docstring)."""

    PacketData = PacketData
    DecodedFrame = DecodedFrame
    PyNvVCException = PyNvVCException
    PyNvVCExceptionUnsupported = PyNvVCExceptionUnsupported

    def __init__(self, *, nvdec: bool = True, nvenc: bool = True, fail_encode_at: tuple[int, int] | None = None,
                 fail_decode_at: int | None = None):
        super().__init__("PyNvVideoCodec")
        self.__version__ = VERSION
        self.nvdec, self.nvenc = nvdec, nvenc
        self.fail_encode_at, self.fail_decode_at = fail_encode_at, fail_decode_at
        self.sessions: list[Session] = []
        self.decoders: list[_Decoder] = []

    def CreateDemuxer(self, filename: str) -> _Demuxer:
        return _Demuxer(filename)

    def CreateDecoder(self, gpuid: int = 0, codec: Any = None, cudacontext: int = 0, cudastream: int = 0,
                      usedevicememory: bool = False, **kwargs: Any) -> _Decoder:
        unknown = set(kwargs) - {"maxwidth", "maxheight", "outputColorType", "enableSEIMessage", "latency",
                                 "enableasyncallocations", "bWaitForSessionWarmUp"}
        if unknown:
            raise TypeError(f"CreateDecoder() got unexpected keyword arguments {sorted(unknown)}")
        if not isinstance(codec, _CodecId):
            raise TypeError("codec must be the demuxer's GetNvCodecId()")
        if not self.nvdec:
            raise PyNvVCExceptionUnsupported("cuvidCreateDecoder: no video decode engine on this device")
        dec = _Decoder(self, codec)
        self.decoders.append(dec)
        return dec

    def CreateEncoder(self, width: int, height: int, fmt: str, usecpuinputbuffer: bool, **kwargs: Any) -> _Encoder:
        int(kwargs.pop("cudacontext", 0))
        int(kwargs.pop("cudastream", 0))
        if not self.nvenc:
            raise PyNvVCException("nvEncOpenEncodeSessionEx failed: NV_ENC_ERR_NO_ENCODE_DEVICE")
        return _Encoder(self, width, height, fmt, bool(usecpuinputbuffer), _stringify(kwargs))
