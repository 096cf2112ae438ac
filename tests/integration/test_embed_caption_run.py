"""Embeddings and captions through the real runners, into the manifest and the shards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from curator import manifest, pipeline
from curator.config import PipelineConfig
from curator.driver import execute
from curator.media.decode import uniform_indices
from curator.testing import tiny_models
from curator.testing.coded import coded_video
from curator.testing.openai_server import FakeOpenAIServer, parse_caption

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir) -> str:
    return tiny_model_dir


@pytest.fixture(scope="module")
def input_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("in")
    (d / "coded.mp4").write_bytes(coded_video(list(range(125)), 128, 96, fps=25))  # frame i carries i
    return d


def config(input_dir: Path, out: Path, model_dir: str, url: str, runner: str) -> PipelineConfig:
    return PipelineConfig.load(overrides=[
        f"run.runner={runner}", f"models.dir={model_dir}", "stages.order=[embed,caption]",
        "dedup.enabled=false",  # the fixed-stride clips of one coded video are near-duplicates
        "stages.split.method=fixed", "stages.split.stride_s=2.0", "stages.split.min_clip_s=1.0",
        f"stages.embed.model={tiny_models.TINY_CLIP_NAME}",
        "stages.caption.backend=endpoint",
        f"stages.caption.endpoint.url={url}", "stages.caption.endpoint.retries=1",
        "stages.caption.endpoint.backoff_s=0.01", "stages.caption.frame_size=[64,48]",
    ], input=str(input_dir), output=str(out))


def shard_members(out: Path) -> dict[str, bytes]:
    members: dict[str, bytes] = {}
    for tar_path in sorted((out / "shards").rglob("*.tar")):
        with tarfile.open(tar_path) as tar:
            for m in tar.getmembers():
                members[m.name] = tar.extractfile(m).read()
    return members


def check_run(out: Path, server: FakeOpenAIServer, failed_start: int | None = None) -> None:
    rows = manifest.read_manifest(str(out)).to_pylist()
    clips = [r for r in rows if r["kind"] == "clip"]
    assert [(c["start_frame"], c["end_frame"]) for c in clips] == [(0, 50), (50, 100), (100, 125)]
    members = shard_members(out)
    for c in clips:
        assert c["status"] == "ok"
        assert c["embedding_model"] == tiny_models.TINY_CLIP_NAME and len(c["embedding"]) == 32
        meta = json.loads(members[f"{c['clip_id']}.json"])
        assert meta["embedding"] == pytest.approx(c["embedding"]) and meta["embedding_model"] == c["embedding_model"]
        if c["start_frame"] == failed_start:
            assert c["caption"] is None and "http 500" in c["caption_error"]
            assert f"{c['clip_id']}.txt" not in members and "caption" not in meta
            continue
        seen = parse_caption(c["caption"])
        # the 8 uniformly spaced frames of this clip, by their source frame number, at the configured size
        assert seen["codes"] == [c["start_frame"] + i for i in uniform_indices(c["clip_frames"], 8)]
        assert seen["size"] == (64, 48)
        assert members[f"{c['clip_id']}.txt"].decode() == c["caption"]
        assert meta["caption"] == c["caption"] and meta["caption_prompt_version"].startswith("sha-")
        assert c["caption_error"] is None
        # the windows (one: the clips are shorter than 256 frames) in the manifest and, as an object, the shard json
        windows = json.loads(c["caption_windows"])
        assert windows["summary"] == "single" and windows["windows"][0]["caption"] == c["caption"]
        assert (windows["windows"][0]["start"], windows["windows"][0]["end"]) == (0, c["clip_frames"])
        assert meta["caption_windows"] == windows


def test_local_runner_embeds_and_captions_into_manifest_and_shards(input_dir, model_dir, tmp_path):
    from curator.runners.local import LocalRunner

    failed = lambda req: "500" if req.codes and req.codes[0] == 50 else "ok"  # noqa: E731 — the 2nd clip fails
    with FakeOpenAIServer(failed) as server:
        cfg = config(input_dir, tmp_path / "out", model_dir, server.url, "local")
        p = pipeline.build(cfg)
        assert [s.name for s in p.specs] == ["ingest", "split", "transcode", "embed", "caption", "staging"]
        summary = execute(p, LocalRunner())
    assert summary.clips == 3 and summary.clips_kept == 3 and summary.shard_samples == 3
    check_run(tmp_path / "out", server, failed_start=50)


@pytest.mark.timeout(400)
def test_ray_runner_embeds_and_captions(ray_session, input_dir, model_dir, tmp_path):
    from curator.runners.ray import RayRunner

    with FakeOpenAIServer() as server:
        cfg = config(input_dir, tmp_path / "out", model_dir, server.url, "ray")
        # three actor pools (split, embed, caption) and the transcode task must fit in the
        # session's 2 CPUs, or the pools starve the tasks
        st = cfg.stages
        st.split.resources.num_cpus = 0.5
        st.embed.resources.num_cpus = 0.25
        st.caption.resources.num_cpus = 0.25
        summary = execute(pipeline.build(cfg), RayRunner(cfg.run))
    assert summary.clips_kept == 3
    check_run(tmp_path / "out", server)


def test_default_config_runs_offline_and_names_the_missing_caption_model(tmp_path, media):
    inp = media("bikes.mp4")
    empty_models = tmp_path / "models"
    r = subprocess.run([sys.executable, "-m", "curator", "run", "-i", str(inp), "-o", str(tmp_path / "out"),
                        "--runner", "local"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "CURATOR_MODEL_DIR": str(empty_models)})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "optional stage(s) skipped" in r.stderr and "\n  caption" in r.stderr
    assert "curator models download hf:HuggingFaceTB/SmolVLM-256M-Instruct" in r.stderr
    assert str(empty_models / "hf" / "HuggingFaceTB" / "SmolVLM-256M-Instruct") in r.stderr
    rows = manifest.read_manifest(str(tmp_path / "out")).to_pylist()
    clips = [c for c in rows if c["kind"] == "clip" and c["status"] == "ok"]
    assert clips and all(c["embedding_model"] == "perceptual-dct-v1" and len(c["embedding"]) == 512 for c in clips)
    assert all(c.get("caption") is None for c in clips)  # the stage was skipped: no caption column


def test_the_binary_captions_through_openai_base_url_with_a_retry(input_dir, tmp_path):
    """`curator run` with the endpoint backend and no URL in the config: OPENAI_BASE_URL
    and OPENAI_API_KEY reach the OpenAI SDK; a 500 on one clip's first request is retried."""
    first = []

    def behaviour(req):
        if not first:
            first.append(req.codes[0])
        return "500" if req.codes[0] == first[0] and req.attempt == 1 else "ok"

    with FakeOpenAIServer(behaviour) as server:
        r = subprocess.run([sys.executable, "-m", "curator", "run", "-i", str(input_dir), "-o", str(tmp_path / "out"),
                            "--runner", "local", "--set", "stages.order=[caption]", "--set", "dedup.enabled=false",
                            "--set", "index.enabled=false", "--set", "stages.split.method=fixed",
                            "--set", "stages.split.stride_s=2.0", "--set", "stages.split.min_clip_s=1.0",
                            "--set", "stages.caption.backend=endpoint", "--set", "stages.caption.model=test-vlm",
                            "--set", "stages.caption.frame_size=[64,48]"],
                           cwd=ROOT, capture_output=True, text=True, timeout=300,
                           env={**os.environ, "OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": "sk-env-key"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "sk-env-key" not in r.stdout + r.stderr
    clips = [c for c in manifest.read_manifest(str(tmp_path / "out")).to_pylist() if c["kind"] == "clip"]
    assert len(clips) == 3
    for c in clips:
        assert c["caption_error"] is None, c["caption_error"]
        assert parse_caption(c["caption"])["codes"] == [c["start_frame"] + i for i in uniform_indices(c["clip_frames"], 8)]
    assert len(server.requests) == 4  # three clips, one of them twice
    assert {q.authorization for q in server.requests} == {"Bearer sk-env-key"}
