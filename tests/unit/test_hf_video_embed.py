"""Video-text models through transformers (hf-video:): the embed stage's video tower and
`curator search "text"` through the same model's text tower, on a tiny random-weight X-CLIP
(transformers' XCLIPModel with its processor and a real CLIP BPE tokenizer) saved into a
temporary model directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from curator import index, storage
from curator.config import IndexConfig, PipelineConfig
from curator.media.decode import uniform_indices
from curator.models import hf_video, registry
from curator.stage import RunContext
from curator.testing import coded, tiny_models
from curator.testing.coded import coded_video
from curator.testing.manifests import planted, unit, write_run
from stages.embed import EmbedStage

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
NAME = tiny_models.TINY_XCLIP_NAME
COMMIT = "feedfacefeedfacefeedfacefeedfacefeedface"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    d = str(tmp_path_factory.mktemp("models"))
    tiny_models.build_xclip(d)
    return d


def reference_model(model_dir: str):
    from transformers import XCLIPModel, XCLIPProcessor

    path = registry.model_path(NAME, model_dir)
    return XCLIPModel.from_pretrained(path).eval(), XCLIPProcessor.from_pretrained(path)


def test_embed_stage_uses_the_video_tower_on_the_models_frame_count(model_dir, tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    clips = {k: coded_video([k * 100 + i for i in range(40)], 96, 64) for k in (1, 2)}
    cfg = PipelineConfig.load(overrides=[f"stages.embed.model={NAME}", "stages.embed.device=cpu",
                                         f"models.dir={model_dir}"])
    ctx = RunContext(config=cfg, input_uri="file:///in", output_uri="file:///out", run_id="t", config_hash="h")
    stage = EmbedStage(cfg.stages.embed, ctx)
    assert stage.stateful and stage.requirements() == []
    rows = [coded.clip_row(f"v-{k:05d}", clips[k], 40, 96, 64) for k in (1, 2)]
    out = stage.process(rows)
    assert stage.num_frames == 4  # the model's vision_config.num_frames, not the configured 8
    model, proc = reference_model(model_dir)
    for r, k in zip(out, (1, 2)):
        assert r["status"] == "ok" and r["embedding_model"] == NAME
        v = np.asarray(r["embedding"], np.float32)
        assert v.shape == (16,) and abs(np.linalg.norm(v) - 1) < 1e-2
        # the same four uniformly spaced frames, through transformers directly
        from curator.media.frames import sample_clip_frames

        frames, used = sample_clip_frames(rows[0] if k == 1 else rows[1], 4, stage.clip.decode_size(96, 64))
        assert used == uniform_indices(40, 4) and [coded.read_code(f) for f in frames] == [k * 100 + i for i in used]
        with torch.no_grad():
            ref = model.get_video_features(**proc(videos=[list(frames)], return_tensors="pt")).pooler_output[0]
        ref = (ref / ref.norm()).numpy()
        assert np.allclose(v, ref, atol=2e-3), (v[:4], ref[:4])
    assert not np.allclose(out[0]["embedding"], out[1]["embedding"], atol=1e-2)


def test_text_search_uses_the_transformers_text_tower_of_the_index_model(model_dir, tmp_path):
    import torch

    model, proc = reference_model(model_dir)
    with torch.no_grad():
        t = model.get_text_features(**proc(text=["museum interiors"], return_tensors="pt")).pooler_output[0]
    text = unit(t.numpy())
    emb = planted(40, d=16, seed=6)
    emb[23] = unit(text + 0.02 * planted(1, d=16, seed=8)[0])
    # the manifest records the id with the revision; the model directory copy was downloaded at it
    (Path(registry.dir_path(NAME, model_dir)) / registry.REVISION_FILE).write_text(COMMIT + "\n")
    try:
        out = storage.normalize(str(tmp_path / "run"))
        ids = write_run(out, "vidA", emb, model=f"{NAME}@{COMMIT}")
        ix = index.index_uri_for(out, IndexConfig())
        index.add_run(out, ix, IndexConfig())
        assert index.read_meta(ix).model == f"{NAME}@{COMMIT}"
        proc_ = subprocess.run([sys.executable, "-m", "curator", "search", ix, "museum interiors", "--limit", "3",
                                "--set", f"models.dir={model_dir}"], cwd=ROOT, capture_output=True, text=True,
                               env={**__import__("os").environ, "HF_HUB_CACHE": str(tmp_path / "hub")}, timeout=300)
        assert proc_.returncode == 0, proc_.stderr
        assert proc_.stdout.splitlines()[2].split()[0] == ids[23]
        # and the wrapper's text vector is the text tower's
        vec = index.text_vector(index.read_meta(ix), "museum interiors", model_dir)
        assert np.allclose(vec, text, atol=2e-3)
    finally:
        (Path(registry.dir_path(NAME, model_dir)) / registry.REVISION_FILE).unlink()


def test_repository_code_runs_only_when_allowed(model_dir, tmp_path):
    import shutil

    d = tmp_path / "m"
    shutil.copytree(registry.dir_path(NAME, model_dir), registry.dir_path("hf-video:org/remote", str(d)))
    cfg_path = Path(registry.dir_path("hf-video:org/remote", str(d))) / "config.json"
    doc = json.loads(cfg_path.read_text())
    doc["auto_map"] = {"AutoModel": "modeling_remote.RemoteModel"}
    cfg_path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="trust_remote_code"):
        hf_video.load("hf-video:org/remote", str(d), device="cpu")
    with pytest.raises(FileNotFoundError, match="curator models download hf-video:org/none"):
        hf_video.load("hf-video:org/none", str(d), device="cpu")
