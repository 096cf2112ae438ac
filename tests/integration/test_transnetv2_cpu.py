"""TransNetV2 CPU backends: the fast path finds the same cut frames as float32 torch, and
every cut that the wheel's own `predict_video` (ffmpeg decode at 48x27, threshold 0.4) finds.

No timings here: frames per CPU-second are in benchmarks/transnetv2_bench.py.
"""

import logging
import os

import numpy as np
import pytest

from curator.models import transnetv2

pytestmark = pytest.mark.integration

THRESHOLD = 0.4
REAL = ["bikes.mp4", "issue-134-rotate.mp4", "goldeneye-vfr-drop3.mp4"]


@pytest.fixture(scope="module")
def model():
    return transnetv2.load("cpu")


@pytest.fixture(scope="module")
def multishot(five_shots):
    return five_shots


@pytest.fixture
def video(request, media_dir, multishot):
    return multishot[0] if request.param == "multishot" else media_dir / request.param


def _cuts(pred: np.ndarray) -> list[int]:
    return [a for a, _ in transnetv2.scenes(pred, THRESHOLD)][1:]


def _predict(model, frames, backend, monkeypatch):
    monkeypatch.setenv(transnetv2.BACKEND_ENV, backend)
    return transnetv2.predict(model, iter(frames))


def test_small_frames_are_the_per_frame_conversion(media_dir):
    from curator.media.decode import DecodeStats, iter_frames

    path = str(media_dir / "issue-134-rotate.mp4")
    ref = [(i, t, f.to_ndarray(format="rgb24", width=48, height=27, interpolation="AREA"))
           for i, t, f in iter_frames(path)]
    stats = DecodeStats()
    got = list(transnetv2.small_frames(path, stats=stats))
    assert len(got) == len(ref) == stats.frames
    for (i, t, a), (j, u, b) in zip(got, ref):
        assert (i, t) == (j, u)
        assert a.shape == (27, 48, 3) and a.dtype == np.uint8
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("backend, video", [("auto", v) for v in REAL + ["multishot"]] + [("compile", "bikes.mp4")],
                         indirect=["video"])
def test_fast_backends_find_the_float32_cut_frames(model, video, backend, monkeypatch):
    frames = [a for _, _, a in transnetv2.small_frames(str(video))]
    ref = _predict(model, frames, "torch", monkeypatch)
    got = _predict(model, frames, backend, monkeypatch)
    assert transnetv2.cpu_backend(model, "torch") == "torch"
    assert len(got) == len(ref) == len(frames)
    assert _cuts(got) == _cuts(ref)
    assert float(np.abs(got - ref).max()) < 0.05  # measured: at most ~0.01


def test_multishot_cuts_are_the_generated_ones(model, multishot, monkeypatch):
    path, truth = multishot
    frames = [a for _, _, a in transnetv2.small_frames(str(path))]
    assert _cuts(_predict(model, frames, "auto", monkeypatch)) == truth


@pytest.fixture(scope="module")
def ffmpeg_on_path(tmp_path_factory):
    """The wheel's predict_video runs `ffmpeg` from PATH; imageio-ffmpeg ships one."""
    import imageio_ffmpeg

    d = tmp_path_factory.mktemp("ffmpeg-bin")
    os.symlink(imageio_ffmpeg.get_ffmpeg_exe(), d / "ffmpeg")
    return str(d)


@pytest.mark.parametrize("video", REAL + ["multishot"], indirect=True)
def test_every_cut_of_the_wheels_predict_video_is_found(model, video, ffmpeg_on_path, monkeypatch):
    """Same cut frames (+-0) where both decodes give the same frames. They differ in pixels
    (ffmpeg's CLI scales bicubic and applies the rotation; curator scales with AREA and keeps
    coded orientation) and, for VFR sources, in count: the CLI's rawvideo output repeats
    frames to a constant rate (240 frames of goldeneye-vfr-drop3.mp4 against 160 decoded),
    so there cuts are compared by time, within half a frame."""
    import torch

    from curator.media.decode import DecodeStats
    from curator.media.probe import probe

    monkeypatch.setenv("PATH", ffmpeg_on_path + os.pathsep + os.environ["PATH"])
    with torch.inference_mode():
        _, single, _ = model.predict_video(str(video), quiet=True)
    wheel = [int(a) for a, _ in model.predictions_to_scenes(single.float().numpy().ravel(), THRESHOLD)][1:]
    assert wheel, "the wheel found no cut: nothing to compare"

    stats = DecodeStats()
    small = list(transnetv2.small_frames(str(video), stats=stats))
    ours = _cuts(_predict(model, [a for _, _, a in small], "auto", monkeypatch))
    if len(single) == len(small):
        assert set(wheel) <= set(ours), (wheel, ours)
    else:
        info = probe(str(video))
        fps = info.nominal_fps or info.fps  # the CLI output rate
        times = [t - small[0][1] for _, t, _ in small]
        ours_s = [times[c] for c in ours]
        for c in wheel:
            assert any(abs(c / fps - s) <= 0.5 / fps + 1e-6 for s in ours_s), (wheel, ours, ours_s)


def test_a_failing_backend_falls_back_to_float32_with_a_warning(monkeypatch, caplog):
    model = transnetv2.load("cpu")
    real = transnetv2._make_runner

    def broken(m, name):
        if name != "torch":
            raise RuntimeError("no compiler here")
        return real(m, name)

    monkeypatch.setattr(transnetv2, "_make_runner", broken)
    with caplog.at_level(logging.WARNING, logger="curator.models.transnetv2"):
        assert transnetv2.cpu_backend(model, "auto") == "torch"
    assert "no compiler here" in caplog.text


def test_unknown_backend_is_refused(model, monkeypatch):
    monkeypatch.setenv(transnetv2.BACKEND_ENV, "tensorrt")
    with pytest.raises(ValueError, match="tensorrt"):
        transnetv2.predict(model, iter([np.zeros((27, 48, 3), np.uint8)] * 3))
