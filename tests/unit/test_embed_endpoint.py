"""Embeddings from an OpenAI-compatible /v1/embeddings server (stages.embed.model endpoint:NAME),
against the real local server: frames as vLLM's multimodal embedding requests, texts as the
OpenAI API has them, and `curator search "text"` through the same server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from curator import index, storage
from curator.config import IndexConfig, PipelineConfig
from curator.media.decode import uniform_indices
from curator.stage import RunContext
from curator.testing import coded
from curator.testing.coded import coded_video
from curator.testing.manifests import planted, unit, write_run
from curator.testing.openai_server import FakeOpenAIServer, image_embedding, text_embedding
from stages.embed import EmbedStage

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_clip_vectors_are_the_mean_of_their_frames_embeddings(tmp_path):
    clips = {k: coded_video([k * 100 + i for i in range(30)], 96, 64) for k in (1, 2, 3)}
    with FakeOpenAIServer(jitter_s=0.05) as server:
        cfg = PipelineConfig.load(overrides=["stages.embed.model=endpoint:clip-server", "stages.embed.num_frames=4",
                                             f"stages.embed.endpoint.url={server.url}"])
        st = EmbedStage(cfg.stages.embed, RunContext(cfg, "file:///in", "file:///out", "t", "h"))
        assert st.stateful and st.requirements() == []
        out = st.process([coded.clip_row(f"v-{k:05d}", clips[k], 30, 96, 64) for k in (1, 2, 3)])
    assert len(server.requests) == 12 and {r.model for r in server.requests} == {"clip-server"}
    for r, k in zip(out, (1, 2, 3)):
        assert r["status"] == "ok" and r["embedding_model"] == "endpoint:clip-server"
        want = unit(np.mean([image_embedding(k * 100 + i) for i in uniform_indices(30, 4)], axis=0))
        assert np.allclose(np.asarray(r["embedding"], np.float32), want, atol=2e-3)  # float16 column


def test_missing_url_is_named_at_start_up(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    cfg = PipelineConfig.load(overrides=["stages.embed.model=endpoint:x"])
    [req] = EmbedStage(cfg.stages.embed, RunContext(cfg, "file:///in", "file:///out", "t", "h")).requirements()
    assert "stages.embed.endpoint.url" in req.describe()


def test_text_search_asks_the_same_server(tmp_path):
    text = unit(np.asarray(text_embedding("museum interiors"), np.float32))
    emb = planted(30, d=16, seed=3)
    emb[11] = unit(text + 0.02 * planted(1, d=16, seed=4)[0])
    out = storage.normalize(str(tmp_path / "run"))
    ids = write_run(out, "vidA", emb, model="endpoint:clip-server")
    ix = index.index_uri_for(out, IndexConfig())
    index.add_run(out, ix, IndexConfig())
    with FakeOpenAIServer() as server:
        proc = subprocess.run([sys.executable, "-m", "curator", "search", ix, "museum interiors", "--limit", "2",
                               "--set", f"stages.embed.endpoint.url={server.url}"], cwd=ROOT, capture_output=True,
                              text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[2].split()[0] == ids[11]
    assert [r.prompt for r in server.requests] == ["museum interiors"] and server.requests[0].model == "clip-server"
    with pytest.raises(index.SearchError, match="endpoint:clip-server"):
        from curator.config import EmbedEndpointConfig

        index.text_vector(index.read_meta(ix), "x", str(tmp_path), endpoint=EmbedEndpointConfig(
            url="http://127.0.0.1:9/v1", retries=0, timeout_s=2))
