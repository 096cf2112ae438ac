"""The embed stage: perceptual (built-in) and open_clip (tiny random-weight model) backends."""

from __future__ import annotations

import numpy as np
import pytest

from curator.config import PipelineConfig
from curator.media import perceptual
from curator.media.decode import sample_frames
from curator.models import clip
from curator.stage import RunContext
from curator.testing import tiny_models
from curator.testing.coded import clip_row, coded_video
from stages.embed import EmbedStage

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir) -> str:
    return tiny_model_dir


@pytest.fixture(scope="module")
def clips() -> list[bytes]:
    return [coded_video([k * 4000 + i * 97 for i in range(n)], w, h)
            for k, (n, w, h) in enumerate([(30, 128, 96), (45, 96, 128), (12, 64, 64)])]


def rows_for(clips: list[bytes]) -> list[dict]:
    sizes = [(30, 128, 96), (45, 96, 128), (12, 64, 64)]
    return [clip_row(f"v-{k:05d}", data, n, w, h) for k, (data, (n, w, h)) in enumerate(zip(clips, sizes))]


def make_stage(model_dir: str, *over: str) -> EmbedStage:
    cfg = PipelineConfig.load(overrides=[f"models.dir={model_dir}", *over])
    ctx = RunContext(config=cfg, input_uri="file:///in", output_uri="file:///out", run_id="t", config_hash="h")
    return EmbedStage(cfg.stages.embed, ctx)


def test_perceptual_is_the_default_and_needs_nothing(tmp_path, clips):
    stage = make_stage(str(tmp_path / "no-models"))
    assert stage.config.model == "perceptual" and stage.requirements() == []
    out = stage.process(rows_for(clips))
    for r, data in zip(out, clips):
        assert r["status"] == "ok" and r["embedding_model"] == perceptual.NAME
        want = perceptual.embed_clip(data, num_frames=r["clip_frames"]).astype(np.float16)
        assert np.array_equal(np.asarray(r["embedding"], np.float16), want) and len(want) == 512


def test_open_clip_backend_pools_uniform_frames_across_a_batch(model_dir, clips):
    stage = make_stage(model_dir, f"stages.embed.model={tiny_models.TINY_CLIP_NAME}", "stages.embed.num_frames=6",
                       "stages.embed.device=cpu")
    assert stage.requirements() == []
    out = stage.process(rows_for(clips))
    ref = clip.load_name(tiny_models.TINY_CLIP_NAME, model_dir, device="cpu")
    for r, data in zip(out, clips):
        assert r["status"] == "ok" and r["embedding_model"] == tiny_models.TINY_CLIP_NAME
        v = np.asarray(r["embedding"], np.float32)
        assert v.shape == (32,) and abs(np.linalg.norm(v) - 1) < 2e-3
        frames, idx = sample_frames(data, 6, ref.decode_size(r["clip_width"], r["clip_height"]),
                                    num_frames=r["clip_frames"])
        assert idx[0] == 0 and idx[-1] == r["clip_frames"] - 1 and len(idx) == 6
        want = ref.embed_clips([frames])[0]
        assert np.allclose(v, want, atol=2e-3)
    # different clips, different vectors
    a, b = (np.asarray(out[i]["embedding"], np.float32) for i in (0, 1))
    assert float(a @ b) < 0.999


def test_a_broken_clip_stops_alone(model_dir, clips):
    stage = make_stage(model_dir, f"stages.embed.model={tiny_models.TINY_CLIP_NAME}")
    rows = rows_for(clips)
    rows[1]["mp4"] = b"\x00\x00\x00 not an mp4 at all"
    out = stage.process(rows)
    assert [r["status"] for r in out] == ["ok", "error", "ok"]
    assert out[1]["stage"] == "embed" and out[1]["reason"] == "embed_failed" and out[1].get("embedding") is None


def test_missing_open_clip_weights_is_a_startup_requirement(tmp_path):
    stage = make_stage(str(tmp_path), "stages.embed.model=open_clip:ViT-B-32/openai")
    [req] = stage.requirements()
    assert str(tmp_path / "open_clip" / "ViT-B-32" / "openai") in req.describe()
    assert "curator models download open_clip:ViT-B-32/openai" in req.describe()


@pytest.mark.gpu
def test_open_clip_on_cuda_matches_cpu(model_dir, clips):
    cpu = make_stage(model_dir, f"stages.embed.model={tiny_models.TINY_CLIP_NAME}", "stages.embed.device=cpu")
    gpu = make_stage(model_dir, f"stages.embed.model={tiny_models.TINY_CLIP_NAME}", "stages.embed.device=cuda")
    a = cpu.process(rows_for(clips))
    b = gpu.process(rows_for(clips))
    for x, y in zip(a, b):
        assert np.allclose(np.asarray(x["embedding"], np.float32), np.asarray(y["embedding"], np.float32), atol=2e-2)
