"""Scanning the manifest in batches: the funnel, rejects, metric histograms, examples, duplicate groups."""

from __future__ import annotations

import heapq
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import pyarrow.parquet as pq

from curator.config import ReportConfig
from curator.records import OK, REJECTED, Row
from curator.report.text import COLUMNS, PASS2_COLUMNS, _hash


class Sample:
    """The k items with the smallest hash of their key: a deterministic, uniform,
    streaming sample (the same run gives the same examples)."""

    def __init__(self, k: int):
        self.k = k
        self._heap: list[tuple[int, str, dict[str, Any]]] = []  # max-heap by negated hash

    def offer(self, key: str, row: Row, make: Callable[[Row], dict[str, Any]] = dict) -> None:
        """Consider `row`; `make(row)` (the kept item) runs only when it enters the sample."""
        if self.k <= 0:
            return
        h = _hash(key)
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, (-h, key, make(row)))
        elif -self._heap[0][0] > h:
            heapq.heapreplace(self._heap, (-h, key, make(row)))

    def items(self) -> list[dict[str, Any]]:
        return [it for _, _, it in sorted(self._heap, key=lambda e: (-e[0], e[1]))]


@dataclass
class Step:
    label: str
    count: int = 0
    seconds: float = 0.0
    note: str = ""


@dataclass
class MetricStats:
    stage: str
    metric: str
    count: int = 0
    passed: int = 0
    failed: int = 0
    not_scored: int = 0
    lo: float = math.inf
    hi: float = -math.inf
    thresholds: Counter = field(default_factory=Counter)  # (op, threshold) -> checks
    bins: list[list[int]] = field(default_factory=list)  # per bin: [passed, failed]
    edges: tuple[float, float] = (0.0, 1.0)

    def add(self, check: dict[str, Any]) -> None:
        value, thr = check.get("value"), check.get("threshold")
        if thr is not None:
            self.thresholds[(check.get("op") or ">=", float(thr))] += 1
        if value is None or (isinstance(value, float) and math.isnan(value)):
            self.not_scored += 1
            return
        self.count += 1
        if check.get("passed"):
            self.passed += 1
        else:
            self.failed += 1
        self.lo, self.hi = min(self.lo, value), max(self.hi, value)

    def prepare_bins(self, n: int) -> None:
        lo, hi = self.lo, self.hi
        for (_, thr), _n in self.thresholds.most_common(3):
            lo, hi = min(lo, thr), max(hi, thr)
        if not math.isfinite(lo):
            lo, hi = 0.0, 1.0
        if hi - lo < 1e-12:
            lo, hi = lo - 0.5, hi + 0.5
        self.edges = (lo, hi)
        self.bins = [[0, 0] for _ in range(n)]

    def bin(self, check: dict[str, Any]) -> None:
        value = check.get("value")
        if value is None or (isinstance(value, float) and math.isnan(value)) or not self.bins:
            return
        lo, hi = self.edges
        i = min(len(self.bins) - 1, max(0, int((value - lo) / (hi - lo) * len(self.bins))))
        self.bins[i][0 if check.get("passed") else 1] += 1


@dataclass
class Scan:
    """What the report knows after reading the manifest."""

    columns: set[str] = field(default_factory=set)
    videos: Step = field(default_factory=lambda: Step("input videos"))
    durations_unknown: int = 0
    input_bytes: int = 0
    probed: Step = field(default_factory=lambda: Step("probed OK"))
    shots: Step = field(default_factory=lambda: Step("shots within length rules"))
    shots_detected: int = 0
    clips: Step = field(default_factory=lambda: Step("clips cut"))
    passed: Step = field(default_factory=lambda: Step("clips kept by filters"))
    deduped: Step = field(default_factory=lambda: Step("clips kept after dedup"))
    shardable: Step = field(default_factory=lambda: Step("clips in shards"))
    rejects: Counter = field(default_factory=Counter)  # (kind, stage, reason) -> rows
    reject_seconds: defaultdict = field(default_factory=lambda: defaultdict(float))
    examples: dict[tuple[str, str, str], Sample] = field(default_factory=dict)
    kept: Sample | None = None
    metrics: dict[tuple[str, str], MetricStats] = field(default_factory=dict)
    group_sizes: Counter = field(default_factory=Counter)  # dup_group -> members
    groups_capped: bool = False
    dedup_rows: int = 0
    group_members: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    has_captions: bool = False


def _example(row: Row) -> dict[str, Any]:
    """The few fields a thumbnail card needs."""
    keep = ("kind", "video_id", "clip_id", "source_uri", "source_key", "status", "stage", "reason", "detail",
            "width", "height", "rotation", "duration_s", "num_frames", "clip_index", "start_s", "end_s", "clip_width",
            "clip_height", "clip_frames", "clip_uri", "caption", "dup_group", "duplicate_of", "similarity")
    ex = {k: row.get(k) for k in keep}
    ex["scores"] = [(c.get("stage"), c.get("metric"), c.get("value"), c.get("op"), c.get("threshold"), c.get("passed"))
                    for c in (row.get("checks") or [])]
    return ex


def _row_seconds(row: Row) -> float:
    if row.get("kind") == "clip":
        d = row.get("clip_duration_s")
        if d is None and row.get("end_s") is not None and row.get("start_s") is not None:
            d = row["end_s"] - row["start_s"]
        return float(d or 0.0)
    return float(row.get("duration_s") or 0.0)


def _batches(pf: pq.ParquetFile, wanted: list[str]) -> Iterator[list[Row]]:
    names = set(pf.schema_arrow.names)
    cols = [c for c in wanted if c in names]
    for batch in pf.iter_batches(batch_size=2048, columns=cols):
        yield batch.to_pylist()


def scan_manifest(pf: pq.ParquetFile, cfg: ReportConfig) -> Scan:
    s = Scan(columns=set(pf.schema_arrow.names))
    s.kept = Sample(cfg.kept_thumbs)
    has_dedup = "dup_group" in s.columns
    for rows in _batches(pf, COLUMNS):
        for row in rows:
            _scan_row(s, row, cfg, has_dedup)
    # pass 2: histogram bins (ranges are known now) and members of the largest groups
    for m in s.metrics.values():
        m.prepare_bins(cfg.histogram_bins)
    chosen = {g for g, n in sorted(s.group_sizes.items(), key=lambda kv: (-kv[1], _hash(kv[0])))[:cfg.dedup_groups]
              if n > 1}
    s.group_members = {g: [] for g in sorted(chosen)}
    if s.metrics or chosen:
        wanted = PASS2_COLUMNS + ([c for c in COLUMNS if c not in PASS2_COLUMNS] if chosen else [])
        for rows in _batches(pf, wanted):
            for row in rows:
                for c in row.get("checks") or []:
                    ms = s.metrics.get((c.get("stage") or "?", c.get("metric") or "?"))
                    if ms is not None:
                        ms.bin(c)
                g = row.get("dup_group")
                if g in s.group_members:
                    s.group_members[g].append(_example(row))
        for g, members in s.group_members.items():  # kept one first, then most similar
            members.sort(key=lambda ex: (ex["status"] != OK, -(ex.get("similarity") or 0.0), ex["clip_id"] or ""))
            del members[cfg.dedup_members:]
    return s


def _scan_row(s: Scan, row: Row, cfg: ReportConfig, has_dedup: bool) -> None:
    kind, status = row.get("kind"), row.get("status")
    secs = _row_seconds(row)
    if kind == "video":
        s.videos.count += 1
        s.input_bytes += int(row.get("size_bytes") or 0)
        if row.get("duration_s") is None:
            s.durations_unknown += 1
        s.videos.seconds += secs
        if row.get("codec") is not None or row.get("fps") is not None:
            s.probed.count += 1
            s.probed.seconds += secs
        spans = row.get("spans") or []
        s.shots.count += len(spans)
        s.shots.seconds += sum(max(0.0, (sp.get("end_s") or 0.0) - (sp.get("start_s") or 0.0)) for sp in spans)
        s.shots_detected += int(row.get("num_shots") or 0)
    elif kind == "clip":
        s.clips.count += 1
        s.clips.seconds += secs
        dedup_removed = status == REJECTED and row.get("stage") == "dedup"
        if status == OK or dedup_removed:
            s.passed.count += 1
            s.passed.seconds += secs
        if dedup_removed:
            s.dedup_rows += 1
        if status == OK:
            s.deduped.count += 1
            s.deduped.seconds += secs
            if row.get("clip_uri"):
                s.shardable.count += 1
                s.shardable.seconds += secs
            assert s.kept is not None
            s.kept.offer(row.get("clip_id") or "", row, _example)
        if row.get("caption"):
            s.has_captions = True
        for c in row.get("checks") or []:
            mkey = (c.get("stage") or "?", c.get("metric") or "?")
            m = s.metrics.get(mkey)
            if m is None:
                m = s.metrics[mkey] = MetricStats(*mkey)
            m.add(c)
        if has_dedup and row.get("dup_group"):
            g = row["dup_group"]
            if g in s.group_sizes or len(s.group_sizes) < cfg.max_dedup_groups_counted:
                s.group_sizes[g] += 1
            else:
                s.groups_capped = True
    if status not in (OK, "skipped", None):
        key = (kind or "?", row.get("stage") or "?", row.get("reason") or "unknown")
        s.rejects[key] += 1
        s.reject_seconds[key] += secs
        sample = s.examples.get(key)
        if sample is None:
            sample = s.examples[key] = Sample(cfg.thumbs_per_reason)
        sample.offer(row.get("clip_id") or row.get("video_id") or "", row, _example)
