"""A hostile corpus: bad, broken and odd inputs, made with ffmpeg and a little byte crafting.

Used by tests/integration/test_hostile.py and benchmarks. Every file is small (< 200 kB)
and made in a few seconds on one core::

    kinds = make_hostile_corpus("corpus/")
    # -> {"zero_byte.mp4": Kind("zero_byte", expect={"empty_file"}), ...}

`Kind.expect` is the set of acceptable reasons for an input that must be refused, or
None for a valid-but-odd input that must become clips (decodable yuv420p 8-bit, upright).
"""

from __future__ import annotations

import os
import random
import struct
from dataclasses import dataclass
from typing import Callable

from curator.records import Reason
from curator.testing.synth import make_audio_only, run_ffmpeg


@dataclass(frozen=True)
class Kind:
    name: str
    expect: frozenset[str] | None  # reasons accepted for a refused input; None: must give clips
    note: str = ""


def _lavfi(src: str = "testsrc2", seconds: float = 3.0, w: int = 160, h: int = 120, fps: float = 25) -> list[str]:
    sep = ":" if "=" in src else "="
    return ["-f", "lavfi", "-i", f"{src}{sep}size={w}x{h}:rate={fps}:duration={seconds}"]


def _x264(pix_fmt: str = "yuv420p", *extra: str) -> list[str]:
    return ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", pix_fmt, *extra]


# ---------------------------------------------------------------------- mp4 boxes
def _box(data: bytes, fourcc: bytes, start: int = 0) -> int:
    """Offset of the first box of this type (its size field), searching from `start`."""
    i = data.find(fourcc, start)
    if i < 4:
        raise ValueError(f"no {fourcc!r} box")
    return i - 4


def patch_mdhd_timescale(data: bytes, timescale: int) -> bytes:
    """Set the media header's time scale (ticks per second) of the first track."""
    i = _box(data, b"mdhd")
    version = data[i + 8]
    off = i + 12 + (8 if version == 0 else 16)  # after version/flags and creation/modification times
    return data[:off] + struct.pack(">I", timescale) + data[off + 4:]


def claim_duration(data: bytes, seconds: float) -> bytes:
    """Make the first track claim `seconds`: its media header's duration and every
    sample's duration (stts) say so; the pictures stay as they are."""
    i = _box(data, b"mdhd")
    version = data[i + 8]
    ts_off = i + 12 + (8 if version == 0 else 16)
    (timescale,) = struct.unpack(">I", data[ts_off:ts_off + 4])
    out = bytearray(data)
    ticks = int(seconds * timescale)
    if version == 0:
        out[ts_off + 4:ts_off + 8] = struct.pack(">I", min(ticks, 0xFFFFFFFF))
    else:
        out[ts_off + 4:ts_off + 12] = struct.pack(">Q", ticks)
    j = _box(data, b"stts")
    (entries,) = struct.unpack(">I", data[j + 12:j + 16])
    frames = sum(struct.unpack(">I", data[j + 16 + 8 * k:j + 20 + 8 * k])[0] for k in range(entries))
    delta = min(ticks // max(1, frames), 0xFFFFFFFF)
    for k in range(entries):
        off = j + 16 + 8 * k + 4  # (sample count, sample delta) pairs
        out[off:off + 4] = struct.pack(">I", delta)
    return bytes(out)


# ------------------------------------------------------------ H.264 SPS rewriting
class _Bits:
    def __init__(self, data: bytes = b""):
        self.data, self.pos, self.out = data, 0, []  # type: ignore[var-annotated]

    def u(self, n: int) -> int:
        v = 0
        for _ in range(n):
            v = (v << 1) | ((self.data[self.pos >> 3] >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return v

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)

    def put(self, n: int, v: int) -> None:
        self.out.extend((v >> i) & 1 for i in range(n - 1, -1, -1))

    def put_ue(self, v: int) -> None:
        v += 1
        self.put(v.bit_length() - 1, 0)
        self.put(v.bit_length(), v)

    def put_se(self, v: int) -> None:
        self.put_ue(2 * v - 1 if v > 0 else -2 * v)

    def written(self) -> bytes:
        bits = self.out + [0] * (-len(self.out) % 8)
        return bytes(int("".join(map(str, bits[i:i + 8])), 2) for i in range(0, len(bits), 8))


def _unescape(b: bytes) -> bytes:
    out, zeros = bytearray(), 0
    for x in b:
        if zeros >= 2 and x == 3:
            zeros = 0
            continue
        out.append(x)
        zeros = zeros + 1 if x == 0 else 0
    return bytes(out)


def _escape(b: bytes) -> bytes:
    out, zeros = bytearray(), 0
    for x in b:
        if zeros >= 2 and x <= 3:
            out.append(3)
            zeros = 0
        out.append(x)
        zeros = zeros + 1 if x == 0 else 0
    return bytes(out)


def patch_sps_size(nal: bytes, width: int, height: int) -> bytes:
    """A baseline/main-profile SPS NAL unit claiming another size (multiples of 16)."""
    r = _Bits(_unescape(nal[1:]))
    profile = r.u(8)
    if profile not in (66, 77, 88):
        raise ValueError(f"only baseline/main/extended SPS are rewritten, not profile {profile}")
    r.put(8, profile)
    r.put(16, r.u(16))  # constraint flags, level
    r.put_ue(r.ue())  # sps id
    r.put_ue(r.ue())  # log2_max_frame_num_minus4
    poc = r.ue()
    r.put_ue(poc)
    if poc == 0:
        r.put_ue(r.ue())
    elif poc == 1:
        r.put(1, r.u(1))
        r.put_se(r.se())
        r.put_se(r.se())
        n = r.ue()
        r.put_ue(n)
        for _ in range(n):
            r.put_se(r.se())
    r.put_ue(r.ue())  # max_num_ref_frames
    r.put(1, r.u(1))  # gaps_in_frame_num_allowed
    r.ue(), r.ue()
    r.put_ue(width // 16 - 1)
    r.put_ue(height // 16 - 1)
    rest = [r.u(1) for _ in range(len(r.data) * 8 - r.pos)]
    while rest and rest[-1] == 0:  # the trailing alignment zeros; the stop bit stays
        rest.pop()
    r.out.extend(rest)
    return nal[:1] + _escape(r.written())


def make_size_claim(path: str, width: int, height: int, tmp_dir: str) -> None:
    """A tiny H.264 mp4 whose SPS and track header claim width x height (no such frames
    exist: the slices are those of a 256x256 picture)."""
    import av

    small = os.path.join(tmp_dir, "claim-src.mp4")
    run_ffmpeg(_lavfi("color=c=red", 0.2, 256, 256) + _x264("yuv420p", "-profile:v", "baseline") + [small])
    inp = av.open(small)
    try:
        ist = inp.streams.video[0]
        ext = bytes(ist.codec_context.extradata or b"")  # avcC: 6 bytes, u16 SPS length, SPS, PPS count, ...
        (sps_len,) = struct.unpack(">H", ext[6:8])
        sps = patch_sps_size(ext[8:8 + sps_len], width, height)
        out = av.open(path, "w", format="mp4")
        try:
            ost = out.add_stream_from_template(ist)
            ost.codec_context.width, ost.codec_context.height = width, height
            ost.codec_context.extradata = ext[:6] + struct.pack(">H", len(sps)) + sps + ext[8 + sps_len:]
            for pkt in inp.demux(ist):
                if pkt.size:
                    pkt.stream = ost
                    out.mux(pkt)
        finally:
            out.close()
    finally:
        inp.close()
        os.remove(small)


# --------------------------------------------------------------------- the corpus
def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)


def make_hostile_corpus(folder: str) -> dict[str, Kind]:
    """Write the corpus into `folder`; returns {key below folder: Kind}."""
    os.makedirs(folder, exist_ok=True)
    work = os.path.join(folder, ".work")  # scratch, removed at the end (dot-dirs hold no video suffix)
    os.makedirs(work, exist_ok=True)
    kinds: dict[str, Kind] = {}
    rng = random.Random(1234)

    def add(key: str, kind: Kind, make: Callable[[str], None]) -> None:
        path = os.path.join(folder, *key.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        make(path)
        kinds[key] = kind

    plain = os.path.join(work, "plain.mp4")
    run_ffmpeg(_lavfi() + _x264() + [plain])  # 3 s, moov at the end
    with open(plain, "rb") as fh:
        plain_bytes = fh.read()
    no_edit = os.path.join(work, "no-edit-list.mp4")  # an edit list would cap the claimed duration
    run_ffmpeg(_lavfi() + _x264() + ["-use_editlist", "0", no_edit])
    with open(no_edit, "rb") as fh:
        no_edit_bytes = fh.read()

    refuse = lambda name, *reasons, note="": Kind(name, frozenset(reasons), note)  # noqa: E731
    clips = lambda name, note="": Kind(name, None, note)  # noqa: E731

    add("zero_byte.mp4", refuse("zero_byte", Reason.EMPTY), lambda p: _write(p, b""))
    add("truncated_no_moov.mp4", refuse("truncated", Reason.UNREADABLE, Reason.NO_FRAMES),
        lambda p: _write(p, plain_bytes[: len(plain_bytes) * 6 // 10]))
    add("random_bytes.mp4", refuse("random_bytes", Reason.UNREADABLE, Reason.NOT_VIDEO),
        lambda p: _write(p, rng.randbytes(64 * 1024)))
    add("image_png.mp4", refuse("png_renamed", Reason.NOT_VIDEO),
        lambda p: run_ffmpeg(_lavfi(seconds=0.04) + ["-frames:v", "1", "-c:v", "png", "-f", "image2", p]))
    add("image_jpeg.mp4", refuse("jpeg_renamed", Reason.NOT_VIDEO),
        lambda p: run_ffmpeg(_lavfi(seconds=0.04) + ["-frames:v", "1", "-c:v", "mjpeg", "-f", "image2", p]))
    add("text_renamed.mp4", refuse("text_renamed", Reason.NOT_VIDEO),
        lambda p: _write(p, b"#EXTM3U\nthis is a playlist, not a video\n"))
    add("audio_only.mp4", refuse("audio_only", Reason.AUDIO_ONLY), lambda p: make_audio_only(p, 2.5))
    add("one_frame.mp4", refuse("one_frame", Reason.TOO_SHORT),
        lambda p: run_ffmpeg(_lavfi(seconds=0.04) + _x264() + ["-frames:v", "1", p]))
    add("zero_fps_timescale.mp4", refuse("zero_fps", Reason.BAD_HEADER, note="mdhd time scale 0"),
        lambda p: _write(p, patch_mdhd_timescale(plain_bytes, 0)))
    add("three_day_header.mp4", refuse("three_day_header", Reason.TOO_LONG, note="75 frames claim 3 days"),
        lambda p: _write(p, claim_duration(no_edit_bytes, 3 * 86400)))
    add("huge_16000x16000.mp4", refuse("16k_header", Reason.TOO_MANY_PIXELS,
                                       note="SPS + track header claim 16000x16000; frames are 256x256"),
        lambda p: make_size_claim(p, 16000, 16000, work))
    add("huge_16384x16384.mp4", refuse("16384_header", Reason.TOO_MANY_PIXELS, Reason.BAD_HEADER,
                                       note="beyond what FFmpeg accepts at all: it reports no size"),
        lambda p: make_size_claim(p, 16384, 16384, work))
    add("tenbit.mp4", clips("10-bit"), lambda p: run_ffmpeg(_lavfi() + _x264("yuv420p10le") + [p]))
    add("yuv444.mp4", clips("4:4:4"), lambda p: run_ffmpeg(_lavfi() + _x264("yuv444p") + [p]))
    add("interlaced.mp4", clips("interlaced"),
        lambda p: run_ffmpeg(_lavfi(fps=50) + ["-vf", "tinterlace=mode=interleave_top,fieldorder=tff"]
                             + _x264("yuv420p", "-flags", "+ildct+ilme") + [p]))
    add("rotated.mp4", clips("rotated 90"),
        lambda p: run_ffmpeg(["-display_rotation", "90", "-i", plain, "-c", "copy", p]))
    # 25 fps for 40 frames, then 10 fps: a real variable frame rate, timestamps kept
    add("vfr.mp4", clips("variable frame rate"),
        lambda p: run_ffmpeg(_lavfi(seconds=4) + ["-vf", "setpts='(N/25+if(gte(N,40),(N-40)*0.06,0))/TB'",
                                                  "-fps_mode", "vfr"] + _x264() + [p]))

    def subs(p: str) -> None:
        srt = os.path.join(work, "subs.srt")
        _write(srt, b"1\n00:00:00,000 --> 00:00:01,500\nhello\n\n2\n00:00:01,500 --> 00:00:03,000\nworld\n")
        run_ffmpeg(["-i", plain, "-i", srt, "-map", "0:v", "-map", "1:s", "-map", "1:s", "-c:v", "copy",
                    "-c:s", "srt", p])

    add("subtitles.mkv", clips("mkv with two subtitle streams"), subs)
    # names: '../' inside a key (a directory named 'ünïcödé ..'), unicode, control characters
    add("nested/ünïcödé ../..evil.mp4", clips("'../' and unicode in the key"),
        lambda p: _write(p, plain_bytes))
    add("nested/deeper/ctrl\x1b[31m\nname\t.mp4", clips("control characters in the key"),
        lambda p: _write(p, plain_bytes))
    add("nested/" + "long" * 60 + ".mp4", clips("240-character name"), lambda p: _write(p, plain_bytes))
    for name in os.listdir(work):
        os.remove(os.path.join(work, name))
    os.rmdir(work)
    return kinds
