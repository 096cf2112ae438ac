"""``curator watch INPUT --output URI [--interval S] [--once]``: incremental curation.

Each cycle compares a listing of the input prefix with the catalog's *sources ledger*
(what earlier cycles curated, with each object's size, mtime and ETag):

- **new** objects (never curated, or deleted and back, or failed before) and **changed**
  ones (another ETag; without ETags another size or mtime) are curated by one run into
  ``<output>/runs/<id>/`` — that run lists only them, so nothing already curated is read;
- the run's clips are registered in the catalog (default ``<output>/catalog``, or
  ``index.uri``) in **one commit** with the ledger records and, for changed sources, a
  tombstone hiding their earlier clips: the catalog never shows both versions, or neither;
- **deleted** objects get a tombstone (their clips disappear from search, dedup and
  ``curator feedback``) and a ``deleted`` ledger record, again in one commit;
- the new clips are deduplicated against the catalog (:func:`curator.catalog.dedup.incremental`:
  assigned to its k-means centroids, re-clustered when they drift).

A crash anywhere leaves the ledger as it was for the unfinished sources, so the next cycle
redoes them; registering is idempotent (clips already in the catalog are skipped).
Several watchers on different prefixes can share one catalog (commits are
compare-and-swap). Polling is the mechanism; a bucket's event notifications (S3 → SQS,
GCS → Pub/Sub, Azure → Event Grid) can replace the timer by calling ``watch --once``
(or :func:`watch_once`) when an event arrives — the listing stays the source of truth,
so a lost or duplicated event costs nothing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from curator import storage
from curator.catalog import core
from curator.config import PipelineConfig
from curator.records import ERROR, new_video_row
from curator.rundir import RunDir

log = logging.getLogger("curator.catalog")

#: ledger status of a source whose run ended in an error: curated again next cycle
FAILED = "failed"


@dataclass
class Cycle:
    input: str
    catalog: str
    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: int = 0
    run: str | None = None
    added: int = 0
    failed: int = 0
    dedup: dict[str, Any] | None = None
    seconds: float = 0.0

    def format(self) -> str:
        line = (f"watch {storage.display(self.input)}: {len(self.new)} new, {len(self.changed)} changed, "
                f"{len(self.deleted)} deleted, {self.unchanged} unchanged")
        if self.run:
            line += f"; curated into {storage.display(self.run)}, {self.added} clips added to " \
                    f"{storage.display(self.catalog)}"
            if self.failed:
                line += f" ({self.failed} videos failed: retried next cycle)"
        if self.dedup:
            line += (f"; dedup ({self.dedup.get('mode')}): {self.dedup.get('removed', 0)} duplicates in "
                     f"{self.dedup.get('groups', 0)} groups")
        return line + f" [{self.seconds:.1f} s]"


def catalog_uri(output_uri: str, cfg: PipelineConfig) -> str:
    return storage.normalize(cfg.index.uri) if cfg.index.uri else storage.join(storage.normalize(output_uri), "catalog")


def _signature(size: Any, mtime: Any, etag: Any) -> tuple[Any, ...]:
    return ("etag", etag) if etag else ("stat", size, round(float(mtime or 0), 3))


def plan(input_uri: str, cfg: PipelineConfig, catalog: str) -> tuple[Cycle, dict[str, storage.ObjectInfo]]:
    """What a cycle has to do: new, changed and deleted sources under the input prefix."""
    prefix = storage.normalize(input_uri)
    prefix = prefix if prefix.endswith("/") else prefix + "/"
    snap = core.read(catalog)
    ledger = core.load_sources(snap.uri, snap.doc, prefix=prefix)
    current = {i.uri: i for i in storage.list_objects(prefix, suffixes=cfg.stages.ingest.extensions,
                                                       page_size=cfg.storage.list_page_size)}
    cyc = Cycle(prefix, snap.uri)
    for uri, info in sorted(current.items()):
        rec = ledger.get(uri)
        if rec is None or rec["status"] in (core.DELETED, FAILED):
            cyc.new.append(uri)
        elif _signature(info.size, info.mtime, info.etag) != _signature(rec["size"], rec["mtime"], rec["etag"]):
            cyc.changed.append(uri)
        else:
            cyc.unchanged += 1
    cyc.deleted = sorted(u for u, r in ledger.items() if u not in current and r["status"] != core.DELETED)
    return cyc, current


def watch_once(input_uri: str, output_uri: str, cfg: PipelineConfig, *, quiet: bool = True) -> Cycle:
    """One cycle: curate what is new or changed, register it, tombstone what was deleted,
    dedup the new clips against the catalog."""
    from curator import index
    from curator import pipeline as pl
    from curator.catalog import dedup as cdedup
    from curator.driver import execute
    from curator.progress import NullProgress, Progress
    from curator.runners import make_runner

    t0 = time.monotonic()
    output_uri = storage.normalize(output_uri).rstrip("/")
    catalog = catalog_uri(output_uri, cfg)
    cyc, current = plan(input_uri, cfg, catalog)
    todo = cyc.new + cyc.changed
    segments: list[str] = []
    if todo:
        run_out = storage.join(output_uri, "runs", core.new_id())
        run_cfg = cfg.model_copy(update={"input": cyc.input, "output": run_out,
                                         "index": cfg.index.model_copy(update={"enabled": False})})
        pipeline = pl.build(run_cfg)
        runner = make_runner(run_cfg)
        try:
            rows = [new_video_row(u, storage.relative(cyc.input, u)) for u in todo]
            execute(pipeline, runner, inputs=rows, progress=NullProgress() if quiet else Progress(
                interval_s=cfg.run.progress_interval_s))
        finally:
            runner.close()
        status: dict[str, str] = {}
        with RunDir.of(run_out).open_manifest("watch") as mf:
            for r in mf.rows(["kind", "source_uri", "status", "video_id"]):
                if r["kind"] == "video":
                    status[r["source_uri"]] = FAILED if r["status"] == ERROR else core.CURATED
        records = []
        for u in todo:
            info = current[u]
            records.append({"source_uri": u, "size": info.size, "mtime": info.mtime, "etag": info.etag,
                            "status": status.get(u, FAILED), "run": run_out,
                            "video_id": rows[todo.index(u)]["video_id"]})
        cyc.failed = sum(r["status"] == FAILED for r in records)
        res = index.add_run(run_out, catalog, cfg.index, replace_sources=cyc.changed, sources=records)
        cyc.run, cyc.added, segments = run_out, res["added"], res["segments"]
    if cyc.deleted:
        register_deletions(catalog, cyc.deleted)
    if segments and cfg.catalog.dedup:
        cyc.dedup = cdedup.incremental(catalog, segments, cfg.dedup, recluster_drift=cfg.catalog.recluster_drift)
    cyc.seconds = round(time.monotonic() - t0, 3)
    return cyc


def register_deletions(catalog: str, uris: list[str]) -> int:
    """One commit: a tombstone for each deleted source and its `deleted` ledger record."""
    tid, sid = core.new_id(), core.new_id()
    core.write_table(storage.join(catalog, "tombstones", f"{tid}.parquet"), core.tombstone_table(uris, "deleted"))
    core.write_table(storage.join(catalog, "sources", f"{sid}.parquet"),
                     core.sources_table([{"source_uri": u, "status": core.DELETED} for u in uris]))

    def apply(doc: dict[str, Any], seq: int) -> dict[str, Any]:
        doc.setdefault("tombstones", []).append({"id": tid, "rows": len(uris), "seq": seq, "created": core.now_iso()})
        doc.setdefault("sources", []).append({"id": sid, "rows": len(uris), "seq": seq, "created": core.now_iso()})
        return doc

    return core.commit(catalog, apply).seq


def watch(input_uri: str, output_uri: str, cfg: PipelineConfig, *, interval_s: float | None = None,
          once: bool = False, cycles: int | None = None, report: Callable[[Cycle], None] | None = None) -> list[Cycle]:
    """Poll the input every `interval_s` (default catalog.watch_interval_s) and run a cycle
    each time; `once`: one cycle. Returns the cycles (until interrupted or `cycles` done)."""
    interval = interval_s if interval_s is not None else cfg.catalog.watch_interval_s
    done: list[Cycle] = []
    while True:
        started = time.monotonic()
        cyc = watch_once(input_uri, output_uri, cfg)
        done.append(cyc)
        if report is not None:
            report(cyc)
        else:
            log.info("%s", cyc.format())
        if once or (cycles is not None and len(done) >= cycles):
            return done
        time.sleep(max(0.0, interval - (time.monotonic() - started)))


def as_dict(cyc: Cycle) -> dict[str, Any]:
    return asdict(cyc)
