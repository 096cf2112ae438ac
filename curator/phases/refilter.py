"""Phase `refilter`: every clip re-decided from its recorded scores, whole-run rules applied.

Filters (:mod:`curator.filters`) record every score with its threshold, so a decision is
a pure function of the manifest row and the config. This phase re-applies the config's
thresholds, derived tags and the global percentile rules ("drop the bottom 15 % by
quality", which a per-batch stage cannot do) to a consolidated manifest and rewrites it
atomically — no decoding. `curator refilter` runs it on a finished run with new
thresholds, then re-shards.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Iterator

from curator import storage
from curator.filters import BOTTOM_PERCENT, Filter, Rule, decide
from curator.phases.base import PhaseState
from curator.records import OK, REJECTED, Row, to_table
from curator.rundir import ManifestFile, RunDir

NAME = "refilter"
REQUIRES = ("manifest",)
POPULATES = ("decisions",)

log = logging.getLogger("curator")


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


def _iter_manifest(mf: ManifestFile, columns: list[str] | None = None, batch_rows: int = 4096) -> Iterator[list[Row]]:
    for batch in mf.batches(columns, batch_rows):
        yield batch.to_pylist()


def percentile_cutoffs(mf: ManifestFile, filters: dict[str, type[Filter]], config: Any,
                       bins: int = 1 << 16) -> dict[tuple[str, str], float]:
    """For each global percentile rule, the score below which that percentage of the run's
    candidate clips lies — the clips that every per-clip threshold keeps (so "drop the
    bottom 15 %" removes 15 % of what would otherwise be kept). Streams the open manifest twice
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
        for rows in _iter_manifest(mf):
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


def rewrite_manifest(rundir: RunDir, config: Any, stage_names: list[str]) -> RefilterSummary:
    """Re-decide every clip of a consolidated manifest from its recorded scores with
    `config` (thresholds, weights, tag thresholds and the global percentile rules) and
    write it back atomically. Opens the manifest once (the percentile rules stream it
    twice more before the rewrite), never a clip."""
    filters = filter_classes(stage_names)
    middle = [n for n in stage_names if n not in filters and _is_middle(n)]
    with rundir.open_manifest(NAME) as mf:
        cutoffs = percentile_cutoffs(mf, filters, config)
        summary = RefilterSummary(cutoffs={f"{s}.{m}": v for (s, m), v in cutoffs.items()})
        schema = mf.schema
        with rundir.manifest_writer(schema) as writer:
            for rows in _iter_manifest(mf):
                for row in rows:
                    if row.get("kind") == "clip":
                        _count(summary, row, lambda r: reapply(r, filters, config, cutoffs), middle)
                writer.write_table(to_table(rows, schema))
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


# ------------------------------------------------------------------------ the phase
def run(state: PhaseState) -> RefilterSummary | None:
    """After consolidation: re-decide every clip from its recorded scores with this config
    (so a resumed run matches the config it ran with) and apply the global percentile
    rules over the whole run. None when the run has no filter stage."""
    if not filter_classes(state.stages):
        return None
    summary = rewrite_manifest(state.rundir, state.config, state.stages)
    for key, cut in summary.cutoffs.items():
        log.info("percentile rule: %s >= %.4g over the whole run", key, cut)
    return summary


def load_run_config(rundir: RunDir, config_path: str | None = None,
                    overrides: list[str] | None = None) -> tuple[Any, dict[str, Any]]:
    """The config a finished run was made with (its config.yaml), with a YAML file and
    `key=value` overrides on top. Returns (config, the run's `_run` record)."""
    from curator.config import ConfigError, PipelineConfig

    got = rundir.read_config()
    if got is None:
        raise ConfigError(f"{storage.display(rundir.uri)} has no config.yaml: is it the output of a run?")
    doc, run_rec = got
    return PipelineConfig.load(config_path, overrides, base=doc), run_rec


def refilter(output_uri: str, config_path: str | None = None, overrides: list[str] | None = None, *,
             runner: Any = None, shard: bool = True) -> RefilterSummary:
    """`curator refilter`: re-apply filter thresholds to a finished run from its manifest —
    no decoding — then rewrite config.yaml (the thresholds now in force), re-shard and
    rewrite summary.json."""
    from curator.phases import shard as shard_phase
    from curator.phases import summary as summary_phase

    t0 = time.monotonic()
    rundir = RunDir.of(output_uri)
    config, run_rec = load_run_config(rundir, config_path, overrides)
    rundir = RunDir.activated(rundir, config.storage)
    stages = list(run_rec.get("stages") or [])
    if not stages:
        from curator.pipeline import stage_order

        stages = stage_order(config)
    summary = rewrite_manifest(rundir, config, stages)
    rundir.write_config(config.model_dump(mode="json"),
                        {**run_rec, "config_hash": config.content_hash(),
                         "refiltered": list(run_rec.get("refiltered") or []) + [list(overrides or [])]})
    state = PhaseState(rundir, config, runner, stages=stages)
    results: list[dict[str, Any]] = []
    if shard and config.run.shard:
        results = shard_phase.run(state)
    s = summary_phase.summarize(rundir, time.monotonic() - t0, 0, results)
    rundir.write_summary(asdict(s))
    return summary
