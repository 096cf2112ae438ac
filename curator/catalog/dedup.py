"""Catalog-level (federated) dedup: near-duplicates across every run, site and cloud.

Only what the catalog holds is read — each segment's embedding and metadata columns, where
the catalog lives — never a clip: two clips in different clouds are compared through their
embeddings, and video bytes stay where they are. The pass measures this: it reports the
bytes it read per URI scheme (:mod:`curator.storage.stats`) and every URI it read outside
the catalog (none).

Full pass (``curator catalog dedup``): the same engine as a run's dedup (curator.dedup:
exact groups by content hash, k-means, bounded multi-probe assignment, blockwise pairs
inside clusters, keep the highest resolution, then the longest, then the smallest key).
Its decisions go to ``dedup/<id>.parquet`` (per clip: key, dup_group, duplicate_of,
similarity, cell, and the keep-order values), its centroids to
``dedup/<id>.centroids.npy``, and one commit makes them the catalog's dedup state.

Incremental pass (``curator watch``, after each registration): new clips are assigned to
the existing centroids (with the same border test), compared with the catalog's clips in
the cells they touch and with one another, and their decisions appended as another file;
groups they join are re-decided. When the new clips sit measurably farther from their
centroids than the catalog's clips did when the centroids were trained (mean cosine drop
above ``catalog.recluster_drift``), the centroids no longer describe the data: the pass
re-clusters the whole catalog instead.

Decisions are the catalog's view; the runs' manifests (and their shards) keep their own
run-level decisions.
"""

from __future__ import annotations

import functools
import io
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from curator import index, storage
from curator.catalog import core
from curator.config import DedupConfig
from curator.dedup import (
    Assigner,
    DedupStats,
    EmbeddingParts,
    Nodes,
    SpillDir,
    decide,
    exact_groups,
    iter_parts,
    normalize_rows,
    semantic_edges,
    threshold_for,
)
from curator.dedup.common import REASON, STAGE
from curator.dedup.scan import _content_key, _list_to_matrix
from curator.records import OK, REJECTED

log = logging.getLogger("curator.catalog")

DECISION_SCHEMA = pa.schema([
    ("key", pa.string()), ("clip_id", pa.string()), ("site", pa.string()), ("dup_group", pa.string()),
    ("duplicate_of", pa.string()), ("similarity", pa.float32()), ("cell", pa.int32()), ("pixels", pa.int64()),
    ("duration", pa.float64()), ("quality", pa.float64()),
])
SCAN_COLUMNS = ["clip_id", "source_uri", "site", "status", "stage", "reason", "clip_sha256", "clip_width",
                "clip_height", "width", "height", "clip_duration_s"]


@dataclass
class Scanned:
    keys: list[str] = field(default_factory=list)
    clip_ids: list[str] = field(default_factory=list)
    sites: list[str | None] = field(default_factory=list)
    pixels: list[int] = field(default_factory=list)
    duration: list[float] = field(default_factory=list)
    quality: list[float] = field(default_factory=list)
    content: list[np.ndarray] = field(default_factory=list)
    emb: list[np.ndarray] = field(default_factory=list)  # only when kept in memory

    def nodes(self) -> Nodes:
        n = len(self.keys)
        return Nodes(row=np.arange(n), clip_id=pa.array(self.keys, pa.string()),
                     pixels=np.asarray(self.pixels, np.int64), duration=np.asarray(self.duration, np.float64),
                     quality=np.asarray(self.quality, np.float64),
                     content=np.concatenate(self.content) if self.content else np.zeros(0, np.uint64))


def _scan(meta: index.IndexMeta, cfg: DedupConfig, *, parts: EmbeddingParts | None = None,
          segments: list[dict[str, Any]] | None = None, keys: set[str] | None = None,
          skip: set[str] | None = None) -> tuple[Scanned, int | None]:
    """Candidate rows (visible; status ok, or removed by an earlier dedup) of `segments`
    (default all), optionally only `keys` / not `skip`; embeddings to `parts` or, without
    it, kept in memory. Returns (rows, embedding dimension)."""
    out = Scanned()
    dim = None
    for seg in segments if segments is not None else meta.segments:
        uri = meta.seg_uri(seg, "parquet")
        names = set(index._schema_names(uri))
        cols = [c for c in SCAN_COLUMNS if c in names] + ["embedding"]
        if cfg.quality_column and cfg.quality_column in names:
            cols.append(cfg.quality_column)
        t = index._read_parquet(uri, cols)
        n = t.num_rows

        def col(name: str) -> list:
            return t.column(name).to_pylist() if name in t.column_names else [None] * n

        vis = meta.visible(seg, t.column("source_uri") if "source_uri" in t.column_names else None)
        kk = index.row_keys(t).to_pylist()
        status, stage, reason = col("status"), col("stage"), col("reason")
        cand = np.array([(s in (OK, None) or (s == REJECTED and st == STAGE and r == REASON))
                         for s, st, r in zip(status, stage, reason)], bool)
        if vis is not None:
            cand &= vis
        if keys is not None:
            cand &= np.array([k in keys for k in kk], bool)
        if skip:
            cand &= np.array([k not in skip for k in kk], bool)
        valid, mat = _list_to_matrix(t.column("embedding"))
        full = np.full((n, mat.shape[1] if len(mat) else 0), np.nan, np.float32)
        if len(mat):
            full[valid] = mat
            dim = mat.shape[1]
        cand &= (valid & np.isfinite(full).all(axis=1)) if len(mat) else np.zeros(n, bool)
        sel = np.nonzero(cand)[0]
        if not len(sel):
            continue
        base = len(out.keys)
        w = [x or y or 0 for x, y in zip(col("clip_width"), col("width"))]
        h = [x or y or 0 for x, y in zip(col("clip_height"), col("height"))]
        dur, sha = col("clip_duration_s"), col("clip_sha256")
        q: list[Any] = col(cfg.quality_column) if cfg.quality_column else [None] * n
        cids, sites = col("clip_id"), col("site")
        for i in sel.tolist():
            out.keys.append(kk[i])
            out.clip_ids.append(cids[i])
            out.sites.append(sites[i] or index.site_of(None))
            out.pixels.append(int(w[i]) * int(h[i]))
            out.duration.append(float(dur[i] or 0.0))
            out.quality.append(np.nan if q[i] is None else float(q[i]))
        out.content.append(_content_key([sha[i] for i in sel.tolist()]) if cfg.exact
                           else np.zeros(len(sel), np.uint64))
        if parts is not None:
            parts.add(base + np.arange(len(sel)), full[sel])
        else:
            out.emb.append(full[sel].astype(np.float16))
    if parts is not None:
        parts.flush()
    return out, dim


def _decisions_table(rows: Scanned, idx: np.ndarray, keeper: np.ndarray, sim: np.ndarray,
                     cells: np.ndarray) -> pa.Table:
    keys = rows.keys
    return pa.table({
        "key": [keys[i] for i in idx.tolist()],
        "clip_id": [rows.clip_ids[i] for i in idx.tolist()],
        "site": [rows.sites[i] for i in idx.tolist()],
        "dup_group": [keys[k] if k >= 0 else None for k in keeper[idx].tolist()],
        "duplicate_of": [keys[k] if k >= 0 and k != i else None for i, k in zip(idx.tolist(), keeper[idx].tolist())],
        "similarity": [None if np.isnan(s) else float(s) for s in sim[idx].tolist()],
        "cell": cells[idx].astype(np.int32),
        "pixels": [rows.pixels[i] for i in idx.tolist()],
        "duration": [rows.duration[i] for i in idx.tolist()],
        "quality": [rows.quality[i] for i in idx.tolist()],
    }, schema=DECISION_SCHEMA)


def _summary(table: pa.Table) -> dict[str, int]:
    groups: dict[str, set[str]] = {}
    removed = 0
    for g, site, dup in zip(table.column("dup_group").to_pylist(), table.column("site").to_pylist(),
                            table.column("duplicate_of").to_pylist()):
        if g is not None:
            groups.setdefault(g, set()).add(site or "?")
        removed += dup is not None
    return {"groups": len(groups), "removed": removed,
            "cross_site_groups": sum(1 for s in groups.values() if len(s) > 1)}


def _measured(fn: Any) -> Any:
    """Run fn(meta_uri) -> result dict, adding what it read per scheme and the URIs read
    outside the catalog and the scratch space."""

    @functools.wraps(fn)
    def run(uri: str, *args: Any, **kw: Any) -> dict[str, Any]:
        before = storage.stats.snapshot()
        with storage.stats.recording() as seen:
            res = fn(uri, *args, **kw)
        res["io"] = storage.stats.delta(before)
        inside = (res["catalog"] + "/", res.pop("_scratch", "") or "\0")
        res["read_outside_catalog"] = sorted(u for u in seen if not u.startswith(inside))
        return res

    return run


@_measured
def full(uri: str, cfg: DedupConfig, *, map_fn: Any = None) -> dict[str, Any]:
    """Dedup every clip of the catalog; commit the decisions as its dedup state."""
    t0 = time.monotonic()
    meta = index.read_meta(uri)
    st = DedupStats(embedding_model=meta.model)
    spill = SpillDir(None)
    try:
        dim = int(meta.doc.get("dim") or 0)
        parts = EmbeddingParts(spill, dim, cfg.batch_rows, cfg.sample_size, cfg.seed) if dim else None
        rows, _ = _scan(meta, cfg, parts=parts)
        nodes = rows.nodes()
        st.candidates = st.with_embedding = len(nodes)
        exact_e, rep = exact_groups(nodes.content) if cfg.exact else (np.zeros((0, 2), np.int64),
                                                                      np.ones(len(nodes), bool))
        sem = semantic_edges(parts, rep, cfg, st, map_fn=map_fn) if (cfg.semantic and parts and parts.count) \
            else None
        edges = [exact_e] + ([sem.edges] if sem is not None else [])
        bi = [exact_e[:, 0], exact_e[:, 1]] + ([sem.best_idx] if sem is not None else [])
        bs = [np.ones(2 * len(exact_e), np.float32)] + ([sem.best_sim] if sem is not None else [])
        dec = decide(nodes, np.concatenate(edges), np.concatenate(bi), np.concatenate(bs))
        threshold = threshold_for(cfg, meta.model)
        centroids = sem.centroids if sem is not None and sem.centroids is not None else None
        cells = np.zeros(len(nodes), np.int32)
        cos: list[np.ndarray] = []
        if centroids is not None and parts is not None:
            for idx, emb in iter_parts(parts.parts):
                s = normalize_rows(emb) @ centroids.T
                cells[idx] = np.argmax(s, axis=1)
                cos.append(s.max(axis=1))
        table = _decisions_table(rows, np.arange(len(nodes)), dec.keeper, dec.similarity, cells)
    finally:
        spill.cleanup()
    did = core.new_id()
    files = [f"dedup/{did}.parquet"]
    core.write_table(storage.join(meta.uri, files[0]), table)
    if centroids is not None:
        buf = io.BytesIO()
        np.save(buf, centroids.astype(np.float32))
        files.append(f"dedup/{did}.centroids.npy")
        storage.write_bytes(storage.join(meta.uri, files[1]), buf.getvalue())
    summary = _summary(table)
    state = {"id": did, "threshold": threshold, "k": int(len(centroids)) if centroids is not None else 0,
             "embedding_model": meta.model, "centroids": files[1] if centroids is not None else None,
             "decisions": [files[0]], "files": files, "clips": len(nodes),
             "baseline": round(float(np.concatenate(cos).mean()), 6) if cos else None,
             "max_probes": cfg.max_probes, "incremental": 0, "created": core.now_iso(), **summary}

    def apply(doc: dict[str, Any], seq: int) -> dict[str, Any]:
        doc["dedup"] = {**state, "seq": seq}
        return doc

    res = core.commit(meta.uri, apply)
    st.groups, st.removed, st.threshold = summary["groups"], summary["removed"], threshold
    st.timings["total_s"] = round(time.monotonic() - t0, 3)
    return {"catalog": meta.uri, "mode": "full", "seq": res.seq, "clips": len(nodes), **summary,
            "stats": asdict(st), "_scratch": spill.root}


def load_decisions(meta: index.IndexMeta) -> dict[str, dict[str, Any]]:
    """key -> the latest decision record (later files override earlier ones)."""
    out: dict[str, dict[str, Any]] = {}
    for rel in (meta.doc.get("dedup") or {}).get("decisions") or []:
        for r in core.read_table(storage.join(meta.uri, rel)).to_pylist():
            out[r["key"]] = r
    return out


@_measured
def incremental(uri: str, segment_ids: list[str], cfg: DedupConfig, *, recluster_drift: float = 0.05,
                map_fn: Any = None) -> dict[str, Any]:
    """Dedup the clips of newly committed segments against the catalog using its centroids;
    re-cluster everything (a full pass) when there is no dedup state yet or the new clips
    drifted away from the centroids."""
    meta = index.read_meta(uri)
    state = meta.doc.get("dedup") or {}
    if not state.get("centroids") or state.get("embedding_model") != meta.model:
        res = full.__wrapped__(uri, cfg, map_fn=map_fn)  # type: ignore[attr-defined]
        return {**res, "reason": "no dedup state yet"}
    segs = [s for s in meta.segments if s["id"] in set(segment_ids)]
    new, _ = _scan(meta, cfg, segments=segs)
    if not new.keys:
        return {"catalog": meta.uri, "mode": "incremental", "clips": 0, "groups": 0, "removed": 0,
                "cross_site_groups": 0}
    centroids = np.load(io.BytesIO(storage.read_bytes(storage.join(meta.uri, state["centroids"]))))
    threshold = float(state["threshold"])
    x = normalize_rows(np.concatenate(new.emb).astype(np.float32))
    assigner = Assigner(centroids, threshold, cfg.max_probes)
    owner, vr, vc, _ = assigner.assign(x)
    mean_cos = float((x * centroids[owner]).sum(axis=1).mean())
    drift = float(state.get("baseline") or mean_cos) - mean_cos
    if drift > recluster_drift:
        log.info("catalog %s: new clips drifted %.3f from the centroids (> %.3f): re-clustering",
                 storage.display(meta.uri), drift, recluster_drift)
        res = full.__wrapped__(uri, cfg, map_fn=map_fn)  # type: ignore[attr-defined]
        return {**res, "reason": f"drift {drift:.3f} > {recluster_drift}", "drift": round(drift, 6)}
    known = load_decisions(meta)
    new_keys = set(new.keys)
    cells = set(owner.tolist()) | set(vc.tolist())
    candidates = {k for k, r in known.items() if r["cell"] in cells and k not in new_keys}
    old, _ = _scan(meta, cfg, keys=candidates, skip=new_keys) if candidates else (Scanned(), None)
    # everyone in one node list: old candidates, new clips, then members of the groups they touch
    rows = Scanned(keys=old.keys + new.keys, clip_ids=old.clip_ids + new.clip_ids, sites=old.sites + new.sites,
                   pixels=old.pixels + new.pixels, duration=old.duration + new.duration,
                   quality=old.quality + new.quality, content=old.content + new.content)
    no = len(old.keys)
    y = normalize_rows(np.concatenate(old.emb).astype(np.float32)) if old.emb else np.zeros((0, x.shape[1]), np.float32)
    allx = np.concatenate([y, x])
    sims = x @ allx.T  # new clips against old candidates and each other
    ii, jj = np.nonzero(sims >= threshold)
    jj_keep = jj != (no + ii)
    ii, jj = ii[jj_keep] + no, jj[jj_keep]
    edges = [np.stack([ii, jj], axis=1)] if len(ii) else []
    best_idx, best_sim = list(ii), list(sims[ii - no, jj])
    # existing groups the new clips join: their members and their kept clip come along
    joined = {known[rows.keys[j]]["dup_group"] for j in jj.tolist() if j < no and known[rows.keys[j]]["dup_group"]}
    members = [k for k, r in known.items() if r["dup_group"] in joined and k not in set(rows.keys)]
    for k in members:
        r = known[k]
        rows.keys.append(k)
        rows.clip_ids.append(r["clip_id"])
        rows.sites.append(r["site"])
        rows.pixels.append(int(r["pixels"] or 0))
        rows.duration.append(float(r["duration"] or 0.0))
        rows.quality.append(np.nan if r["quality"] is None else float(r["quality"]))
    pos = {k: i for i, k in enumerate(rows.keys)}
    for k, r in known.items():  # the old group structure, as edges to each group's kept clip
        if k in pos and r["dup_group"] in pos and r["dup_group"] != k:
            edges.append(np.array([[pos[k], pos[r["dup_group"]]]]))
            best_idx.append(pos[k])
            best_sim.append(float(r["similarity"] or threshold))
    rows.content = [np.zeros(len(rows.keys), np.uint64)]
    nodes = rows.nodes()
    e = np.concatenate(edges) if edges else np.zeros((0, 2), np.int64)
    dec = decide(nodes, e, np.asarray(best_idx, np.int64), np.asarray(best_sim, np.float32))
    node_cells = np.array([known[k]["cell"] if k in known else -1 for k in rows.keys], np.int32)
    node_cells[no:no + len(new.keys)] = owner
    changed = [i for i, k in enumerate(rows.keys)
               if k in new_keys or (k in known and (known[k]["dup_group"] != (rows.keys[dec.keeper[i]]
                                                                             if dec.keeper[i] >= 0 else None)))]
    table = _decisions_table(rows, np.asarray(changed, np.int64), dec.keeper, dec.similarity, node_cells)
    rel = f"dedup/{core.new_id()}.parquet"
    core.write_table(storage.join(meta.uri, rel), table)
    summary = _summary(table)
    state_id = state["id"]

    def apply(doc: dict[str, Any], seq: int) -> dict[str, Any] | None:
        d = doc.get("dedup") or {}
        if d.get("id") != state_id:  # a full pass replaced the state meanwhile: it covers these clips
            return None
        d["decisions"] = list(d.get("decisions") or []) + [rel]
        d["files"] = list(d.get("files") or []) + [rel]
        d["incremental"] = int(d.get("incremental") or 0) + 1
        d["clips"] = int(d.get("clips") or 0) + len(new.keys)
        doc["dedup"] = d
        return doc

    res = core.commit(meta.uri, apply)
    return {"catalog": meta.uri, "mode": "incremental", "seq": res.seq, "clips": len(new.keys),
            "compared": len(old.keys), "drift": round(drift, 6), **summary}


def format_result(res: dict[str, Any]) -> str:
    lines = [f"catalog dedup ({res.get('mode')}): {res.get('clips', 0)} clips, {res.get('groups', 0)} duplicate "
             f"groups ({res.get('cross_site_groups', 0)} across sites), {res.get('removed', 0)} duplicates"]
    io_ = res.get("io") or {}
    read = ", ".join(f"{s} {n:,} B" for s, n in (io_.get("read") or {}).items()) or "nothing"
    lines.append(f"read: {read}; outside the catalog: {len(res.get('read_outside_catalog') or [])} objects")
    if res.get("reason"):
        lines.append(f"re-clustered: {res['reason']}")
    return "\n".join(lines)
