"""Coverage: kept clips and hours per cell of chosen manifest columns, against target quotas.

    from curator import coverage
    targets = coverage.load_targets("targets.yaml")
    cov = coverage.measure("out/run1", ["place", "time_of_day"], targets)      # or an index URI
    for gap in coverage.gaps(cov): ...

A *source* is a run folder (its ``manifest.parquet``) or a clip index (its ``index.json``, so
one coverage spans every run indexed there, in any cloud). Only kept clips count: status
``ok`` (and, in a manifest, kind ``clip``). Hours are ``clip_duration_s`` summed.

Targets (YAML or JSON; shared with the generation loop that fills the gaps)::

    targets:
      - where: {place: zoo}                         # column: value (a list: any of them)
        min_clips: 2
      - where: {place: museum, time_of_day: night}
        min_hours: 1.5
      - where: "place = 'city' AND crowd IN ('dense', 'moderate')"   # or a `search --where` predicate
        min_clips: 100
        name: busy city                              # optional label

A target is met when the kept clips matching ``where`` reach every minimum it sets; a gap
says how many clips and hours are missing. A ``where`` mapping on a list column
(``decor_elements``) means "contains". Counting is one streamed pass (Arrow batches; the
predicates are evaluated column-wise by :mod:`curator.where`), so memory holds the cells,
not the clips.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from curator import storage, where
from curator.config import ConfigError

NONE = "(none)"  # how a missing value is shown in a cell
DURATION = "clip_duration_s"
TARGET_KEYS = {"where", "min_clips", "min_hours", "name"}


class CoverageError(RuntimeError):
    """The source cannot be read as a run or an index; the message says why."""


# ------------------------------------------------------------------------------ targets
@dataclass
class Target:
    where: dict[str, Any] | str
    min_clips: int | None = None
    min_hours: float | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            self.name = describe(self.where)

    def columns(self) -> set[str]:
        if isinstance(self.where, dict):
            return set(self.where)
        return where.columns(where.parse(self.where))

    def tree(self, schema: pa.Schema) -> tuple:
        """The predicate as a condition tree, given the source's column types."""
        if isinstance(self.where, str):
            return where.parse(self.where)
        nodes: list[tuple] = []
        for col, val in self.where.items():
            is_list = col in schema.names and pa.types.is_list(schema.field(col).type)
            vals = val if isinstance(val, list) else [val]
            parts: list[tuple]
            if is_list:
                parts = [("contains", col, v) for v in vals]
            else:
                parts = [("cmp", col, "=", vals[0])] if len(vals) == 1 else [("in", col, vals)]
            node: tuple = parts[0]
            for p in parts[1:]:
                node = ("or", node, p)
            nodes.append(node)
        tree: tuple = nodes[0]
        for n in nodes[1:]:
            tree = ("and", tree, n)
        return tree


def describe(w: dict[str, Any] | str) -> str:
    if isinstance(w, str):
        return w
    return ", ".join(f"{k}={'|'.join(map(str, v)) if isinstance(v, list) else v}" for k, v in w.items())


def parse_targets(doc: Any, source: str = "targets") -> list[Target]:
    """Targets from a parsed document: {targets: [...]} or a bare list."""
    items = doc.get("targets") if isinstance(doc, dict) else doc
    if isinstance(doc, dict) and set(doc) - {"targets", "version"}:
        raise ConfigError(f"{source}: unknown top-level keys {sorted(set(doc) - {'targets', 'version'})} "
                          "(expected targets)")
    if not isinstance(items, list):
        raise ConfigError(f"{source}: expected a list of targets under 'targets'")
    out = []
    for i, t in enumerate(items):
        what = f"{source}: target {i + 1}"
        if not isinstance(t, dict):
            raise ConfigError(f"{what}: must be a mapping with where and min_clips and/or min_hours")
        unknown = set(t) - TARGET_KEYS
        if unknown:
            raise ConfigError(f"{what}: unknown keys {sorted(unknown)} (known: {', '.join(sorted(TARGET_KEYS))})")
        w = t.get("where")
        if isinstance(w, str):
            try:
                where.parse(w)
            except where.WhereError as exc:
                raise ConfigError(f"{what}: where: {exc}") from None
        elif isinstance(w, dict) and w:
            for k, v in w.items():
                vals = v if isinstance(v, list) else [v]
                if not isinstance(k, str) or not vals or not all(isinstance(x, (str, int, float, bool)) for x in vals):
                    raise ConfigError(f"{what}: where.{k}: a value or a list of values (text, numbers, booleans)")
        else:
            raise ConfigError(f"{what}: where must be a mapping of column -> value(s) or a predicate string")
        mc, mh = t.get("min_clips"), t.get("min_hours")
        if mc is None and mh is None:
            raise ConfigError(f"{what}: set min_clips and/or min_hours")
        if mc is not None and (isinstance(mc, bool) or not isinstance(mc, int) or mc < 0):
            raise ConfigError(f"{what}: min_clips must be an integer >= 0")
        if mh is not None and (isinstance(mh, bool) or not isinstance(mh, (int, float)) or mh < 0
                               or math.isnan(mh)):
            raise ConfigError(f"{what}: min_hours must be a number >= 0")
        out.append(Target(w, mc, float(mh) if mh is not None else None, str(t.get("name") or "")))
    return out


def load_targets(path: str) -> list[Target]:
    """A targets file (YAML or JSON, any storage URI)."""
    import yaml

    try:
        text = storage.read_bytes(storage.normalize(path)).decode("utf-8")
    except storage.NotFound:
        raise ConfigError(f"targets file {path} not found") from None
    try:
        doc = yaml.safe_load(text)  # JSON is YAML
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML or JSON: {exc}") from None
    return parse_targets(doc, path)


# ------------------------------------------------------------------------------ sources
def source_kind(source: str) -> str:
    """'index' (index.json there) or 'run' (manifest.parquet there)."""
    from curator.index import INDEX_JSON
    from curator.rundir import RunDir

    uri = storage.normalize(source)
    if storage.exists(storage.join(uri, INDEX_JSON)):
        return "index"
    if RunDir.of(uri).has_manifest():
        return "run"
    raise CoverageError(f"{storage.display(uri)} is neither a finished run (no manifest.parquet) nor a clip index "
                        "(no index.json)")


def read_clips(source: str, columns: Iterable[str], *, kept_only: bool = True,
               batch_rows: int = 8192) -> Iterator[pa.Table]:
    """Clip rows of a run's manifest or of an index's segments, `columns` only (a missing column is
    all-null), in batches. kept_only: status 'ok' only."""
    from curator.rundir import RunDir

    cols = list(dict.fromkeys(columns))
    kind = source_kind(source)
    if kind == "run":
        with RunDir.of(source).open_manifest("coverage") as mf:
            names = mf.names
            read = [c for c in dict.fromkeys(["kind", "status", *cols]) if c in names]
            for batch in mf.batches(read, batch_rows):
                yield _select(pa.Table.from_batches([batch]), cols, kept_only)
        return
    from curator import index

    meta = index.read_meta(source)
    for seg in meta.segments:
        uri = meta.seg_uri(seg, "parquet")
        vis = meta.visible(seg)  # rows of changed or deleted sources are hidden in a catalog (docs/catalog.md)
        with storage.local_copy(uri) as path:
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(path)
            names = pf.schema_arrow.names
            read = [c for c in dict.fromkeys(["status", *cols]) if c in names]
            off = 0
            for batch in pf.iter_batches(batch_size=batch_rows, columns=read or ["clip_id"]):
                t = pa.Table.from_batches([batch])
                if vis is not None:
                    t = t.filter(pa.array(vis[off:off + t.num_rows]))
                off += batch.num_rows
                yield _select(t, cols, kept_only)


def _select(t: pa.Table, cols: list[str], kept_only: bool) -> pa.Table:
    mask = None
    if "kind" in t.column_names:
        mask = pc.equal(t.column("kind"), "clip")
    if kept_only:
        ok = pc.equal(t.column("status"), "ok") if "status" in t.column_names else None
        if ok is not None:
            mask = ok if mask is None else pc.and_(mask, ok)
    if mask is not None:
        t = t.filter(pc.fill_null(mask, False))
    arrays = [t.column(c) if c in t.column_names else pa.nulls(t.num_rows) for c in cols]
    return pa.Table.from_arrays(arrays, names=cols)


# ------------------------------------------------------------------------------ counting
@dataclass
class Cell:
    clips: int = 0
    seconds: float = 0.0

    @property
    def hours(self) -> float:
        return self.seconds / 3600.0


@dataclass
class TargetResult:
    target: Target
    clips: int = 0
    seconds: float = 0.0

    @property
    def hours(self) -> float:
        return self.seconds / 3600.0

    @property
    def missing_clips(self) -> int:
        return max(0, (self.target.min_clips or 0) - self.clips)

    @property
    def missing_hours(self) -> float:
        return max(0.0, (self.target.min_hours or 0.0) - self.hours)

    @property
    def met(self) -> bool:
        return self.missing_clips == 0 and self.missing_hours <= 1e-9


@dataclass
class Coverage:
    source: str
    by: list[str]
    cells: dict[tuple, Cell] = field(default_factory=dict)
    total: Cell = field(default_factory=Cell)
    targets: list[TargetResult] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)  # the source's columns (those read)
    #: margins, each clip counted once: by the values of by[:-1] (rows of the grid) and of by[-1] (columns)
    rows: dict[tuple, Cell] = field(default_factory=dict)
    cols: dict[Any, Cell] = field(default_factory=dict)


def _values(v: Any) -> list[Any]:
    """A cell value: lists count in each of their elements' cells (none: the '(none)' cell)."""
    if isinstance(v, list):
        return list(dict.fromkeys(v)) or [None]
    return [v]


def count(tables: Iterable[pa.Table], by: list[str], targets: list[Target] = (),  # type: ignore[assignment]
          source: str = "") -> Coverage:
    """Clips and seconds per cell of `by` and per target, over kept-clip tables (with `by`, the
    targets' columns and clip_duration_s)."""
    import itertools

    cov = Coverage(source, list(by), targets=[TargetResult(t) for t in targets])
    trees: list[tuple] | None = None
    for t in tables:
        if not t.num_rows:
            continue
        if trees is None:
            trees = [tr.target.tree(t.schema) for tr in cov.targets]
            cov.columns = t.column_names
        dur = _durations(t)
        cov.total.clips += t.num_rows
        cov.total.seconds += float(sum(dur))
        cols = [t.column(c).to_pylist() for c in by]
        for i in range(t.num_rows):
            keys = [tuple(k) for k in itertools.product(*(_values(col[i]) for col in cols))]
            for group, key_of in ((cov.cells, lambda k: k), (cov.rows, lambda k: k[:-1]), (cov.cols, lambda k: k[-1])):
                for key in dict.fromkeys(key_of(k) for k in keys):  # a clip once per cell of each kind
                    cell = group.setdefault(key, Cell())
                    cell.clips += 1
                    cell.seconds += dur[i]
        for tr, tree in zip(cov.targets, trees):
            try:
                mask = where.evaluate(tree, t)
            except where.WhereError as exc:
                raise ConfigError(f"target {tr.target.name!r}: {exc}") from None
            tr.clips += int(mask.sum())
            tr.seconds += float(sum(d for d, m in zip(dur, mask) if m))
    return cov


def _durations(t: pa.Table) -> list[float]:
    if DURATION in t.column_names:
        return [float(d) if d is not None and d == d else 0.0 for d in t.column(DURATION).to_pylist()]
    return [0.0] * t.num_rows


def measure(source: str, by: list[str], targets: list[Target] = (),  # type: ignore[assignment]
            where_text: str | None = None) -> Coverage:
    """One streamed pass over `source` (a run folder or an index URI): cells of `by`, targets;
    `where_text` (a `search --where` predicate) restricts the clips first."""
    cols = list(by) + sorted({c.split(".")[0] for t in targets for c in t.columns()}) + [DURATION]
    tree = where.parse(where_text) if where_text else None
    if tree is not None:
        cols += sorted(where.columns(tree))
    cols = list(dict.fromkeys(cols))

    def tables() -> Iterator[pa.Table]:
        for t in read_clips(source, cols):
            yield t.filter(pa.array(where.evaluate(tree, t))) if tree is not None else t

    return count(tables(), by, targets, source=storage.normalize(source))


def gaps(cov: Coverage) -> list[TargetResult]:
    """The targets not met, in the order given."""
    return [t for t in cov.targets if not t.met]


# ------------------------------------------------------------------------------ axes and output
def axis_values(cov: Coverage, i: int, taxonomy: Any = None) -> list[Any]:
    """The values of `by[i]` to show: the taxonomy's labels of that field (so empty cells show),
    then any other value seen or targeted, then None."""
    name = cov.by[i]
    out: list[Any] = []
    if taxonomy is not None and name in getattr(taxonomy, "fields", {}):
        out += taxonomy.fields[name].keys
    seen = {k[i] for k in cov.cells}
    for t in cov.targets:
        if isinstance(t.target.where, dict) and name in t.target.where:
            v = t.target.where[name]
            seen.update(v if isinstance(v, list) else [v])
    out += sorted((v for v in seen if v is not None and v not in out), key=str)
    if None in seen:
        out.append(None)
    return out


class _All:
    """A wildcard in a grid key: "every value" (row and column totals)."""

    def __repr__(self) -> str:
        return "*"


ALL: Any = _All()


def cell_targets(cov: Coverage) -> dict[tuple, list[TargetResult]]:
    """Targets that name places on the grid: a `where` mapping on all the `by` columns (a cell),
    on by[:-1] (a row total) or on by[-1] (a column total). Key -> targets; a total's key has
    :data:`ALL` where the target sets no value. Other targets are listed, not placed."""
    import itertools

    out: dict[tuple, list[TargetResult]] = {}
    n = len(cov.by)
    for tr in cov.targets:
        w = tr.target.where
        if not isinstance(w, dict):
            continue
        keys = set(w)
        if keys == set(cov.by) or (n > 1 and (keys == set(cov.by[:-1]) or keys == {cov.by[-1]})):
            axes = [(w[b] if isinstance(w[b], list) else [w[b]]) if b in w else [ALL] for b in cov.by]
            for key in itertools.product(*axes):
                out.setdefault(tuple(key), []).append(tr)
    return out


def _show(v: Any) -> str:
    return NONE if v is None else str(v)


def to_dict(cov: Coverage) -> dict[str, Any]:
    def target(tr: TargetResult) -> dict[str, Any]:
        return {"name": tr.target.name, "where": tr.target.where, "min_clips": tr.target.min_clips,
                "min_hours": tr.target.min_hours, "clips": tr.clips, "hours": round(tr.hours, 6), "met": tr.met,
                "missing_clips": tr.missing_clips, "missing_hours": round(tr.missing_hours, 6)}

    return {
        "source": cov.source,
        "by": cov.by,
        "total": {"clips": cov.total.clips, "hours": round(cov.total.hours, 6)},
        "cells": [{"cell": dict(zip(cov.by, key)), "clips": c.clips, "hours": round(c.hours, 6)}
                  for key, c in sorted(cov.cells.items(), key=lambda kv: tuple(_show(v) for v in kv[0]))],
        "targets": [target(t) for t in cov.targets],
        "gaps": [target(t) for t in gaps(cov)],
    }


def to_json(cov: Coverage) -> str:
    return json.dumps(to_dict(cov), indent=1, default=str)


def format_text(cov: Coverage) -> str:
    lines = [f"coverage of {storage.display(cov.source)}: {cov.total.clips} kept clips, {cov.total.hours:.3f} h, "
             f"by {' x '.join(cov.by) or '(nothing)'}"]
    head = list(cov.by) + ["clips", "hours"]
    rows = [[_show(v) for v in key] + [str(c.clips), f"{c.hours:.3f}"]
            for key, c in sorted(cov.cells.items(), key=lambda kv: (-kv[1].clips, tuple(_show(v) for v in kv[0])))]
    lines += _table(head, rows, numeric={len(cov.by), len(cov.by) + 1})
    if cov.targets:
        g = gaps(cov)
        lines.append("")
        lines.append(f"targets: {len(cov.targets)}, met {len(cov.targets) - len(g)}, gaps {len(g)}")
        trows = []
        for tr in cov.targets:
            want = " + ".join(x for x in (f"{tr.target.min_clips} clips" if tr.target.min_clips is not None else "",
                                          f"{tr.target.min_hours:g} h" if tr.target.min_hours is not None else "")
                              if x)
            missing = " + ".join(x for x in (f"{tr.missing_clips} clips" if tr.missing_clips else "",
                                             f"{tr.missing_hours:.3f} h" if tr.missing_hours > 1e-9 else "") if x)
            trows.append(["met" if tr.met else "GAP", tr.target.name, str(tr.clips), f"{tr.hours:.3f}", want,
                          missing or "-"])
        lines += _table(["", "target", "clips", "hours", "want", "missing"], trows, numeric={2, 3})
    return "\n".join(lines)


def _table(head: list[str], rows: list[list[str]], numeric: set[int] = frozenset()) -> list[str]:  # type: ignore[assignment]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(head)]

    def fmt(r: list[str]) -> str:
        return "  ".join(v.rjust(w) if i in numeric else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths))).rstrip()

    return [fmt(head), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows]


__all__ = ["Cell", "Coverage", "CoverageError", "Target", "TargetResult", "count", "gaps", "load_targets",
           "measure", "parse_targets", "read_clips", "to_dict", "to_json"]
