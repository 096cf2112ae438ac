"""The transformers caption backend with a tiny random-weight VLM built and saved here
(loaded back through the model directory), and the vLLM backend's GPU test."""

from __future__ import annotations

import os

import pytest

from curator.config import PipelineConfig
from curator.media.decode import uniform_indices
from curator.models import registry, vlm
from curator.stage import RunContext
from curator.testing import tiny_models
from curator.testing.coded import clip_row, coded_video, read_code
from stages.caption import CaptionStage

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir) -> str:
    return tiny_model_dir


@pytest.fixture(scope="module")
def rows_data() -> list[tuple[int, bytes]]:
    return [(n, coded_video([k * 256 + i for i in range(n)], 96, 64)) for k, n in enumerate((20, 33, 11))]


def rows(rows_data) -> list[dict]:
    return [clip_row(f"v-{k:05d}", data, n, 96, 64) for k, (n, data) in enumerate(rows_data)]


def make_stage(model_dir: str, *over: str) -> CaptionStage:
    cfg = PipelineConfig.load(overrides=[f"models.dir={model_dir}", "stages.caption.backend=transformers",
                                         f"stages.caption.model={tiny_models.TINY_VLM_NAME}", *over])
    ctx = RunContext(config=cfg, input_uri="file:///in", output_uri="file:///out", run_id="t", config_hash="h")
    return CaptionStage(cfg.stages.caption, ctx)


def test_tiny_vlm_is_found_in_the_model_dir(model_dir):
    assert registry.missing(tiny_models.TINY_VLM_NAME, model_dir) == []
    assert make_stage(model_dir).requirements() == []


def test_transformers_backend_captions_a_batch(model_dir, rows_data):
    stage = make_stage(model_dir, "stages.caption.max_tokens=6", "stages.caption.batch_size=2",
                       "stages.caption.frame_size=[48,32]", "stages.caption.device=cpu")
    out = stage.process(rows(rows_data))
    assert [r["status"] for r in out] == ["ok"] * 3
    for r in out:
        assert isinstance(r["caption"], str) and r["caption_error"] is None
        assert r["caption_model"] == tiny_models.TINY_VLM_NAME
        words = r["caption"].split()
        assert 1 <= len(words) <= 6  # random weights, but greedy: real words from the vocabulary, max_tokens
        assert set(words) <= set(tiny_models.WORDS) | set("0123456789=,x:") | {"codes", "size", "n", "sha", "user", "assistant"}
    # greedy decoding is deterministic and batching does not change a clip's caption
    alone = make_stage(model_dir, "stages.caption.max_tokens=6", "stages.caption.batch_size=1",
                       "stages.caption.frame_size=[48,32]", "stages.caption.device=cpu")
    again = alone.process(rows(rows_data))
    assert [r["caption"] for r in again] == [r["caption"] for r in out]


def test_transformers_backend_feeds_the_uniform_frames(model_dir, rows_data):
    stage = make_stage(model_dir, "stages.caption.frame_size=[48,32]")
    stage.ensure_setup()
    seen = []
    backend = stage.backend
    real = backend._inputs

    def spy(jobs):
        for j in jobs:
            seen.append(([read_code(f) for f in j.frames], j.frames.shape, j.indices))
        inputs = real(jobs)
        assert inputs["pixel_values"].shape[0] == 8 * len(jobs)  # every frame reaches the vision tower
        return inputs

    backend._inputs = spy
    stage.config = stage.config.model_copy(update={"max_tokens": 2})
    backend.cfg = stage.config
    stage.process(rows(rows_data))
    for k, (codes, shape, idx) in enumerate(seen):
        n = rows_data[k][0]
        assert idx == uniform_indices(n, 8) and codes == [k * 256 + i for i in idx]
        assert shape == (8, 32, 48, 3)


def test_missing_vlm_is_skipped_at_startup_with_the_command(tmp_path):
    cfg = PipelineConfig.load(overrides=[f"models.dir={tmp_path}", "stages.order=[embed,caption]"],
                              input=str(tmp_path), output=str(tmp_path / "o"))
    from curator import pipeline

    p = pipeline.build(cfg)
    assert [s.name for s in p.specs] == ["ingest", "split", "transcode", "embed", "staging"]
    [(name, [req])] = p.skipped
    assert name == "caption"
    text = req.describe()
    assert os.path.join(str(tmp_path), "hf", "HuggingFaceTB", "SmolVLM-256M-Instruct") in text
    assert "curator models download hf:HuggingFaceTB/SmolVLM-256M-Instruct" in text


def test_vllm_requirement_names_the_package_or_gpu(tmp_path):
    cfg = PipelineConfig.load(overrides=[f"models.dir={tmp_path}", "stages.caption.backend=vllm"])
    reqs = vlm.requirements(cfg.stages.caption, str(tmp_path))
    texts = " | ".join(r.describe() for r in reqs)
    assert "vllm" in texts.lower()
    assert "curator models download" in texts


@pytest.mark.gpu
def test_vllm_backend_on_gpu(rows_data):
    """Needs vLLM, CUDA and a real VLM in the model directory (CURATOR_MODEL_DIR)."""
    pytest.importorskip("vllm")
    cfg = PipelineConfig.load(overrides=["stages.caption.backend=vllm",
                                         "stages.caption.model=hf:Qwen/Qwen2.5-VL-3B-Instruct",
                                         "stages.caption.max_tokens=64", "stages.caption.vllm.max_model_len=8192"])
    if registry.missing(cfg.stages.caption.model, cfg.models.dir):
        pytest.skip(f"{cfg.stages.caption.model} is not in {cfg.models.dir}")
    ctx = RunContext(config=cfg, input_uri="file:///in", output_uri="file:///out", run_id="t", config_hash="h")
    stage = CaptionStage(cfg.stages.caption, ctx)
    assert stage.requirements() == []
    out = stage.process(rows(rows_data))
    assert all(r["caption"] and r["caption_error"] is None for r in out)


@pytest.mark.gpu
def test_transformers_backend_on_gpu(model_dir, rows_data):
    stage = make_stage(model_dir, "stages.caption.max_tokens=4", "stages.caption.device=cuda")
    out = stage.process(rows(rows_data))
    assert all(isinstance(r["caption"], str) and r["caption_error"] is None for r in out)


def test_caption_text_embeddings_from_a_t5_encoder(model_dir, rows_data):
    from curator.testing.openai_server import FakeOpenAIServer

    def behaviour(req):
        return "500" if req.codes[0] // 256 == 1 else "ok"

    with FakeOpenAIServer(behaviour) as server:
        stage = make_stage(model_dir, "stages.caption.backend=endpoint", f"stages.caption.endpoint.url={server.url}",
                           "stages.caption.endpoint.retries=0",
                           f"stages.caption.text_encoder={tiny_models.TINY_TEXT_NAME}")
        assert stage.requirements() == []
        data = rows(rows_data)
        out = stage.process(data + [dict(data[0], clip_id="v-00009")])  # clip 0 twice: same caption
    import numpy as np

    vecs = {r["clip_id"]: r.get("caption_embedding") for r in out}
    assert vecs["v-00001"] is None and out[1]["caption_error"]  # no caption, no caption embedding
    a, c, again = (np.asarray(vecs[k], np.float32) for k in ("v-00000", "v-00002", "v-00009"))
    assert a.shape == (16,) and abs(np.linalg.norm(a) - 1) < 2e-3
    assert np.array_equal(a, again) and not np.allclose(a, c)
    assert out[0]["caption_embedding_model"] == tiny_models.TINY_TEXT_NAME


def test_missing_text_encoder_is_named_at_startup(model_dir, tmp_path):
    stage = make_stage(model_dir, "stages.caption.text_encoder=hf:google-t5/t5-base")
    [req] = stage.requirements()
    assert "curator models download hf:google-t5/t5-base" in req.describe()
