"""Dedup and the clip index inside a real run (local runner, and the Ray assignment path)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from curator import dedup, manifest, pipeline, storage
from curator.config import PipelineConfig
from curator.driver import execute
from curator.runners.local import LocalRunner
from curator.testing.synth import make_shots_video

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dup_inputs(tmp_path_factory):
    """a.mp4: three shots; b.mp4: a half-size re-encode of a; c.mp4: a byte copy of a;
    d.mp4: unrelated shots (sources with a fixed seed: gradients and sierpinski are random)."""
    d = tmp_path_factory.mktemp("dupin")
    make_shots_video(str(d / "a.mp4"), [("testsrc2", 75), ("mandelbrot", 75), ("rgbtestsrc", 75)], width=320, height=240)
    make_shots_video(str(d / "b.mp4"), [("testsrc2", 75), ("mandelbrot", 75), ("rgbtestsrc", 75)], width=320,
                     height=240, vf="scale=160:120", crf=30)
    shutil.copy(d / "a.mp4", d / "c.mp4")
    make_shots_video(str(d / "d.mp4"), [("life", 75), ("smptehdbars", 75)], width=320, height=240)
    return d


def _cfg(inp: Path, out: Path, **over) -> PipelineConfig:
    sets = ["run.runner=local", "stages.split.method=fixed", "stages.split.stride_s=3",
            "stages.transcode.preset=ultrafast",
            "stages.order=[embed]"]  # dedup is under test: no filter in the way
    sets += [f"{k}={v}" for k, v in over.items()]
    return PipelineConfig.load(None, sets, input=str(inp), output=str(out))


def test_run_marks_duplicates_and_shards_only_kept_clips(dup_inputs, tmp_path):
    out = tmp_path / "out"
    cfg = _cfg(dup_inputs, out)
    summary = execute(pipeline.build(cfg), LocalRunner())
    rows = [r for r in manifest.read_manifest(str(out)).to_pylist() if r["kind"] == "clip"]
    by_video: dict[str, list[dict]] = {}
    for r in rows:
        by_video.setdefault(r["source_key"], []).append(r)
    assert {k: len(v) for k, v in by_video.items()} == {"a.mp4": 3, "b.mp4": 3, "c.mp4": 3, "d.mp4": 2}
    # a and c are byte copies: same clips; a sorts first, so a's clips are kept (same resolution, length)
    for ra, rb, rc in zip(*(sorted(by_video[k], key=lambda r: r["clip_index"]) for k in ("a.mp4", "b.mp4", "c.mp4"))):
        assert ra["status"] == "ok" and ra["dup_group"] == ra["clip_id"]
        for dup in (rb, rc):
            assert (dup["status"], dup["stage"], dup["reason"]) == ("rejected", "dedup", "duplicate")
            assert dup["duplicate_of"] == ra["clip_id"]
        assert rc["clip_sha256"] == ra["clip_sha256"] and rc["similarity"] == pytest.approx(1.0)
        assert 0.8 <= rb["similarity"] <= 1.0
    assert all(r["status"] == "ok" and r["dup_group"] is None for r in by_video["d.mp4"])
    # shards hold exactly the kept clips
    idx = json.loads(storage.read_bytes(storage.join(storage.normalize(str(out)), "shards", "index.json")))
    assert idx["clips"] == summary.clips_kept == summary.shard_samples == 5
    assert summary.rejects.get("clip: dedup/duplicate") == 6
    assert json.loads((out / "dedup.json").read_text())["stats"]["removed"] == 6

    # the clip index was built next to the output, with the perceptual embeddings
    ix = str(out / "index")
    a0 = sorted(by_video["a.mp4"], key=lambda r: r["clip_index"])[0]["clip_id"]
    b0 = sorted(by_video["b.mp4"], key=lambda r: r["clip_index"])[0]["clip_id"]
    proc = subprocess.run([sys.executable, "-m", "curator", "search", ix, "--like", b0, "--limit", "3",
                           "--where", "status = 'ok'", "--columns", "clip_id,score,dup_group,clip_uri"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[2].split()[0] == a0
    # a rerun resumes: no clip is indexed twice, decisions are the same
    execute(pipeline.build(cfg), LocalRunner())
    again = {r["clip_id"]: r["status"] for r in manifest.read_manifest(str(out)).to_pylist() if r["kind"] == "clip"}
    assert again == {r["clip_id"]: r["status"] for r in rows}
    meta = json.loads((out / "index" / "index.json").read_text())
    assert sum(s["rows"] for s in meta["segments"]) == 11

    # `curator dedup` alone, with another threshold: decisions are redone from the manifest
    proc = subprocess.run([sys.executable, "-m", "curator", "dedup", str(out), "--set", "dedup.semantic=false"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "removed 3" in proc.stdout
    after = {r["clip_id"]: r for r in manifest.read_manifest(str(out)).to_pylist() if r["kind"] == "clip"}
    assert all(r["status"] == "ok" for r in after.values() if r["source_key"] == "b.mp4")


def test_dedup_disabled_keeps_everything(dup_inputs, tmp_path):
    out = tmp_path / "out"
    cfg = _cfg(dup_inputs, out, **{"dedup.enabled": "false", "index.enabled": "false"})
    summary = execute(pipeline.build(cfg), LocalRunner())
    assert summary.clips_kept == 11
    assert not (out / "index").exists()


def test_ray_assignment_gives_the_local_result(ray_session, dup_inputs, tmp_path):
    out = tmp_path / "out"
    cfg = _cfg(dup_inputs, out, **{"dedup.enabled": "false", "index.enabled": "false", "run.shard": "false"})
    execute(pipeline.build(cfg), LocalRunner())
    from curator.runners.ray import RayRunner

    local = dedup.dedup_run(str(out), cfg.dedup)
    first = {r["clip_id"]: (r["status"], r["duplicate_of"]) for r in manifest.read_manifest(str(out)).to_pylist()}
    ray_cfg = cfg.model_copy(update={"run": cfg.run.model_copy(update={"runner": "ray", "num_cpus": 2})})
    res = dedup.run_phase(str(out), ray_cfg, RayRunner(ray_cfg.run))
    second = {r["clip_id"]: (r["status"], r["duplicate_of"]) for r in manifest.read_manifest(str(out)).to_pylist()}
    assert second == first and res.stats.removed == local.stats.removed == 6
