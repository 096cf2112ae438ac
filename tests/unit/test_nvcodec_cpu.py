"""The GPU transcode path's plane arithmetic and muxing, run on CPU tensors."""

import io
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from curator.media import nvcodec
from curator.media.decode import FrameGraph

pytestmark = pytest.mark.unit


def _nv12(rgb: np.ndarray) -> tuple[np.ndarray, int, int]:
    f = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="nv12")
    h, w = rgb.shape[:2]
    y = np.frombuffer(bytes(f.planes[0]), np.uint8).reshape(h, f.planes[0].line_size)[:, :w]
    uv = np.frombuffer(bytes(f.planes[1]), np.uint8).reshape(h // 2, f.planes[1].line_size)[:, :w]
    return np.concatenate([y, uv]), w, h


def _to_rgb(nv12: np.ndarray, w: int, h: int) -> np.ndarray:
    f = av.VideoFrame(w, h, "nv12")
    y = np.zeros((h, f.planes[0].line_size), np.uint8)
    y[:, :w] = nv12[:h]
    uv = np.zeros((h // 2, f.planes[1].line_size), np.uint8)
    uv[:, :w] = nv12[h:]
    f.planes[0].update(y.tobytes())
    f.planes[1].update(uv.tobytes())
    return f.to_ndarray(format="rgb24")


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_rotation_matches_the_cpu_filter_graph(rotation):
    rng = np.random.default_rng(0)
    rgb = np.kron(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8), np.ones((8, 8, 1), np.uint8))  # 48x64
    nv12, w, h = _nv12(rgb)
    ow, oh = (h, w) if rotation % 180 == 90 else (w, h)
    out = nvcodec.transform_nv12(torch.from_numpy(nv12), w, h, rotation, ow, oh).numpy()
    ref_frame = FrameGraph(rotation=rotation, pix_fmt="rgb24")(av.VideoFrame.from_ndarray(rgb, format="rgb24"))
    ref, _, _ = _nv12(ref_frame.to_ndarray(format="rgb24"))
    assert out.shape == ref.shape == (oh * 3 // 2, ow)
    assert np.array_equal(out[:oh], ref[:oh])  # luma: exactly the CPU path's picture
    # chroma: swscale sites chroma at the left column, so rotating subsampled chroma and
    # subsampling rotated pixels differ slightly at colour edges
    assert np.abs(out[oh:].astype(int) - ref[oh:].astype(int)).mean() < 6


def test_downscale_and_even_crop():
    rgb = np.full((50, 66, 3), 128, np.uint8)
    nv12, w, h = _nv12(rgb)
    out = nvcodec.transform_nv12(torch.from_numpy(nv12), w, h, 0, 32, 24)
    assert tuple(out.shape) == (36, 32)
    out = nvcodec.transform_nv12(torch.from_numpy(nv12), w, h, 0, 66, 50)
    assert tuple(out.shape) == (75, 66)


def test_annexb_is_muxed_without_reencoding(tmp_path):
    from curator.testing.synth import run_ffmpeg

    raw = tmp_path / "x.h264"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-frames:v", "37", "-c:v", "libx264", "-bf", "0",
                "-bsf:v", "h264_mp4toannexb", "-f", "h264", str(raw)])
    mp4 = nvcodec.annexb_to_mp4(raw.read_bytes(), Fraction(25))
    c = av.open(io.BytesIO(mp4))
    s = c.streams.video[0]
    frames = list(c.decode(s))
    assert len(frames) == 37
    assert abs(float(s.average_rate) - 25) < 0.01
    assert abs(frames[-1].time - 36 / 25) < 1e-3


def test_capability_check_says_why_not_here():
    if torch.cuda.is_available():
        pytest.skip("has CUDA")
    nvcodec.probe.cache_clear()
    assert nvcodec.probe() == nvcodec.GpuCaps(cuda=False, nvdec=False, nvenc=False, reason="no CUDA device")
    assert nvcodec.unavailable_reason() == "no CUDA device"
    assert nvcodec.choose_encoder("auto", nvcodec.probe()) == "cpu"
    for encoder in ("nvenc", "nvdec"):
        with pytest.raises(RuntimeError, match="cannot use NV"):
            nvcodec.transcode_spans(b"", [], encoder=encoder)


def test_importing_curator_never_imports_pynvvideocodec():
    import subprocess
    import sys

    code = ("import sys, curator, curator.media.nvcodec, stages.transcode, stages.split; "
            "assert 'PyNvVideoCodec' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
