"""Probe a video with PyAV: what it is, or a clear reason why it is not usable.

ffprobe is not needed (imageio-ffmpeg ships no ffprobe); PyAV reads the same headers.
The probe decodes the first video frame so that files whose headers parse but whose
frames do not are caught here, not mid-pipeline.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any, BinaryIO

import av

from curator.records import Reason

#: demuxers that hold a single still image, not a video
_IMAGE_FORMATS = ("image2", "png_pipe", "jpeg_pipe", "bmp_pipe", "gif_pipe", "webp_pipe", "tiff_pipe",
                  "j2k_pipe", "jpegls_pipe", "psd_pipe", "svg_pipe", "pgm_pipe", "ppm_pipe", "qoi_pipe")
_IMAGE_CODECS = {"png", "mjpeg", "bmp", "tiff", "webp", "jpeg2000", "jpegls", "ppm", "pgm", "qoi"}


class ProbeError(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Limits:
    """Header-level guards, checked before a single frame is decoded (hostile media)."""

    max_pixels: int = 8192 * 8192
    max_duration_s: float = 6 * 3600.0
    max_fps: float = 1000.0


@dataclass
class VideoInfo:
    container: str
    codec: str
    pix_fmt: str | None
    width: int  # displayed, after rotation
    height: int
    coded_width: int
    coded_height: int
    rotation: int  # counter-clockwise degrees from the display matrix (0, 90, 180, 270)
    fps: float  # average frame rate
    nominal_fps: float  # the stream's r_frame_rate
    duration_s: float
    num_frames: int  # from the header (may be 0 or a lie for truncated files)
    has_audio: bool
    vfr: bool

    def as_row(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("coded_width", "coded_height", "nominal_fps"):
            d.pop(k)
        return d


def _sniff(head: bytes) -> str | None:
    """A reason when the first bytes say this cannot be a video."""
    if not head:
        return Reason.EMPTY
    sample = head[:512]
    if sample.startswith((b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM")):
        return Reason.NOT_VIDEO
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if text and all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        return Reason.NOT_VIDEO
    return None


def open_options(limits: Limits) -> dict[str, str]:
    """Options for av.open. Opening a container already decodes a frame or two to learn
    the stream's parameters; `max_pixels` makes libavcodec refuse pictures over the limit
    there, so a 16k x 16k header costs nothing before the guard below rejects it."""
    return {"max_pixels": str(max(1, min(limits.max_pixels, 2**31 - 1)))}


def _rotation(value: float | int | None) -> int:
    if value is None:
        return 0
    return int(round(float(value) / 90.0)) * 90 % 360


def probe(source: str | BinaryIO | bytes, *, head: bytes | None = None, limits: Limits | None = None) -> VideoInfo:
    """Probe a path, file object or bytes. Raises ProbeError(reason, detail).

    Size, duration and frame-rate limits are checked on the headers, before anything is
    decoded, so a 16k x 16k or a ten-day header costs nothing."""
    if isinstance(source, (bytes, bytearray)):
        head = bytes(source[:512])
        source = io.BytesIO(source)
    if head is None and isinstance(source, str):
        with open(source, "rb") as fh:
            head = fh.read(512)
    if head is not None:
        sniffed = _sniff(head)
        if sniffed == Reason.EMPTY:
            raise ProbeError(Reason.EMPTY, "zero-byte file")
        if sniffed == Reason.NOT_VIDEO:
            raise ProbeError(Reason.NOT_VIDEO, "content is text or a still image, not a video container")
    limits = limits or Limits()
    try:
        container = av.open(source, metadata_errors="ignore", options=open_options(limits))
    except av.error.FFmpegError as exc:
        raise ProbeError(Reason.UNREADABLE, f"cannot open container: {exc}") from None
    try:
        return _probe_open(container, limits)
    finally:
        container.close()


def _probe_open(container: Any, limits: Limits) -> VideoInfo:
    fmt = container.format.name
    videos = [s for s in container.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)] \
        if hasattr(av.stream, "Disposition") else list(container.streams.video)
    has_audio = bool(container.streams.audio)
    if not videos:
        if has_audio:
            raise ProbeError(Reason.AUDIO_ONLY, "the file has audio streams but no video stream")
        raise ProbeError(Reason.NOT_VIDEO, f"no video stream (container {fmt})")
    vs = videos[0]
    cc = vs.codec_context
    codec = cc.name
    if fmt in _IMAGE_FORMATS or (codec in _IMAGE_CODECS and (vs.frames or 0) <= 1 and not container.duration):
        raise ProbeError(Reason.NOT_VIDEO, f"a still image ({codec} in {fmt}), not a video")
    coded_w, coded_h = int(cc.width or 0), int(cc.height or 0)
    if coded_w <= 0 or coded_h <= 0:
        raise ProbeError(Reason.BAD_HEADER, f"video stream has no usable size ({coded_w}x{coded_h}): the header "
                                            "gives none, or one the decoder refuses (over 16k x 16k)")
    if coded_w * coded_h > limits.max_pixels:
        raise ProbeError(Reason.TOO_MANY_PIXELS,
                         f"{coded_w}x{coded_h} > stages.ingest.max_pixels={limits.max_pixels} (not decoded)")

    tb = vs.time_base
    duration = 0.0
    if vs.duration and tb:
        duration = float(vs.duration * tb)
    elif container.duration:
        duration = container.duration / 1_000_000
    nominal = vs.base_rate or vs.guessed_rate
    avg = vs.average_rate
    num_frames = int(vs.frames or 0)
    if (not avg or float(avg) <= 0) and num_frames and duration > 0:
        avg = Fraction(num_frames) / Fraction(duration)
    if not avg or float(avg) <= 0:
        avg = nominal
    if not avg or float(avg) <= 0 or float(avg) > limits.max_fps:
        raise ProbeError(Reason.BAD_HEADER, f"unusable frame rate ({avg}; limit {limits.max_fps})")
    fps = float(avg)
    if num_frames > 1 and duration > 0 and not 0.1 <= fps * duration / num_frames <= 10:
        # e.g. a zero time scale (FFmpeg then assumes 1 tick per second) or zero sample durations
        raise ProbeError(Reason.BAD_HEADER, f"frame rate {fps:.4g} contradicts the header's {num_frames} frames "
                                            f"in {duration:.4g} s (broken time scale or frame durations)")
    if duration > limits.max_duration_s:
        raise ProbeError(Reason.TOO_LONG,
                         f"{duration:.0f} s > stages.ingest.max_duration_s={limits.max_duration_s:.0f} (not decoded)")
    vfr = bool(nominal and float(nominal) > 0 and abs(float(nominal) - fps) / float(nominal) > 0.01)

    # Decode the first frame: headers that parse but frames that do not are caught here.
    first = None
    try:
        for frame in container.decode(vs):
            first = frame
            break
    except av.error.FFmpegError as exc:
        raise ProbeError(Reason.NO_FRAMES, f"no frame decodes: {exc}") from None
    if first is None:
        raise ProbeError(Reason.NO_FRAMES, "the video stream holds no decodable frame")
    rotation = _rotation(getattr(first, "rotation", 0))
    w, h = (coded_h, coded_w) if rotation in (90, 270) else (coded_w, coded_h)
    if duration <= 0 and num_frames:
        duration = num_frames / fps
    if not num_frames and duration > 0:
        num_frames = int(round(duration * fps))
    return VideoInfo(
        container=fmt,
        codec=codec,
        pix_fmt=cc.pix_fmt,
        width=w,
        height=h,
        coded_width=coded_w,
        coded_height=coded_h,
        rotation=rotation,
        fps=round(fps, 6),
        nominal_fps=round(float(nominal), 6) if nominal else round(fps, 6),
        duration_s=round(duration, 6),
        num_frames=num_frames,
        has_audio=has_audio,
        vfr=vfr,
    )
