"""Generators: a command template (one prompt, or a batch of prompts per call) or an HTTP endpoint.

Both turn a :class:`Job` (a prompt, its seed, an optional conditioning clip) into a video file,
and report an :class:`Outcome`: the file when it probes as a video, else a reason
(``exit_code``, ``timeout``, ``invalid_output``, ``no_output``, ``http_error``,
``endpoint_error``) with a detail (the stderr tail, the probe's error, the HTTP body). A
failure never raises: the loop records it and goes on.

**Command** (``--command``): a shell command line with placeholders, each substituted
shell-quoted (:func:`shlex.quote`): ``{prompt}``, ``{negative_prompt}``, ``{seed}``,
``{output}`` (the .mp4 path to write), ``{output_dir}`` and ``{output_name}`` (its folder and
its name without .mp4, for tools that add the extension: Cosmos's ``--video_save_folder`` /
``--video_save_name``), ``{condition}`` (a kept clip of the cell, Video2World), ``{id}``.
Other braces are left as they are. Exit status 0 and a valid ``{output}`` is success.

**Batch command** (``--batch-command``): ``{batch_jsonl}`` (a JSONL file, one line per prompt:
``prompt``, ``negative_prompt``, ``seed``, ``id``, ``visual_input`` when conditioned) and
``{output_dir}``; the video of line *i* is ``{output_dir}/{i}.mp4`` (Cosmos's batch naming) or
``{output_dir}/{id}.mp4``. One call loads the model once for the whole batch.

**Endpoint** (``--endpoint URL``): ``POST`` JSON ``{id, prompt, negative_prompt, seed, model,
condition, ...generate.endpoint_params}``; the answer is the video itself (any content type but
JSON), or JSON with ``url`` (fetched with GET), ``path`` (a file the service wrote where this
machine reads it) or ``video_base64``; JSON with ``error`` is a failure; so is a non-2xx status
(5xx, 429 and connection errors are retried).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from curator.generate.prompts import Prompt

PLACEHOLDERS = ("prompt", "negative_prompt", "seed", "output", "output_dir", "output_name", "condition", "id",
                "batch_jsonl", "model")
_PH = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")
TAIL = 2000


@dataclass
class Job:
    prompt: Prompt
    text: str  # the prompt sent (upsampled or the template's)
    condition: str | None = None  # a local path of the conditioning clip
    condition_uri: str | None = None  # its URI (recorded in the manifest)


@dataclass
class Outcome:
    ok: bool
    path: str | None = None
    reason: str | None = None
    detail: str | None = None
    wall_s: float = 0.0
    attempts: int = 1


def validate_video(path: str) -> str | None:
    """None when `path` is a decodable video (probe + one frame), else why not."""
    import av

    from curator.media.probe import ProbeError, probe

    if not os.path.isfile(path):
        return "no output file"
    try:
        info = probe(path)
    except ProbeError as exc:
        return f"{exc.reason}: {exc.detail}"
    if info.width <= 0 or info.height <= 0:
        return "no video stream"
    try:
        with av.open(path) as c:
            for _ in c.decode(video=0):
                return None
    except Exception as exc:  # noqa: BLE001 - any decoder error makes the output garbage
        return f"undecodable: {exc}"
    return "no decodable frame"


def fill(template: str, values: dict[str, Any]) -> str:
    """Substitute the known placeholders, each shell-quoted; leave other braces alone."""
    def sub(m: re.Match[str]) -> str:
        v = values.get(m.group(1))
        return shlex.quote("" if v is None else str(v))

    return _PH.sub(sub, template)


def _tail(path: str) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - TAIL))
            return f.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


def run_shell(cmd: str, timeout_s: float, workdir: str, env: dict[str, str] | None = None) -> tuple[int | None, str]:
    """Run a command line in this process group (a kill of the loop's group ends it too); on
    timeout kill it and its children. (exit status or None on timeout, stderr tail)."""
    import psutil

    os.makedirs(workdir, exist_ok=True)
    out_p, err_p = os.path.join(workdir, "stdout.log"), os.path.join(workdir, "stderr.log")
    with open(out_p, "wb") as out, open(err_p, "wb") as err:
        proc = subprocess.Popen(cmd, shell=True, stdout=out, stderr=err, cwd=workdir,
                                env={**os.environ, **(env or {})})
        try:
            rc: int | None = proc.wait(timeout=max(0.01, timeout_s))
        except subprocess.TimeoutExpired:
            try:
                parent = psutil.Process(proc.pid)
                for child in parent.children(recursive=True):
                    child.kill()
                parent.kill()
            except psutil.NoSuchProcess:
                pass
            proc.wait()
            rc = None
    return rc, _tail(err_p) or _tail(out_p)


class Generator:
    kind = "?"
    model = ""
    supports_batch = False

    def generate(self, job: Job, out_path: str, workdir: str, timeout_s: float) -> Outcome:
        raise NotImplementedError

    def generate_batch(self, jobs: list[Job], out_paths: list[str], workdir: str,
                       timeout_s: float) -> list[Outcome]:
        raise NotImplementedError


class CommandGenerator(Generator):
    kind = "command"

    def __init__(self, template: str | None, batch_template: str | None = None, model: str = "",
                 env: dict[str, str] | None = None):
        self.template = template
        self.batch_template = batch_template
        self.model = model
        self.env = env
        self.supports_batch = bool(batch_template)

    def generate(self, job: Job, out_path: str, workdir: str, timeout_s: float) -> Outcome:
        assert self.template, "no --command"
        t0 = time.monotonic()
        os.makedirs(os.path.dirname(out_path), exist_ok=True)
        if os.path.exists(out_path):
            os.remove(out_path)  # a leftover of an interrupted attempt
        cmd = fill(self.template, {
            "prompt": job.text, "negative_prompt": job.prompt.negative_prompt, "seed": job.prompt.seed,
            "output": out_path, "output_dir": os.path.dirname(out_path),
            "output_name": os.path.basename(out_path).removesuffix(".mp4"), "condition": job.condition,
            "id": job.prompt.id, "model": self.model})
        rc, tail = run_shell(cmd, timeout_s, workdir, self.env)
        wall = time.monotonic() - t0
        if rc is None:
            return Outcome(False, reason="timeout", detail=f"killed after {timeout_s:.1f}s; {tail[-500:]}".strip(),
                           wall_s=wall)
        if rc != 0:
            return Outcome(False, reason="exit_code", detail=f"exit {rc}: {tail}", wall_s=wall)
        bad = validate_video(out_path)
        if bad:
            return Outcome(False, reason="no_output" if bad == "no output file" else "invalid_output",
                           detail=bad, wall_s=wall)
        return Outcome(True, path=out_path, wall_s=wall)

    def generate_batch(self, jobs: list[Job], out_paths: list[str], workdir: str,
                       timeout_s: float) -> list[Outcome]:
        assert self.batch_template, "no --batch-command"
        t0 = time.monotonic()
        out_dir = os.path.join(workdir, "out")
        shutil.rmtree(out_dir, ignore_errors=True)
        os.makedirs(out_dir)
        jsonl = os.path.join(workdir, "batch.jsonl")
        with open(jsonl, "w", encoding="utf-8") as f:
            for j in jobs:
                line: dict[str, Any] = {"prompt": j.text, "negative_prompt": j.prompt.negative_prompt,
                                        "seed": j.prompt.seed, "id": j.prompt.id}
                if j.condition:
                    line["visual_input"] = j.condition
                f.write(json.dumps(line) + "\n")
        cmd = fill(self.batch_template, {"batch_jsonl": jsonl, "output_dir": out_dir, "model": self.model,
                                         "seed": jobs[0].prompt.seed,
                                         "negative_prompt": jobs[0].prompt.negative_prompt})
        rc, tail = run_shell(cmd, timeout_s, workdir, self.env)
        share = (time.monotonic() - t0) / len(jobs)  # the batch's wall time, shared out
        outs: list[Outcome] = []
        for i, (j, dest) in enumerate(zip(jobs, out_paths)):
            cand = [p for p in (os.path.join(out_dir, f"{i}.mp4"), os.path.join(out_dir, f"{j.prompt.id}.mp4"))
                    if os.path.exists(p)]
            if rc is None and not cand:
                outs.append(Outcome(False, reason="timeout", detail=f"batch killed after {timeout_s:.1f}s",
                                    wall_s=share))
                continue
            if rc not in (0, None) and not cand:
                outs.append(Outcome(False, reason="exit_code", detail=f"exit {rc}: {tail}", wall_s=share))
                continue
            bad = validate_video(cand[0]) if cand else "no output file"
            if bad:
                outs.append(Outcome(False, reason="no_output" if not cand else "invalid_output", detail=bad,
                                    wall_s=share))
                continue
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            os.replace(cand[0], dest)
            outs.append(Outcome(True, path=dest, wall_s=share))
        return outs


class EndpointGenerator(Generator):
    kind = "endpoint"

    def __init__(self, urls: list[str], model: str = "", params: dict[str, Any] | None = None,
                 api_key_env: str | None = None, retries: int = 2, backoff_s: float = 1.0):
        self.urls = urls
        self.model = model
        self.params = params or {}
        self.api_key_env = api_key_env
        self.retries = retries
        self.backoff_s = backoff_s

    def _url(self, job: Job) -> str:
        return self.urls[int(job.prompt.id[1:], 16) % len(self.urls)]

    def generate(self, job: Job, out_path: str, workdir: str, timeout_s: float) -> Outcome:
        t0 = time.monotonic()
        body = {"id": job.prompt.id, "prompt": job.text, "negative_prompt": job.prompt.negative_prompt,
                "seed": job.prompt.seed, "model": self.model, "condition": job.condition_uri or job.condition,
                **self.params}
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        last: Outcome | None = None
        attempts = 0
        for attempt in range(self.retries + 1):
            attempts = attempt + 1
            left = timeout_s - (time.monotonic() - t0)
            if left <= 0.05:
                break
            req = urllib.request.Request(self._url(job), data=json.dumps(body).encode(), headers=headers,
                                         method="POST")
            try:
                with urllib.request.urlopen(req, timeout=left) as r:
                    ctype = r.headers.get("Content-Type", "")
                    data = r.read()
                last = self._answer(ctype, data, out_path, timeout_s - (time.monotonic() - t0))
            except urllib.error.HTTPError as exc:
                text = exc.read()[:TAIL].decode("utf-8", "replace")
                last = Outcome(False, reason="http_error", detail=f"http {exc.code}: {text}")
                if exc.code < 500 and exc.code != 429:
                    break
            except (TimeoutError, OSError) as exc:
                timed_out = isinstance(exc, TimeoutError) or "timed out" in str(exc)
                last = Outcome(False, reason="timeout" if timed_out else "http_error",
                               detail=f"{type(exc).__name__}: {exc}")
                if timed_out:
                    break
            if last.ok or last.reason in ("invalid_output", "endpoint_error"):
                break
            time.sleep(min(self.backoff_s * (2 ** attempt), max(0.0, timeout_s - (time.monotonic() - t0))))
        out = last or Outcome(False, reason="timeout", detail=f"no time left within {timeout_s:.1f}s")
        out.wall_s = time.monotonic() - t0
        out.attempts = attempts
        return out

    def _answer(self, ctype: str, data: bytes, out_path: str, left: float) -> Outcome:
        os.makedirs(os.path.dirname(out_path), exist_ok=True)
        if "json" in ctype.split(";")[0]:
            try:
                doc = json.loads(data)
            except json.JSONDecodeError:
                return Outcome(False, reason="endpoint_error", detail=f"JSON answer does not parse: {data[:200]!r}")
            if not isinstance(doc, dict) or doc.get("error"):
                return Outcome(False, reason="endpoint_error", detail=str(doc.get("error") if isinstance(doc, dict)
                                                                              else doc)[:TAIL])
            if doc.get("video_base64"):
                data = base64.b64decode(doc["video_base64"])
            elif doc.get("url"):
                with urllib.request.urlopen(str(doc["url"]), timeout=max(0.1, left)) as r:
                    data = r.read()
            elif doc.get("path"):
                try:
                    shutil.copyfile(str(doc["path"]), out_path)
                except OSError as exc:
                    return Outcome(False, reason="endpoint_error", detail=f"path {doc['path']}: {exc}")
                data = b""
            else:
                return Outcome(False, reason="endpoint_error",
                               detail=f"JSON answer has none of url, path, video_base64: {str(doc)[:200]}")
        if data:
            with open(out_path, "wb") as f:
                f.write(data)
        bad = validate_video(out_path)
        if bad:
            return Outcome(False, reason="invalid_output", detail=bad)
        return Outcome(True, path=out_path)
