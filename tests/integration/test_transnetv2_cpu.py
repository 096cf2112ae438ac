"""TransNetV2 CPU backends: the fast path (FastForward, 200-frame windows by default)
finds the same cut frames as the wheel's float32 model with its 100-frame windows, and
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


def _predict(model, frames, backend, monkeypatch, window=transnetv2.DEFAULT_WINDOW):
    monkeypatch.setenv(transnetv2.BACKEND_ENV, backend)
    return transnetv2.predict(model, iter(frames), window=window)


_REFERENCE: dict[str, np.ndarray] = {}


def _reference(model, video, frames, monkeypatch):
    """The wheel's float32 forward on the reference windows (100 frames, stride 50), once per video."""
    if str(video) not in _REFERENCE:
        _REFERENCE[str(video)] = _predict(model, frames, "torch", monkeypatch, window=transnetv2.WINDOW)
    return _REFERENCE[str(video)]


def test_fast_forward_is_the_wheels_network_in_float32(model):
    """Same network: fused branches, folded batch norm and 2-D convolutions change only
    the rounding (float32), for any batch and window length."""
    import torch

    x = torch.from_numpy(np.random.default_rng(3).integers(0, 256, (2, 130, 27, 48, 3), dtype=np.uint8))
    x[1, 60:] = x[0, :70]  # a hard cut in the second window
    fast = transnetv2._fast_module(model, torch.float32)
    with torch.inference_mode():
        want = model.predict_raw(x)[0]
        got = fast(x)
    assert got.shape == want.shape == (2, 130, 1)
    assert float((got - want).abs().max()) < 1e-5


def test_windows_of_any_length_cover_every_frame_once(model, monkeypatch):
    """Streaming push by push gives the same predictions as one call, for lengths around
    the window and step boundaries, and a window under 100 frames is refused."""
    rng = np.random.default_rng(5)
    frames = [rng.integers(0, 256, (27, 48, 3), dtype=np.uint8) for _ in range(330)]
    monkeypatch.setenv(transnetv2.BACKEND_ENV, "fast")
    for n in (1, 176):
        whole = transnetv2.predict(model, iter(frames[:n]), window=200)
        stream = transnetv2.StreamingPredictor(model, window=200)
        parts = [stream.push(f) for f in frames[:n]]
        emitted = sum(len(p) for p in parts)
        assert emitted == max(0, (n - 25) // 150 * 150)  # known once a window is full: 175 frames later at most
        got = np.concatenate(parts + [stream.finish(emitted)])
        assert len(whole) == len(got) == n
        np.testing.assert_array_equal(whole, got)
    with pytest.raises(ValueError, match="at least 100"):
        transnetv2.StreamingPredictor(model, window=60)


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


@pytest.mark.parametrize("backend, window, video",
                         [("auto", transnetv2.DEFAULT_WINDOW, v) for v in REAL + ["multishot"]]
                         + [("auto", transnetv2.WINDOW, "bikes.mp4"), ("bf16", transnetv2.WINDOW, "bikes.mp4")],
                         indirect=["video"])
def test_fast_backends_find_the_float32_cut_frames(model, video, backend, window, monkeypatch):
    frames = [a for _, _, a in transnetv2.small_frames(str(video))]
    ref = _reference(model, video, frames, monkeypatch)
    got = _predict(model, frames, backend, monkeypatch, window)
    if backend == "auto":
        assert transnetv2.cpu_backend(model, "auto") == "fast"
    assert len(got) == len(ref) == len(frames)
    assert _cuts(got) == _cuts(ref)
    assert not ((got > THRESHOLD) != (ref > THRESHOLD)).any()  # not one frame on the other side of the threshold
    assert float(np.abs(got - ref).max()) < 0.05  # measured: at most ~0.01 on these


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


def test_the_old_compile_backend_is_read_as_fast(model):
    assert transnetv2.cpu_backend(model, "compile") == "fast"


def test_unknown_backend_is_refused(model, monkeypatch):
    monkeypatch.setenv(transnetv2.BACKEND_ENV, "tensorrt")
    with pytest.raises(ValueError, match="tensorrt"):
        transnetv2.predict(model, iter([np.zeros((27, 48, 3), np.uint8)] * 3))
