"""The driver side of a run: list inputs, collect finished videos, consolidate, shard.

The runner (local or Ray) turns a stream of input rows into a stream of processed rows;
everything around that is the same for both and lives here:

    prepare output (config.yaml, config-hash check)
      -> list inputs (lazy, paginated) into listing parts under _work/
      -> runner.stream(...)   rows of videos and clips, in any order
      -> Collector: a video is finished when its row and all its clips have arrived;
         its rows are written as one manifest part (the completion marker)
      -> account for videos no worker returned (crashed / killed / timed out)
      -> consolidate manifest.parquet -> shard -> metrics.json, summary.json
    throughout: progress.json (state, per-stage progress and nodes; curator.tracking)
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Iterator

import yaml

from curator import manifest, metrics, storage
from curator.config import PipelineConfig
from curator.pipeline import Pipeline, PipelineError
from curator.listing import InputNotFound, Listing, clear_work, list_inputs, write_listing
from curator.progress import NullProgress, Progress
from curator.records import OK, SKIPPED, Reason, Row, stop
from curator.tracking import FAILED, STOPPED, SUCCEEDED, StatusWriter, add_placement

log = logging.getLogger("curator")

CONFIG_NAME = "config.yaml"
SUMMARY_NAME = "summary.json"


# ---------------------------------------------------------------------- collector
@dataclass
class Summary:
    videos: int = 0
    videos_ok: int = 0
    videos_resumed: int = 0
    videos_lost: int = 0
    clips: int = 0
    clips_kept: int = 0
    rejects: dict[str, int] = field(default_factory=dict)  # "stage/reason" -> count
    shards: int = 0
    shard_samples: int = 0
    elapsed_s: float = 0.0
    output: str = ""

    def format(self) -> str:
        lines = [
            f"videos in:   {self.videos} ({self.videos_ok} produced clips"
            + (f", {self.videos_resumed} finished earlier" if self.videos_resumed else "")
            + (f", {self.videos_lost} lost by workers" if self.videos_lost else "") + ")",
            f"clips:       {self.clips} cut, {self.clips_kept} kept",
            f"shards:      {self.shards} ({self.shard_samples} samples)",
        ]
        if self.rejects:
            lines.append("rejects by reason:")
            for k, v in sorted(self.rejects.items(), key=lambda kv: (-kv[1], kv[0])):
                lines.append(f"  {v:6d}  {k}")
        lines.append(f"time:        {self.elapsed_s:.1f} s")
        lines.append(f"output:      {storage.display(self.output)}")
        return "\n".join(lines)


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
    cfg_uri = storage.join(ctx.output_uri, CONFIG_NAME)
    try:
        previous = yaml.safe_load(storage.read_bytes(cfg_uri)) or {}
    except storage.NotFound:
        previous = None
    if previous is not None and not force:
        old_hash = (previous.get("_run") or {}).get("config_hash")
        if old_hash and old_hash != ctx.config_hash:
            raise PipelineError(
                f"{storage.display(ctx.output_uri)} holds a run made with a different config "
                f"(hash {old_hash}, now {ctx.config_hash}); use a new --output, or --force to redo it all")
    doc = ctx.config.model_dump(mode="json")
    doc["_run"] = {"config_hash": ctx.config_hash, "run_id": ctx.run_id,
                   "stages": [s.name for s in pipeline.specs],
                   "skipped": {name: [r.describe() for r in reqs] for name, reqs in pipeline.skipped}}
    storage.write_bytes(cfg_uri, yaml.safe_dump(doc, sort_keys=False).encode())


def clear_output(output_uri: str) -> None:
    """--force: remove what an earlier run wrote under this output (staging, shards)."""
    for sub in ("staging/", "shards/"):
        for info in storage.list_objects(storage.join(output_uri, sub) + "/"):
            storage.delete(info.uri)
    for name in (manifest.MANIFEST_NAME, SUMMARY_NAME, CONFIG_NAME, metrics.METRICS_NAME):
        storage.delete(storage.join(output_uri, name))


def manifest_rows(output_uri: str, pf: Any = None) -> Iterator[Row]:
    """Every row of the consolidated manifest, in manifest order, batch by batch."""
    for batch in (pf or _manifest_file(output_uri)).iter_batches(batch_size=2048):
        yield from batch.to_pylist()


def _manifest_file(output_uri: str) -> Any:
    import io

    import pyarrow.parquet as pq

    return pq.ParquetFile(io.BytesIO(storage.read_bytes(manifest.manifest_uri(output_uri))))


def kept_clips(output_uri: str) -> Iterator[Row]:
    """Kept clip rows of the consolidated manifest, in manifest order, batch by batch."""
    for row in manifest_rows(output_uri):
        if row["kind"] == "clip" and row["status"] == OK and row.get("clip_uri"):
            yield row


def sample_text_files(row: Row) -> list[tuple[str, bytes]]:
    """Extra members of a shard sample: the caption as `<clip_id>.txt` (webdataset's text key)."""
    caption = row.get("caption")
    return [(f"{row['clip_id']}.txt", caption.encode("utf-8"))] if caption else []


def shard(output_uri: str, config: PipelineConfig,
          map_fn: Callable[[Callable[[Any], Any], Iterable[Any]], Iterator[Any]],
          on_shard: Callable[[], None] | None = None) -> list[dict[str, Any]]:
    """Plan shards from the manifest and write them with `map_fn` (the runner's parallel map).

    One pass over the manifest feeds every split and profile; then the split indexes,
    shards/index.json and the dataset card (shards/README.md) are written."""
    from stages import shard as shard_stage

    storage_cfg = config.storage

    def write(spec: Any) -> dict[str, Any]:  # runs on a worker
        storage.configure(storage_cfg)
        return shard_stage.write_shard(spec, output_uri, extra_files=sample_text_files)

    pf = _manifest_file(output_uri)
    try:
        planner = shard_stage.Planner(config.shard, pf.schema_arrow.names)
    except shard_stage.ShardError as exc:
        raise PipelineError(str(exc)) from None
    stats = shard_stage.ManifestStats()
    results = []
    for r in map_fn(write, planner.plan(stats.tally(manifest_rows(output_uri, pf)))):
        results.append(r)
        if on_shard:
            on_shard()
    indexes = shard_stage.build_indexes(results, config.shard)
    index_uris = [shard_stage.split_index_uri(output_uri, s, p) for s, p in indexes]
    shard_stage.remove_stale(output_uri, [r["shard"] for r in results], keep=index_uris)
    run = _run_info(output_uri)
    info = {"run_config_hash": run.get("config_hash"), "stages": run.get("stages"),
            "shard_config_hash": _hash(config.shard.model_dump(mode="json"))}
    shard_stage.write_indexes(output_uri, indexes, {"config_hash": info["run_config_hash"],
                                                    "shard_config_hash": info["shard_config_hash"],
                                                    "profiles": list(config.shard.profile),
                                                    "clips": planner.clips})
    shard_stage.write_card(output_uri, shard_stage.card(indexes, config.shard, planner, stats, info))
    return results


def post_curation(output_uri: str, config: PipelineConfig, runner: Any) -> None:
    """Global phases between consolidation and sharding: dedup, then the clip index."""
    if config.dedup.enabled:
        from curator import dedup

        try:
            res = dedup.run_phase(output_uri, config, runner)
        except dedup.DedupError as exc:
            raise PipelineError(f"dedup: {exc}") from None
        log.info("dedup: %d duplicates marked in %d groups", res.stats.removed, res.stats.groups)
    if config.index.enabled:
        from curator import index

        res_i = index.add_run(output_uri, index.index_uri_for(output_uri, config.index), config.index)
        if res_i["added"] or res_i["skipped"]:
            log.info("index: %d clips added to %s", res_i["added"], storage.display(res_i["index"]))
        else:
            log.info("index: no clip with an embedding to add")


def _run_info(output_uri: str) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(storage.read_bytes(storage.join(output_uri, CONFIG_NAME))) or {}
    except storage.NotFound:
        return {}
    return doc.get("_run") or {}


def _hash(doc: Any) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def apply_filters(output_uri: str, config: PipelineConfig, stage_names: list[str]) -> Any:
    """Run-level filter step after consolidation: re-decide every clip from its recorded
    scores with this config (so a resumed run matches the config it ran with) and apply
    the global percentile rules ("drop the bottom 15 %") over the whole run."""
    from curator import filters

    if not filters.filter_classes(stage_names):
        return None
    summary = filters.rewrite_manifest(output_uri, config, stage_names)
    for key, cut in summary.cutoffs.items():
        log.info("percentile rule: %s >= %.4g over the whole run", key, cut)
    return summary


def summarize(output_uri: str, elapsed: float, resumed: int, shard_results: list[dict[str, Any]]) -> Summary:
    table = manifest.read_manifest(output_uri, columns=["kind", "status", "stage", "reason"])
    s = Summary(output=output_uri, elapsed_s=round(elapsed, 3), videos_resumed=resumed)
    rejects: Counter[str] = Counter()
    for r in table.to_pylist():
        if r["kind"] == "video":
            s.videos += 1
        else:
            s.clips += 1
            if r["status"] == OK:
                s.clips_kept += 1
        if r["status"] != OK:
            rejects[f"{r['kind']}: {r['stage']}/{r['reason']}"] += 1
    vt = manifest.read_manifest(output_uri, columns=["kind", "num_clips"]).to_pylist()
    s.videos_ok = sum(1 for r in vt if r["kind"] == "video" and (r["num_clips"] or 0) > 0)
    s.rejects = dict(rejects)
    s.shards = len(shard_results)
    s.shard_samples = sum(r["samples"] for r in shard_results)
    return s


def account_for_lost(pipeline: Pipeline, listing: Listing, collector: Collector) -> int:
    """Videos that were listed but came back from no worker (a crash, a kill, a hang past
    its timeout, a block Ray gave up on) get an error row, so the manifest is complete
    and a rerun retries them. Checked only when fewer video rows came back than listed."""
    if collector.video_rows >= listing.count:
        return 0
    lost = 0
    for row in listing.rows():
        if storage.exists(manifest.part_uri(pipeline.ctx.output_uri, row["video_id"])):
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


def execute(pipeline: Pipeline, runner: Any, *, force: bool = False, progress: Progress | None = None) -> Summary:
    """Run a built pipeline with a runner; the same code path for local and Ray."""
    ctx = pipeline.ctx
    progress = progress or NullProgress()
    t0 = time.monotonic()
    storage.configure(ctx.config.storage)
    if force:
        clear_output(ctx.output_uri)
    prepare_output(pipeline, force=force)
    log.info("%s", pipeline.describe())
    clear_work(ctx.output_uri)  # listing parts left by an interrupted run
    try:
        inputs = list_inputs(ctx.input_uri, ctx.config.stages.ingest.extensions, ctx.config.storage.list_page_size)
        listing = write_listing(ctx.output_uri, ctx.run_id, inputs, ctx.config.run.listing_part_size)
    except InputNotFound as exc:
        raise PipelineError(str(exc)) from None
    progress.start(listing.count)
    collector = Collector(pipeline, progress)

    def counts() -> dict[str, int]:  # read from the status thread: fixed keys, no iteration
        return {"total": listing.count,
                **{k: collector.counts.get(k, 0) for k in ("videos", "clips", "clips_kept", "videos_resumed")}}

    status = StatusWriter(ctx.output_uri, ctx.run_id, counts, getattr(runner, "progress", dict),
                          [s.name for s in pipeline.specs], every_s=ctx.config.run.progress_interval_s).start()
    try:
        for rows in runner.stream(pipeline, listing):
            collector.add(rows)
        collector.finish()
        lost = account_for_lost(pipeline, listing, collector)
        clear_work(ctx.output_uri)
        progress.set_phase("consolidating manifest")
        manifest.consolidate(ctx.output_uri, pipeline.schema)
        progress.set_phase("applying filter rules")
        apply_filters(ctx.output_uri, ctx.config, [s.name for s in pipeline.specs])
        progress.set_phase("dedup and index")
        post_curation(ctx.output_uri, ctx.config, runner)
        results: list[dict[str, Any]] = []
        if ctx.config.run.shard:
            progress.set_phase("sharding")
            results = shard(ctx.output_uri, ctx.config, runner.map, on_shard=progress.shard_done)
        progress.close()
        wall = time.monotonic() - t0
        summary = summarize(ctx.output_uri, wall, collector.counts["videos_resumed"], results)
        summary.videos_lost = lost
        doc = metrics.compute(ctx.output_uri, [s.name for s in pipeline.specs], wall, {"summary": asdict(summary)})
        metrics.write(ctx.output_uri, add_placement(doc, status.snapshot()))
        storage.write_bytes(storage.join(ctx.output_uri, SUMMARY_NAME),
                            json.dumps(asdict(summary), indent=1, sort_keys=True).encode())
        status.finish(SUCCEEDED)
    except (KeyboardInterrupt, RunStopped, SystemExit) as exc:  # Ctrl-C, SIGTERM (ours or Ray's handler)
        status.finish(STOPPED, error=f"stopped: {type(exc).__name__} {exc}".strip())
        raise
    except BaseException as exc:
        status.finish(FAILED, error=f"{type(exc).__name__}: {exc}")
        raise
    return summary
