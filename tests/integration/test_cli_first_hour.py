"""The first minutes with the real binary: --version, pipes, Ctrl-C, Ray addresses."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from curator.config import RunConfig
from curator.pipeline import PipelineError
from curator.runners.ray import cluster_address

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def curator(*args, **kw):
    return subprocess.run([sys.executable, "-m", "curator", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, **kw)


def test_version():
    from curator import __version__

    proc = curator("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"curator {__version__}"


def test_a_closed_pipe_is_not_a_traceback():
    """`curator config --defaults | head -1`: the reader leaves early."""
    proc = subprocess.Popen([sys.executable, "-m", "curator", "config", "--defaults"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    first = proc.stdout.read(10)
    proc.stdout.close()  # like head: one read, then gone
    err = proc.stderr.read().decode()
    assert first and proc.wait(timeout=60) in (0, 141)
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_ctrl_c_stops_cleanly(tmp_path):
    from curator.testing.synth import make_shots_video

    src = tmp_path / "in"
    src.mkdir()
    make_shots_video(str(src / "a.mp4"), [("testsrc2", 750), ("mandelbrot", 750)], width=640, height=360, fps=25)
    for i in range(3):
        shutil.copy(src / "a.mp4", src / f"copy{i}.mp4")
    proc = subprocess.Popen([sys.executable, "-m", "curator", "run", "--input", str(src), "--output",
                             str(tmp_path / "out"), "--runner", "local", "--set", "stages.split.method=scenedetect",
                             "--set", "stages.order=[]"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "out" / "staging").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (proc.returncode, err[-2000:])
    assert "interrupted" in err and "rerun" in err
    assert "Traceback" not in err, err[-3000:]


def test_http_ray_address_is_for_submit(tmp_path, monkeypatch):
    """Ray's convention: RAY_ADDRESS=http://HEAD:8265 addresses the Jobs API. `curator run`
    ignores it (embedded Ray, with a note); `--address http://…` is refused with the fix."""
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:8265")
    assert cluster_address(RunConfig()) is None
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    assert cluster_address(RunConfig()) == "10.0.0.5:6379"
    with pytest.raises(PipelineError, match="curator submit"):
        cluster_address(RunConfig(address="http://127.0.0.1:8265"))

    proc = curator("run", "--input", str(ROOT / "samples"), "--output", str(tmp_path / "out"),
                   "--address", "http://127.0.0.1:8265",
                   env={**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"})
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "curator submit --address http://127.0.0.1:8265" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_exit_status_says_whether_the_run_did_its_work(tmp_path, media_dir):
    """0 within run.max_error_rate; 3 without inputs; 4 when too many videos failed;
    summary.json counts the errors."""
    import json

    empty = tmp_path / "empty"
    empty.mkdir()
    proc = curator("run", "-i", str(empty), "-o", str(tmp_path / "o1"), "--runner", "local")
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "no input videos under" in proc.stderr and "Traceback" not in proc.stderr

    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("not_a_video.mp4", "empty.mp4", "bikes_truncated.mp4"):
        shutil.copy(media_dir / name, bad / name)
    shutil.copy(media_dir / "bikes.mp4", bad / "bikes.mp4")
    args = ["run", "-i", str(bad), "--runner", "local", "--set", "stages.split.method=scenedetect",
            "--set", "stages.order=[]"]
    proc = curator(*args, "-o", str(tmp_path / "o2"))
    assert proc.returncode == 4, proc.stderr[-2000:]
    assert "3 of 4 videos failed (75%)" in proc.stderr and "run.max_error_rate=0.5" in proc.stderr
    summary = json.loads((tmp_path / "o2" / "summary.json").read_text())
    assert summary["videos_failed"] == 3 and summary["error_rate"] == 0.75
    assert "errors:      3 videos" in proc.stdout

    proc = curator(*args, "-o", str(tmp_path / "o3"), "--set", "run.max_error_rate=0.8")
    assert proc.returncode == 0, proc.stderr[-2000:]


RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}  # test clusters: no token, no phoning home
#: what Ray itself prints on a healthy run (its notices, the Ray Data plan, forwarded worker lines)
RAY_NOISE = ("core_worker", "streaming_executor", "Execution plan", "Token authentication", "Progress bars",
             "pid=", "(autoscaler", "ray-data", "MapWorker")


def test_a_ray_run_keeps_ray_output_in_the_run_log(tmp_path):
    """Ray's output goes to <output>/logs/<run_id>.log, named once on the console; the
    console has curator's progress and summary only."""
    from curator.testing.synth import make_shots_video

    src = tmp_path / "in"
    make_shots_video(str(src / "a.mp4"), [("testsrc2", 60), ("mandelbrot", 60)], width=160, height=120, fps=25)
    out = tmp_path / "out"
    proc = curator("run", "-i", str(src), "-o", str(out), "--set", "stages.order=[]", "--set", "dedup.enabled=false",
                   "--set", "index.enabled=false", "--set", "run.shard=false", "--set", "stages.split.min_clip_s=1",
                   env={**os.environ, **RAY_ENV})
    assert proc.returncode == 0, proc.stderr[-3000:]
    console = proc.stdout + proc.stderr
    logs = list((out / "logs").glob("*.log"))
    assert len(logs) == 1
    assert f"Ray's output goes to the run log: {logs[0]}" in proc.stderr
    assert "clips:       2 cut, 2 kept" in proc.stdout  # curator's summary
    assert "1/1 videos (100%)" in proc.stderr  # curator's progress
    assert [n for n in RAY_NOISE if n in console] == [], console[-3000:]
    text = logs[0].read_text()
    assert "Execution plan" in text and "MapWorker" in text  # Ray Data's plan and the split pool's lines
    assert "INFO curator: stages: ingest -> split" in text  # curator's own log lines too


def test_stages_a_cluster_cannot_schedule_fail_fast_with_the_keys_to_lower(tmp_path):
    """A stage asking for a GPU on a CPU-only embedded Ray: a table and exit 1 within
    seconds, instead of a job that waits for ever."""
    from curator.testing.synth import make_shots_video

    src = tmp_path / "in"
    make_shots_video(str(src / "a.mp4"), [("testsrc2", 30)], width=160, height=120, fps=25)
    t0 = time.monotonic()
    proc = curator("run", "-i", str(src), "-o", str(tmp_path / "out"), "--set", "stages.order=[]",
                   "--set", "stages.split.resources.num_gpus=1", "--set", "run.num_cpus=2",
                   env={**os.environ, **RAY_ENV})
    elapsed = time.monotonic() - t0
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert elapsed < 60, elapsed
    err = proc.stderr
    assert "cannot grow, so the run would wait forever" in err
    assert "embedded Ray on this machine: 1 node, 2 CPUs, 0 GPUs" in err
    assert "split" in err and "GPU" in err and "stages.split.resources.num_gpus=0" in err
    assert "Traceback" not in err and "core_worker" not in err
    status = __import__("json").loads((tmp_path / "out" / "progress.json").read_text())
    assert status["state"] == "failed" and "num_gpus" in status["error"]
