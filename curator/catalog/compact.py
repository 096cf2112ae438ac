"""``curator catalog compact``: fewer, larger segments; tombstones applied; ledgers merged;
files no commit lists removed after a grace period.

Every run and every watch cycle adds at least one small segment, so a long-lived catalog
accumulates many; a query visits each. Compaction reads the small segments (and those
with rows hidden by tombstones), writes their visible rows as new segments of up to
``target_rows`` clips, and swaps them in with one compare-and-swap commit. Writers may
commit meanwhile: the swap only removes the segments it merged and keeps what others
added. A merged segment takes the highest ``seq`` of its inputs, so a tombstone committed
later still applies to it, and every earlier tombstone was applied while merging.

Nothing is deleted at the commit: a reader may still be using the old index.json. Files
no commit lists (merged segments, a crashed writer's uncommitted segment) are removed by
the *vacuum* once they are older than ``vacuum_after_s`` (default one hour — longer than
any writer takes between writing a segment and committing it).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pyarrow as pa

from curator import index, storage
from curator.catalog import core
from curator.config import IndexConfig

log = logging.getLogger("curator.catalog")

#: the folders whose files index.json lists (anything else under the catalog is left alone)
MANAGED = ("segments", "tombstones", "sources", "dedup")


def _plan(meta: index.IndexMeta, target_rows: int) -> list[list[dict[str, Any]]]:
    """Groups of segments to merge: small ones (and ones with hidden rows) packed in order
    up to target_rows visible rows; a group must gain something (2+ segments, or hidden rows)."""
    groups: list[list[dict[str, Any]]] = []
    cur: list[dict[str, Any]] = []
    rows = 0
    hidden_in: set[str] = set()
    for seg in meta.segments:
        vis = meta.visible(seg)
        n = int(seg.get("rows") or 0) if vis is None else int(vis.sum())
        if vis is not None:
            hidden_in.add(seg["id"])
        if n >= target_rows and seg["id"] not in hidden_in:
            continue
        if cur and rows + n > target_rows:
            groups.append(cur)
            cur, rows = [], 0
        cur.append(seg)
        rows += n
    if cur:
        groups.append(cur)
    return [g for g in groups if len(g) > 1 or g[0]["id"] in hidden_in]


def _merge(meta: index.IndexMeta, group: list[dict[str, Any]], cfg: IndexConfig) -> dict[str, Any] | None:
    tables = []
    for seg in group:
        t = index._read_parquet(meta.seg_uri(seg, "parquet"))
        vis = meta.visible(seg, t.column("source_uri") if "source_uri" in t.column_names else None)
        tables.append(t if vis is None else t.filter(pa.array(vis)))
    table = pa.concat_tables(tables, promote_options="permissive")
    if not table.num_rows:
        return None
    emb = np.asarray(table.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False),
                     np.float16).reshape(table.num_rows, -1)
    runs = {str(s.get("source_run")) for s in group}
    entry = index._write_segment(meta.uri, [table.drop_columns(["embedding"])], [emb],
                                 runs.pop() if len(runs) == 1 else "compacted", cfg)
    entry["compacted_from"] = [s["id"] for s in group]
    entry["seq"] = max(int(s.get("seq") or 0) for s in group)
    return entry


def compact(uri: str, cfg: IndexConfig | None = None, *, target_rows: int = 200_000,
            vacuum_after_s: float = 3600.0) -> dict[str, Any]:
    """Compact the catalog at `uri`; returns what was done (segments before/after, merged,
    tombstones applied, ledger rows, files vacuumed, commit attempts)."""
    cfg = cfg or IndexConfig()
    meta = index.read_meta(uri)
    before = len(meta.segments)
    groups = _plan(meta, target_rows)
    merged: dict[str, dict[str, Any]] = {}  # input segment id -> its group's new entry
    new_entries: list[dict[str, Any]] = []
    for group in groups:
        entry = _merge(meta, group, cfg)
        for seg in group:
            merged[seg["id"]] = entry or {}
        if entry:
            new_entries.append(entry)
    # tombstones: one file holding those that can still hide a row of a segment not merged
    # here (merged segments had every tombstone applied; later segments are never hidden)
    unmerged = [int(s.get("seq") or 0) for s in meta.segments if s["id"] not in merged]
    floor = min(unmerged) if unmerged else None
    tomb_ids = [e["id"] for e in meta.doc.get("tombstones") or []]
    tomb_entry: dict[str, Any] | None = None
    if tomb_ids:
        keep = {u: s for u, s in meta.tombstones.items() if floor is not None and s > floor}
        if keep:
            tid = core.new_id()
            t = pa.table({"source_uri": list(keep), "seq": list(keep.values()),
                          "reason": ["compacted"] * len(keep)}, schema=core.TOMBSTONE_SCHEMA)
            core.write_table(storage.join(meta.uri, "tombstones", f"{tid}.parquet"), t)
            tomb_entry = {"id": tid, "rows": len(keep), "seq": max(keep.values()), "created": core.now_iso()}
    # the sources ledger: one part, the latest record per source
    src_ids = [e["id"] for e in meta.doc.get("sources") or []]
    src_entry: dict[str, Any] | None = None
    if len(src_ids) > 1:
        ledger = core.load_sources(meta.uri, meta.doc)
        sid = core.new_id()
        core.write_table(storage.join(meta.uri, "sources", f"{sid}.parquet"),
                         pa.Table.from_pylist(list(ledger.values()), schema=core.SOURCE_SCHEMA))
        src_entry = {"id": sid, "rows": len(ledger), "seq": max(r["seq"] for r in ledger.values()),
                     "created": core.now_iso()}
    tombs_shrink = bool(tomb_ids) and (tomb_entry is None or len(tomb_ids) > 1
                                       or int(tomb_entry["rows"]) < len(meta.tombstones))
    changed = bool(merged) or tombs_shrink or src_entry is not None

    def apply(doc: dict[str, Any], seq: int) -> dict[str, Any] | None:
        if not changed:
            return None
        have = {s["id"] for s in doc["segments"]}
        if not set(merged) <= have:
            raise core.CatalogError("another compaction changed these segments meanwhile; run compact again")
        segs = [s for s in doc["segments"] if s["id"] not in merged] + new_entries
        doc["segments"] = sorted(segs, key=lambda s: int(s.get("seq") or 0))
        if tomb_ids:
            doc["tombstones"] = [e for e in doc.get("tombstones") or [] if e["id"] not in tomb_ids] + \
                ([tomb_entry] if tomb_entry else [])
        if src_entry is not None:
            doc["sources"] = [src_entry] + [e for e in doc.get("sources") or [] if e["id"] not in src_ids]
        return doc

    res = core.commit(meta.uri, apply)
    vacuumed = vacuum(meta.uri, older_than_s=vacuum_after_s)
    after = len(res.doc.get("segments") or [])
    out = {"catalog": meta.uri, "segments_before": before, "segments_after": after, "merged": len(merged),
           "written": len(new_entries), "tombstones": len(tomb_ids), "ledger_parts": len(src_ids),
           "vacuumed": vacuumed, "attempts": res.attempts}
    log.info("catalog %s: %d segments -> %d; %d files vacuumed", storage.display(meta.uri), before, after, vacuumed)
    return out


def referenced(doc: dict[str, Any]) -> set[str]:
    """Paths (relative to the catalog) of every file index.json lists."""
    out: set[str] = set()
    for seg in doc.get("segments") or []:
        out.update({f"segments/{seg['id']}.parquet", f"segments/{seg['id']}.faiss"})
    for kind in ("tombstones", "sources"):
        out.update(f"{kind}/{e['id']}.parquet" for e in doc.get(kind) or [])
    out.update((doc.get("dedup") or {}).get("files") or [])
    return out


def vacuum(uri: str, older_than_s: float = 3600.0) -> int:
    """Delete files under the catalog's managed folders that the current index.json does
    not list and that are older than `older_than_s`; returns how many."""
    snap = core.read(uri)
    keep = referenced(snap.doc)
    now = time.time()
    n = 0
    for folder in MANAGED:
        for info in storage.list_objects(storage.join(snap.uri, folder) + "/"):
            rel = storage.relative(snap.uri + "/", info.uri)
            if rel in keep or (info.mtime is not None and now - info.mtime < older_than_s):
                continue
            storage.delete(info.uri)
            n += 1
    return n


def describe(uri: str) -> dict[str, Any]:
    """What `curator catalog show` prints: commits, segments, rows visible and hidden, clips per
    site, tombstones, ledger, dedup state."""
    meta = index.read_meta(uri)
    rows = visible = 0
    sites: dict[str, int] = {}
    for seg in meta.segments:
        names = index._schema_names(meta.seg_uri(seg, "parquet"))
        t = index._read_parquet(meta.seg_uri(seg, "parquet"), [c for c in ("source_uri", "site") if c in names])
        vis = meta.visible(seg, t.column("source_uri") if "source_uri" in t.column_names else None)
        mask = np.ones(t.num_rows, bool) if vis is None else vis
        rows += t.num_rows
        visible += int(mask.sum())
        if "site" in t.column_names:
            for s in np.asarray(t.column("site").to_pylist(), object)[mask].tolist():
                sites[s or "?"] = sites.get(s or "?", 0) + 1
    ledger = core.load_sources(meta.uri, meta.doc)
    return {"catalog": meta.uri, "seq": meta.doc.get("seq", 0), "embedding_model": meta.model,
            "dim": meta.doc.get("dim"), "segments": len(meta.segments), "rows": rows, "clips": visible,
            "hidden": rows - visible, "sites": dict(sorted(sites.items())),
            "tombstoned_sources": len(meta.tombstones),
            "sources": {"curated": sum(r["status"] == core.CURATED for r in ledger.values()),
                        "deleted": sum(r["status"] == core.DELETED for r in ledger.values())},
            "dedup": {k: v for k, v in (meta.doc.get("dedup") or {}).items() if k != "files"} or None,
            "updated": meta.doc.get("updated")}
