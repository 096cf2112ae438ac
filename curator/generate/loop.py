"""The generation loop: gaps -> prompts -> generator -> curation run -> recount, until the targets
are met or the budget is spent (docs/generate.md).

Layout under the output (which is an ordinary run folder: manifest, index, shards)::

    generate/ledger.jsonl          every started / done / failed / interrupted / adopted generation
    generate/videos/<id>.mp4       valid generator outputs: the input of the curation run
    generate/provenance.jsonl      their provenance columns (run.provenance of the curation run)
    generate/status.json           the last invocation's rounds, calls, stop reason and coverage
    generate/tmp/<id>/             a generation's working folder (stderr, stdout, its raw output)

Each round curates every output not curated yet with the normal driver (same stages,
filters, dedup and shards; a rerun into the same output resumes, so earlier outputs are not
curated again), then counts the targets over the source (an index or a run, if given) plus
this output's kept clips. A generated clip counts toward the cell it was made for
(`target_cell`); with ``generate.verify`` only when its tags agree with that cell.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import pyarrow as pa

from curator import coverage, storage
from curator.config import PipelineConfig
from curator.generate.generators import Generator, Job, Outcome, validate_video
from curator.generate.ledger import Ledger, LedgerState
from curator.generate.prompts import DEFAULT_TEMPLATE, Prompt, cell_key, cell_matches, cells_of, prompts_for
from curator.records import GENERATED, PROVENANCE

log = logging.getLogger("curator.generate")

MIN_ALLOWANCE_S = 0.5  # a generation is not started with less budget left than this


@dataclass
class Options:
    targets: list[coverage.Target]
    output: str
    config: PipelineConfig
    generator: Generator
    source: str | None = None
    max_clips: int | None = None  # generations started, ever, for this output
    budget_s: float | None = None  # generator wall seconds, ever, for this output
    concurrency: int = 1
    runner: str = "local"


@dataclass
class Result:
    rounds: int = 0
    calls: int = 0  # generator invocations in this invocation (a batch call counts once)
    started: int = 0  # prompts started in this invocation
    done: int = 0
    failed: int = 0
    adopted: int = 0
    interrupted: int = 0
    stop_reason: str = ""
    not_generatable: list[str] = field(default_factory=list)
    not_counted: dict[str, int] = field(default_factory=dict)  # reason -> generated clips (all invocations)
    coverage: coverage.Coverage | None = None
    reference_index: str | None = None  # what generated clips were deduplicated against

    def to_dict(self, st: LedgerState) -> dict[str, Any]:
        return {"rounds": self.rounds, "calls": self.calls, "started": self.started, "done": self.done,
                "failed": self.failed, "adopted": self.adopted, "interrupted": self.interrupted,
                "stop_reason": self.stop_reason, "not_generatable": self.not_generatable,
                "not_counted": self.not_counted, "reference_index": self.reference_index,
                "generations_total": st.generations, "generator_s_total": round(st.wall_s, 3),
                "coverage": coverage.to_dict(self.coverage) if self.coverage else None}


class Loop:
    def __init__(self, opts: Options, say: Callable[[str], None] = print):
        self.o = opts
        self.say = say
        self.cfg = opts.config.generate
        self.out = storage.normalize(opts.output)
        self.gen = storage.join(self.out, "generate")
        self.videos = storage.join(self.gen, "videos")
        self.ledger = Ledger(storage.join(self.gen, "ledger.jsonl"))
        local = storage.local_path(self.gen)
        self.tmp = os.path.join(local, "tmp") if local else tempfile.mkdtemp(prefix="curator-generate-")
        self.lock = threading.Lock()
        self.reserved = 0.0
        self.result = Result()
        from curator.taxonomy import load_places

        self.tax = load_places(opts.config.stages.place_tag.taxonomy)
        self._conditions: dict[str, list[str]] = {}
        self._up: Any = None  # the upsampler: None not made yet, False none configured
        self._upsample_errors: dict[str, str] = {}

    # ------------------------------------------------------------------ budget
    def _spent(self, st: LedgerState) -> tuple[int, float]:
        return st.generations, st.wall_s

    def _budget_left(self, st: LedgerState) -> tuple[int | None, float | None]:
        n, s = self._spent(st)
        calls = None if self.o.max_clips is None else max(0, self.o.max_clips - n)
        secs = None if self.o.budget_s is None else max(0.0, self.o.budget_s - s)
        return calls, secs

    # ------------------------------------------------------------------ the loop
    def run(self) -> Result:
        res = self.result
        self._recover()
        res.reference_index = self._reference_index()
        while True:
            self._curate()
            self._review()
            st = self.ledger.replay()
            cov = self.measure()
            res.coverage = cov
            gaps = coverage.gaps(cov)
            res.not_generatable = [g.target.name for g in gaps if not cells_of(g.target.where)]
            if not gaps:
                res.stop_reason = "targets met"
                break
            if res.rounds >= self.cfg.max_rounds:
                res.stop_reason = f"generate.max_rounds ({self.cfg.max_rounds}) reached"
                break
            jobs, why = self._plan(gaps, st)
            if not jobs:
                res.stop_reason = why
                break
            res.rounds += 1
            self.say(f"round {res.rounds}: {len(gaps)} gaps ({'; '.join(g.target.name for g in gaps)}), "
                     f"{len(jobs)} prompts")
            self._generate(jobs, st)
        st = self.ledger.replay()
        res.not_counted = {}
        for e in st.entries.values():
            for why in e.not_counted.values():
                res.not_counted[why] = res.not_counted.get(why, 0) + 1
        self._write_status(st)
        if self._up:
            self._up.close()
        return res

    # ------------------------------------------------------------------ recovery
    def _recover(self) -> None:
        """Prompts a killed loop started and never finished: adopt a valid output, else mark them
        interrupted (charged the time they may have run) so the next round retries them."""
        st = self.ledger.replay()
        now = time.time()
        for e in st.with_state("started"):
            charge = min(float(e.started.get("allowance_s") or 0.0), max(0.0, now - float(e.started.get("t") or now)))
            final = storage.join(self.videos, f"{e.id}.mp4")
            raw = os.path.join(self.tmp, e.id, f"{e.id}.mp4")
            if storage.exists(final) and self._valid_uri(final):
                self.ledger.append("adopted", id=e.id, output=f"{e.id}.mp4", wall_s=charge)
                self.result.adopted += 1
            elif os.path.exists(raw) and validate_video(raw) is None:
                self._publish(raw, e.id)
                self.ledger.append("adopted", id=e.id, output=f"{e.id}.mp4", wall_s=charge)
                self.result.adopted += 1
            else:
                self.ledger.append("interrupted", id=e.id, wall_s=charge)
                self.result.interrupted += 1
        if self.result.adopted or self.result.interrupted:
            self.say(f"resumed: {self.result.adopted} outputs adopted, {self.result.interrupted} interrupted "
                     "generations to redo")

    def _valid_uri(self, uri: str) -> bool:
        with storage.local_copy(uri) as path:
            return validate_video(path) is None

    def _publish(self, path: str, pid: str) -> None:
        dest = storage.join(self.videos, f"{pid}.mp4")
        local = storage.local_path(dest)
        if local:
            os.makedirs(os.path.dirname(local), exist_ok=True)
            os.replace(path, local)
        else:
            with open(path, "rb") as f:
                storage.write_bytes(dest, f.read())

    # ------------------------------------------------------------------ counting
    def measure(self) -> coverage.Coverage:
        targets = self.o.targets
        cols = sorted({c.split(".")[0] for t in targets for c in t.columns()})
        read = list(dict.fromkeys([*cols, coverage.DURATION, "origin", "target_cell"]))

        def tables() -> Iterator[pa.Table]:
            src = self.o.source
            if src and storage.normalize(src).rstrip("/") != self.out.rstrip("/"):
                yield from coverage.read_clips(src, read)
            from curator.rundir import RunDir

            if RunDir.of(self.out).has_manifest():
                for t in coverage.read_clips(self.out, read):
                    yield self._as_counted(t)

        return coverage.count(tables(), ["origin"], targets, source=self.out)

    def _as_counted(self, t: pa.Table) -> pa.Table:
        """Generated clips as they count: toward their target cell (verify: only when their tags agree)."""
        rows = t.to_pylist()
        out = []
        for r in rows:
            if r.get("origin") == GENERATED and r.get("target_cell"):
                cell = json.loads(r["target_cell"])
                if self.cfg.verify:
                    if not cell_matches(cell, r):
                        continue
                else:
                    for k, v in cell.items():
                        r[k] = [v] if isinstance(r.get(k), list) else v
            out.append(r)
        return pa.Table.from_pylist(out) if out else t.slice(0, 0)

    # ------------------------------------------------------------------ planning
    def _plan(self, gaps: list[coverage.TargetResult], st: LedgerState) -> tuple[list[Job], str]:
        calls_left, secs_left = self._budget_left(st)
        if secs_left is not None and secs_left < MIN_ALLOWANCE_S:
            return [], f"--budget-s spent ({st.wall_s:.1f}s of {self.o.budget_s:g}s)"
        per_cell: dict[str, tuple[dict[str, Any], int]] = {}
        not_gen = []
        named = [(g, cells_of(g.target.where)) for g in gaps]
        for g, cells in sorted(named, key=lambda gc: -max((len(c) for c in gc[1]), default=0)):  # specific first
            if not cells:
                not_gen.append(g.target.name)
                continue
            need = g.missing_clips
            if g.missing_hours > 0:
                need = max(need, math.ceil(g.missing_hours * 3600 / self.cfg.clip_seconds))
            # prompts already planned for a cell inside this target's cells count toward it
            already = sum(n for c, n in per_cell.values() if any(cell_matches(x, c) for x in cells))
            left = max(0, need - already) if already else max(1, need)
            for i, cell in enumerate(cells):
                n = left // len(cells) + (1 if i < left % len(cells) else 0)
                if n:
                    key = cell_key(cell)
                    per_cell[key] = (cell, per_cell.get(key, (cell, 0))[1] + n)
        if not per_cell:
            return [], "no gap names a cell to generate for: " + "; ".join(not_gen)
        # interrupted prompts of these cells are redone first (same id, already counted in the budget)
        queues: list[list[Prompt]] = []
        for key, (cell, n) in per_cell.items():
            redo = [Prompt.from_dict(e.started["prompt"]) for e in st.with_state("interrupted")
                    if cell_key(e.started["prompt"]["cell"]) == key][:n]
            fresh = prompts_for(cell, n - len(redo), self.tax, skip=set(st.entries),
                                negative=self.cfg.negative_prompt, template=self.cfg.template or DEFAULT_TEMPLATE,
                                base_seed=self.cfg.base_seed,
                                start=1 + max((int(e.started["prompt"]["variant"]) for e in st.entries.values()
                                               if cell_key(e.started["prompt"]["cell"]) == key), default=-1))
            queues.append(redo + fresh)
        ordered: list[Prompt] = []  # round-robin over cells: every gap gets a prompt before any gets two
        while any(queues):
            for q in queues:
                if q:
                    ordered.append(q.pop(0))
        interrupted = {e.id for e in st.with_state("interrupted")}
        if calls_left is not None:
            kept, new = [], 0
            for p in ordered:
                if p.id in interrupted:
                    kept.append(p)
                elif new < calls_left:
                    kept.append(p)
                    new += 1
            ordered = kept
        if not ordered:
            return [], f"--max-clips reached ({st.generations} generations of {self.o.max_clips})"
        return [self._job(p, st) for p in ordered], ""

    def _job(self, p: Prompt, st: LedgerState) -> Job:
        old = st.entries.get(p.id)
        text = old.started.get("text") if old else None
        if text is None:
            text = self._upsample(p)
        cond_uri = self._condition(p) if self._wants_condition() else None
        cond_path = None
        if cond_uri:
            cond_path = storage.local_path(cond_uri)
            if cond_path is None:  # a remote clip: fetched into the generation's folder
                cond_path = os.path.join(self.tmp, p.id, "condition.mp4")
                os.makedirs(os.path.dirname(cond_path), exist_ok=True)
                with open(cond_path, "wb") as f:
                    f.write(storage.read_bytes(cond_uri))
        return Job(p, text, cond_path, cond_uri)

    def _upsampler(self) -> Any:
        """The loop's upsampler (one pooled client), or None: generate.upsampler.url unset, and no
        OPENAI_BASE_URL with generate.upsampler.model set."""
        up = self.cfg.upsampler
        if self._up is None:
            from curator.generate.upsample import DEFAULT_INSTRUCTION, Upsampler
            from curator.models.openai_client import BASE_URL_ENV

            if up.url or (up.model and os.environ.get(BASE_URL_ENV)):
                self._up = Upsampler(up.url, up.model, instruction=up.instruction or DEFAULT_INSTRUCTION,
                                     api_key_env=up.api_key_env, timeout_s=up.timeout_s, retries=up.retries)
            else:
                self._up = False
        return self._up or None

    def _upsample(self, p: Prompt) -> str:
        up = self._upsampler()
        if up is None:
            return p.text
        text, err = up(p.text, seed=p.seed)
        if err:
            self._upsample_errors[p.id] = err
            log.warning("prompt %s: upsampling failed (%s); the template's prompt is used", p.id, err)
            self.say(f"  {p.id}: upsampling failed ({err[:200]}); the template's prompt is used")
        return str(text)

    def _wants_condition(self) -> bool:
        g = self.o.generator
        tpl = " ".join(str(getattr(g, a, "") or "") for a in ("template", "batch_template"))
        return "{condition}" in tpl or (g.kind == "endpoint" and self.cfg.condition)

    def _condition(self, p: Prompt) -> str | None:
        """A kept real clip of the prompt's cell from the source (deterministic by variant)."""
        if not self.o.source:
            return None
        key = cell_key(p.cell)
        if key not in self._conditions:
            cols = list(dict.fromkeys(["clip_id", "clip_uri", "origin", *p.cell]))
            found = []
            try:
                for t in coverage.read_clips(self.o.source, cols):
                    for r in t.to_pylist():
                        if r.get("clip_uri") and r.get("origin") != GENERATED and cell_matches(p.cell, r):
                            found.append((r["clip_id"], r["clip_uri"]))
            except coverage.CoverageError:
                found = []
            self._conditions[key] = [u for _, u in sorted(found)]
        clips = self._conditions[key]
        return clips[p.variant % len(clips)] if clips else None

    # ------------------------------------------------------------------ generating
    def _reserve(self, n: int) -> float | None:
        """The time a call of `n` prompts may take, reserved against --budget-s; None: no budget left."""
        with self.lock:
            st = self.ledger.replay()
            _, secs = self._budget_left(st)
            allowance = self.cfg.timeout_s * n
            if secs is not None:
                allowance = min(allowance, secs - self.reserved)
            if allowance < MIN_ALLOWANCE_S:
                return None
            self.reserved += allowance
            return allowance

    def _release(self, allowance: float) -> None:
        with self.lock:
            self.reserved -= allowance

    def _started(self, job: Job, allowance: float) -> None:
        g = self.o.generator
        self.ledger.append("started", id=job.prompt.id, prompt=job.prompt.to_dict(), text=job.text,
                           generator=g.kind, gen_model=g.model or self.cfg.model, condition_clip=job.condition_uri,
                           allowance_s=round(allowance, 3),
                           **({"upsample_error": self._upsample_errors[job.prompt.id]}
                              if job.prompt.id in self._upsample_errors else {}))
        self.result.started += 1

    def _finished(self, job: Job, out: Outcome) -> None:
        if out.ok and out.path:
            self._publish(out.path, job.prompt.id)
            self.ledger.append("done", id=job.prompt.id, output=f"{job.prompt.id}.mp4", wall_s=round(out.wall_s, 3),
                               attempts=out.attempts)
            self.result.done += 1
        else:
            self.ledger.append("failed", id=job.prompt.id, reason=out.reason, detail=(out.detail or "")[-2000:],
                               wall_s=round(out.wall_s, 3), attempts=out.attempts)
            self.result.failed += 1
            self.say(f"  {job.prompt.id} failed: {out.reason}: {(out.detail or '')[-200:]}")

    def _one(self, job: Job) -> None:
        allowance = self._reserve(1)
        if allowance is None:
            return
        try:
            self._started(job, allowance)
            workdir = os.path.join(self.tmp, job.prompt.id)
            raw = os.path.join(workdir, f"{job.prompt.id}.mp4")
            t0 = time.monotonic()
            attempts = 0
            while True:
                attempts += 1
                with self.lock:
                    self.result.calls += 1
                out = self.o.generator.generate(job, raw, workdir, allowance - (time.monotonic() - t0))
                left = allowance - (time.monotonic() - t0)
                if out.ok or out.reason == "timeout" or attempts > self.cfg.retries or left < MIN_ALLOWANCE_S:
                    break
            # charged its wall time, at most the allowance it was killed at (the rest is our reaping)
            out.wall_s = min(time.monotonic() - t0, allowance)
            out.attempts = attempts
            self._finished(job, out)
        finally:
            self._release(allowance)

    def _batch(self, jobs: list[Job]) -> None:
        allowance = self._reserve(len(jobs))
        if allowance is None:
            return
        try:
            for j in jobs:
                self._started(j, allowance / len(jobs))
            workdir = os.path.join(self.tmp, "batch-" + jobs[0].prompt.id)
            with self.lock:
                self.result.calls += 1
            outs = self.o.generator.generate_batch(
                jobs, [os.path.join(self.tmp, j.prompt.id, f"{j.prompt.id}.mp4") for j in jobs], workdir, allowance)
            for j, out in zip(jobs, outs):
                out.wall_s = min(out.wall_s, allowance / len(jobs))
                self._finished(j, out)
        finally:
            self._release(allowance)

    def _generate(self, jobs: list[Job], st: LedgerState) -> None:
        g = self.o.generator
        units: list[Callable[[], None]]
        if g.supports_batch and (len(jobs) > 1 or not getattr(g, "template", None)):
            n = self.cfg.batch_size
            units = [functools.partial(self._batch, jobs[i:i + n]) for i in range(0, len(jobs), n)]
        else:
            units = [functools.partial(self._one, j) for j in jobs]
        if self.o.concurrency <= 1:
            for u in units:
                u()
        else:
            with ThreadPoolExecutor(self.o.concurrency, thread_name_prefix="generate") as pool:
                for f in [pool.submit(u) for u in units]:
                    f.result()

    # ------------------------------------------------------------------ curation
    def _provenance(self, st: LedgerState) -> str:
        lines = []
        for e in sorted(st.with_state("done"), key=lambda e: e.id):
            p = e.started["prompt"]
            doc = {"source_key": e.output, "origin": GENERATED, "generator": e.started.get("generator"),
                   "gen_model": e.started.get("gen_model") or None, "prompt": e.started.get("text"),
                   "seed": p["seed"], "target_cell": cell_key(p["cell"]),
                   "condition_clip": e.started.get("condition_clip")}
            assert set(doc) - {"source_key"} <= set(PROVENANCE)
            lines.append(json.dumps(doc, sort_keys=True))
        uri = storage.join(self.gen, "provenance.jsonl")
        storage.write_bytes(uri, ("\n".join(lines) + "\n").encode("utf-8"))
        return uri

    def _curate(self) -> None:
        st = self.ledger.replay()
        todo = [e.id for e in st.with_state("done") if not e.curated]
        if not todo:
            return
        from curator import pipeline as pl
        from curator.driver import execute
        from curator.runners import make_runner

        cfg = self.o.config
        run = cfg.run.model_copy(update={"provenance": self._provenance(st), "runner": self.o.runner})
        update: dict[str, Any] = {"input": self.videos, "output": self.out, "run": run}
        if self.result.reference_index:
            update["dedup"] = cfg.dedup.model_copy(update={"reference_index": self.result.reference_index})
        cfg = cfg.model_copy(update=update)
        pipeline = pl.build(cfg)
        runner = make_runner(cfg)
        try:
            summary = execute(pipeline, runner)
        finally:
            runner.close()
        self.ledger.append("curated", ids=todo)
        self.say(f"curated {len(todo)} new outputs; the run now has {summary.clips_kept} kept clips "
                 f"of {summary.clips} ({summary.videos} videos)")

    def _reference_index(self) -> str | None:
        """The clip index generated clips are deduplicated against: dedup.reference_index when the
        config sets it, else the source's (--index, or <run>/index of --run when it has one)."""
        cfg = self.o.config
        if cfg.dedup.reference_index:
            return storage.normalize(cfg.dedup.reference_index)
        if not (self.cfg.dedup_against_source and self.o.source):
            return None
        from curator.index import INDEX_JSON
        from curator.rundir import RunDir

        src = storage.normalize(self.o.source)
        for uri in (src, RunDir.of(src).default_index):
            if storage.exists(storage.join(uri, INDEX_JSON)):
                return uri
        self.say(f"no clip index at {storage.display(self.o.source)}: generated clips are not deduplicated "
                 "against the source (give --index, or build one with `curator index RUN`)")
        return None

    def _review(self) -> None:
        """Record, once per clip, each curated generated clip that does not count: rejected by the
        curation (its reason: a filter, `duplicate`, `duplicate_of_index`) or, with verify, tagged
        otherwise than its cell (`verify_mismatch`)."""
        from curator.rundir import RunDir

        if not RunDir.of(self.out).has_manifest():
            return
        st = self.ledger.replay()
        keys = sorted({k for e in st.entries.values() for k in (e.started.get("prompt") or {}).get("cell", {})})
        cols = list(dict.fromkeys(["clip_id", "source_key", "status", "stage", "reason", "detail", "origin",
                                   "target_cell", *keys]))
        for t in coverage.read_clips(self.out, cols, kept_only=False):
            for r in t.to_pylist():
                pid = os.path.basename(str(r.get("source_key") or "")).removesuffix(".mp4")
                e = st.entries.get(pid)
                if r.get("origin") != GENERATED or e is None or str(r["clip_id"]) in e.not_counted:
                    continue
                if r.get("status") != "ok":
                    why, detail = str(r.get("reason") or r.get("status")), r.get("detail") or ""
                    if r.get("stage"):
                        detail = f"{r['stage']}: {detail}"
                elif self.cfg.verify and r.get("target_cell") and not cell_matches(json.loads(r["target_cell"]), r):
                    cell = json.loads(r["target_cell"])
                    why = "verify_mismatch"
                    detail = "tagged " + ", ".join(f"{k}={r.get(k)!r}" for k in cell) + " for the cell " + \
                        ", ".join(f"{k}={v!r}" for k, v in cell.items())
                else:
                    continue
                self.ledger.append("not_counted", id=pid, clip_id=r["clip_id"], reason=why, detail=detail[:500])
                self.say(f"  {pid}: clip {r['clip_id']} does not count: {why}: {detail[:200]}")

    def _write_status(self, st: LedgerState) -> None:
        storage.write_bytes(storage.join(self.gen, "status.json"),
                            json.dumps(self.result.to_dict(st), indent=1, default=str).encode("utf-8"))
        if storage.local_path(self.gen) is None:
            shutil.rmtree(self.tmp, ignore_errors=True)


def run(opts: Options, say: Callable[[str], None] = print) -> Result:
    return Loop(opts, say).run()
