"""Filters: stages that measure a clip, record every score with its threshold, and decide.

A filter never silently drops a clip. For each thresholded metric it appends one entry to
the clip's ``checks`` column (stage, metric, value, threshold, op, passed) and writes the
score into its own manifest column; when a check fails, the clip is stopped with status
``rejected``, the filter's name as ``stage``, a machine-readable ``reason`` ("static",
"shaky", "low_quality", "text_overlay", "type_dropped", ...) and a ``detail`` that says
value versus threshold. Rejected clips keep flowing untouched, so later (more expensive)
stages skip them and the manifest still explains every clip.

Because every decision is a pure function of the recorded scores and the config,
:func:`refilter` can re-apply new thresholds to a finished run from its manifest alone —
no decoding — and :func:`apply_percentiles` applies rules over the whole run ("drop the
bottom 15 % by quality"), which a per-batch stage cannot do.

Writing a filter::

    class MyFilter(Filter):
        name = "mine"
        columns = [("my_score", pa.float64())]

        @classmethod
        def rules(cls, config):            # thresholds from the stage config
            return [Rule("my_score", ">=", config.min_score, "too_low", "min_score")]

        def measure(self, row):            # decode / compute; returns column values
            return {"my_score": ...}
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Iterator

from curator.records import OK, REJECTED, Row, add_timing, stop
from curator.stage import Stage

log = logging.getLogger(__name__)

NOT_SCORED = "not_scored"
BOTTOM_PERCENT = "bottom_percent"


@dataclass(frozen=True)
class Rule:
    """Keep a clip when ``value op threshold``; a threshold of None records nothing."""

    metric: str  # the check's metric name and the manifest column holding the value
    op: str  # ">=" or "<="
    threshold: float | None
    reason: str  # written as the clip's reason when this rule fails
    key: str = ""  # the config key of the threshold (for the detail text)

    def __post_init__(self) -> None:
        if self.op not in (">=", "<="):
            raise ValueError(f"rule {self.metric}: op must be '>=' or '<=', not {self.op!r}")

    def passes(self, value: float) -> bool:
        assert self.threshold is not None
        return value >= self.threshold if self.op == ">=" else value <= self.threshold


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def decide(row: Row, stage: str, rules: Iterable[Rule], *, change_status: bool = True) -> list[Rule]:
    """Record one check per thresholded rule on the row (replacing this stage's earlier
    checks) and, when `change_status` and the row is active, stop it on the first failure.
    Returns the failed rules. A missing value fails with reason ``not_scored``."""
    checks = [c for c in (row.get("checks") or []) if c.get("stage") != stage]
    failed: list[Rule] = []
    missing: list[Rule] = []
    for rule in rules:
        if rule.threshold is None:
            continue
        value = row.get(rule.metric)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            if row.get("status") == OK:  # an active clip without the score: recorded as not scored
                missing.append(rule)
                checks.append({"stage": stage, "metric": rule.metric, "value": None,
                               "threshold": float(rule.threshold), "op": rule.op, "passed": None})
            continue
        ok = rule.passes(float(value))
        checks.append({"stage": stage, "metric": rule.metric, "value": float(value),
                       "threshold": float(rule.threshold), "op": rule.op, "passed": ok})
        if not ok:
            failed.append(rule)
    row["checks"] = checks
    if change_status and row.get("status") == OK:
        if failed:
            first = failed[0]
            detail = "; ".join(
                f"{r.metric} {_fmt(float(row[r.metric]))} {'<' if r.op == '>=' else '>'} {_fmt(float(r.threshold or 0.0))}"
                + (f" ({stage}.{r.key})" if r.key else "")
                for r in failed)
            stop(row, stage, first.reason, detail, status=REJECTED)
        elif missing:
            stop(row, stage, NOT_SCORED, "no value for " + ", ".join(r.metric for r in missing)
                 + f": the clip was not scored by {stage} (rejected earlier, or scoring failed)",
                 status=REJECTED)
    return failed + missing


class Filter(Stage):
    """A clip stage that measures, records and decides. Subclasses implement
    :meth:`rules` (thresholds from config) and :meth:`measure` (scores of one clip)."""

    kind: ClassVar[str | None] = "clip"
    #: reasons this filter may write (documentation and tests)
    reasons: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def rules(cls, config: Any) -> list[Rule]:
        return []

    @classmethod
    def derive(cls, row: Row, config: Any) -> None:
        """Recompute derived columns (tags, weights) from recorded scores, in place.
        Runs after :meth:`measure` and again in `curator refilter`; never decodes."""

    @classmethod
    def global_rules(cls, config: Any) -> list[tuple[str, float]]:
        """(metric, percent) pairs: drop the lowest `percent` % of the run by `metric`."""
        return []

    def measure(self, row: Row) -> dict[str, Any]:
        raise NotImplementedError

    def measure_rows(self, rows: list[Row]) -> list[dict[str, Any]]:
        """Scores for a batch; override to batch a model. Per-row errors are raised."""
        return [self.measure(r) for r in rows]

    # ------------------------------------------------------------------ processing
    def process_rows(self, rows: list[Row]) -> list[list[Row]]:
        """One clip at a time under the per-item deadline, so one bad clip fails alone; a
        filter that batches a model (overrides `measure_rows`) measures the batch first,
        under the base class's batch deadline, and falls back to one by one if it fails."""
        from curator.deadline import ItemTimeout

        values: list[dict[str, Any]] | None = None
        if type(self).measure_rows is not Filter.measure_rows:  # a batched model (video_type)
            try:
                values = self.measure_rows(rows)
            except ItemTimeout:
                raise
            except Exception as exc:
                log.warning("filter %s: batch of %d failed (%s); measuring one by one", self.name, len(rows), exc)

        def one(row: Row, i: int) -> Row:
            return self._apply(row, values[i] if values is not None else self.measure(row), change_status=True)

        return self.per_item(rows, one)

    def _apply(self, row: Row, values: dict[str, Any], change_status: bool) -> Row:
        row.update(values)
        type(self).derive(row, self.config)
        decide(row, self.name, type(self).rules(self.config), change_status=change_status)
        return row

    def process(self, batch: list[Row]) -> list[Row]:
        out = super().process(batch)
        if getattr(self.config, "score_rejected", False):
            self._score_rejected(out)
        return out

    def _score_rejected(self, batch: list[Row]) -> None:
        """Score clips an earlier filter rejected (they still hold their bytes), keeping
        their status, so a later refilter knows every score."""
        todo = [r for r in batch if r.get("kind") == "clip" and r.get("status") == REJECTED
                and r.get("mp4") is not None and r.get("stage") != self.name]
        if not todo:
            return
        import time

        for row in todo:
            t0 = time.perf_counter()
            try:
                values = self.measure(row)
            except Exception as exc:
                log.warning("filter %s could not score rejected clip %s: %s", self.name, row.get("clip_id"), exc)
                continue
            self._apply(row, values, change_status=False)
            add_timing(row, self.name, time.perf_counter() - t0)


# ------------------------------------------------------------------ run-level steps
def filter_classes(stage_names: Iterable[str]) -> dict[str, type[Filter]]:
    """The filter classes among these stage names, in the given order."""
    from curator.pipeline import STAGES, StageSpec

    out: dict[str, type[Filter]] = {}
    for name in stage_names:
        target = STAGES.get(name)
        if not target:
            continue
        cls = StageSpec(name, target, None).stage_class()
        if issubclass(cls, Filter):
            out[name] = cls
    return out


@dataclass
class RefilterSummary:
    clips: int = 0
    kept_before: int = 0
    kept_after: int = 0
    readmitted: int = 0
    newly_rejected: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    cutoffs: dict[str, float] = field(default_factory=dict)  # "stage.metric" -> percentile cutoff
    missing_stages: dict[str, int] = field(default_factory=dict)  # re-admitted clips a later stage skipped

    def format(self) -> str:
        lines = [f"clips:       {self.clips}",
                 f"kept:        {self.kept_before} -> {self.kept_after} "
                 f"(+{self.readmitted} re-admitted, -{self.newly_rejected} newly rejected)"]
        for k, v in sorted(self.cutoffs.items()):
            lines.append(f"cutoff:      {k} >= {v:.4g} (percentile rule over the whole run)")
        if self.by_reason:
            lines.append("rejects by reason:")
            for k, v in sorted(self.by_reason.items(), key=lambda kv: (-kv[1], kv[0])):
                lines.append(f"  {v:6d}  {k}")
        for name, n in sorted(self.missing_stages.items()):
            lines.append(f"warning:     {n} re-admitted clips were skipped by stage {name!r} when they were "
                         f"rejected (its outputs are empty); rerun with --force to fill them")
        return "\n".join(lines)


def _refilterable(row: Row, filter_names: set[str]) -> bool:
    if row.get("kind") != "clip":
        return False
    if row.get("status") == OK:
        return True
    return row.get("status") == REJECTED and row.get("stage") in filter_names


def reapply(row: Row, filters: dict[str, type[Filter]], config: Any,
            cutoffs: dict[tuple[str, str], float] | None = None) -> Row:
    """Re-decide one clip row from its recorded scores with `config` (no decoding).

    Rows stopped by something other than a filter (errors, dedup) are returned as they are.
    """
    names = set(filters)
    if not _refilterable(row, names):
        return row
    row.update(status=OK, stage=None, reason=None, detail=None)
    for name, cls in filters.items():
        cfg = getattr(config.stages, name)
        cls.derive(row, cfg)
        rules = list(cls.rules(cfg))
        for (stage, metric), cut in (cutoffs or {}).items():
            if stage == name:
                rules.append(Rule(metric, ">=", cut, BOTTOM_PERCENT, "drop_bottom_percent"))
        decide(row, name, rules, change_status=True)
    return row


def _iter_manifest(uri: str, columns: list[str] | None = None, batch_rows: int = 4096) -> Iterator[list[Row]]:
    import pyarrow.parquet as pq

    from curator import storage

    pf = pq.ParquetFile(io.BytesIO(storage.read_bytes(uri)))
    for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
        yield batch.to_pylist()


def percentile_cutoffs(manifest_uri: str, filters: dict[str, type[Filter]], config: Any,
                       bins: int = 1 << 16) -> dict[tuple[str, str], float]:
    """For each global percentile rule, the score below which that percentage of the run's
    candidate clips lies — the clips that every per-clip threshold keeps (so "drop the
    bottom 15 %" removes 15 % of what would otherwise be kept). Streams the manifest twice
    (min/max, then a histogram of `bins` bins), so memory does not grow with the run; the
    cutoff never drops more than asked and is exact to within (max - min) / bins."""
    import numpy as np

    wanted: list[tuple[str, str, float]] = []
    for name, cls in filters.items():
        for metric, pct in cls.global_rules(getattr(config.stages, name)):
            if pct > 0:
                wanted.append((name, metric, pct))
    if not wanted:
        return {}
    def candidates() -> Iterator[list[Row]]:
        for rows in _iter_manifest(manifest_uri):
            yield [r for r in rows if r.get("kind") == "clip" and _refilterable(r, set(filters))
                   and reapply(r, filters, config).get("status") == OK]

    def values(metric: str, rows: list[Row]) -> np.ndarray:
        a = np.asarray([r[metric] for r in rows if r.get(metric) is not None], dtype=np.float64)
        return a[np.isfinite(a)]

    lo = {m: math.inf for _, m, _ in wanted}
    hi = {m: -math.inf for _, m, _ in wanted}
    n = {m: 0 for _, m, _ in wanted}
    for rows in candidates():
        for m in lo:
            a = values(m, rows)
            if a.size:
                lo[m] = min(lo[m], float(a.min()))
                hi[m] = max(hi[m], float(a.max()))
                n[m] += int(a.size)
    hist = {m: np.zeros(bins, dtype=np.int64) for m in lo if n[m]}
    for rows in candidates():
        for m in hist:
            a = values(m, rows)
            if a.size:
                span = hi[m] - lo[m]
                idx = np.zeros(a.size, np.int64) if span <= 0 else np.minimum(
                    ((a - lo[m]) / span * bins).astype(np.int64), bins - 1)
                hist[m] += np.bincount(idx, minlength=bins)
    out: dict[tuple[str, str], float] = {}
    for name, m, pct in wanted:
        if m not in hist:
            continue
        target = pct / 100.0 * n[m]
        cum = np.cumsum(hist[m])
        # drop whole bins only, never more clips than asked: the largest k with cum[k] <= target;
        # clips below the upper edge of bin k fail `value >= cut`
        k = int(np.searchsorted(cum, target, side="right")) - 1
        span = hi[m] - lo[m]
        cut = lo[m] if k < 0 or span <= 0 else lo[m] + (k + 1) * span / bins
        out[(name, m)] = float(cut)
    return out


def rewrite_manifest(output_uri: str, config: Any, stage_names: list[str]) -> RefilterSummary:
    """Re-decide every clip of a consolidated manifest from its recorded scores with
    `config` (thresholds, weights, tag thresholds and the global percentile rules) and
    write it back atomically. Reads the manifest, never a clip."""
    import pyarrow.parquet as pq

    from curator import manifest, storage
    from curator.records import to_table

    filters = filter_classes(stage_names)
    uri = manifest.manifest_uri(output_uri)
    cutoffs = percentile_cutoffs(uri, filters, config)
    summary = RefilterSummary(cutoffs={f"{s}.{m}": v for (s, m), v in cutoffs.items()})
    schema = pq.read_schema(io.BytesIO(storage.read_bytes(uri)))
    middle = [n for n in stage_names if n not in filters and _is_middle(n)]
    with storage.open_write(uri) as fh:
        writer = pq.ParquetWriter(fh, schema, compression="zstd")
        try:
            for rows in _iter_manifest(uri):
                for row in rows:
                    if row.get("kind") == "clip":
                        _count(summary, row, lambda r: reapply(r, filters, config, cutoffs), middle)
                writer.write_table(to_table(rows, schema))
        finally:
            writer.close()
    return summary


def _count(summary: RefilterSummary, row: Row, fn: Any, middle: list[str]) -> None:
    summary.clips += 1
    was_ok = row.get("status") == OK
    fn(row)
    now_ok = row.get("status") == OK
    summary.kept_before += was_ok
    summary.kept_after += now_ok
    if now_ok and not was_ok:
        summary.readmitted += 1
        done = set(row.get("timings") or {})
        for name in middle:  # a non-filter stage (embed, caption) that skipped the clip while it was rejected
            if name not in done:
                summary.missing_stages[name] = summary.missing_stages.get(name, 0) + 1
    if was_ok and not now_ok:
        summary.newly_rejected += 1
    if not now_ok:
        key = f"{row.get('stage')}/{row.get('reason')}"
        summary.by_reason[key] = summary.by_reason.get(key, 0) + 1


def _is_middle(name: str) -> bool:
    from curator.pipeline import HEAD, TAIL

    return name not in HEAD and name not in TAIL


def has_global_rules(config: Any, stage_names: Iterable[str]) -> bool:
    for name, cls in filter_classes(stage_names).items():
        if any(p > 0 for _, p in cls.global_rules(getattr(config.stages, name))):
            return True
    return False


# ------------------------------------------------------------------------ refilter
def load_run_config(output_uri: str, config_path: str | None = None,
                    overrides: list[str] | None = None) -> tuple[Any, dict[str, Any]]:
    """The config a finished run was made with (its config.yaml), with a YAML file and
    `key=value` overrides on top. Returns (config, the run's `_run` record)."""
    import yaml

    from curator import storage
    from curator.config import ConfigError, PipelineConfig

    try:
        doc = yaml.safe_load(storage.read_bytes(storage.join(output_uri, "config.yaml"))) or {}
    except storage.NotFound:
        raise ConfigError(f"{storage.display(output_uri)} has no config.yaml: is it the output of a run?") from None
    run = doc.pop("_run", {}) or {}
    return PipelineConfig.load(config_path, overrides, base=doc), run


def refilter(output_uri: str, config_path: str | None = None, overrides: list[str] | None = None, *,
             map_fn: Any = None, shard: bool = True) -> RefilterSummary:
    """Re-apply filter thresholds to a finished run from its manifest — no decoding — then
    rewrite config.yaml (the thresholds now in force), re-shard and rewrite summary.json."""
    import json
    import time
    from dataclasses import asdict

    import yaml

    from curator import driver, storage

    t0 = time.monotonic()
    output_uri = storage.normalize(output_uri)
    config, run = load_run_config(output_uri, config_path, overrides)
    storage.configure(config.storage)
    stages = list(run.get("stages") or [])
    if not stages:
        from curator.pipeline import stage_order

        stages = stage_order(config)
    summary = rewrite_manifest(output_uri, config, stages)
    doc = config.model_dump(mode="json")
    doc["_run"] = {**run, "config_hash": config.content_hash(),
                   "refiltered": list(run.get("refiltered") or []) + [list(overrides or [])]}
    storage.write_bytes(storage.join(output_uri, driver.CONFIG_NAME), yaml.safe_dump(doc, sort_keys=False).encode())
    results: list[dict[str, Any]] = []
    if shard and config.run.shard:
        results = driver.shard(output_uri, config, map_fn or (lambda fn, items: map(fn, items)))
    s = driver.summarize(output_uri, time.monotonic() - t0, 0, results)
    storage.write_bytes(storage.join(output_uri, driver.SUMMARY_NAME),
                        json.dumps(asdict(s), indent=1, sort_keys=True).encode())
    return summary
