"""Clips: exact frame ranges, upright, decodable, start/end matching the source span."""

import io

import av
import pytest

from curator.media.encode import Span, transcode_spans
from curator.media.probe import probe

pytestmark = pytest.mark.integration


def _decode(data):
    c = av.open(io.BytesIO(data))
    s = c.streams.video[0]
    frames = [f for f in c.decode(s)]
    return s, frames


def test_frame_accurate_spans(media_dir):
    src = str(media_dir / "bikes.mp4")
    spans = [Span(30, 76, 1.2, 3.04), Span(137, 187, 5.48, 7.48), Span(0, 10, 0.0, 0.4)]
    clips = transcode_spans(src, spans)
    for span, clip in zip(spans, clips):
        assert clip.error is None
        s, frames = _decode(clip.data)
        n = span.end_frame - span.start_frame
        assert abs(len(frames) - n) <= 1 and clip.frames == n
        assert (s.codec_context.name, s.codec_context.pix_fmt) == ("h264", "yuv420p")
        assert abs(len(frames) / clip.fps - (span.end_s - span.start_s)) <= 1.5 / clip.fps


def test_clip_content_matches_source_frames(media_dir):
    """The first and last frame of a clip look like the source frames at its span edges."""
    import numpy as np

    from curator.media.decode import iter_frames

    src = str(media_dir / "bikes.mp4")
    ref = {i: f.to_ndarray(format="gray") for i, _, f in iter_frames(src) if i in (76, 77, 135, 136, 137)}
    clip = transcode_spans(src, [Span(76, 137, 3.04, 5.48)])[0]
    _, frames = _decode(clip.data)
    first, last = frames[0].to_ndarray(format="gray"), frames[-1].to_ndarray(format="gray")

    def diff(a, b):
        return float(np.abs(a.astype(int) - b.astype(int)).mean())

    assert diff(first, ref[76]) < diff(first, ref[77]) or diff(first, ref[76]) < 3
    assert diff(last, ref[136]) < diff(last, ref[137])


def test_rotation_is_applied(media_dir):
    src = str(media_dir / "issue-134-rotate.mp4")
    info = probe(src)
    assert (info.width, info.height, info.rotation) == (544, 1280, 270)
    clip = transcode_spans(src, [Span(0, 24, 0, 1.0)], rotation=info.rotation)[0]
    s, frames = _decode(clip.data)
    assert (frames[0].width, frames[0].height) == (544, 1280)
    assert (clip.width, clip.height) == (544, 1280)
    assert not getattr(frames[0], "rotation", 0)  # stored upright, no display matrix


def test_vfr_source_gives_cfr_clip_with_all_frames(media_dir):
    src = str(media_dir / "goldeneye-vfr-drop3.mp4")
    clip = transcode_spans(src, [Span(60, 140, 3.754, 8.759)])[0]
    s, frames = _decode(clip.data)
    assert len(frames) == 80
    gaps = {round(float(b.time - a.time), 4) for a, b in zip(frames, frames[1:])}
    assert len(gaps) <= 2  # constant frame rate (rounding aside)


def test_odd_sizes_and_444_are_normalised(tmp_path):
    from curator.testing.synth import run_ffmpeg

    src = tmp_path / "odd444.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=161x97:rate=25", "-frames:v", "30",
                "-c:v", "libx264", "-pix_fmt", "yuv444p", str(src)])
    assert probe(str(src)).pix_fmt == "yuv444p"
    clip = transcode_spans(str(src), [Span(0, 30, 0, 1.2)])[0]
    s, frames = _decode(clip.data)
    assert s.codec_context.pix_fmt == "yuv420p"
    assert (frames[0].width, frames[0].height) == (160, 96)
    assert len(frames) == 30


def test_downscale(media_dir):
    clip = transcode_spans(str(media_dir / "bikes.mp4"), [Span(0, 10, 0, 0.4)], max_short_side=136)[0]
    assert (clip.width, clip.height) == (320, 136)


def test_encoding_is_bit_identical_across_processes(media_dir, tmp_path):
    """libx264 reads heap memory it never wrote; the encoder must still give the same bytes
    whatever the process allocated before (each child dirties its heap differently)."""
    import subprocess
    import sys

    script = (
        "import os, sys\n"
        "junk = [os.urandom(int(sys.argv[2]) * 4096) for _ in range(50)]; del junk\n"
        "from curator.media.encode import transcode_spans, Span\n"
        "r = transcode_spans(sys.argv[1], [Span(0, 60, 0, 2.4), Span(137, 187, 5.48, 7.48)])\n"
        "print(r[0].sha256, r[1].sha256)\n"
    )
    src = str(media_dir / "bikes.mp4")
    outs = {subprocess.run([sys.executable, "-c", script, src, str(n)], capture_output=True, text=True,
                           check=True).stdout.strip() for n in (1, 7, 33, 101)}
    assert len(outs) == 1, outs
