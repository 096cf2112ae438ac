"""The GPU paths driven through the CPU double of PyNvVideoCodec (curator/testing/fake_nvc.py).

The double follows the 2.2 API (packet lists from Encode/EndEncode, the flushing empty
packet, DLPack frames that the next Decode reuses) with real libx264 underneath, so
these tests check how curator drives the library, the encoder choice per device, and
the clips' frames. The one seam: `api.has_cuda` says there is a device.
"""

from __future__ import annotations

import io
import sys

import av
import numpy as np
import pytest
import torch

from curator.config import PipelineConfig
from curator.media import encode, nvcodec
from curator.media.decode import DecodeStats, iter_frames
from curator.media.nvcodec import api
from curator.media.probe import probe as probe_media
from curator.stage import RunContext
from curator.testing.fake_nvc import FakeNvc
from curator.testing.synth import run_ffmpeg

pytestmark = pytest.mark.unit

SPANS = [encode.Span(30, 76, 1.2, 3.04), encode.Span(137, 187, 5.48, 7.48)]


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """CPU tensors stand in for CUDA ones here; on 2 busy cores torch's thread pool makes
    each small op ~1,000x slower, so run them on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def device(monkeypatch):
    """Install a FakeNvc as PyNvVideoCodec and say CUDA exists; returns the installer."""

    def install(*, cuda: bool = True, **kw) -> FakeNvc:
        fake = FakeNvc(**kw)
        monkeypatch.setitem(sys.modules, "PyNvVideoCodec", fake)
        monkeypatch.setattr(api, "has_cuda", lambda: cuda)
        nvcodec.probe.cache_clear()
        return fake

    yield install
    nvcodec.probe.cache_clear()


def _frames(mp4: bytes) -> list:
    return list(av.open(io.BytesIO(mp4)).decode(video=0))


# ------------------------------------------------------------------ call contract
def test_encoder_packets_are_lists_and_every_session_is_flushed(device, media_dir):
    fake = device()
    assert nvcodec.probe().nvenc  # the probe's own session counts too
    clips = nvcodec.transcode_spans(str(media_dir / "bikes.mp4"), SPANS, encoder="nvenc")
    assert all(c.error is None for c in clips), [c.error for c in clips]
    assert [s.frames_in for s in fake.sessions[1:]] == [46, 50]
    assert all(s.ended for s in fake.sessions)  # EndEncode on every session, the probe's included
    # no B-frames asked, so every frame came back as one packet (some only at the flush)
    assert all(s.packets_out == s.frames_in for s in fake.sessions)
    assert all(s.params["bf"] == "0" and s.params["codec"] == "h264" for s in fake.sessions)
    enc = fake.CreateEncoder(64, 48, "NV12", True, codec="h264", fps=25)
    packets = enc.Encode(np.zeros(64 * 72, np.uint8)) + enc.EndEncode()
    with pytest.raises(TypeError):  # what 2.1-era code did with the result
        bytes(packets)
    with pytest.raises(Exception, match="after EndEncode"):
        enc.Encode(np.zeros(64 * 72, np.uint8))


def test_double_reuses_decoder_surfaces_like_the_gpu(device, media_dir):
    fake = device()
    frames = api.Decoded(fake, str(media_dir / "bikes.mp4"))
    it = iter(frames)
    _, first = next(it)
    kept = first  # holding the decoder's surface without copying it...
    for _ in range(8):
        next(it)
    assert int(kept[0, 0]) == 0xAB  # ...sees it overwritten


@pytest.mark.parametrize("encoder", ["nvenc", "nvdec"])
def test_exact_frames_per_span_like_the_cpu_path(device, media_dir, encoder):
    device()
    src = str(media_dir / "bikes.mp4")
    spans = SPANS + [encode.Span(60, 70, 2.4, 2.8), encode.Span(245, 260, 9.8, 10.4)]  # overlap; past the end
    gpu = nvcodec.transcode_spans(src, spans, encoder=encoder)
    cpu = encode.transcode_spans(src, spans)
    for g, c in zip(gpu, cpu):
        assert g.error is None, g.error
        assert (g.width, g.height, g.frames) == (c.width, c.height, c.frames)
        decoded = _frames(g.data)
        assert len(decoded) == c.frames and decoded[0].format.name == "yuv420p"
    assert [g.frames for g in gpu] == [46, 50, 10, 5]
    # the same pictures: compare the middle frame of the first clip with the CPU clip's
    a = _frames(gpu[0].data)[20].to_ndarray(format="gray").astype(int)
    b = _frames(cpu[0].data)[20].to_ndarray(format="gray").astype(int)
    assert np.abs(a - b).mean() < 6


def test_rotation_and_downscale_on_the_gpu_path(device, media_dir):
    device()
    src = str(media_dir / "issue-134-rotate.mp4")
    rot = probe_media(src).rotation
    kw = {"rotation": rot, "max_short_side": 96}
    g = nvcodec.transcode_spans(src, [encode.Span(0, 24, 0, 1.0)], encoder="nvdec", **kw)[0]
    c = encode.transcode_spans(src, [encode.Span(0, 24, 0, 1.0)], **kw)[0]
    assert g.error is None and (g.width, g.height, g.frames) == (c.width, c.height, c.frames)


# ------------------------------------------------------------------ errors per clip
def test_encoder_failure_mid_clip_fails_that_clip_only(device, media_dir):
    fake = device()
    nvcodec.probe()
    fake.fail_encode_at = (len(fake.sessions), 10)  # the first clip's session, its 11th frame
    first, second = nvcodec.transcode_spans(str(media_dir / "bikes.mp4"), SPANS, encoder="nvenc")
    assert first.data is None and "encoder failed at frame 40" in first.error
    assert second.error is None and second.frames == 50
    assert all(s.ended for s in fake.sessions)  # the failed session was closed too


def test_decoder_failure_keeps_what_decoded(device, media_dir):
    device(fail_decode_at=50)
    nvcodec.probe()  # 3 probe frames: under the fault
    stats = DecodeStats()
    first, second = nvcodec.transcode_spans(str(media_dir / "bikes.mp4"), SPANS, encoder="nvdec", stats=stats)
    assert first.error is None and first.frames == 20 and len(_frames(first.data)) == 20
    assert second.data is None and "GPU decoding stopped after 50 frames" in second.error
    assert stats.frames == 50


def test_decoder_that_does_not_open_fails_every_clip_with_the_reason(device, media_dir):
    fake = device()
    nvcodec.probe()
    fake.nvdec = False  # e.g. out of decoder sessions after the probe
    clips = nvcodec.transcode_spans(str(media_dir / "bikes.mp4"), SPANS, encoder="nvenc")
    assert all(c.data is None and "NVDEC could not open the stream" in c.error for c in clips)


# ------------------------------------------------------------------ choice per device
MATRIX = [  # (cuda, nvdec engine, nvenc engine) -> what auto picks, manifest column
    ((False, True, True), "cpu", "libx264"),
    ((True, False, False), "cpu", "libx264"),
    ((True, True, False), "nvdec", "nvdec+libx264"),
    ((True, True, True), "nvenc", "nvenc"),
]


def _stage(encoder: str):
    from stages.transcode import TranscodeStage

    cfg = PipelineConfig()
    ctx = RunContext(cfg, "file:///in", "file:///out", "test", "h")
    return TranscodeStage(cfg.stages.transcode.model_copy(update={"encoder": encoder}), ctx)


def _video_row(path: str) -> dict:
    spans = [{"start_frame": s.start_frame, "end_frame": s.end_frame, "start_s": s.start_s, "end_s": s.end_s}
             for s in SPANS]
    return {"kind": "video", "status": "ok", "video_id": "v", "source_uri": "file://" + path,
            **probe_media(path).as_row(), "spans": spans}


@pytest.mark.parametrize("caps, mode, column", MATRIX)
def test_auto_picks_the_best_path_the_device_really_has(device, media_dir, caps, mode, column):
    cuda, nvdec, nvenc = caps
    device(cuda=cuda, nvdec=nvdec, nvenc=nvenc)
    found = nvcodec.probe()
    assert (found.cuda, found.nvdec, found.nvenc) == (cuda, nvdec and cuda, nvenc and cuda)
    assert nvcodec.choose_encoder("auto", found) == mode
    stage = _stage("auto")
    assert stage.requirements() == []
    stage.setup()
    rows = stage.process([_video_row(str(media_dir / "bikes.mp4"))])
    clips = [r for r in rows if r["kind"] == "clip"]
    assert [r["encoder"] for r in clips] == [column, column]
    assert [r["clip_frames"] for r in clips] == [46, 50] and all(r["status"] == "ok" for r in clips)


@pytest.mark.parametrize("encoder", ["nvenc", "gpu"], ids=["nvenc", "old-alias"])  # an id "gpu" means CUDA-only
def test_nvenc_asked_on_an_nvdec_only_gpu_says_so(device, encoder):
    device(nvenc=False)
    stage = _stage(encoder)
    [req] = stage.requirements()
    assert "cannot use NVENC" in req.what and "encoder=nvdec" in req.what
    with pytest.raises(RuntimeError, match="cannot use NVENC"):
        stage.setup()
    assert nvcodec.choose_encoder("nvdec", nvcodec.probe()) == "nvdec"


def test_explicit_cpu_never_probes(device):
    fake = device(nvdec=False, nvenc=False)
    stage = _stage("cpu")
    stage.setup()
    assert stage.mode == "cpu" and fake.sessions == [] and fake.decoders == []


def test_stage_clip_rows_carry_the_encoder_failure(device, media_dir):
    fake = device()
    stage = _stage("nvenc")
    stage.setup()
    fake.fail_encode_at = (len(fake.sessions), 0)
    rows = stage.process([_video_row(str(media_dir / "bikes.mp4"))])
    first, second = [r for r in rows if r["kind"] == "clip"]
    assert first["status"] == "error" and first["reason"] == "transcode_failed" and "encoder failed" in first["detail"]
    assert second["status"] == "ok" and second["encoder"] == "nvenc"


def test_yuv444_source_falls_back_to_libx264(device, tmp_path):
    device()
    src = tmp_path / "444.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=128x96:rate=25", "-frames:v", "60", "-c:v", "libx264",
                "-pix_fmt", "yuv444p", str(src)])
    stage = _stage("auto")
    stage.setup()
    row = _video_row(str(src))
    row["spans"] = [{"start_frame": 0, "end_frame": 50, "start_s": 0.0, "end_s": 2.0}]
    clip = stage.process([row])[1]
    assert clip["status"] == "ok" and clip["encoder"] == "libx264" and clip["clip_frames"] == 50


# ------------------------------------------------------------------ detector frames
def test_model_frames_match_the_cpu_decoder(device, media_dir):
    device()
    src = str(media_dir / "bikes.mp4")
    stats = DecodeStats()
    gpu = list(nvcodec.iter_model_frames(src, (48, 27), stats=stats))
    cpu = [(i, t, f.to_ndarray(format="rgb24", width=48, height=27, interpolation="AREA"))
           for i, t, f in iter_frames(src)]
    assert [(i, round(t, 6)) for i, t, _ in gpu] == [(i, round(t, 6)) for i, t, _ in cpu]
    assert stats.frames == len(cpu) == 250
    f = gpu[100][2]
    assert isinstance(f, torch.Tensor) and f.dtype == torch.uint8 and tuple(f.shape) == (27, 48, 3)
    diff = np.abs(f.numpy().astype(int) - cpu[100][2].astype(int))
    assert diff.mean() < 4


def test_transnetv2_takes_tensors_on_its_device(device, media_dir):
    from curator.models import transnetv2

    device()
    src = str(media_dir / "bikes.mp4")
    model = transnetv2.load("cpu")
    tensors = [f for _, _, f in nvcodec.iter_model_frames(src, transnetv2.SIZE)][:50]
    arrays = [t.numpy() for t in tensors]
    a = transnetv2.predict(model, iter(tensors))
    b = transnetv2.predict(model, iter(arrays))
    assert a.shape == (50,) and np.allclose(a, b, atol=1e-5)


def test_detector_frames_fall_back_for_streams_nvdec_gives_as_yuv444(device, tmp_path):
    from curator.media.nvcodec import detector_frames

    device()
    src = tmp_path / "444.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=128x96:rate=25", "-frames:v", "30", "-c:v", "libx264",
                "-pix_fmt", "yuv444p", str(src)])
    stats = DecodeStats()
    frames = list(detector_frames(str(src), (48, 27), stats))
    assert len(frames) == len(stats.times) == stats.frames == 30
    assert tuple(frames[0].shape) == (27, 48, 3) and frames[0].dtype == torch.uint8
