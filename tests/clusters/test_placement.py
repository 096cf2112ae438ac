"""Stage placement by resources, and the per-stage tracking that shows where stages ran."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from curator import metrics, tracking
from curator.config import NVENC_RESOURCE, PipelineConfig, Resources, TranscodeConfig
from curator.runners.ray import ray_remote_args

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------- config
@pytest.mark.unit
def test_gpu_encoder_asks_for_nvenc_and_a_gpu():
    cfg = PipelineConfig.load(None, ["stages.transcode.encoder=gpu"])
    res = cfg.stages.transcode.resources
    assert res.custom == {NVENC_RESOURCE: 1.0} and res.num_gpus == 1.0
    assert res.num_cpus == 1.0 and res.batch_size == 1  # the stage's other defaults stay


@pytest.mark.unit
def test_explicit_resources_win_over_the_gpu_defaults():
    cfg = PipelineConfig.load(None, ["stages.transcode.encoder=gpu", "stages.transcode.resources.num_gpus=0.25",
                                     "stages.transcode.resources.custom={nvenc: 0.5, l4: 1}"])
    res = cfg.stages.transcode.resources
    assert res.num_gpus == 0.25 and res.custom == {NVENC_RESOURCE: 0.5, "l4": 1.0}
    # nvenc: 0 switches the placement off (and ray_remote_args leaves it out)
    cfg = PipelineConfig.load(None, ["stages.transcode.encoder=gpu", "stages.transcode.resources.custom={nvenc: 0}"])
    assert "resources" not in ray_remote_args(cfg.stages.transcode.resources)


@pytest.mark.unit
def test_nvenc_is_the_new_name_and_nvdec_places_by_gpu_only():
    nvenc = PipelineConfig.load(None, ["stages.transcode.encoder=nvenc"]).stages.transcode.resources
    assert nvenc.custom == {NVENC_RESOURCE: 1.0} and nvenc.num_gpus == 1.0
    # NVDEC + libx264 runs on any GPU node, NVDEC-only ones (A100/H100/H200) included
    nvdec = PipelineConfig.load(None, ["stages.transcode.encoder=nvdec"]).stages.transcode.resources
    assert nvdec.custom == {} and nvdec.num_gpus == 1.0
    assert ray_remote_args(nvdec) == {"num_cpus": 1.0, "num_gpus": 1.0}


@pytest.mark.unit
@pytest.mark.parametrize("encoder", ["cpu", "auto"])
def test_other_encoders_leave_resources_alone(encoder):
    res = TranscodeConfig(encoder=encoder).resources
    assert res.custom == {} and res.num_gpus == 0.0


@pytest.mark.unit
def test_gpu_defaults_apply_on_assignment_and_survive_a_yaml_round_trip(tmp_path):
    cfg = PipelineConfig.load(None, ["stages.transcode.resources.num_cpus=2"])
    cfg.stages.transcode.encoder = "gpu"
    res = cfg.stages.transcode.resources
    assert isinstance(res, Resources)
    assert res.custom == {NVENC_RESOURCE: 1.0} and res.num_gpus == 1.0 and res.num_cpus == 2.0
    path = tmp_path / "c.yaml"
    path.write_text(cfg.to_yaml())
    again = PipelineConfig.load(str(path))
    assert again.stages.transcode.resources == res
    # placement is not part of what the output depends on
    assert again.content_hash() == PipelineConfig.load(None, ["stages.transcode.encoder=gpu"]).content_hash()


@pytest.mark.unit
def test_resources_map_onto_ray_scheduling_arguments():
    res = Resources(num_cpus=0.5, num_gpus=1, memory_gb=2, custom={NVENC_RESOURCE: 1, "unused": 0})
    assert ray_remote_args(res) == {"num_cpus": 0.5, "num_gpus": 1, "memory": 2 * 1024**3,
                                    "resources": {NVENC_RESOURCE: 1}}
    assert ray_remote_args(Resources()) == {"num_cpus": 1.0}


@pytest.mark.unit
def test_gpu_transcode_checks_the_device_where_it_runs():
    """On a cluster the driver (a CPU head) does not check for NVENC; the worker does."""
    from curator import pipeline as pl
    from curator.media import nvcodec
    from stages.transcode import TranscodeStage

    if nvcodec.unavailable_reason() is None:
        pytest.skip("this machine can use NVENC")
    local = PipelineConfig.load(None, ["stages.transcode.encoder=gpu", "run.runner=local"], input="in", output="out")
    with pytest.raises(pl.PipelineError, match="NVENC|GPU"):
        pl.build(local)
    cluster = PipelineConfig.load(None, ["stages.transcode.encoder=gpu", "run.address=auto"], input="in", output="out")
    built = pl.build(cluster)
    spec = next(s for s in built.specs if s.name == "transcode")
    stage = spec.build(built.ctx)
    assert stage.requirements() == []
    assert isinstance(stage, TranscodeStage)
    with pytest.raises(RuntimeError, match="cannot use NVENC"):
        stage.setup()


# ------------------------------------------------------------------ tracking
@pytest.mark.unit
def test_stage_tracker_counts_rows_per_stage_and_node():
    m = tracking.StageTracker()
    a = {"node_id": "aaaa1111", "hostname": "h1", "ip": "10.0.0.1"}
    b = {"node_id": "bbbb2222", "hostname": "h2", "ip": "10.0.0.2"}
    m.record("split", a, 1, 1, 0.5)
    m.record("transcode", b, 1, 4, 1.0)
    m.record("transcode", b, 2, 5, 1.5)
    snap = m.snapshot()
    assert snap["stages"]["transcode"] == {"batches": 2, "rows_in": 3, "rows_out": 9, "busy_s": 2.5,
                                           "nodes": {"bbbb2222": {"batches": 2, "rows_in": 3}}}
    assert tracking.stage_nodes(snap, "transcode") == {"bbbb2222"}
    assert tracking.stage_nodes(snap, "caption") == set()
    assert snap["nodes"]["aaaa1111"] == {"hostname": "h1", "ip": "10.0.0.1"}
    snap["stage_order"] = ["split", "transcode"]
    table = tracking.format_stages(snap).splitlines()
    assert table[1].startswith("split") and table[2].startswith("transcode")
    assert "bbbb2222@10.0.0.2: 3" in table[2]


@pytest.mark.unit
def test_status_writer_writes_running_then_the_final_state(tmp_path):
    counts = {"videos": 0}
    m = tracking.StageTracker()
    w = tracking.StatusWriter(str(tmp_path), "run1", lambda: dict(counts), m.snapshot, ["ingest"], every_s=0.05)
    w.start()
    assert json.loads((tmp_path / tracking.PROGRESS_NAME).read_text())["state"] == tracking.RUNNING
    counts["videos"] = 3
    m.record("ingest", {"node_id": "local"}, 3, 3, 0.1)
    time.sleep(0.3)
    doc = tracking.read(str(tmp_path))
    assert doc["state"] == tracking.RUNNING and doc["videos"] == 3  # the thread keeps it fresh
    w.finish(tracking.FAILED, error="boom")
    doc = tracking.read(str(tmp_path))
    assert doc["state"] == tracking.FAILED and doc["error"] == "boom"
    assert doc["stages"]["ingest"]["rows_in"] == 3 and doc["stage_order"] == ["ingest"]
    assert tracking.read(str(tmp_path / "nothing")) is None


@pytest.mark.unit
def test_final_state_is_written_even_when_the_tracker_fails(tmp_path):
    """A lost tracker actor must not lose the run's state: the last snapshot is kept."""
    m = tracking.StageTracker()
    m.record("split", {"node_id": "n1"}, 2, 2, 0.1)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("actor died")
        return m.snapshot()

    w = tracking.StatusWriter(str(tmp_path), "run2", lambda: {"videos": 2}, flaky, ["split"], every_s=60)
    w.start()
    w.finish(tracking.SUCCEEDED)
    doc = tracking.read(str(tmp_path))
    assert doc["state"] == tracking.SUCCEEDED and doc["videos"] == 2
    assert doc["stages"]["split"]["rows_in"] == 2 and len(calls) == 2


# ----------------------------------------------------- a real run: local runner
@pytest.fixture(scope="module")
def tiny_videos(tmp_path_factory):
    from curator.testing.synth import make_shots_video

    d = tmp_path_factory.mktemp("tiny")
    for i in range(3):
        make_shots_video(str(d / f"v{i}.mp4"), [("testsrc", 50), ("mandelbrot", 50)], width=96, height=64, fps=20)
    return d


FAST = ["stages.split.method=fixed", "stages.split.stride_s=2.5", "run.runner=local", "stages.order=[]",
        "dedup.enabled=false"]


@pytest.mark.integration
def test_local_run_writes_progress_and_placement_for_every_stage(tiny_videos, tmp_path):
    from curator import pipeline as pl
    from curator.driver import execute
    from curator.runners.local import LocalRunner

    cfg = PipelineConfig.load(None, FAST, input=str(tiny_videos), output=str(tmp_path / "out"))
    built = pl.build(cfg)
    summary = execute(built, LocalRunner())
    doc = tracking.read(str(tmp_path / "out"))
    assert doc["state"] == tracking.SUCCEEDED
    assert doc["stage_order"] == [s.name for s in built.specs]
    assert {"ingest", "split", "transcode", "staging"} <= set(doc["stages"])
    assert doc["videos"] == summary.videos == 3 and doc["clips"] == summary.clips == 6
    st = doc["stages"]
    assert st["ingest"]["rows_in"] == 3 and st["transcode"]["rows_in"] == 3
    assert st["transcode"]["rows_out"] == 3 + summary.clips  # each video row and its clips
    assert {n for s in st.values() for n in s["nodes"]} == set(doc["nodes"]) and len(doc["nodes"]) == 1
    assert doc["total"] == 3
    # the finished run's metrics.json says where each stage ran, too
    final = metrics.read(str(tmp_path / "out"))
    for name in doc["stage_order"]:
        assert final["stages"][name]["nodes"] == st[name]["nodes"]
    assert final["nodes"] == doc["nodes"]


@pytest.mark.integration
def test_sigterm_stops_a_run_cleanly(tiny_videos, tmp_path):
    """SIGTERM (what `curator jobs stop` sends) ends `curator run` with exit 143: videos
    finished so far keep their manifest parts, progress.json says stopped, and nothing
    marks the run complete."""
    import pyarrow.parquet as pq

    many = tmp_path / "many"
    many.mkdir()
    for i in range(12):
        os.link(tiny_videos / f"v{i % 3}.mp4", many / f"v{i:02d}.mp4")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "curator", "run", "--input", str(many), "--output", str(out),
                             *[x for s in FAST for x in ("--set", s)]],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    parts = out / "staging" / "videos"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (parts.is_dir() and list(parts.glob("*.parquet"))):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-2000:]
    assert "stopped" in err
    doc = tracking.read(str(out))
    assert doc["state"] == tracking.STOPPED
    done = sorted(parts.glob("*.parquet"))
    assert 1 <= len(done) < 12
    for p in done:  # every part that exists is whole
        assert pq.read_table(p).num_rows >= 1
    assert not (out / "manifest.parquet").exists() and not (out / "summary.json").exists()
    assert not (out / "metrics.json").exists()
    assert not list(out.rglob("*.tmp*")), "a half-written file was left behind"
