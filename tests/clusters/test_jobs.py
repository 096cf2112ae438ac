"""`curator submit` / `curator jobs`: what is built and checked before anything reaches a
cluster (the end-to-end path is tests/clusters/test_submit_integration.py)."""

from __future__ import annotations

import io
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from curator import jobs
from curator.cli import build_parser
from curator.config import ConfigError

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def option_strings(command: str) -> set[str]:
    sub = next(a for a in build_parser()._subparsers._group_actions if a.dest == "command")  # type: ignore[union-attr]
    return {o for action in sub.choices[command]._actions for o in action.option_strings}


def test_submit_takes_every_option_of_run():
    assert option_strings("run") <= option_strings("submit")
    assert {"--wait", "--env", "--code", "--job-id", "--timeout"} <= option_strings("submit") - option_strings("run")


def test_entrypoint_is_curator_run_with_the_same_options():
    ep = jobs.entrypoint("curator-job.yaml", ["stages.split.method=fixed", "stages.transcode.resources.custom={nvenc: 1}"],
                         "s3://raw/in dir/", "s3://out/run1", force=True, runner="ray", only_failed=True)
    argv = shlex.split(ep)
    assert argv[:6] == ["python", "-m", "curator", "run", "--address", "auto"]
    args = build_parser().parse_args(argv[3:])
    assert (args.input, args.output, args.config, args.force, args.runner, args.only_failed) == (
        "s3://raw/in dir/", "s3://out/run1", "curator-job.yaml", True, "ray", True)
    assert args.overrides == ["stages.split.method=fixed", "stages.transcode.resources.custom={nvenc: 1}"]


def test_trial_options_and_an_input_list_reach_the_job():
    """--limit/--sample/--seed travel as the config keys they set; an input list by its name in
    the job's working directory (submit copies a local one there)."""
    from curator.cli import _selection

    args = build_parser().parse_args(["submit", "--input-list", "/data/list.csv", "-o", "s3://out/r",
                                      "--limit", "5", "--sample", "0.1", "--seed", "3"])
    assert _selection(args) == ["run.limit=5", "run.sample=0.1", "run.sample_seed=3"]
    ep = jobs.entrypoint(None, _selection(args), None, "s3://out/r", input_list="curator-job-inputs.csv")
    again = build_parser().parse_args(shlex.split(ep)[3:])
    assert again.input_list == "curator-job-inputs.csv" and again.input is None
    assert again.overrides == ["run.limit=5", "run.sample=0.1", "run.sample_seed=3"]
    cfg = jobs.load_checked(None, again.overrides, input_list="s3://lists/in.csv", output="s3://out/r")
    assert (cfg.run.limit, cfg.run.sample, cfg.run.sample_seed) == (5, 0.1, 3)
    with pytest.raises(jobs.JobError, match="input list not found"):
        jobs.submit("http://127.0.0.1:9", cfg.model_copy(update={"input_list": "/nonexistent/list.csv"}),
                    config_file=None, overrides=[])


def test_env_vars_are_passed_by_name_only():
    env = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "OTHER": "x"}
    got = jobs.env_vars(["AWS_ACCESS_KEY_ID", "AWS_ENDPOINT_URL"], env)
    assert got == {**jobs.DEFAULT_ENV, "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_ENDPOINT_URL": "http://127.0.0.1:9000"}
    with pytest.raises(jobs.JobError, match="not set here: MISSING") as e:
        jobs.env_vars(["AWS_ACCESS_KEY_ID", "MISSING"], env)
    assert "AKIAEXAMPLE" not in str(e.value)
    with pytest.raises(jobs.JobError, match="names"):
        jobs.env_vars(["AWS_ACCESS_KEY_ID=AKIAEXAMPLE"], {"AWS_ACCESS_KEY_ID=AKIAEXAMPLE": ""})


def test_runtime_env_uploads_this_curator_as_py_modules(tmp_path):
    renv = jobs.runtime_env({"A": "1"}, str(tmp_path), upload_code=True)
    mods = [Path(p) for p in renv["py_modules"]]
    assert [m.name for m in mods] == ["curator", "stages"]
    assert all((m / "__init__.py").exists() for m in mods)
    assert mods[0].parent == ROOT  # the checkout under test, not an installed copy
    assert renv["working_dir"] == str(tmp_path) and renv["env_vars"] == {"A": "1"}
    assert "__pycache__" in renv["excludes"]
    bare = jobs.runtime_env({}, None, upload_code=False)
    assert bare == {"env_vars": {}}


def test_a_local_runner_is_refused_for_a_job():
    with pytest.raises(ConfigError, match="local"):
        jobs.load_checked(None, ["run.runner=local"], input="s3://a/", output="s3://b/")


def test_no_address_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(jobs.JobError, match="--address"):
        jobs.client(None)


def run_cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "curator", *argv], cwd=ROOT, capture_output=True, text=True,
                          env=e, timeout=120)


def closed_port() -> int:
    from curator.testing.raycluster import free_port

    return free_port()  # nothing listens there


def test_a_bad_config_fails_before_anything_is_submitted():
    """The config is resolved and validated on the client: a typo exits 2 and names the
    key, without contacting the (here unreachable) cluster."""
    addr = f"http://127.0.0.1:{closed_port()}"
    r = run_cli("submit", "--address", addr, "--input", "s3://a/", "--output", "s3://b/",
                "--set", "stages.split.metod=fixed")
    assert r.returncode == 2, r.stderr
    assert "stages.split.metod" in r.stderr and "unknown key" in r.stderr
    assert "cannot reach" not in r.stderr


def test_an_unreachable_cluster_is_a_clear_error():
    addr = f"http://127.0.0.1:{closed_port()}"
    r = run_cli("jobs", "list", "--address", addr)
    assert r.returncode == 1 and "cannot reach the Ray job server" in r.stderr, r.stderr
    r = run_cli("submit", "--address", addr, "--input", "s3://a/", "--output", "s3://b/",
                "--env", "CURATOR_TEST_SECRET", env={"CURATOR_TEST_SECRET": "s3cr3t-value"})
    assert r.returncode == 1 and "cannot reach" in r.stderr
    assert "s3cr3t-value" not in r.stderr + r.stdout


def test_progress_line_from_logs():
    """The driver's progress lines (curator.progress) as they appear in a job's log."""
    from curator.progress import Progress

    class Buf(io.StringIO):
        pass

    buf = Buf()
    p = Progress(total=12, stream=buf, tty=False, interval_s=0)
    p.start(12)
    p.video_done(2, 2, 0)
    p.video_done(3, 2, 1)
    logs = "[curator] INFO curator: stages: ingest -> split\n" + buf.getvalue() + "[curator] INFO other\n"
    line = jobs.last_progress_line(logs)
    assert line and line.startswith("[curator] 2/12 videos") and "clips 5 (kept 4)" in line
    assert jobs.last_progress_line("nothing here\n[curator] INFO x: y") is None
