"""The first hour, through the real binary: forgiving reruns, trial runs, input lists, plan."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from curator.testing.synth import make_shots_video

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
#: the cheap spine plus one filter: split by PySceneDetect, motion scores to re-decide
SPINE = ["--runner", "local", "--set", "stages.split.method=scenedetect", "--set", "stages.order=[motion]"]


def curator(*args):
    return subprocess.run([sys.executable, "-m", "curator", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("in")
    make_shots_video(str(d / "a.mp4"), [("testsrc2", 60), ("mandelbrot", 70)], width=160, height=120)
    make_shots_video(str(d / "b.mp4"), [("zoneplate", 75), ("life", 60)], width=160, height=120)
    make_shots_video(str(d / "sub" / "c.mp4"), [("cellauto", 80)], width=160, height=120)
    return d


def _rows(out, columns=None):
    return pq.read_table(out / "manifest.parquet", columns=columns).to_pylist()


def _stamps(out):
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in (out / "staging").rglob("*") if p.is_file()}


def test_reruns_with_changed_thresholds_and_shard_keys_redo_only_what_changed(videos, tmp_path):
    out = tmp_path / "out"
    first = curator("run", "-i", str(videos), "-o", str(out), *SPINE)
    assert first.returncode == 0, first.stderr[-3000:]
    clips = [r for r in _rows(out) if r["kind"] == "clip"]
    assert len(clips) == 5
    staged = _stamps(out)
    assert sum(k.endswith(".mp4") for k in staged) == len(clips)
    run_rec = yaml.safe_load((out / "config.yaml").read_text())["_run"]
    assert run_rec["resume_hash"] and run_rec["config_hash"]

    # a stricter motion threshold, between the recorded scores: re-decided from them, nothing decoded again
    scores = sorted(r["motion_score"] for r in clips)
    cut = round((scores[1] + scores[2]) / 2, 6)
    proc = curator("run", "-i", str(videos), "-o", str(out), *SPINE, "--set", f"stages.motion.min_motion={cut}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    notes = [line for line in proc.stderr.splitlines() if "config changed since the last run" in line]
    assert len(notes) == 1, proc.stderr[-3000:]
    assert f"stages.motion.min_motion (0.005 -> {cut})" in notes[0]
    assert "re-decided from their recorded scores" in notes[0] and "shards rewritten" in notes[0]
    assert _stamps(out) == staged  # no clip encoded, no manifest part rewritten
    summary = json.loads((out / "summary.json").read_text())
    assert summary["videos_resumed"] == 3
    after = {r["clip_id"]: r for r in _rows(out) if r["kind"] == "clip"}
    assert set(after) == {r["clip_id"] for r in clips}
    static = {c for c, r in after.items() if r["reason"] == "static"}
    assert static == {r["clip_id"] for r in clips if r["motion_score"] < cut} and len(static) == 2
    rec = yaml.safe_load((out / "config.yaml").read_text())
    assert rec["stages"]["motion"]["min_motion"] == cut and rec["_run"]["changed"] == {
        "decisions": ["stages.motion.min_motion"]}
    assert rec["_run"]["resume_hash"] == run_rec["resume_hash"]
    shard_rec = json.loads((out / "shards" / "index.json").read_text())

    # no thresholds, and one sample per shard: the rejected clips are re-admitted (rejected
    # clips are staged too) and every clip gets a shard of its own, rewritten from the manifest
    open_all = ["--set", "stages.motion.min_motion=0", "--set", "stages.motion.max_shake=null"]
    proc = curator("run", "-i", str(videos), "-o", str(out), *SPINE, *open_all, "--set", "shard.samples_per_shard=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "shard.samples_per_shard (256 -> 1)" in proc.stderr and "shards rewritten" in proc.stderr
    assert _stamps(out) == staged
    assert all(r["status"] == "ok" for r in _rows(out) if r["kind"] == "clip")
    assert len(list((out / "shards").rglob("*.tar"))) == len(clips)
    index = json.loads((out / "shards" / "pretrain" / "wfm" / "index.json").read_text())
    assert sum(s["samples"] for s in index["shards"]) == len(clips)
    assert json.loads((out / "shards" / "index.json").read_text())["shard_config_hash"] != shard_rec["shard_config_hash"]

    # a key that changes the clips' bytes: refused, naming the key and the way out
    before = (out / "config.yaml").read_text()
    proc = curator("run", "-i", str(videos), "-o", str(out), *SPINE, "--set", "shard.samples_per_shard=1",
                   "--set", "stages.motion.min_motion=0", "--set", "stages.transcode.crf=30",
                   "--set", "stages.motion.max_shake=5")  # max_shake was null
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "stages.transcode.crf (18 -> 30)" in proc.stderr and "--force" in proc.stderr
    assert "stages.motion.max_shake" in proc.stderr  # named as one a rerun could apply on its own
    assert "Traceback" not in proc.stderr
    assert (out / "config.yaml").read_text() == before and _stamps(out) == staged


def test_trial_runs_limit_and_sample_then_the_full_run_resumes(videos, tmp_path):
    out = tmp_path / "trial"
    proc = curator("run", "-i", str(videos), "-o", str(out), *SPINE, "--limit", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r["source_key"] for r in _rows(out, ["kind", "source_key"]) if r["kind"] == "video"] == ["a.mp4"]

    picks = []
    for name in ("s1", "s2"):
        proc = curator("run", "-i", str(videos), "-o", str(tmp_path / name), *SPINE, "--sample", "0.5",
                       "--seed", "4")
        assert proc.returncode in (0, 3), proc.stderr[-3000:]
        path = tmp_path / name / "manifest.parquet"
        picks.append(sorted(r["source_key"] for r in pq.read_table(path).to_pylist() if r["kind"] == "video")
                     if path.exists() else [])
    assert picks[0] == picks[1]  # same fraction and seed: the same videos

    # the full run into the trial's output: limit and sample are not part of the resume key
    proc = curator("run", "-i", str(videos), "-o", str(out), *SPINE)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "config changed" not in proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["videos"] == 3 and summary["videos_resumed"] == 1

    proc = curator("run", "-i", str(videos), "-o", str(tmp_path / "bad"), *SPINE, "--sample", "2")
    assert proc.returncode == 2 and "run.sample" in proc.stderr and "0 < f <= 1" in proc.stderr


def test_input_list_columns_reach_video_and_clip_rows(videos, tmp_path):
    lst = tmp_path / "inputs.csv"
    lst.write_text("uri,source_caption,license\n"
                   f"{videos / 'b.mp4'},\"waves, then a zone plate\",cc-by-4.0\n"
                   f"{videos / 'sub' / 'c.mp4'},a carpet,cc0\n")
    out = tmp_path / "out"
    proc = curator("run", "--input-list", str(lst), "-i", str(videos), "-o", str(out), *SPINE)
    assert proc.returncode == 0, proc.stderr[-3000:]
    schema = pq.read_schema(out / "manifest.parquet")
    assert schema.field("source_caption").type == pa.string() and schema.field("license").type == pa.string()
    rows = _rows(out)
    assert {r["source_key"] for r in rows if r["kind"] == "video"} == {"b.mp4", "sub/c.mp4"}
    clips = [r for r in rows if r["kind"] == "clip"]
    assert clips
    for r in rows:
        want = ("waves, then a zone plate", "cc-by-4.0") if r["source_key"] == "b.mp4" else ("a carpet", "cc0")
        assert (r["source_caption"], r["license"]) == want, r["clip_id"]
    # a Parquet list with the same rows gives the same video ids (keys below --input)
    pq.write_table(pa.table({"uri": [str(videos / "b.mp4")], "license": ["cc0"]}), tmp_path / "one.parquet")
    proc = curator("run", "--input-list", str(tmp_path / "one.parquet"), "-i", str(videos), "-o",
                   str(tmp_path / "pq"), *SPINE)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ids = {r["video_id"] for r in _rows(tmp_path / "pq") if r["kind"] == "video"}
    assert ids == {r["video_id"] for r in rows if r["kind"] == "video" and r["source_key"] == "b.mp4"}

    proc = curator("run", "--input-list", str(tmp_path / "missing.csv"), "-o", str(tmp_path / "x"), *SPINE)
    assert proc.returncode == 1 and "input list not found" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "nouri.csv").write_text("path\n/a.mp4\n")
    proc = curator("run", "--input-list", str(tmp_path / "nouri.csv"), "-o", str(tmp_path / "x"), *SPINE)
    assert proc.returncode == 1 and "no 'uri' column (columns: path)" in proc.stderr
    (tmp_path / "clash.csv").write_text(f"uri,status\n{videos / 'b.mp4'},x\n")
    proc = curator("run", "--input-list", str(tmp_path / "clash.csv"), "-o", str(tmp_path / "x"), *SPINE)
    assert proc.returncode == 1 and "status" in proc.stderr and "rename" in proc.stderr


@pytest.fixture(scope="module")
def varied(tmp_path_factory):
    """Six generated videos of 3 to 13 s, several shots each."""
    d = tmp_path_factory.mktemp("varied")
    names = ["testsrc2", "mandelbrot", "zoneplate", "life", "cellauto", "smptehdbars"]
    for i, seconds in enumerate([3, 5, 7, 9, 11, 13]):
        frames, shots, j = seconds * 25, [], 0
        while frames > 0:
            n = frames if frames < 125 else 75
            shots.append((names[(i + j) % len(names)], n))
            frames -= n
            j += 1
        make_shots_video(str(d / f"v{i}.mp4"), shots, width=256, height=144)
    return d


def test_plan_predicts_the_full_run_within_2x(varied, tmp_path):
    config = [*SPINE, "--set", "stages.order=[motion,quality]", "--set", "stages.quality.enabled=false"]
    proc = curator("plan", "-i", str(tmp_path / "nowhere"), *config)
    assert proc.returncode == 1 and "input not found" in proc.stderr and "Traceback" not in proc.stderr
    plan_json = tmp_path / "plan.json"
    proc = curator("plan", "-i", str(varied), *config, "--sample-videos", "2", "--json", str(plan_json))
    assert proc.returncode == 0, proc.stderr[-3000:]
    plan = json.loads(plan_json.read_text())
    assert plan["inputs"]["videos"] == 6 and plan["inputs"]["duration_exact"]
    assert abs(plan["inputs"]["duration_s"] - 48.0) < 0.5
    assert plan["inputs"]["resolutions"] == {"256x144": 6}
    stages = {s["name"]: s for s in plan["stages"]}
    assert stages["split"]["runs"] and stages["split"]["where"] == "this process (local runner)"
    assert not stages["quality"]["runs"] and "enabled=false" in stages["quality"]["why"]
    assert plan["trial"]["videos"] == 2 and plan["trial"]["busy_s"]["split"] > 0
    assert "estimate:" in proc.stdout and "trial:" in proc.stdout and "CPU-h" in proc.stdout

    t0 = time.monotonic()
    proc = curator("run", "-i", str(varied), "-o", str(tmp_path / "out"), *config)
    wall = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    ratio = plan["estimate"]["wall_s"] / wall
    print(f"plan estimate {plan['estimate']['wall_s']:.1f} s, full run {wall:.1f} s, ratio {ratio:.2f}")
    assert 0.5 <= ratio <= 2.0, (plan["estimate"], wall)
