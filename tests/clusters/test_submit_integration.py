"""End to end on a real Ray cluster: `ray start` head + a worker that advertises `nvenc`,
`curator submit` from one S3 bucket (moto's server) to another, `curator jobs ...`.

The commands are the README's "Run on a cluster" block, run as written except for:
its ports and bucket names (replaced by this test's), the flags that isolate the nodes
on a shared machine (LocalRayCluster adds private ports, a temp dir and --block), and
the small-machine settings in TEST_SETS. Token auth and usage stats are switched off
explicitly (RAY_AUTH_MODE=disabled, RAY_USAGE_STATS_ENABLED=0), as the README block does:
recent Ray turns token auth on by default.
"""

from __future__ import annotations

import io
import json
import re
import shlex
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from curator import metrics, storage, tracking
from curator.storage.config import StorageConfig
from curator.testing.raycluster import CLUSTER_ENV, LocalRayCluster, cluster_env, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
#: a value that must never show in any output (passed by name with --env)
SECRET = "curator-it-secret-7Qx2vB"
#: small-machine settings: only the stages this test is about, fixed-stride split (no
#: model), and CPU shares that fit two 1-CPU nodes (transcode needs the worker's CPU and
#: its one `nvenc`)
TEST_SETS = ["stages.order=[]", "dedup.enabled=false", "stages.split.method=fixed", "stages.split.stride_s=2.5",
             "stages.ingest.resources.num_cpus=0.25",
             "stages.split.resources.num_cpus=0.25", "stages.transcode.resources.num_cpus=0.5",
             "stages.staging.resources.num_cpus=0.25", "run.progress_interval_s=1"]
N_SMALL, N_MANY = 3, 10
#: clips per video: small inputs are 5 s (2 clips); the stop test's are 20 s (8 clips), so
#: that the job is still busy when `jobs stop` arrives
SMALL_CLIPS, MANY_CLIPS = 2, 8


# ------------------------------------------------------------------ the README
def readme_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Run on a cluster\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    return [argv for line in block.splitlines() if (argv := shlex.split(line, comments=True))]


def substituted(argv: list[str], mapping: dict[str, str]) -> list[str]:
    out = []
    for a in argv:
        for old, new in mapping.items():
            a = a.replace(old, new)
        out.append(a)
    return out


def test_readme_block_is_what_this_file_runs():
    cmds = readme_commands()
    kinds = [" ".join(c[:2]) if c[0] != "curator" else " ".join(c[:3]) for c in cmds]
    assert kinds == ["export RAY_AUTH_MODE=disabled", "ray start", "ray start", "curator submit --address",
                     "curator submit --address", "curator jobs list", "curator jobs status", "curator jobs logs",
                     "curator jobs stop"]
    assert dict(a.split("=", 1) for a in cmds[0][1:]) == CLUSTER_ENV
    assert "--wait" in cmds[3] and "--wait" not in cmds[4]


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def s3():
    emulators = pytest.importorskip("curator.testing.emulators")
    with emulators.MotoS3() as moto:
        moto.create_bucket("raw")
        moto.create_bucket("curated")
        yield moto


@pytest.fixture(scope="module")
def client_env(s3):
    """The shell the README's commands run in: the cluster env plus S3 credentials."""
    return cluster_env({"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": SECRET})


@pytest.fixture(scope="module")
def inputs(s3, tmp_path_factory):
    from curator.testing.synth import make_shots_video

    d = tmp_path_factory.mktemp("videos")
    small, long = d / "small.mp4", d / "long.mp4"
    make_shots_video(str(small), [("testsrc", 50), ("mandelbrot", 50)], width=96, height=64, fps=20)
    make_shots_video(str(long), [("testsrc", 200), ("mandelbrot", 200)], width=96, height=64, fps=20)
    client = s3.client()
    for i in range(N_SMALL):
        client.upload_file(str(small), "raw", f"videos/v{i}.mp4")
    for i in range(N_MANY):
        client.upload_file(str(long), "raw", f"many/v{i:02d}.mp4")
    return {"small": "s3://raw/videos/", "many": "s3://raw/many/"}


@pytest.fixture(scope="module")
def cluster():
    cmds = readme_commands()
    gcs, dash = free_port(), free_port()
    ports = {"6379": str(gcs), "8265": str(dash), "52366": str(free_port())}
    import psutil

    with LocalRayCluster(head_command=substituted(cmds[1], ports)) as c:
        c.nvenc_node = c.add_worker(command=substituted(cmds[2], ports))
        c.ports = ports
        yield c
        started = c.pids()
    # torn down: every process the cluster started (daemons, workers, job drivers) is gone
    left = []
    for pid in started:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                left.append(pid)
        except psutil.NoSuchProcess:
            pass
    assert not left, f"processes left running: {left}"


@pytest.fixture
def local_storage(s3, monkeypatch):
    """This process reads the results straight from the bucket."""
    for k, v in {**s3.env(), "AWS_SECRET_ACCESS_KEY": SECRET}.items():
        monkeypatch.setenv(k, v)
    storage.configure(StorageConfig.model_validate(s3.storage_overrides()))
    yield
    storage.configure(None)


def run(argv: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    assert argv[0] == "curator"
    proc = subprocess.run([sys.executable, "-m", "curator", *argv[1:]], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert SECRET not in proc.stdout + proc.stderr, "a secret value was printed"
    return proc


def command(i: int, cluster, s3, **subs: str) -> list[str]:
    mapping = {**cluster.ports, "http://127.0.0.1:9000": s3.endpoint, **subs}
    return substituted(readme_commands()[i], mapping)


def submit_command(i: int, cluster, s3, input_uri: str, output_uri: str, *extra: str) -> list[str]:
    readme_in = "s3://raw/videos/"
    readme_out = {3: "s3://curated/run1", 4: "s3://curated/run2"}[i]
    argv = command(i, cluster, s3, **{readme_in: input_uri, readme_out: output_uri})
    return argv + [x for s in TEST_SETS for x in ("--set", s)] + list(extra)


def job_id_of(out: str) -> str:
    m = re.search(r"\[curator\] submitted job (\S+):", out)
    assert m, out
    return m.group(1)


# ------------------------------------------------------------------ the tests
def test_submit_runs_and_transcode_runs_only_where_nvenc_is(cluster, s3, inputs, client_env, local_storage):
    out = "s3://curated/run1"
    proc = run(submit_command(3, cluster, s3, inputs["small"], out), client_env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "SUCCEEDED" in proc.stdout
    job = job_id_of(proc.stdout)
    assert "environment variables passed by name: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY" in proc.stdout

    # the shards, in the output bucket
    summary = json.loads(storage.read_bytes(f"{out}/summary.json"))
    assert summary["videos"] == N_SMALL and summary["videos_ok"] == N_SMALL
    assert summary["clips"] == SMALL_CLIPS * N_SMALL
    assert summary["shard_samples"] == summary["clips_kept"] == SMALL_CLIPS * N_SMALL
    tars = [o.uri for o in storage.list_objects(f"{out}/shards/") if o.uri.endswith(".tar")]
    assert tars
    # Ray's own output went to the run log, uploaded next to the results; the job's log (the
    # console) names it and has none of it
    [log_uri] = [o.uri for o in storage.list_objects(f"{out}/logs/") if o.uri.endswith(".log")]
    assert "Execution plan" in storage.read_bytes(log_uri).decode()
    assert f"uploaded to {log_uri}" in proc.stdout + proc.stderr and "Execution plan" not in proc.stdout
    names = []
    for uri in tars:
        with tarfile.open(fileobj=io.BytesIO(storage.read_bytes(uri))) as tar:
            names += tar.getnames()
    assert len([n for n in names if n.endswith(".mp4")]) == SMALL_CLIPS * N_SMALL
    assert len([n for n in names if n.endswith(".json")]) == SMALL_CLIPS * N_SMALL

    # placement, from the job's metrics: transcode ran on the nvenc worker and nowhere else
    doc = json.loads(storage.read_bytes(f"{out}/{metrics.METRICS_NAME}"))
    assert tracking.stage_nodes(doc, "transcode") == {cluster.nvenc_node}
    for node in tracking.stage_nodes(doc, "transcode"):
        assert doc["nodes"][node]["resources"].get("nvenc", 0) >= 1
    assert doc["summary"]["videos"] == N_SMALL
    assert all(tracking.stage_nodes(doc, s) for s in ("ingest", "split", "transcode", "staging"))
    live = json.loads(storage.read_bytes(f"{out}/{tracking.PROGRESS_NAME}"))
    assert live["state"] == tracking.SUCCEEDED
    assert live["stages"]["transcode"]["nodes"] == doc["stages"]["transcode"]["nodes"]
    assert live["stages"]["ingest"]["rows_in"] == N_SMALL
    assert live["stages"]["staging"]["rows_in"] == N_SMALL + SMALL_CLIPS * N_SMALL

    # the jobs commands
    listed = run(command(5, cluster, s3), client_env)
    assert listed.returncode == 0 and re.search(rf"{re.escape(job)}\s+SUCCEEDED", listed.stdout), listed.stdout
    status = run(command(6, cluster, s3, JOB_ID=job), client_env)
    assert status.returncode == 0, status.stderr
    assert "status:   SUCCEEDED" in status.stdout
    line = next(ln for ln in status.stdout.splitlines() if ln.startswith("transcode"))
    assert cluster.nvenc_node[:8] in line
    report = json.loads(run(command(6, cluster, s3, JOB_ID=job) + ["--json"], client_env).stdout)
    assert report["status"] == "SUCCEEDED" and report["output"] == out
    assert tracking.stage_nodes(report["progress"], "transcode") == {cluster.nvenc_node}
    logs = run(command(7, cluster, s3, JOB_ID=job), client_env)
    assert logs.returncode == 0 and f"videos in:   {N_SMALL}" in logs.stdout


def test_stop_ends_a_job_cleanly_and_a_rerun_resumes(cluster, s3, inputs, client_env, local_storage):
    import pyarrow.parquet as pq

    out = "s3://curated/run2"
    proc = run(submit_command(4, cluster, s3, inputs["many"], out), client_env)
    assert proc.returncode == 0, proc.stderr
    job = proc.stdout.strip().splitlines()[-1]
    assert job == job_id_of(proc.stdout)

    # wait until a video is finished (the driver rewrites progress.json every second), then stop
    deadline = time.monotonic() + 240
    while (tracking.read(out) or {}).get("videos", 0) < 1:
        assert time.monotonic() < deadline, "the job made no progress"
        time.sleep(0.3)
    stop = run(command(8, cluster, s3, JOB_ID=job), client_env)
    assert stop.returncode == 0 and "STOPPED" in stop.stdout, stop.stdout + stop.stderr

    status = run(command(6, cluster, s3, JOB_ID=job), client_env)
    assert "status:   STOPPED" in status.stdout
    doc = json.loads(storage.read_bytes(f"{out}/{tracking.PROGRESS_NAME}"))
    assert doc["state"] == tracking.STOPPED, doc.get("state")

    # nothing claims to be complete that is not
    keys = [o.uri for o in storage.list_objects(f"{out}/")]
    assert not any(k.endswith(("/summary.json", "/manifest.parquet", "/metrics.json")) for k in keys)
    assert not any("/shards/" in k for k in keys)
    parts = [k for k in keys if "/staging/videos/" in k]
    assert 1 <= len(parts) < N_MANY
    for uri in parts:  # a finished video's part is whole, and so are the clips it lists
        rows = pq.read_table(io.BytesIO(storage.read_bytes(uri))).to_pylist()
        video = next(r for r in rows if r["kind"] == "video")
        clips = [r for r in rows if r["kind"] == "clip"]
        assert len(clips) == video["num_clips"] == MANY_CLIPS
        for c in clips:
            assert storage.stat(c["clip_uri"]).size == c["clip_bytes"]

    # the same command again resumes: the finished videos are skipped, the rest done
    again = run(submit_command(4, cluster, s3, inputs["many"], out, "--wait"), client_env)
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
    summary = json.loads(storage.read_bytes(f"{out}/summary.json"))
    assert summary["videos"] == N_MANY and summary["videos_resumed"] == len(parts)
    assert summary["shard_samples"] == MANY_CLIPS * N_MANY
