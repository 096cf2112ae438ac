"""Submit curation runs to a Ray cluster and watch them: the Ray Jobs API side of the CLI.

    curator submit --address http://HEAD:8265 --input s3://raw/ --output s3://out/run1 [--wait]
    curator jobs list|status|logs|stop [JOB_ID] --address http://HEAD:8265

A submitted job's entrypoint is ``python -m curator run --address auto ...`` with the
same options that `curator run` got. The config is resolved and validated here first
(a bad key fails before anything is submitted), then travels as a file in the job's
working directory; the code travels as ``py_modules`` (this process's `curator` and
`stages` packages) unless ``--code installed`` says the cluster image already has it.
Environment variables reach the job only when named with ``--env NAME``; their values
are read here and never printed.

Per-stage progress comes from ``<output>/progress.json``, which the job's driver rewrites
every few seconds (see :mod:`curator.tracking`). Reading it needs access to the output
from where `curator jobs status` runs; when that fails the last progress line of the
job's log is shown instead.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from typing import Any, TextIO

from curator import tracking
from curator.config import ConfigError, PipelineConfig

#: the config file's name inside a job's working directory
JOB_CONFIG = "curator-job.yaml"
#: a local input list's name (plus its extension) inside a job's working directory; its
#: entries must be URIs the cluster can reach
JOB_INPUT_LIST = "curator-job-inputs"
#: job metadata keys (strings only: the Jobs API stores str -> str)
META_TOOL, META_INPUT, META_OUTPUT, META_STORAGE = "curator", "curator.input", "curator.output", "curator.storage"
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
#: always set in a job (not secret): unbuffered output so logs and progress stream
DEFAULT_ENV = {"PYTHONUNBUFFERED": "1"}
#: never uploaded with the code
EXCLUDES = ["__pycache__", "*.pyc", "*.pyo", ".pytest_cache"]


class JobError(RuntimeError):
    """A job command cannot proceed; the message says why."""


def client(address: str | None) -> Any:
    """A Jobs API client for the cluster's dashboard address (http://HEAD:8265)."""
    address = address or os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS")
    if not address:
        raise JobError("no cluster address: pass --address http://HEAD:8265 (the Ray dashboard)")
    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError as exc:  # ray[data] alone has no job client
        raise JobError(f"the Ray Jobs client is missing ({exc}); pip install 'ray[default]'") from None
    try:
        return JobSubmissionClient(address)
    except Exception as exc:
        raise JobError(f"cannot reach the Ray job server at {address}: {exc}") from None


# ------------------------------------------------------------------------- submit
def entrypoint(config_file: str | None, overrides: list[str], input_uri: str | None, output_uri: str | None,
               force: bool = False, runner: str | None = None, only_failed: bool = False,
               input_list: str | None = None) -> str:
    """The job's command: `python -m curator run` with the same options, on the cluster."""
    argv = ["python", "-m", "curator", "run", "--address", "auto"]
    if input_uri:
        argv += ["--input", input_uri]
    if input_list:
        argv += ["--input-list", input_list]
    if output_uri:
        argv += ["--output", output_uri]
    if config_file:
        argv += ["--config", config_file]
    for item in overrides:
        argv += ["--set", item]
    if runner:
        argv += ["--runner", runner]
    if force:
        argv.append("--force")
    if only_failed:
        argv.append("--only-failed")
    return shlex.join(argv)


def env_vars(names: list[str], environ: dict[str, str] | None = None) -> dict[str, str]:
    """The named variables from this environment (values are never printed)."""
    environ = dict(os.environ) if environ is None else environ
    missing = [n for n in names if n not in environ]
    if missing:
        raise JobError(f"--env names variables that are not set here: {', '.join(missing)}")
    bad = [n for n in names if not n or "=" in n]
    if bad:
        raise JobError(f"--env takes variable names, not values: {', '.join(bad)}")
    return {**DEFAULT_ENV, **{n: environ[n] for n in names}}


def code_modules() -> list[str]:
    """The package directories to upload: the `curator` and `stages` this process imports."""
    import curator
    import stages

    return [os.path.dirname(os.path.abspath(str(m.__file__))) for m in (curator, stages)]


def runtime_env(env: dict[str, str], working_dir: str | None, upload_code: bool) -> dict[str, Any]:
    renv: dict[str, Any] = {"env_vars": env}
    if working_dir:
        renv["working_dir"] = working_dir
    if upload_code:
        renv["py_modules"] = code_modules()
    if working_dir or upload_code:
        renv["excludes"] = list(EXCLUDES)
    return renv


def submit(address: str | None, cfg: PipelineConfig, *, config_file: str | None, overrides: list[str],
           force: bool = False, only_failed: bool = False, runner: str | None = None,
           env_names: list[str] | None = None, upload_code: bool = True, job_id: str | None = None,
           out: TextIO = sys.stdout) -> str:
    """Submit a run of `cfg` (already resolved and validated); return the job id."""
    from curator import storage

    if not (cfg.input or cfg.input_list) or not cfg.output:
        raise JobError("a job needs --input (or --input-list) and --output (URIs the cluster can reach, e.g. s3://...)")
    # a local input list travels in the job's working directory; a bucket one is read there
    list_file = storage.local_path(storage.normalize(cfg.input_list)) if cfg.input_list else None
    for name, uri in (("input", cfg.input), ("output", cfg.output)):
        if uri and storage.split(storage.normalize(uri))[0] == "file":
            print(f"[curator] note: --{name} {uri} is a path: every node of the cluster must see it "
                  "(a shared filesystem); buckets are the usual choice", file=out)
    if list_file is not None and not os.path.isfile(list_file):
        raise JobError(f"input list not found: {list_file}")
    env = env_vars(env_names or [])
    jc = client(address)
    tmp = tempfile.mkdtemp(prefix="curator-job-") if config_file or list_file else None
    job_list = None
    try:
        if config_file and tmp:
            shutil.copyfile(config_file, os.path.join(tmp, JOB_CONFIG))
        if list_file and tmp:
            job_list = JOB_INPUT_LIST + os.path.splitext(list_file)[1]
            shutil.copyfile(list_file, os.path.join(tmp, job_list))
        ep = entrypoint(JOB_CONFIG if config_file else None, overrides, cfg.input, cfg.output, force, runner,
                        only_failed, input_list=job_list or cfg.input_list)
        metadata = {META_TOOL: "run", META_INPUT: cfg.input or cfg.input_list or "", META_OUTPUT: cfg.output,
                    META_STORAGE: cfg.storage.model_dump_json()}
        job = jc.submit_job(entrypoint=ep, submission_id=job_id, metadata=metadata,
                            runtime_env=runtime_env(env, tmp, upload_code))
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    passed = ", ".join(sorted(set(env) - set(DEFAULT_ENV))) or "none"
    print(f"[curator] submitted job {job}: {ep}", file=out)
    print(f"[curator] environment variables passed by name: {passed}", file=out)
    return str(job)


# ------------------------------------------------------------------------- watch
def wait(jc: Any, job_id: str, *, follow_logs: bool = True, timeout_s: float | None = None,
         poll_s: float = 2.0, out: TextIO = sys.stdout) -> str:
    """Until the job ends (its logs streamed to `out`); returns the final status."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    if follow_logs:
        try:
            asyncio.run(_follow(jc, job_id, out, deadline))
        except Exception as exc:  # the log stream is a convenience; status polling decides
            print(f"[curator] log stream ended ({type(exc).__name__}: {exc}); polling status", file=out)
    while True:
        status = str(jc.get_job_status(job_id))
        if status in TERMINAL:
            return status
        if deadline is not None and time.monotonic() > deadline:
            raise JobError(f"job {job_id} is still {status} after {timeout_s:.0f} s")
        time.sleep(poll_s)


async def _follow(jc: Any, job_id: str, out: TextIO, deadline: float | None) -> None:
    async for chunk in jc.tail_job_logs(job_id):
        out.write(chunk)
        out.flush()
        if deadline is not None and time.monotonic() > deadline:
            return


def stop(jc: Any, job_id: str, *, wait_s: float = 60.0, out: TextIO = sys.stdout) -> str:
    """Ask the job to stop (SIGTERM to its driver, which marks the run `stopped`), then
    wait until the cluster reports a terminal status."""
    status = str(jc.get_job_status(job_id))
    if status in TERMINAL:
        print(f"job {job_id} already {status}", file=out)
        return status
    jc.stop_job(job_id)
    status = wait(jc, job_id, follow_logs=False, timeout_s=wait_s, poll_s=0.5)
    print(f"job {job_id}: {status}", file=out)
    return status


# ------------------------------------------------------------------------ reports
def _when(ms: Any) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(int(ms) / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def list_jobs(jc: Any, out: TextIO = sys.stdout) -> None:
    jobs = sorted(jc.list_jobs(), key=lambda j: j.start_time or 0)
    print(f"{'job':<34} {'status':<10} {'started (UTC)':<20} what", file=out)
    for j in jobs:
        md = j.metadata or {}
        what = (f"{md[META_INPUT]} -> {md[META_OUTPUT]}" if md.get(META_TOOL)
                else (j.entrypoint or "")[:80])
        print(f"{j.submission_id or j.job_id:<34} {str(j.status):<10} {_when(j.start_time):<20} {what}", file=out)


def read_progress(info: Any) -> tuple[dict[str, Any] | None, str | None]:
    """The job's progress.json (via its output URI and storage settings), or why not."""
    from curator.rundir import RunDir
    from curator.storage.config import StorageConfig

    md = info.metadata or {}
    output = md.get(META_OUTPUT)
    if not output:
        return None, "not a curator job (no output in its metadata)"
    try:
        opts = StorageConfig.model_validate_json(md[META_STORAGE]) if md.get(META_STORAGE) else None
        doc = tracking.read(RunDir.activated(output, opts).uri)
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"
    if doc is None:
        return None, f"no {tracking.PROGRESS_NAME} under {output} yet"
    return doc, None


_PROGRESS_LINE = re.compile(r"\[curator\] \d+(/\d+)? videos")


def last_progress_line(logs: str) -> str | None:
    """The driver's last progress line (curator.progress) in a job's log."""
    for line in reversed(logs.splitlines()):
        line = line.rsplit("\r", 1)[-1].replace("\x1b[2K", "").strip()
        if _PROGRESS_LINE.match(line):
            return line
    return None


def status(jc: Any, job_id: str, out: TextIO = sys.stdout) -> dict[str, Any]:
    """Print the job's status and per-stage progress; return them (for --json)."""
    info = jc.get_job_info(job_id)
    md = info.metadata or {}
    report: dict[str, Any] = {"job": job_id, "status": str(info.status), "message": info.message,
                              "start_time": info.start_time, "end_time": info.end_time,
                              "input": md.get(META_INPUT), "output": md.get(META_OUTPUT)}
    print(f"job:      {job_id}", file=out)
    print(f"status:   {info.status}" + (f" ({info.message})" if info.message else ""), file=out)
    if md.get(META_OUTPUT):
        print(f"input:    {md.get(META_INPUT)}\noutput:   {md.get(META_OUTPUT)}", file=out)
    print(f"started:  {_when(info.start_time)}   ended: {_when(info.end_time)}", file=out)
    doc, why = read_progress(info)
    report["progress"] = doc
    if doc is not None:
        done = doc.get("videos", 0) + doc.get("videos_resumed", 0)
        total = f"/{doc['total']}" if doc.get("total") is not None else ""
        print(f"run:      {doc.get('state')}, {done}{total} videos, {doc.get('clips', 0)} clips, "
              f"{doc.get('clips_kept', 0)} kept, {doc.get('elapsed_s', 0):.0f} s", file=out)
        print(tracking.format_stages(doc), file=out)
    else:
        line = None
        try:
            line = last_progress_line(jc.get_job_logs(job_id))
        except Exception:
            pass
        report["progress_line"] = line
        print(f"progress: unavailable here ({why})", file=out)
        if line:
            print(f"last log: {line}", file=out)
    return report


def logs(jc: Any, job_id: str, follow: bool = False, out: TextIO = sys.stdout) -> None:
    if follow:
        asyncio.run(_follow(jc, job_id, out, None))
    else:
        out.write(jc.get_job_logs(job_id))
        out.flush()


def load_checked(config_file: str | None, overrides: list[str], **top: Any) -> PipelineConfig:
    """Resolve and validate the config here, so a bad key fails before submission."""
    cfg = PipelineConfig.load(config_file, overrides, **top)
    if cfg.run.runner == "local":
        raise ConfigError("run.runner=local makes no sense for a submitted job; leave it at 'ray'")
    return cfg


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True, default=str)
