"""Filters through the real local runner: every rejected clip is audited in the manifest,
the global percentile rule runs over the whole run, and `curator refilter` changes the
kept set from the manifest without decoding anything."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curator.config import PipelineConfig
from curator.records import OK, REJECTED

pytestmark = pytest.mark.integration

FILTERS = ["motion", "quality", "text_overlay"]
NAMES = ["static_street", "static_car_noisy", "shaky_fence", "camera_pan_left_street", "text_sub_moving",
         "q_bikes_crf3", "moving_bikes_a", "q_carphone_blur0", "camera_zoom_in_people"]
OVERRIDES = [
    "stages.order=[motion,quality,text_overlay]",
    "stages.split.method=fixed", "stages.split.stride_s=10",
    "stages.quality.min_score=0.7",
    "stages.quality.score_rejected=true", "stages.text_overlay.score_rejected=true",
    "stages.quality.drop_bottom_percent=50",
]


def manifest_rows(out: Path) -> list[dict]:
    return [r for r in pq.read_table(out / "manifest.parquet").to_pylist() if r["kind"] == "clip"]


def by_name(rows):
    return {r["source_key"].rsplit(".", 1)[0]: r for r in rows}


def shard_keys(out: Path) -> set[str]:
    keys = set()
    for tar in (out / "shards").rglob("*.tar"):
        with tarfile.open(tar) as tf:
            keys |= {m.name.split(".", 1)[0] for m in tf.getmembers()}
    return keys


@pytest.fixture(scope="module")
def run_out(filter_set, tmp_path_factory):
    from curator import pipeline
    from curator.driver import execute
    from curator.runners.local import LocalRunner

    src = {c.name: c.path for c in filter_set}
    root = tmp_path_factory.mktemp("filters_run")
    inp = root / "in"
    inp.mkdir()
    for n in NAMES:
        shutil.copy(src[n], inp / f"{n}.mp4")
    out = root / "out"
    cfg = PipelineConfig.load(None, OVERRIDES + ["run.runner=local"], input=str(inp), output=str(out))
    summary = execute(pipeline.build(cfg), LocalRunner())
    assert summary.clips == len(NAMES)
    return out


def test_every_rejected_clip_carries_stage_score_threshold_and_reason(run_out):
    rows = by_name(manifest_rows(run_out))
    assert len(rows) == len(NAMES)
    for name, r in rows.items():
        if r["status"] == OK:
            assert all(c["passed"] for c in r["checks"]), name
            continue
        assert r["status"] == REJECTED and r["stage"] in FILTERS and r["reason"] and r["detail"], name
        failed = [c for c in r["checks"] if c["stage"] == r["stage"] and c["passed"] is False]
        assert failed, name
        for c in failed:
            assert c["value"] is not None and c["threshold"] is not None and c["op"] in (">=", "<=")
            assert r[c["metric"]] == pytest.approx(c["value"])  # the score is in its own column too
            assert f"{c['value']:.4g}" in r["detail"] or c["metric"] in r["detail"]
        assert r["clip_uri"], name  # staged anyway, so refilter can re-admit it
    assert rows["static_street"]["reason"] == "static"
    assert rows["shaky_fence"]["reason"] == "shaky"
    assert rows["text_sub_moving"]["reason"] == "text_overlay"
    assert rows["q_bikes_crf3"]["stage"] == "quality"
    assert "pan_left" in rows["camera_pan_left_street"]["camera_motion"]
    assert "zoom_in" in rows["camera_zoom_in_people"]["camera_motion"]
    # score_rejected: a clip the motion filter rejected still has quality and text scores
    assert rows["shaky_fence"]["quality_score"] is not None and rows["shaky_fence"]["text_area"] is not None
    kept = {r["clip_id"] for r in rows.values() if r["status"] == OK}
    assert kept and shard_keys(run_out) == kept


def test_percentile_rule_runs_over_the_whole_run(run_out):
    rows = manifest_rows(run_out)
    scored = [r for r in rows if r["quality_score"] is not None]
    bottom = [r for r in scored if r["reason"] == "bottom_percent"]
    candidates = bottom + [r for r in rows if r["status"] == OK]  # what the thresholds alone keep
    assert 1 <= len(bottom) <= 0.5 * len(candidates)
    cuts = {c["threshold"] for r in bottom for c in r["checks"]
            if c["stage"] == "quality" and c["metric"] == "quality_score" and c["passed"] is False}
    assert len(cuts) == 1  # one cut-off for the whole run, not one per batch or video
    cut = cuts.pop()
    assert all(r["quality_score"] < cut for r in bottom)
    assert not any(r["reason"] == "bottom_percent" for r in scored if r["quality_score"] >= cut)


@pytest.fixture
def no_decoding(monkeypatch):
    """Any decode during the test raises."""
    import av

    import curator.media.decode as decode

    calls = []

    def boom(*a, **k):
        calls.append(a)
        raise AssertionError("refilter must not decode")

    for name in ("iter_frames", "sample_frames", "_open", "video_stream"):
        monkeypatch.setattr(decode, name, boom)
    monkeypatch.setattr(av, "open", boom)
    return calls


def test_refilter_changes_kept_set_without_decoding(run_out, tmp_path, no_decoding, capsys):
    from curator.cli import main

    out = tmp_path / "out"
    shutil.copytree(run_out, out)
    before = by_name(manifest_rows(out))
    rc = main(["refilter", str(out), "--set", "stages.motion.max_shake=100", "--set", "stages.quality.min_score=0.2",
               "--set", "stages.quality.drop_bottom_percent=0", "--set", "stages.text_overlay.max_overlay_area=0.5"])
    assert rc == 0 and not no_decoding
    after = by_name(manifest_rows(out))
    assert before["shaky_fence"]["status"] == REJECTED and after["shaky_fence"]["status"] == OK
    assert before["text_sub_moving"]["status"] == REJECTED and after["text_sub_moving"]["status"] == OK
    assert after["q_bikes_crf3"]["status"] == OK
    assert after["static_street"]["reason"] == "static"  # untouched thresholds still apply
    shaky_checks = {c["metric"]: c for c in after["shaky_fence"]["checks"]}
    assert shaky_checks["shake_score"]["threshold"] == 100 and shaky_checks["shake_score"]["passed"]
    kept = {r["clip_id"] for r in after.values() if r["status"] == OK}
    assert shard_keys(out) == kept  # re-sharded
    summary = json.loads((out / "summary.json").read_text())
    assert summary["clips_kept"] == len(kept)
    import yaml

    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["stages"]["motion"]["max_shake"] == 100 and cfg["_run"]["refiltered"]
    assert "re-admitted" in capsys.readouterr().out

    # stricter again: a tighter motion threshold rejects more, still without decoding
    rc = main(["refilter", str(out), "--no-shard", "--set", "stages.motion.min_motion=0.2"])
    assert rc == 0 and not no_decoding
    strict = by_name(manifest_rows(out))
    assert strict["camera_zoom_in_people"]["reason"] == "static"  # a slow zoom is below 0.2
    assert sum(r["status"] == OK for r in strict.values()) < len(kept)


def test_refilter_rederives_tags_and_percentiles(run_out, tmp_path, no_decoding):
    from curator.phases import refilter

    out = tmp_path / "out"
    shutil.copytree(run_out, out)
    summary = refilter.refilter(str(out), None, ["stages.motion.pan_threshold=5", "stages.motion.zoom_threshold=5",
                                                "stages.quality.drop_bottom_percent=50",
                                                "stages.quality.min_score=0"], shard=False)
    rows = manifest_rows(out)
    assert all(r["camera_motion"] == ["static"] for r in rows)
    assert "quality.quality_score" in summary.cutoffs
    scored = [r for r in rows if r["quality_score"] is not None]
    dropped = [r for r in scored if r["reason"] == "bottom_percent"]
    assert 0 < len(dropped) <= 0.5 * len(scored)


def test_refilter_bad_key_is_a_config_error(run_out, capsys):
    from curator.cli import main

    assert main(["refilter", str(run_out), "--no-shard", "--set", "stages.quality.nope=1"]) == 2
    assert "stages.quality.nope" in capsys.readouterr().err


def test_cli_refilter_subprocess(run_out, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "out"
    shutil.copytree(run_out, out)
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-m", "curator", "refilter", str(out), "--set",
                           "stages.quality.min_score=0.99"], cwd=root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "quality/low_quality" in proc.stdout
    assert not any(r["status"] == OK for r in manifest_rows(out) if r["quality_score"] is not None
                   and r["quality_score"] < 0.99)


def test_default_pipeline_runs_the_filters_offline(filter_set, tmp_path):
    """No stage.order override: the cheap filters run, the model stages say what they miss."""
    from curator import pipeline
    from curator.driver import execute
    from curator.runners.local import LocalRunner

    src = {c.name: c.path for c in filter_set}
    inp = tmp_path / "in"
    inp.mkdir()
    for n in ("text_sub_moving", "moving_bikes_b"):
        shutil.copy(src[n], inp / f"{n}.mp4")
    cfg = PipelineConfig.load(None, ["run.runner=local", "stages.split.method=fixed", f"models.dir={tmp_path / 'm'}"],
                              input=str(inp), output=str(tmp_path / "out"))
    p = pipeline.build(cfg)
    assert [s.name for s in p.specs] == ["ingest", "split", "transcode", "motion", "quality", "text_overlay", "embed",
                                         "staging"]
    assert {name for name, _ in p.skipped} == {"video_type", "aesthetic", "dover", "caption", "place_tag"}
    execute(p, LocalRunner())
    rows = by_name(manifest_rows(tmp_path / "out"))
    assert rows["text_sub_moving"]["reason"] == "text_overlay"
    assert rows["text_sub_moving"]["embedding"] is None  # embed skipped the rejected clip
    assert rows["moving_bikes_b"]["status"] == OK and rows["moving_bikes_b"]["embedding"] is not None
