"""Header guards of the probe on crafted files (curator/testing/synth_hostile.py)."""

from __future__ import annotations

import pytest

from curator.media.probe import Limits, ProbeError, open_options, probe
from curator.records import Reason
from curator.testing.synth import run_ffmpeg
from curator.testing.synth_hostile import claim_duration, make_size_claim, patch_mdhd_timescale, patch_sps_size

pytestmark = pytest.mark.unit


def _make(path, *extra: str) -> bytes:
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=96x64:rate=25:duration=2.4", "-c:v", "libx264",
                "-preset", "veryfast", *extra, str(path)])
    return path.read_bytes()


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> bytes:
    """No edit list: the track's own header says how long it is."""
    return _make(tmp_path_factory.mktemp("probe") / "plain.mp4", "-use_editlist", "0")


@pytest.fixture(scope="module")
def edited(tmp_path_factory) -> bytes:
    """With an edit list (libx264's B-frame delay): the presentation length comes from it."""
    return _make(tmp_path_factory.mktemp("probe") / "edited.mp4")


def _reason(data: bytes, **limits) -> tuple[str, str]:
    with pytest.raises(ProbeError) as err:
        probe(data, limits=Limits(**limits))
    return err.value.reason, err.value.detail


def test_plain_file_probes(plain):
    info = probe(plain)
    assert (info.width, info.height, info.fps, info.num_frames) == (96, 64, 25.0, 60)


def test_zero_time_scale_is_refused(plain, edited):
    # FFmpeg falls back to one tick per second: frames 512 s apart in a 2.4 s edit
    reason, detail = _reason(patch_mdhd_timescale(edited, 0))
    assert reason == Reason.BAD_HEADER and "contradicts the header's 60 frames" in detail
    # without an edit list the same header claims 8.5 hours
    reason, detail = _reason(patch_mdhd_timescale(plain, 0))
    assert reason == Reason.TOO_LONG and "not decoded" in detail


def test_long_duration_claim_is_refused_on_the_header(plain):
    reason, detail = _reason(claim_duration(plain, 3 * 86400))
    assert reason == Reason.TOO_LONG and "not decoded" in detail
    # within the limit the same claim is a (very slow) video, not an error
    assert probe(claim_duration(plain, 3 * 86400), limits=Limits(max_duration_s=4 * 86400)).duration_s > 86400


def test_size_claims(tmp_path):
    path = tmp_path / "claim.mp4"
    make_size_claim(str(path), 1024, 512, str(tmp_path))
    info = probe(str(path))
    assert (info.width, info.height) == (1024, 512)  # the rewritten SPS is what decoders see
    reason, detail = _reason(path.read_bytes(), max_pixels=1024 * 511)
    assert reason == Reason.TOO_MANY_PIXELS and "1024x512" in detail
    make_size_claim(str(path), 16384, 16384, str(tmp_path))
    reason, detail = _reason(path.read_bytes())
    assert reason == Reason.BAD_HEADER and "no usable size" in detail  # FFmpeg refuses the size itself


def test_sps_rewrite_keeps_the_rest_of_the_bitstream():
    # the SPS of a 256x256 libx264 baseline stream: VUI after the size, emulation-prevention bytes
    sps = bytes.fromhex("6742c00dd9010086c044000003000400000300c83c50a920")
    again = patch_sps_size(patch_sps_size(sps, 1024, 768), 256, 256)
    assert again == sps


def test_open_options_clamp_to_what_libavcodec_takes():
    assert open_options(Limits(max_pixels=10**12)) == {"max_pixels": str(2**31 - 1)}
    assert open_options(Limits(max_pixels=640 * 480)) == {"max_pixels": "307200"}
