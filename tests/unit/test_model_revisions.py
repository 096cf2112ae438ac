"""Pinned revisions (hf:ORG/NAME@REV), the Hugging Face cache, and a download plan for every
documented model — all without a network."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from curator.models import registry
from curator.testing.tiny_models import build_vlm

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def test_a_pin_is_parsed_everywhere_a_model_is_named(tmp_path):
    assert registry.split_revision("hf:Qwen/Qwen2.5-VL-7B-Instruct@v1.0") == ("hf:Qwen/Qwen2.5-VL-7B-Instruct", "v1.0")
    assert registry.split_revision("hf:a/b") == ("hf:a/b", None)
    spec = registry.spec_for("hf:Qwen/Qwen2.5-VL-7B-Instruct@" + COMMIT)
    assert spec.revision == COMMIT and spec.size_mb == 16580  # the registered entry, pinned
    assert spec.rel_path == os.path.join("hf", "Qwen", "Qwen2.5-VL-7B-Instruct@" + COMMIT)
    assert registry.spec_for("hf-video:org/vid@main").source == "hf:org/vid"
    tok = registry.spec_for("cosmos-tokenizer:CV8x8x8@abc")
    assert tok.files and tok.revision == "abc" and tok.rel_path.endswith("CV8x8x8@abc")
    for bad in ("open_clip:ViT-B-32/openai@x", "hf:a/b@", "hf:a/b@x/../y", "hf:a/b@a b"):
        with pytest.raises(registry.ModelError):
            registry.spec_for(bad)
    # a pinned model sits beside the unpinned one and is missing until downloaded at that revision
    assert registry.missing("hf:a/b@v2", str(tmp_path)) == [str(tmp_path / "hf" / "a" / "b@v2") + os.sep]
    assert registry.download_command("hf:a/b@v2") == "curator models download hf:a/b@v2"


def _hub_snapshot(cache: Path, repo: str, commit: str, ref: str | None = "main") -> Path:
    root = cache / ("models--" + repo.replace("/", "--"))
    snap = root / "snapshots" / commit
    snap.mkdir(parents=True)
    if ref:
        (root / "refs").mkdir(exist_ok=True)
        (root / "refs" / ref).write_text(commit)
    return snap


def test_the_hugging_face_cache_is_read_before_the_model_directory(tmp_path, monkeypatch):
    cache, model_dir = tmp_path / "hub", str(tmp_path / "models")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    snap = _hub_snapshot(cache, "curator-test/tiny-llava", COMMIT)
    name = "hf:curator-test/tiny-llava"
    (snap / "config.json").write_text("{}")
    assert registry.hf_cache_path(name) is None  # no weights yet: incomplete, not used
    assert registry.model_path(name, model_dir) == registry.dir_path(name, model_dir)
    shutil.rmtree(snap)
    # a real (tiny) model saved into the snapshot folder, as the hub cache holds it
    build_vlm(str(tmp_path / "build"))
    os.rename(registry.dir_path(name, str(tmp_path / "build")), snap)
    assert registry.model_path(name, model_dir) == str(snap) and registry.missing(name, model_dir) == []
    assert registry.recorded_name(name, model_dir) == f"{name}@{COMMIT}"
    plan = registry.plan(name, model_dir)
    assert plan.cached == str(snap) and "nothing to download" in plan.describe()
    assert registry.download(name, model_dir, log=lambda s: None) == str(snap)  # no network: it is there
    # pinned to the commit, or to a tag the cache's refs name
    assert registry.model_path(f"{name}@{COMMIT}", model_dir) == str(snap)
    (cache / "models--curator-test--tiny-llava" / "refs" / "v1").write_text(COMMIT)
    assert registry.model_path(f"{name}@v1", model_dir) == str(snap)
    assert registry.recorded_name(f"{name}@v1", model_dir) == f"{name}@v1"
    assert registry.hf_cache_path(f"{name}@v2") is None
    # the caption backend loads it from there and records the revision per clip
    from curator.config import PipelineConfig
    from curator.models.vlm import TransformersBackend

    cfg = PipelineConfig.load(overrides=[f"stages.caption.model={name}", "stages.caption.device=cpu"])
    backend = TransformersBackend(cfg.stages.caption, model_dir)
    assert backend.model_id == f"{name}@{COMMIT}"


def test_a_model_directory_copy_records_the_downloaded_commit(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    d = tmp_path / "models" / "hf" / "org" / "m"
    d.mkdir(parents=True)
    (d / "config.json").write_text("{}")
    (d / "model.safetensors").write_bytes(b"")
    assert registry.recorded_name("hf:org/m", str(tmp_path / "models")) == "hf:org/m"  # placed by hand: unknown
    (d / registry.REVISION_FILE).write_text(COMMIT + "\n")
    assert registry.recorded_name("hf:org/m", str(tmp_path / "models")) == f"hf:org/m@{COMMIT}"


def documented_ids() -> list[str]:
    text = (ROOT / "docs" / "models.md").read_text()
    table = text[text.index("Known models"):]
    table = table[:table.index("\n\n", table.index("| name |"))]
    return re.findall(r"^\| `([^`]+)` \|", table, flags=re.M)


def test_every_documented_model_resolves_to_a_download_plan(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    ids = documented_ids()
    assert len(ids) >= 10 and "hf:Qwen/Qwen2.5-VL-7B-Instruct" in ids
    for name in ids:
        assert name in registry.KNOWN, name  # documented means registered
        plan = registry.plan(name, str(tmp_path))
        assert plan.command == f"curator models download {name} --model-dir {tmp_path}"
        assert plan.dest.startswith(str(tmp_path)) and plan.cached is None
        assert plan.source.split(":", 1)[0] in ("hf", "open_clip", "url"), (name, plan.source)
        pinned = registry.plan(f"{name}@{COMMIT}", str(tmp_path)) if plan.source.startswith("hf:") else None
        if pinned:
            assert pinned.revision == COMMIT and COMMIT in pinned.describe()


def test_cli_dry_run_names_the_revision(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_CACHE=str(tmp_path / "hub"))
    r = subprocess.run([sys.executable, "-m", "curator", "models", "download", "--dry-run", "--model-dir",
                        str(tmp_path / "m"), "hf:Qwen/Qwen2.5-VL-3B-Instruct@" + COMMIT],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"at revision {COMMIT}" in r.stdout and f"Qwen2.5-VL-3B-Instruct@{COMMIT}" in r.stdout
    assert not (tmp_path / "m").exists()
