"""The semantic phase: k-means, streamed assignment (serial or Ray Data), per-cluster pairs."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from curator import storage
from curator.config import DedupConfig
from curator.dedup.assign import Assigner
from curator.dedup.common import BORDER_SLACK, MapFn, _serial_map, threshold_for
from curator.dedup.kmeans import auto_k, normalize_rows, resolve_backend, train_kmeans
from curator.dedup.pairs import cluster_pairs
from curator.dedup.spill import EmbeddingParts, iter_parts, load_part, record_dtype


@dataclass
class DedupStats:
    candidates: int = 0
    with_embedding: int = 0
    exact_groups: int = 0
    exact_removed: int = 0
    semantic_nodes: int = 0
    k: int = 0
    method: str = ""
    device: str = ""
    sample: int = 0
    visits: int = 0
    capped: int = 0
    max_cluster: int = 0
    comparisons: int = 0
    groups: int = 0
    removed: int = 0
    embedding_model: str | None = None
    threshold: float | None = None
    reference_index: str | None = None  # dedup.reference_index, when set
    reference_removed: int = 0  # clips marked near-copies of a clip in it
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class SemanticResult:
    edges: np.ndarray  # [m, 2] global node edges
    best_idx: np.ndarray
    best_sim: np.ndarray
    pairs: np.ndarray | None = None


def semantic_edges(parts: EmbeddingParts, active: np.ndarray | None, cfg: DedupConfig, stats: DedupStats, *,
                   map_fn: MapFn | None = None, use_ray: bool = False, collect_pairs: bool = False) -> SemanticResult:
    """k-means on the sample, streamed assignment to per-cluster spill files, then the
    blockwise in-cluster search (one cluster per map_fn call).

    `active`: boolean mask over node indices that take part (None = all in the parts)."""
    map_fn = map_fn or _serial_map
    n_active = int(active.sum()) if active is not None else parts.count
    stats.semantic_nodes = n_active
    empty = SemanticResult(np.zeros((0, 2), np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32),
                           np.zeros((0, 3), np.int64) if collect_pairs else None)
    if n_active < 2:
        return empty
    t0 = time.monotonic()
    sample = parts.training_sample()
    k = auto_k(n_active, len(sample), cfg.k)
    method, device = resolve_backend(cfg.method, cfg.device) if k > 1 else ("none", "cpu")
    centroids = train_kmeans(sample, k, niter=cfg.niter, seed=cfg.seed, method=cfg.method, device=cfg.device)
    del sample
    stats.k, stats.method, stats.device, stats.sample = len(centroids), method, device, parts.sample_n
    threshold = threshold_for(cfg, stats.embedding_model)
    stats.threshold = threshold
    stats.timings["kmeans_s"] = round(time.monotonic() - t0, 3)

    t0 = time.monotonic()
    assigner = Assigner(centroids, threshold, cfg.max_probes)
    stream = _assign_ray(parts, assigner) if use_ray else _assign_local(parts, assigner)
    counts = np.zeros(assigner.k, np.int64)
    buffers: dict[int, list[bytes]] = {}
    buffered = 0
    flush_bytes = 64 << 20

    def flush() -> None:
        nonlocal buffered
        for cid, chunks in buffers.items():
            with open(parts.spill.cluster_local(cid), "ab") as fh:
                for c in chunks:
                    fh.write(c)
        buffers.clear()
        buffered = 0

    for cells, records, capped in stream:
        if active is not None:
            node = np.where(records["idx"] >= 0, records["idx"], -records["idx"] - 1)
            keep = active[node]
            cells, records = cells[keep], records[keep]
        stats.capped += capped
        order = np.argsort(cells, kind="stable")
        cells, records = cells[order], records[order]
        uniq, starts = np.unique(cells, return_index=True)
        ends = np.append(starts[1:], len(cells))
        for cid, a, b in zip(uniq.tolist(), starts.tolist(), ends.tolist()):
            chunk = records[a:b].tobytes()
            buffers.setdefault(cid, []).append(chunk)
            buffered += len(chunk)
            counts[cid] += b - a
        if buffered >= flush_bytes:
            flush()
    flush()
    stats.visits = int(counts.sum()) - n_active
    stats.max_cluster = int(counts.max()) if len(counts) else 0
    stats.timings["assign_s"] = round(time.monotonic() - t0, 3)

    t0 = time.monotonic()
    cids = [int(c) for c in np.nonzero(counts >= 2)[0]]
    # clusters that hold no pair candidates (< 2 records) still have files: drop them
    for c in np.nonzero(counts == 1)[0]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(parts.spill.cluster_local(int(c)))
    # largest first: better balance under a parallel map
    cids.sort(key=lambda c: -int(counts[c]))
    uris = parts.spill.publish_clusters(cids)
    items: list[dict[str, Any]] = [{"uri": u, "cluster": c, "dim": parts.dim, "threshold": threshold, "block": cfg.block_size,
              "pairs": collect_pairs} for u, c in zip(uris, cids)]
    uri_of = {it["cluster"]: it["uri"] for it in items}
    edges: list[np.ndarray] = []
    bi: list[np.ndarray] = []
    bs: list[np.ndarray] = []
    pairs: list[np.ndarray] = []
    for res in map_fn(cluster_pairs, items):
        stats.comparisons += res.comparisons
        if len(res.forest):
            edges.append(res.forest)
        if len(res.best_idx):
            bi.append(res.best_idx)
            bs.append(res.best_sim)
        if collect_pairs and res.pairs is not None and len(res.pairs):
            pairs.append(res.pairs)
        done = storage.local_path(uri_of[res.cluster])
        if done is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(done)
    stats.timings["pairs_s"] = round(time.monotonic() - t0, 3)
    out = SemanticResult(
        edges=np.concatenate(edges) if edges else np.zeros((0, 2), np.int64),
        best_idx=np.concatenate(bi) if bi else np.zeros(0, np.int64),
        best_sim=np.concatenate(bs) if bs else np.zeros(0, np.float32),
    )
    if collect_pairs:
        pr = np.concatenate(pairs) if pairs else np.zeros((0, 3), np.int64)
        if len(pr):
            lo, hi = np.minimum(pr[:, 0], pr[:, 1]), np.maximum(pr[:, 0], pr[:, 1])
            pr = np.unique(np.stack([lo, hi, pr[:, 2]], axis=1), axis=0)
            _, first = np.unique(pr[:, :2], axis=0, return_index=True)
            pr = pr[np.sort(first)]
        out.pairs = pr
    return out


def _assign_batch(assigner: Assigner, idx: np.ndarray, emb: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """One batch -> (cell of every record, records, capped)."""
    x = normalize_rows(emb)
    owner, vr, vc, capped = assigner.assign(x)
    rec = record_dtype(emb.shape[1])
    out = np.empty(len(idx) + len(vr), rec)
    out["idx"][:len(idx)] = idx
    out["emb"][:len(idx)] = emb
    out["idx"][len(idx):] = -idx[vr] - 1
    out["emb"][len(idx):] = emb[vr]
    return np.concatenate([owner, vc]).astype(np.int32), out, capped


def _assign_local(parts: EmbeddingParts, assigner: Assigner) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    step = assigner.batch_rows(parts.part_rows)
    for idx, emb in iter_parts(parts.parts):
        for a in range(0, len(idx), step):
            yield _assign_batch(assigner, idx[a:a + step], emb[a:a + step])


class _RayAssign:
    """Ray Data actor: holds the centroids, assigns one spill part per call."""

    def __init__(self, centroids: np.ndarray, threshold: float, max_probes: int, storage_cfg: Any):
        storage.configure(storage_cfg)
        self.assigner = Assigner(centroids, threshold, max_probes)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        cells, recs, capped = [], [], 0
        for uri in batch["uri"]:
            idx, emb = load_part(str(uri))
            step = self.assigner.batch_rows(len(idx))
            for a in range(0, len(idx), step):
                c, r, cap = _assign_batch(self.assigner, idx[a:a + step], emb[a:a + step])
                cells.append(c)
                recs.append(r)
                capped += cap
        rec = np.concatenate(recs)
        cap_col = np.zeros(len(rec), np.int64)
        if len(rec):
            cap_col[0] = capped
        return {"cell": np.concatenate(cells), "idx": rec["idx"], "emb": rec["emb"], "capped": cap_col}


def _assign_ray(parts: EmbeddingParts, assigner: Assigner) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """The assignment as a Ray Data streaming map over the spill parts (an actor pool
    holding the centroids); the driver receives (cell, record) rows."""
    import ray.data

    rec = record_dtype(parts.dim)
    ds: ray.data.Dataset = ray.data.from_items([{"uri": u} for u, _ in parts.parts], override_num_blocks=max(1, len(parts.parts)))
    ds = ds.map_batches(
        _RayAssign, batch_size=1, batch_format="numpy",
        fn_constructor_kwargs={"centroids": assigner.c, "threshold": assigner.t + BORDER_SLACK,
                               "max_probes": assigner.max_probes, "storage_cfg": storage.current_config()},
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=2), num_cpus=1)
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        records = np.empty(len(batch["idx"]), rec)
        records["idx"] = batch["idx"]
        records["emb"] = np.asarray(batch["emb"], np.float16)
        yield batch["cell"].astype(np.int32), records, int(batch["capped"].sum())
