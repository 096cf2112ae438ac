"""Filters: stages that measure a clip, record every score with its threshold, and decide.

A filter never silently drops a clip. For each thresholded metric it appends one entry to
the clip's ``checks`` column (stage, metric, value, threshold, op, passed) and writes the
score into its own manifest column; when a check fails, the clip is stopped with status
``rejected``, the filter's name as ``stage``, a machine-readable ``reason`` ("static",
"shaky", "low_quality", "text_overlay", "type_dropped", ...) and a ``detail`` that says
value versus threshold. Rejected clips keep flowing untouched, so later (more expensive)
stages skip them and the manifest still explains every clip.

Because every decision is a pure function of the recorded scores and the config, the
run-level phase :mod:`curator.phases.refilter` can re-apply new thresholds to a finished
run from its manifest alone — no decoding — and apply rules over the whole run ("drop the
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

import logging
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable

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
