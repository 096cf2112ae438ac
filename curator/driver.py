"""The driver side of a run: list inputs, collect finished videos, then the run-level phases.

The runner (local or Ray) turns a stream of input rows into a stream of processed rows;
everything around that is the same for both and lives here:

    prepare output (config.yaml, config-hash check)
      -> list inputs (lazy, paginated) into listing parts under _work/
      -> runner.stream(...)   rows of videos and clips, in any order
      -> Collector: a video is finished when its row and all its clips have arrived;
         its rows are written as one manifest part (the completion marker)
      -> account for videos no worker returned (crashed / killed / timed out)
      -> run-level phases (curator.phases): consolidate -> refilter -> dedup -> index
         -> shard -> summary (metrics.json, summary.json)
    throughout: progress.json (state, per-stage progress and nodes; curator.tracking)

Names under the output come from :class:`curator.rundir.RunDir`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any, Iterable

from curator import manifest, storage
from curator.listing import (
    InputNotFound,
    Listing,
    clear_work,
    list_inputs,
    load_provenance,
    with_provenance,
    write_listing,
)
from curator.phases import PhaseState, build, run_phases
from curator.phases.summary import Summary
from curator.pipeline import Pipeline, PipelineError
from curator.progress import NullProgress, Progress
from curator.records import OK, SKIPPED, Reason, Row, stop
from curator.rundir import RunDir
from curator.runners.base import Runner
from curator.tracking import FAILED, STOPPED, SUCCEEDED, StatusWriter, add_placement

log = logging.getLogger("curator")

__all__ = ["Collector", "RunStopped", "Summary", "execute", "prepare_output"]

#: the run-level phases of `curator run`, in order (checked against their requires/populates)
RUN_PHASES = ("consolidate", "refilter", "dedup", "index", "shard", "summary")
_PHASE_LABELS = {"consolidate": "consolidating manifest", "refilter": "applying filter rules",
                 "dedup": "dedup and index", "shard": "sharding"}


# ---------------------------------------------------------------------- collector
class Collector:
    """Groups streamed rows by video and writes each finished video as a manifest part."""

    def __init__(self, pipeline: Pipeline, progress: Progress | None = None):
        self.pipeline = pipeline
        self.schema = pipeline.schema
        self.pending: dict[str, dict[str, Any]] = {}
        self.progress = progress or NullProgress()
        self.counts: Counter[str] = Counter()
        self.video_rows = 0

    def add(self, rows: Iterable[Row]) -> None:
        for row in rows:
            vid = row["video_id"]
            entry = self.pending.setdefault(vid, {"video": None, "clips": []})
            if row["kind"] == "video":
                entry["video"] = row
                self.video_rows += 1
            else:
                entry["clips"].append(row)
            self._maybe_finish(vid, entry)

    def _maybe_finish(self, vid: str, entry: dict[str, Any]) -> None:
        video = entry["video"]
        if video is None:
            return
        expected = video.get("num_clips") or 0
        if len(entry["clips"]) < expected:
            return
        del self.pending[vid]
        self._write(video, entry["clips"])

    def _write(self, video: Row, clips: list[Row]) -> None:
        if video.get("status") == SKIPPED:
            self.counts["videos_resumed"] += 1
            self.progress.video_done(0, 0, 0, resumed=True)
            return
        manifest.write_part(self.pipeline.ctx.output_uri, video["video_id"], [video] + clips, self.schema)
        kept = sum(1 for c in clips if c.get("status") == OK)
        rejects = sum(1 for r in [video] + clips if r.get("status") not in (OK, SKIPPED))
        self.counts["videos"] += 1
        self.counts["clips"] += len(clips)
        self.counts["clips_kept"] += kept
        self.progress.video_done(len(clips), kept, rejects)

    def finish(self) -> None:
        """End of stream: anything still pending is written as it is, with a warning."""
        for vid, entry in list(self.pending.items()):
            video = entry["video"]
            if video is None:
                log.error("clips of %s arrived without their video row; writing them alone", vid)
                continue
            log.warning("video %s: %d of %s clips arrived", vid, len(entry["clips"]), video.get("num_clips"))
            del self.pending[vid]
            self._write(video, entry["clips"])


# ---------------------------------------------------------------------- the run
def prepare_output(pipeline: Pipeline, force: bool = False) -> None:
    """Write the resolved config next to the output; refuse to mix configs in one output."""
    ctx = pipeline.ctx
    rundir = RunDir.of(ctx.output_uri)
    previous = rundir.read_config()
    if previous is not None and not force:
        old_hash = previous[1].get("config_hash")
        if old_hash and old_hash != ctx.config_hash:
            raise PipelineError(
                f"{storage.display(ctx.output_uri)} holds a run made with a different config "
                f"(hash {old_hash}, now {ctx.config_hash}); use a new --output, or --force to redo it all")
    rundir.write_config(ctx.config.model_dump(mode="json"),
                        {"config_hash": ctx.config_hash, "run_id": ctx.run_id,
                         "stages": [s.name for s in pipeline.specs],
                         "skipped": {name: [r.describe() for r in reqs] for name, reqs in pipeline.skipped}})


def account_for_lost(pipeline: Pipeline, listing: Listing, collector: Collector) -> int:
    """Videos that were listed but came back from no worker (a crash, a kill, a hang past
    its timeout, a block Ray gave up on) get an error row, so the manifest is complete
    and a rerun retries them. Checked only when fewer video rows came back than listed."""
    if collector.video_rows >= listing.count:
        return 0
    lost = 0
    for row in listing.rows():
        if storage.exists(RunDir(pipeline.ctx.output_uri).part(row["video_id"])):
            continue
        stop(row, "runner", Reason.LOST,
             "no result came back from the workers (crashed, killed, or past its timeout); "
             "see the Ray logs; a rerun retries it")
        collector.add([row])
        lost += 1
    if lost:
        log.error("%d videos were lost by the workers; they are in the manifest with reason %r", lost, Reason.LOST)
    return lost


class RunStopped(BaseException):
    """Raised in the driver when it is asked to stop (SIGTERM, e.g. from `curator jobs stop`).
    A BaseException, like KeyboardInterrupt, so that no stage's per-row `except Exception`
    mistakes it for a failure of the row and carries on."""


def execute(pipeline: Pipeline, runner: Runner, *, force: bool = False, progress: Progress | None = None) -> Summary:
    """Run a built pipeline with a runner; the same code path for local and Ray."""
    ctx = pipeline.ctx
    progress = progress or NullProgress()
    t0 = time.monotonic()
    rundir = RunDir.activated(ctx.output_uri, ctx.config.storage)  # the driver's process default
    phases = [p for p in build(RUN_PHASES, available=["parts"]) if p.NAME != "shard" or ctx.config.run.shard]
    if force:
        rundir.clear()
    prepare_output(pipeline, force=force)
    log.info("%s", pipeline.describe())
    clear_work(ctx.output_uri)  # listing parts left by an interrupted run
    try:
        inputs = list_inputs(ctx.input_uri, ctx.config.stages.ingest.extensions, ctx.config.storage.list_page_size)
        if ctx.config.run.provenance:
            try:
                inputs = with_provenance(inputs, load_provenance(ctx.config.run.provenance))
            except (ValueError, storage.NotFound) as exc:
                raise PipelineError(f"run.provenance: {exc}") from None
        listing = write_listing(ctx.output_uri, ctx.run_id, inputs, ctx.config.run.listing_part_size)
    except InputNotFound as exc:
        raise PipelineError(str(exc)) from None
    progress.start(listing.count)
    collector = Collector(pipeline, progress)

    def counts() -> dict[str, int]:  # read from the status thread: fixed keys, no iteration
        return {"total": listing.count,
                **{k: collector.counts.get(k, 0) for k in ("videos", "clips", "clips_kept", "videos_resumed")}}

    stage_names = [s.name for s in pipeline.specs]
    status = StatusWriter(ctx.output_uri, ctx.run_id, counts, runner.progress,
                          stage_names, every_s=ctx.config.run.progress_interval_s).start()
    try:
        for rows in runner.stream(pipeline, listing):
            collector.add(rows)
        collector.finish()
        lost = account_for_lost(pipeline, listing, collector)
        clear_work(ctx.output_uri)
        state = PhaseState(rundir, ctx.config, runner, stages=stage_names, schema=pipeline.schema,
                           on_shard=progress.shard_done, started=t0,
                           counts={"videos_resumed": collector.counts["videos_resumed"], "videos_lost": lost},
                           placement=lambda doc: add_placement(doc, status.snapshot()))

        def on_phase(name: str) -> None:
            if name == "summary":
                progress.close()
            elif name in _PHASE_LABELS:
                progress.set_phase(_PHASE_LABELS[name])

        results = run_phases(phases, state, available=["parts"], on_phase=on_phase)
        summary: Summary = results["summary"]
        status.finish(SUCCEEDED)
    except (KeyboardInterrupt, RunStopped, SystemExit) as exc:  # Ctrl-C, SIGTERM (ours or Ray's handler)
        status.finish(STOPPED, error=f"stopped: {type(exc).__name__} {exc}".strip())
        raise
    except BaseException as exc:
        status.finish(FAILED, error=f"{type(exc).__name__}: {exc}")
        raise
    return summary
