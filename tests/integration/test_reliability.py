"""Resume after a crash, --only-failed, per-item timeouts, lost videos, worker crashes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curator import manifest
from curator.config import PipelineConfig
from curator.driver import execute
from curator.listing import Listing
from curator.pipeline import build
from curator.records import RUN_VARYING
from curator.runners.local import LocalRunner
from curator.testing.synth import make_shots_video

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
#: resume and fault handling are under test: the spine only (no filters, no dedup; the
#: test videos share shots on purpose)
MINIMAL = ["stages.split.method=scenedetect", "stages.order=[]", "dedup.enabled=false", "index.enabled=false"]


@pytest.fixture(scope="module")
def six_videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("six")
    sources = ["testsrc2", "mandelbrot", "gradients", "sierpinski", "life", "zoneplate", "cellauto"]
    for i in range(6):
        make_shots_video(str(d / f"v{i}.mp4"), [(sources[i], 60), (sources[i + 1], 55)], width=160, height=96)
    return d


def _cli(inp, out, *extra):
    return [sys.executable, "-m", "curator", "run", "-i", str(inp), "-o", str(out), "--runner", "local",
            *[x for s in MINIMAL for x in ("--set", s)], *extra]


def _same_output(a: Path, b: Path) -> None:
    ta = pq.read_table(a / "manifest.parquet").drop([*RUN_VARYING, "clip_uri"])
    tb = pq.read_table(b / "manifest.parquet").drop([*RUN_VARYING, "clip_uri"])
    assert manifest.table_bytes(ta) == manifest.table_bytes(tb)
    shards = lambda d: {str(p.relative_to(d)): p.read_bytes() for p in (d / "shards").rglob("*.tar")}  # noqa: E731
    assert shards(a) == shards(b)


def test_sigkill_then_rerun_gives_the_uninterrupted_output(six_videos, tmp_path):
    clean = tmp_path / "clean"
    subprocess.run(_cli(six_videos, clean), cwd=ROOT, check=True, capture_output=True)

    out = tmp_path / "killed"
    parts = out / "staging" / "videos"
    proc = subprocess.Popen(_cli(six_videos, out), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(parts.glob("*.parquet"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = {p: p.stat().st_mtime_ns for p in parts.glob("*.parquet")}
    assert 2 <= len(done) < 6, "the kill must land mid-way"
    assert not (out / "manifest.parquet").exists()

    rerun = subprocess.run(_cli(six_videos, out), cwd=ROOT, check=True, capture_output=True, text=True)
    assert f"{len(done)} finished earlier" in rerun.stdout
    assert {p: p.stat().st_mtime_ns for p in done} == done  # finished videos were not processed again
    _same_output(clean, out)
    assert not list((out / "_work").rglob("*.jsonl"))


def test_only_failed_redoes_just_the_failures(six_videos, tmp_path):
    inp = tmp_path / "in"
    shutil.copytree(six_videos, inp)
    (inp / "v5.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(3000))  # broken for now
    out = tmp_path / "out"
    cfg = lambda *o: PipelineConfig.load(  # noqa: E731
        None, ["run.runner=local", *MINIMAL, *o], input=str(inp), output=str(out))
    first = execute(build(cfg()), LocalRunner())
    assert first.rejects == {"video: ingest/unreadable": 1}
    parts = {p.name: p.stat().st_mtime_ns for p in (out / "staging" / "videos").iterdir()}

    shutil.copy(six_videos / "v5.mp4", inp / "v5.mp4")  # the file is fixed upstream
    plain = execute(build(cfg()), LocalRunner())
    assert plain.videos_resumed == 6 and plain.rejects  # a plain rerun keeps the old error

    again = execute(build(cfg("run.only_failed=true")), LocalRunner())
    assert again.videos_resumed == 5 and not again.rejects
    now = {p.name: p.stat().st_mtime_ns for p in (out / "staging" / "videos").iterdir()}
    changed = {n for n in parts if now[n] != parts[n]}
    assert len(changed) == 1 and changed.pop().startswith("v5-")


def test_item_timeout_is_a_reason_not_a_hang(six_videos, tmp_path):
    cfg = PipelineConfig.load(None, ["run.runner=local", *MINIMAL,
                                     "run.item_timeout_s=0.001"], input=str(six_videos / "v0.mp4"),
                              output=str(tmp_path / "o"))
    summary = execute(build(cfg), LocalRunner())
    assert summary.rejects == {"video: split/timeout": 1}
    row = pq.read_table(tmp_path / "o" / "manifest.parquet").to_pylist()[0]
    assert "run.item_timeout_s" in row["detail"]


def test_watchdog_ends_a_hung_process():
    code = ("import time\nfrom curator.deadline import Watchdog\n"
            "with Watchdog(0.5, 'test'):\n    time.sleep(30)\n")
    t = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 70 and time.monotonic() - t < 20
    assert "ran longer than" in proc.stderr


class DroppingRunner(LocalRunner):
    """A runner whose 'worker' loses one video (as a crashed, killed or hung worker would)."""

    def __init__(self, drop_key: str):
        super().__init__()
        self.drop_key = drop_key

    def stream(self, pipeline, listing: Listing):
        for rows in super().stream(pipeline, listing):
            if rows and rows[0]["source_key"] == self.drop_key:
                continue
            yield rows


def test_lost_videos_are_recorded_and_retried(six_videos, tmp_path):
    cfg = PipelineConfig.load(None, ["run.runner=local", *MINIMAL],
                              input=str(six_videos), output=str(tmp_path / "o"))
    summary = execute(build(cfg), DroppingRunner("v3.mp4"))
    assert summary.videos_lost == 1 and summary.rejects == {"video: runner/lost": 1}
    lost = [r for r in pq.read_table(tmp_path / "o" / "manifest.parquet").to_pylist() if r["reason"] == "lost"]
    assert [r["source_key"] for r in lost] == ["v3.mp4"]
    again = execute(build(PipelineConfig.load(None, ["run.runner=local", *MINIMAL,
                                                       "run.only_failed=true"],
                                                input=str(six_videos), output=str(tmp_path / "o"))), LocalRunner())
    assert again.videos_lost == 0 and not again.rejects and again.videos_resumed == 5


@pytest.mark.slow
def test_ray_retries_a_killed_worker(ray_session, six_videos, tmp_path):
    """SIGKILL the shot-detection actor (TransNetV2: the detector that runs as an actor
    pool) mid-run: Ray restarts it, retries the task, and the output equals a clean run."""
    import threading

    import psutil

    from curator.runners.ray import RayRunner

    def cfg(out):
        return PipelineConfig.load(None, [*MINIMAL, "stages.split.method=transnetv2"], input=str(six_videos),
                                   output=str(out))

    clean = tmp_path / "clean"
    execute(build(cfg(clean)), LocalRunner())
    killed: list[int] = []

    def killer():
        end = time.time() + 120
        while time.time() < end and not killed:
            for p in psutil.process_iter(["cmdline"]):
                cmd = " ".join(p.info["cmdline"] or [])
                if "StageActor" in cmd or "MapWorker" in cmd:
                    try:
                        p.send_signal(signal.SIGKILL)
                        killed.append(p.pid)
                    except psutil.Error:
                        pass
                    break
            time.sleep(0.2)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    out = tmp_path / "ray"
    c = cfg(out)
    summary = execute(build(c), RayRunner(c.run))
    t.join(timeout=1)
    assert killed, "no actor process was found to kill"
    assert summary.videos_lost == 0
    _same_output(clean, out)
