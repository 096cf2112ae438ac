"""The real PyNvVideoCodec (>=2.2) on a real GPU, against the CPU path. Skipped without CUDA.

NVENC tests skip on GPUs without NVENC (A100, H100, H200); the NVDEC + libx264 path
runs on every NVIDIA GPU.
"""

import io

import av
import numpy as np
import pytest

from curator.media import encode, nvcodec
from curator.media.decode import iter_frames
from curator.media.probe import probe

pytestmark = [pytest.mark.gpu, pytest.mark.integration]


@pytest.fixture(scope="module")
def caps():
    found = nvcodec.probe()
    if not found.nvdec:
        pytest.skip(f"no NVDEC here: {found.reason}")
    return found


def test_probe_says_what_the_device_does(caps):
    assert caps.cuda and caps.nvdec
    assert caps.nvenc or "NVENC" in caps.reason
    assert nvcodec.choose_encoder("auto", caps) == ("nvenc" if caps.nvenc else "nvdec")


def test_encoder_returns_packet_lists(caps):
    import torch

    if not caps.nvenc:
        pytest.skip(caps.reason)
    from fractions import Fraction

    from curator.media.nvcodec import api

    enc = api.H264Encoder(api.load(), 256, 144, Fraction(25), 2.0)
    first = enc.enc.Encode(api.Nv12Surface(torch.full((216, 256), 128, dtype=torch.uint8, device="cuda"), 256, 144))
    rest = enc.enc.EndEncode()
    assert isinstance(first, list) and isinstance(rest, list)
    assert sum(len(bytes(p["data"])) for p in first + rest) > 0


@pytest.mark.parametrize("encoder", ["nvenc", "nvdec"])
@pytest.mark.parametrize("name, spans", [
    ("bikes.mp4", [encode.Span(30, 76, 1.2, 3.04), encode.Span(137, 187, 5.48, 7.48)]),
    ("issue-134-rotate.mp4", [encode.Span(0, 90, 0, 3.75)]),
])
def test_gpu_clips_match_cpu_clips(caps, media_dir, encoder, name, spans):
    if encoder == "nvenc" and not caps.nvenc:
        pytest.skip(caps.reason)
    src = str(media_dir / name)
    rot = probe(src).rotation
    cpu = encode.transcode_spans(src, spans, rotation=rot)
    gpu = nvcodec.transcode_spans(src, spans, encoder=encoder, rotation=rot)
    for c, g in zip(cpu, gpu):
        assert g.error is None, g.error
        assert (g.width, g.height, g.frames) == (c.width, c.height, c.frames)
        frames = list(av.open(io.BytesIO(g.data)).decode(video=0))
        assert len(frames) == c.frames
        mid = len(frames) // 2
        cpu_mid = list(av.open(io.BytesIO(c.data)).decode(video=0))[mid]
        diff = np.abs(frames[mid].to_ndarray(format="gray").astype(int) - cpu_mid.to_ndarray(format="gray").astype(int))
        assert diff.mean() < 8


def test_detector_frames_on_the_gpu_match_the_cpu(caps, media_dir):
    src = str(media_dir / "bikes.mp4")
    gpu = list(nvcodec.iter_model_frames(src, (48, 27)))
    cpu = [(i, t, f.to_ndarray(format="rgb24", width=48, height=27, interpolation="AREA")) for i, t, f in iter_frames(src)]
    assert len(gpu) == len(cpu)
    assert all(abs(a[1] - b[1]) < 1e-3 for a, b in zip(gpu, cpu))
    f = gpu[100][2]
    assert f.is_cuda and tuple(f.shape) == (27, 48, 3)
    assert np.abs(f.cpu().numpy().astype(int) - cpu[100][2].astype(int)).mean() < 6


def test_split_on_nvdec_frames_finds_the_cpu_cuts(caps, tmp_path):
    from curator.config import PipelineConfig
    from curator.stage import RunContext
    from curator.testing.synth import make_shots_video
    from stages.split import SplitStage

    path = tmp_path / "cuts.mp4"
    truth = make_shots_video(str(path), [("testsrc2", 40), ("mandelbrot", 55), ("gradients", 47)],
                             width=192, height=108, fps=25)
    cfg = PipelineConfig()
    stage = SplitStage(cfg.stages.split.model_copy(update={"method": "transnetv2", "min_clip_s": 0.0,
                                                           "device": "cuda"}),
                       RunContext(cfg, "file:///in", "file:///out", "test", "h"))
    stage.setup()
    assert stage.gpu_frames and not stage.encode_here  # an H100/H200/A100 transcodes with nvdec+libx264
    row = {"kind": "video", "status": "ok", "video_id": "v", "source_uri": "file://" + str(path),
           **probe(str(path)).as_row()}
    out = stage.process([row])[0]
    found = [s["start_frame"] for s in out["spans"]][1:]
    assert len(found) == len(truth) and all(abs(f - t) <= 2 for f, t in zip(found, truth)), (found, truth)
