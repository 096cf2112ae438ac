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
from typing import Any, Callable, Iterable

from curator import manifest, storage
from curator.config import changes
from curator.config.changes import ConfigChanges
from curator.listing import (
    InputNotFound,
    Listing,
    clear_work,
    inputs_for,
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
def prepare_output(pipeline: Pipeline, force: bool = False) -> ConfigChanges | None:
    """Write the resolved config next to the output. A rerun into an output made with
    another config goes on when the changes can be redone from the manifest (filter
    thresholds, dedup, shard keys: returns them); one that changes clips or their scores is
    refused, naming the keys (unless `force`, which has cleared the output)."""
    ctx = pipeline.ctx
    rundir = RunDir.of(ctx.output_uri)
    previous = rundir.read_config()
    stages = [s.name for s in pipeline.specs]
    found: ConfigChanges | None = None
    if previous is not None and not force:
        found = changes.diff(_as_config(previous[0]), ctx.config, previous[1].get("stages"), stages)
        if found.needs_recompute:
            raise PipelineError(refusal(ctx.output_uri, found))
    run = {"config_hash": ctx.config_hash, "resume_hash": changes.resume_hash(ctx.config, stages),
           "run_id": ctx.run_id, "stages": stages,
           "skipped": {name: [r.describe() for r in reqs] for name, reqs in pipeline.skipped}}
    if found:
        run["changed"] = found.as_record()
    rundir.write_config(ctx.config.model_dump(mode="json"), run)
    return found or None


def _as_config(doc: dict[str, Any]) -> Any:
    """A recorded config with today's defaults filled in (keys added since are not changes);
    the raw document when it no longer validates (keys removed since are)."""
    from curator.config import ConfigError, PipelineConfig

    try:
        return PipelineConfig.load(None, None, base=doc)
    except ConfigError:
        return doc


def refusal(output_uri: str, found: ConfigChanges) -> str:
    """Why a rerun into this output cannot reuse its finished videos, and what to do."""
    msg = (f"{storage.display(output_uri)} holds a run made with a different config, and these changes alter the "
           f"clips or their recorded scores, so its finished videos cannot be reused: "
           + ", ".join(c.describe() for c in found.of(changes.CLIPS))
           + ". Use --force to recompute everything in this output, or a new --output")
    cheap = found.of(*changes.CHEAP)
    if cheap:
        msg += (f" (the other changes, {', '.join(c.key for c in cheap)}, need neither: on their own a rerun "
                "re-applies them from the manifest without decoding)")
    return msg


def rerun_note(output_uri: str, found: ConfigChanges, config: Any) -> str:
    """The one line a rerun prints when it redoes decisions, dedup or shards from the manifest."""
    redo = []
    if found.of(changes.DECISIONS):
        redo.append("clips re-decided from their recorded scores (as `curator refilter`)")
    if found.of(changes.DEDUP) and config.dedup.enabled:
        redo.append("duplicates re-marked (as `curator dedup`)")
    if found.of(changes.INDEX):
        redo.append("clip index updated (as `curator index`)")
    if found.of(changes.DECISIONS, changes.DEDUP, changes.SHARD) and config.run.shard:
        redo.append("shards rewritten (as `curator shard`)")
    return (f"config changed since the last run into {storage.display(output_uri)}: "
            + ", ".join(c.describe() for c in found.changes)
            + "; finished videos are not decoded again: " + ("; ".join(redo) or "nothing to redo") + ".")


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


def execute(pipeline: Pipeline, runner: Runner, *, force: bool = False, progress: Progress | None = None,
            notify: Callable[[str], None] | None = None, inputs: Iterable[Row] | None = None) -> Summary:
    """Run a built pipeline with a runner; the same code path for local and Ray.

    `notify` gets the one line a rerun with a changed config prints (default: the log);
    `inputs`: these input rows instead of the config's input (`curator plan`'s sample)."""
    ctx = pipeline.ctx
    progress = progress or NullProgress()
    t0 = time.monotonic()
    rundir = RunDir.activated(ctx.output_uri, ctx.config.storage)  # the driver's process default
    phases = [p for p in build(RUN_PHASES, available=["parts"]) if p.NAME != "shard" or ctx.config.run.shard]
    if force:
        rundir.clear()
    found = prepare_output(pipeline, force=force)
    if found:
        (notify or log.info)(rerun_note(ctx.output_uri, found, ctx.config))
    log.info("%s", pipeline.describe())
    clear_work(ctx.output_uri)  # listing parts left by an interrupted run
    try:
        rows = inputs_for(ctx.config) if inputs is None else inputs
        if ctx.config.run.provenance:
            try:
                rows = with_provenance(rows, load_provenance(ctx.config.run.provenance))
            except (ValueError, storage.NotFound) as exc:
                raise PipelineError(f"run.provenance: {exc}") from None
        listing = write_listing(ctx.output_uri, ctx.run_id, rows, ctx.config.run.listing_part_size)
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
        t_stream = time.monotonic()
        for rows in runner.stream(pipeline, listing):
            collector.add(rows)
        collector.finish()
        lost = account_for_lost(pipeline, listing, collector)
        stream_s = time.monotonic() - t_stream
        clear_work(ctx.output_uri)
        state = PhaseState(rundir, ctx.config, runner, stages=stage_names, schema=pipeline.schema,
                           on_shard=progress.shard_done, started=t0, stream_s=stream_s,
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
