"""Per-stage metrics of a run, computed from its manifest (`metrics.json`).

Every row records, per stage that acted on it, its busy seconds (`timings`) and when the
stage finished it (`finished_at`). From those alone this module derives, per stage:
items in / out, rejects by reason, busy time, throughput, and over time (in buckets of
the run's wall clock) items finished and the queue in front of the stage (items its
predecessor finished that it had not finished yet). Memory: aggregates only (two passes
over one open manifest: the time span, then finishes per bucket).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from curator import storage
from curator.rundir import METRICS as METRICS_NAME
from curator.rundir import ManifestFile, RunDir

__all__ = ["BUCKETS", "METRICS_NAME", "compute", "read", "write"]
BUCKETS = 40


def compute(output_uri: str, stage_order: list[str], wall_s: float, extra: dict[str, Any] | None = None,
            mf: ManifestFile | None = None) -> dict:
    """metrics.json's document from the run's manifest (`mf`: an already open one)."""
    if mf is None:
        with RunDir.of(output_uri).open_manifest("metrics") as mf:
            return compute(output_uri, stage_order, wall_s, extra, mf)
    pf = mf.parquet
    cols = ["kind", "status", "stage", "reason", "timings", "finished_at"]
    items: Counter[str] = Counter()
    busy: defaultdict[str, float] = defaultdict(float)
    stopped: defaultdict[str, Counter[str]] = defaultdict(Counter)
    kinds: defaultdict[str, Counter[str]] = defaultdict(Counter)
    names = [c for c in cols if c in pf.schema_arrow.names]
    t0, t1, seen = float("inf"), float("-inf"), False
    for batch in pf.iter_batches(batch_size=4096, columns=names):  # pass 1: totals and the time span
        for row in batch.to_pylist():
            for stage, secs in row.get("timings") or []:
                items[stage] += 1
                busy[stage] += secs
                kinds[stage][row["kind"]] += 1
            for stage, ts in row.get("finished_at") or []:
                t0, t1, seen = min(t0, ts), max(t1, ts), True
            if row["status"] not in ("ok", "skipped") and row.get("stage"):
                stopped[row["stage"]][row.get("reason") or "unknown"] += 1
    if not seen:
        t0 = t1 = 0.0
    width = max((t1 - t0) / BUCKETS, 1e-6)
    finished: defaultdict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * BUCKETS)
    if seen and "finished_at" in names:  # pass 2 (same open file): finishes per time bucket, not kept per row
        for batch in pf.iter_batches(batch_size=4096, columns=["kind", "finished_at"]):
            for row in batch.to_pylist():
                for stage, ts in row.get("finished_at") or []:
                    finished[(stage, row["kind"])][min(BUCKETS - 1, int((ts - t0) / width))] += 1

    def curve(key: tuple[str, str]) -> tuple[list[int], list[int]]:
        per_bucket = list(finished[key]) if key in finished else [0] * BUCKETS
        cumulative, acc = [], 0
        for n in per_bucket:
            acc += n
            cumulative.append(acc)
        return per_bucket, cumulative

    stages: dict[str, Any] = {}
    last_curve: dict[str, list[int]] = {}  # kind -> cumulative finishes of the latest stage seen
    for name in stage_order:
        kind = (kinds.get(name) or Counter({"video": 0})).most_common(1)[0][0] if kinds.get(name) else None
        per_bucket, cumulative = curve((name, kind)) if kind else ([0] * BUCKETS, None)
        n_in = items.get(name, 0)
        n_stop = sum(stopped[name].values())
        entry = {
            "items_in": n_in,
            "items_out": n_in - n_stop,
            "kinds": dict(kinds.get(name, {})),
            "rejects": dict(stopped.get(name, {})),
            "busy_s": round(busy.get(name, 0.0), 3),
            "items_per_busy_s": round(n_in / busy[name], 3) if busy.get(name) else None,
            "finished_per_bucket": per_bucket,
        }
        if kind and kind in last_curve and cumulative is not None:
            # queued or in flight: finished by the previous stage (same kind of row), not yet by this one
            entry["queue_per_bucket"] = [max(0, p - c) for p, c in zip(last_curve[kind], cumulative)]
        if kind and cumulative is not None:
            last_curve[kind] = cumulative
            for other_kind in kinds.get(name, {}):  # a fan-out stage also starts the other kind's chain
                if other_kind != kind:
                    last_curve[other_kind] = curve((name, other_kind))[1]
        stages[name] = entry
    doc = {
        "wall_s": round(wall_s, 3),
        "bucket_s": round(width, 3),
        "started_at": t0,
        "stages": stages,
    }
    if extra:
        doc.update(extra)
    return doc


def write(output_uri: str, doc: dict) -> str:
    rundir = RunDir.of(output_uri)
    rundir.write_metrics(doc)
    return rundir.metrics


def read(output_uri: str) -> dict:
    doc = RunDir.of(output_uri).read_metrics()
    if doc is None:
        raise storage.NotFound(RunDir.of(output_uri).metrics)
    return doc
