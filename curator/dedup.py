"""Dedup: find exact and near-duplicate clips in a run's manifest and mark all but one.

A global phase over the consolidated manifest (docs/dedup.md). It never touches clips:
it writes its decisions back into the manifest as columns

    dup_group     clip id of the kept clip of the group (on every member, kept one included)
    duplicate_of  clip id of the kept clip (on removed clips only)
    similarity    highest cosine similarity between this clip and another member of its group

and marks removed clips ``status=rejected, stage=dedup, reason=duplicate``.

The steps, each with bounded memory:

1. Scan: stream the manifest once; per candidate clip keep a few scalars (resolution,
   length, quality, content hash, clip id: ~60 bytes); write the embeddings to spill
   parts; keep a reservoir sample of ``sample_size`` embeddings for k-means.
2. Exact: clips with the same ``clip_sha256`` form a group; only one of each takes part
   in the semantic step (the others have the same pixels).
3. k-means (spherical) on the sample: cuML on GPU, faiss or scikit-learn on CPU.
4. Assignment, streamed batch by batch (Ray Data under Ray): each clip is *owned* by its
   nearest centroid and also *visits* every other centroid whose Voronoi border lies
   within the similarity threshold of it (a cap-versus-half-space test, see
   :class:`Assigner`), at most ``max_probes`` in all. Records go to per-cluster spill files.
5. Per cluster (in parallel with the runner's map): cosine similarity in blocks of
   ``block_size`` rows — owners against owners, visitors against owners — pairs at or
   above the threshold are merged with a union-find that is compacted to a spanning
   forest, so only one block and one cluster's forest are in memory.
6. Groups: the connected components of all forests and exact edges; the kept clip of a
   group has the highest resolution, then the longest duration, then the best quality,
   then the smallest clip id.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curator import storage
from curator.config import DedupConfig
from curator.records import OK, REJECTED
from curator.rundir import DEDUP_REPORT, RunDir

log = logging.getLogger(__name__)

STAGE = "dedup"
REASON = "duplicate"
#: columns dedup adds to the manifest
COLUMNS: list[tuple[str, pa.DataType]] = [
    ("dup_group", pa.string()),
    ("duplicate_of", pa.string()),
    ("similarity", pa.float32()),
]
REPORT_NAME = DEDUP_REPORT
#: default thresholds by embedding model (dedup.threshold unset); others get DEFAULT_THRESHOLD
MODEL_THRESHOLDS = {"perceptual-dct-v1": 0.8}
DEFAULT_THRESHOLD = 0.9


def threshold_for(cfg: DedupConfig, model: str | None) -> float:
    if cfg.threshold is not None:
        return float(cfg.threshold)
    return MODEL_THRESHOLDS.get(model or "", DEFAULT_THRESHOLD)
#: slack on the threshold for the border test (embeddings are float16 in the manifest)
BORDER_SLACK = 2e-3
#: records per panel when a cluster is read in pieces
PANEL_ROWS = 16_384

MapFn = Callable[[Callable[[Any], Any], Iterable[Any]], Iterator[Any]]


class DedupError(RuntimeError):
    """Dedup cannot run on this manifest; the message says why."""


def _serial_map(fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
    for item in items:
        yield fn(item)


# ============================================================================ k-means
def _cuda_usable() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def _cuml_importable() -> bool:
    import importlib.util

    return importlib.util.find_spec("cuml") is not None


def resolve_backend(method: str, device: str) -> tuple[str, str]:
    """(method, device) actually used. cuML needs CUDA and the `gpu` extra; the (slow)
    CUDA probe runs only when cuML could be used or CUDA is asked for."""
    wants_gpu = device == "cuda" or method == "cuml" or (device == "auto" and method == "auto" and _cuml_importable())
    cuda = _cuda_usable() if wants_gpu else False
    if device == "cuda" and not cuda:
        raise DedupError("dedup.device=cuda but no CUDA device is usable here")
    if method == "cuml":
        if not cuda:
            raise DedupError("dedup.method=cuml needs a CUDA device")
        if not _cuml_importable():
            raise DedupError("dedup.method=cuml needs cuML: pip install 'curator[gpu]'")
        return "cuml", "cuda"
    if method == "auto":
        if cuda and _cuml_importable() and device != "cpu":
            return "cuml", "cuda"
        try:
            import faiss  # noqa: F401

            return "faiss", "cpu"
        except ImportError:
            return "sklearn", "cpu"
    return method, "cpu"


def normalize_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    n[n == 0] = 1.0
    return x / n


def train_kmeans(sample: np.ndarray, k: int, *, niter: int = 20, seed: int = 0, method: str = "auto",
                 device: str = "auto") -> np.ndarray:
    """Spherical k-means on unit vectors; returns k unit-norm centroids (float32 [k, d])."""
    x = normalize_rows(sample)
    k = max(1, min(k, len(x)))
    if k == 1:
        return normalize_rows(x.mean(axis=0, keepdims=True))
    method, device = resolve_backend(method, device)
    if method == "cuml":
        from cuml.cluster import KMeans  # type: ignore[import-not-found]

        km = KMeans(n_clusters=k, max_iter=niter, random_state=seed, n_init=1)
        km.fit(x)
        centroids = np.asarray(km.cluster_centers_.get() if hasattr(km.cluster_centers_, "get")
                               else km.cluster_centers_, dtype=np.float32)
    elif method == "faiss":
        import faiss

        km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, spherical=True, verbose=False,
                          max_points_per_centroid=max(256, len(x) // k + 1))
        km.train(x)
        centroids = np.asarray(km.centroids, dtype=np.float32)
    else:
        from sklearn.cluster import MiniBatchKMeans

        km = MiniBatchKMeans(n_clusters=k, max_iter=niter, random_state=seed, n_init=1,
                             batch_size=min(len(x), 4096))
        km.fit(x)
        centroids = km.cluster_centers_.astype(np.float32)
    return normalize_rows(centroids)


def auto_k(n: int, sample: int, k: int | None = None) -> int:
    """k = round(sqrt(n)) (≈10,000 at 100 M clips, as in the reference design), at most
    one centroid per 8 sampled points."""
    if k is None:
        k = int(round(math.sqrt(max(1, n))))
    return max(1, min(k, max(1, sample // 8), n))


# ========================================================================= assignment
class Assigner:
    """Assign unit vectors to spherical k-means cells, with bounded multi-probing.

    A clip x is *owned* by its nearest centroid a. A clip y that is a duplicate of x
    (x·y >= t) lies in the cap {y : x·y >= t}. y is owned by some b, so y·c_b >= y·c_a,
    i.e. w·y >= 0 with w = c_b - c_a. The largest w·y over the cap is
    t (w·x) + sqrt(1 - t²) |w - (w·x) x|, so if that is negative, no duplicate of x can
    live in cell b and x need not visit it. x visits every other cell where the bound is
    >= 0 (best first, at most max_probes - 1 of them). Comparing owners with owners and
    visitors with owners inside every cell then finds every pair above the threshold —
    exactly, unless a clip had more qualifying cells than the cap (counted in `capped`).
    """

    def __init__(self, centroids: np.ndarray, threshold: float, max_probes: int = 4):
        self.c = normalize_rows(centroids)
        self.k = len(self.c)
        self.t = max(0.0, min(1.0, threshold - BORDER_SLACK))
        self.max_probes = max(1, max_probes)
        self.gram = self.c @ self.c.T if self.k <= 4096 else None

    def batch_rows(self, limit: int) -> int:
        """Rows per assignment batch so that a batch × k matrix stays ~16 MB."""
        return max(64, min(limit, (4 << 20) // max(1, self.k)))

    def assign(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """x: unit vectors [n, d] -> (owner [n], visit_rows, visit_cells, capped)."""
        s = x @ self.c.T
        a = np.argmax(s, axis=1).astype(np.int32)
        empty = np.zeros(0, np.int64)
        if self.k == 1 or self.max_probes == 1:
            return a, empty, empty.astype(np.int32), 0
        n = len(x)
        rows = np.arange(n)
        wx = s - s[rows, a][:, None]  # <= 0
        ga = self.gram[a] if self.gram is not None else self.c[a] @ self.c.T
        w2 = np.maximum(2.0 - 2.0 * ga, 0.0)
        wperp = np.sqrt(np.maximum(w2 - wx * wx, 0.0))
        bound = self.t * wx + math.sqrt(max(0.0, 1.0 - self.t * self.t)) * wperp
        bound[rows, a] = -np.inf
        cand = bound >= 0
        counts = cand.sum(axis=1)
        m = self.max_probes - 1
        capped = int((counts > m).sum())
        if m >= self.k - 1 or not capped:
            vr, vc = np.nonzero(cand)
            return a, vr.astype(np.int64), vc.astype(np.int32), capped
        top = np.argpartition(-bound, m - 1, axis=1)[:, :m]
        keep = cand[rows[:, None], top]
        vr = np.repeat(rows, m).reshape(n, m)[keep]
        vc = top[keep]
        return a, vr.astype(np.int64), vc.astype(np.int32), capped


# ============================================================================== spill
def record_dtype(dim: int) -> np.dtype:
    """A spill record: global node index (owners >= 0, visitors -(idx + 1)) + float16 vector."""
    return np.dtype([("idx", "<i8"), ("emb", "<f2", (dim,))])


class SpillDir:
    """Scratch space: embedding parts and per-cluster files, under a storage URI.

    Cluster files are built by appending on local disk (the driver is their only writer)
    and uploaded when `root` is not local, so workers on other nodes can read them."""

    def __init__(self, root_uri: str | None):
        self.local = tempfile.mkdtemp(prefix="curator-dedup-")
        self.root = storage.normalize(root_uri) if root_uri else storage.normalize(self.local)
        self.remote = storage.local_path(self.root) is None
        os.makedirs(os.path.join(self.local, "clusters"), exist_ok=True)

    def uri(self, *parts: str) -> str:
        return storage.join(self.root, *parts)

    def cluster_local(self, cid: int) -> str:
        return os.path.join(self.local, "clusters", f"c-{cid:07d}.bin")

    def publish_clusters(self, cids: Iterable[int]) -> list[str]:
        out = []
        for cid in cids:
            local = self.cluster_local(cid)
            if self.remote:
                uri = self.uri("clusters", f"c-{cid:07d}.bin")
                storage.upload(local, uri)
                os.unlink(local)
                out.append(uri)
            else:
                out.append(storage.normalize(local))
        return out

    def cleanup(self) -> None:
        if self.remote:
            for info in storage.list_objects(self.root.rstrip("/") + "/"):
                with contextlib.suppress(storage.StorageError):
                    storage.delete(info.uri)
        shutil.rmtree(self.local, ignore_errors=True)


class EmbeddingParts:
    """Embeddings of candidate nodes, written in node order as .npy parts, plus a
    uniform reservoir sample for k-means."""

    def __init__(self, spill: SpillDir, dim: int, part_rows: int, sample_size: int, seed: int):
        self.spill = spill
        self.dim = dim
        self.part_rows = part_rows
        self.parts: list[tuple[str, int]] = []
        self._idx: list[np.ndarray] = []
        self._emb: list[np.ndarray] = []
        self._buffered = 0
        self.count = 0
        self.sample_cap = sample_size
        self.sample = np.zeros((0, dim), np.float16)
        self.sample_n = 0
        self._rng = np.random.default_rng(seed)

    def add(self, idx: np.ndarray, emb: np.ndarray) -> None:
        if len(idx) == 0:
            return
        emb = emb.astype(np.float16, copy=False)
        if emb.shape[1] != self.dim:
            raise DedupError(f"embeddings of different sizes in one run ({self.dim} and {emb.shape[1]})")
        self._reservoir(emb)
        self._idx.append(np.asarray(idx, np.int64))
        self._emb.append(emb)
        self._buffered += len(idx)
        self.count += len(idx)
        if self._buffered >= self.part_rows:
            self.flush()

    def _reservoir(self, emb: np.ndarray) -> None:
        """Algorithm R, vectorised: the first `cap` rows fill the sample, row p >= cap
        replaces a random slot with probability cap / (p + 1)."""
        cap = self.sample_cap
        n = len(emb)
        take = min(n, max(0, cap - self.sample_n))
        if take:
            self.sample = np.concatenate([self.sample[:self.sample_n], emb[:take]])
        seen = self.count + take
        rest = emb[take:]
        if len(rest):
            pos = seen + np.arange(len(rest))
            j = self._rng.integers(0, pos + 1)
            hit = j < cap
            self.sample[j[hit]] = rest[hit]
        self.sample_n = min(cap, self.sample_n + n)

    def flush(self) -> None:
        if not self._buffered:
            return
        idx = np.concatenate(self._idx)
        emb = np.concatenate(self._emb)
        buf = io.BytesIO()
        np.savez(buf, idx=idx, emb=emb)
        uri = self.spill.uri("parts", f"part-{len(self.parts):06d}.npz")
        storage.write_bytes(uri, buf.getvalue())
        self.parts.append((uri, len(idx)))
        self._idx, self._emb, self._buffered = [], [], 0

    def training_sample(self) -> np.ndarray:
        return self.sample[:self.sample_n].astype(np.float32)


def load_part(uri: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(io.BytesIO(storage.read_bytes(uri))) as z:
        return z["idx"], z["emb"]


def iter_parts(parts: list[tuple[str, int]]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for uri, _ in parts:
        yield load_part(uri)


# ======================================================================== per cluster
@dataclass
class ClusterResult:
    cluster: int
    records: int
    owners: int
    comparisons: int  # similarity entries computed
    forest: np.ndarray  # [m, 2] int64 global node edges (a spanning forest of the pairs found)
    best_idx: np.ndarray  # global nodes with a pair
    best_sim: np.ndarray  # their highest similarity
    pairs: np.ndarray | None = None  # [p, 3] (i, j, sim*1e6) when asked for (tests)


def _forest(n: int, ei: np.ndarray, ej: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A spanning forest (node -> smallest node of its component) of the graph (n, edges)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if len(ei) == 0:
        return ei, ej
    g = coo_matrix((np.ones(len(ei), np.int8), (ei, ej)), shape=(n, n))
    _, lab = connected_components(g, directed=False)
    root = np.full(lab.max() + 1, n, np.int64)
    np.minimum.at(root, lab, np.arange(n))
    nodes = np.nonzero(root[lab] != np.arange(n))[0]
    return nodes.astype(np.int64), root[lab[nodes]]


def cluster_pairs(item: dict[str, Any]) -> ClusterResult:
    """All pairs at or above the threshold in one cluster file, block by block.

    item: {"uri", "cluster", "dim", "threshold", "block", "pairs" (bool), "panel"}.
    Memory: one panel of records (≤ `panel` rows), one column chunk and one
    block × chunk similarity matrix."""
    uri, dim, t = item["uri"], item["dim"], float(item["threshold"])
    block, want_pairs = int(item["block"]), bool(item.get("pairs"))
    panel = int(item.get("panel") or PANEL_ROWS)
    rec = record_dtype(dim)
    size = storage.stat(uri).size
    n = size // rec.itemsize

    def read(a: int, b: int) -> np.ndarray:
        if a == 0 and b >= n and storage.local_path(uri) is not None:
            return np.fromfile(storage.local_path(uri), dtype=rec)
        return np.frombuffer(storage.read_range(uri, a * rec.itemsize, b * rec.itemsize), dtype=rec)

    gidx = np.empty(n, np.int64)
    best = np.zeros(n, np.float32)
    ei: list[np.ndarray] = []
    ej: list[np.ndarray] = []
    pairs: list[np.ndarray] = []
    pending = 0
    forest_i = np.zeros(0, np.int64)
    forest_j = np.zeros(0, np.int64)
    comparisons = 0
    owners_total = 0
    whole = read(0, n) if n <= panel else None
    for p0 in range(0, n, panel):
        rp = whole if whole is not None else read(p0, min(n, p0 + panel))
        raw = rp["idx"]
        own_p = raw >= 0
        gidx[p0:p0 + len(rp)] = np.where(own_p, raw, -raw - 1)
        owners_total += int(own_p.sum())
        xp = rp["emb"].astype(np.float32)
        pos_p = p0 + np.arange(len(rp))
        for q0 in range(0, n, panel):
            if q0 < p0 and own_p.all():
                continue
            rq = rp if q0 == p0 else (whole if whole is not None else read(q0, min(n, q0 + panel)))
            own_q = rq["idx"] >= 0
            if not own_q.any():
                continue
            cols = np.nonzero(own_q)[0]
            xq = xp[cols] if q0 == p0 else rq["emb"][cols].astype(np.float32)
            pos_q = q0 + cols
            rows_sel = np.nonzero(~own_p)[0] if q0 < p0 else np.arange(len(rp))
            for b0 in range(0, len(rows_sel), block):
                rb = rows_sel[b0:b0 + block]
                s = xp[rb] @ xq.T
                comparisons += s.size
                mask = s >= t
                if q0 == p0:
                    # owners against owners: each unordered pair once (column after row)
                    mask &= ~(own_p[rb][:, None] & (pos_q[None, :] <= pos_p[rb][:, None]))
                ii, jj = np.nonzero(mask)
                if not len(ii):
                    continue
                li, lj, sv = pos_p[rb][ii], pos_q[jj], s[ii, jj]
                np.maximum.at(best, li, sv)
                np.maximum.at(best, lj, sv)
                ei.append(li)
                ej.append(lj)
                pending += len(li)
                if want_pairs:
                    pairs.append(np.stack([li, lj, np.round(sv * 1e6).astype(np.int64)], axis=1))
                if pending > max(4 * n, 1 << 20):
                    forest_i, forest_j = _forest(n, np.concatenate([forest_i, *ei]), np.concatenate([forest_j, *ej]))
                    ei, ej, pending = [], [], 0
    if ei:
        forest_i, forest_j = _forest(n, np.concatenate([forest_i, *ei]), np.concatenate([forest_j, *ej]))
    has = np.nonzero(best > 0)[0]
    result = ClusterResult(
        cluster=int(item.get("cluster", -1)), records=int(n), owners=owners_total, comparisons=int(comparisons),
        forest=np.stack([gidx[forest_i], gidx[forest_j]], axis=1) if len(forest_i) else np.zeros((0, 2), np.int64),
        best_idx=gidx[has], best_sim=best[has],
    )
    if want_pairs:
        pr = np.concatenate(pairs) if pairs else np.zeros((0, 3), np.int64)
        if len(pr):
            pr = np.stack([gidx[pr[:, 0]], gidx[pr[:, 1]], pr[:, 2]], axis=1)
        result.pairs = pr
    return result


# ===================================================================== semantic phase
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
    rec = record_dtype(parts.dim)
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
    items = [{"uri": u, "cluster": c, "dim": parts.dim, "threshold": threshold, "block": cfg.block_size,
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
    ds = ray.data.from_items([{"uri": u} for u, _ in parts.parts], override_num_blocks=max(1, len(parts.parts)))
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


# ========================================================================== decisions
@dataclass
class Nodes:
    """One entry per candidate clip (active clip rows of the manifest)."""

    row: np.ndarray  # manifest row number
    clip_id: pa.Array  # strings
    pixels: np.ndarray
    duration: np.ndarray
    quality: np.ndarray
    content: np.ndarray  # uint64 prefix of clip_sha256 (0 = none)

    def __len__(self) -> int:
        return len(self.row)


def exact_groups(content: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges (node -> first node with the same content hash) and a mask of the nodes
    that represent their content (first of each hash, and nodes without a hash)."""
    n = len(content)
    rep = np.ones(n, bool)
    has = np.nonzero(content != 0)[0]
    if not len(has):
        return np.zeros((0, 2), np.int64), rep
    _, first, inv = np.unique(content[has], return_index=True, return_inverse=True)
    target = has[first[inv]]
    dup = target != has
    rep[has[dup]] = False
    return np.stack([has[dup], target[dup]], axis=1).astype(np.int64), rep


def keep_order(nodes: Nodes) -> np.ndarray:
    """Node indices from most to least preferred: resolution, length, quality desc; clip id asc."""
    import pyarrow.compute as pc

    id_rank = np.empty(len(nodes), np.int64)
    id_rank[np.asarray(pc.sort_indices(nodes.clip_id))] = np.arange(len(nodes))
    q = np.nan_to_num(nodes.quality, nan=-np.inf)
    return np.lexsort((id_rank, -q, -np.nan_to_num(nodes.duration), -nodes.pixels))


@dataclass
class Decisions:
    keeper: np.ndarray  # per node: node index of its group's kept clip (-1 = no group)
    similarity: np.ndarray  # float32, NaN where no group


def decide(nodes: Nodes, edges: np.ndarray, best_idx: np.ndarray, best_sim: np.ndarray) -> Decisions:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(nodes)
    keeper = np.full(n, -1, np.int64)
    sim = np.full(n, np.nan, np.float32)
    if n == 0 or not len(edges):
        return Decisions(keeper, sim)
    g = coo_matrix((np.ones(len(edges), np.int8), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, lab = connected_components(g, directed=False)
    size = np.bincount(lab)
    order = keep_order(nodes)
    labs, first = np.unique(lab[order], return_index=True)
    best_of_label = np.empty(lab.max() + 1, np.int64)
    best_of_label[labs] = order[first]
    grouped = size[lab] > 1
    keeper[grouped] = best_of_label[lab[grouped]]
    best = np.zeros(n, np.float32)
    np.maximum.at(best, best_idx, best_sim.astype(np.float32))
    sim[grouped] = np.minimum(best[grouped], 1.0)  # float16 rounding can give 1.00002
    return Decisions(keeper, sim)


# ===================================================================== manifest phase
def _content_key(sha: list[str | None]) -> np.ndarray:
    out = np.zeros(len(sha), np.uint64)
    for i, s in enumerate(sha):
        if s:
            try:
                out[i] = np.uint64(int(s[:16], 16) | 1)
            except ValueError:
                out[i] = np.uint64(int.from_bytes(s.encode()[:8].ljust(8, b"\0"), "little") | 1)
    return out


def _list_to_matrix(col: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A list<float> column -> (valid mask, [n_valid, d] float array)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    valid = np.asarray(col.is_valid())
    if not valid.any():
        return valid, np.zeros((0, 0), np.float32)
    sub = col.filter(pa.array(valid))
    flat = sub.flatten() if not pa.types.is_fixed_size_list(sub.type) else sub.values
    vals = flat.to_numpy(zero_copy_only=False)
    d = len(vals) // len(sub)
    if d * len(sub) != len(vals):
        raise DedupError("embeddings of different sizes in one manifest")
    return valid, vals.reshape(len(sub), d)


def _is_candidate(kind: list, status: list, stage: list, reason: list) -> np.ndarray:
    return np.array([k == "clip" and (s == OK or (s == REJECTED and st == STAGE and r == REASON))
                     for k, s, st, r in zip(kind, status, stage, reason)], bool)


def _embed_chunk(item: dict[str, Any]) -> np.ndarray:
    """Perceptual embeddings of staged clips (runs on a worker)."""
    from curator.media.perceptual import DIM, embed_clip

    storage.configure(item.get("storage"))
    out = np.zeros((len(item["uris"]), DIM), np.float16)
    for i, (uri, frames) in enumerate(zip(item["uris"], item["frames"])):
        try:
            out[i] = embed_clip(storage.read_bytes(uri), num_frames=frames or None)
        except Exception as exc:  # an unreadable clip: no embedding (exact dedup only)
            log.warning("dedup: cannot embed %s: %s", storage.display(uri), exc)
            out[i] = np.nan
    return out


@dataclass
class RunResult:
    stats: DedupStats
    manifest_uri: str
    report_uri: str


def dedup_run(output_uri: str, cfg: DedupConfig, *, map_fn: MapFn | None = None, use_ray: bool = False,
              batch_rows: int = 8192) -> RunResult:
    """Run dedup over the manifest of a run at `output_uri` and write the decisions back."""
    rundir = RunDir.of(output_uri)
    output_uri, man_uri = rundir.uri, rundir.manifest
    if not rundir.has_manifest():
        raise DedupError(f"no manifest at {storage.display(man_uri)}: run `curator run` first")
    stats = DedupStats()
    t_start = time.monotonic()
    spill = SpillDir(cfg.spill_uri)
    try:
        with rundir.open_manifest("dedup") as mf:
            pf = mf.parquet
            names = set(pf.schema_arrow.names)
            if cfg.quality_column and cfg.quality_column not in names:
                raise DedupError(f"dedup.quality_column {cfg.quality_column!r} is not a manifest column")
            mode = cfg.embeddings
            has_col = "embedding" in names
            if mode == "manifest" and not has_col:
                raise DedupError("dedup.embeddings=manifest but the manifest has no `embedding` column "
                                 "(enable the embed stage, or use dedup.embeddings=auto)")
            nodes, parts, to_embed = _scan(pf, cfg, spill, stats, batch_rows, use_column=has_col and mode != "perceptual")
            if cfg.semantic and mode != "manifest" and (mode == "perceptual" or parts.count == 0) and to_embed:
                _embed_missing(nodes, parts, to_embed, map_fn, stats)
            t0 = time.monotonic()
            exact_e, rep = exact_groups(nodes.content) if cfg.exact else (np.zeros((0, 2), np.int64),
                                                                          np.ones(len(nodes), bool))
            stats.exact_groups = int(len(np.unique(exact_e[:, 1]))) if len(exact_e) else 0
            stats.timings["exact_s"] = round(time.monotonic() - t0, 3)
            sem = None
            if cfg.semantic and parts.count:
                sem = semantic_edges(parts, rep, cfg, stats, map_fn=map_fn, use_ray=use_ray)
            edges = [exact_e] + ([sem.edges] if sem is not None else [])
            bi = [exact_e[:, 0], exact_e[:, 1]] + ([sem.best_idx] if sem is not None else [])
            bs = [np.ones(2 * len(exact_e), np.float32)] + ([sem.best_sim] if sem is not None else [])
            dec = decide(nodes, np.concatenate(edges), np.concatenate(bi), np.concatenate(bs))
            removed = (dec.keeper >= 0) & (dec.keeper != np.arange(len(nodes)))
            stats.removed = int(removed.sum())
            stats.groups = int(len(np.unique(dec.keeper[dec.keeper >= 0])))
            stats.exact_removed = int(len(exact_e))
            t0 = time.monotonic()
            # computed perceptual embeddings go into the manifest when it has none (the index uses them)
            write_embeddings = parts if (stats.embedding_model and not has_col) else None
            _write_back(pf, man_uri, nodes, dec, stats, batch_rows, write_embeddings)
            stats.timings["write_s"] = round(time.monotonic() - t0, 3)
    finally:
        spill.cleanup()
    stats.timings["total_s"] = round(time.monotonic() - t_start, 3)
    report_uri = rundir.dedup_report
    cfg_doc = cfg.model_dump(mode="json")
    storage.write_bytes(report_uri, json.dumps({"stats": asdict(stats), "config": cfg_doc}, indent=1).encode())
    log.info("dedup: %d candidates, %d groups, %d removed (%d exact), k=%d, %.1f s", stats.candidates,
             stats.groups, stats.removed, stats.exact_removed, stats.k, stats.timings["total_s"])
    return RunResult(stats, man_uri, report_uri)


def _scan(pf: pq.ParquetFile, cfg: DedupConfig, spill: SpillDir, stats: DedupStats, batch_rows: int,
          use_column: bool) -> tuple[Nodes, EmbeddingParts, list[tuple[int, str, int]]]:
    names = set(pf.schema_arrow.names)
    cols = ["kind", "status", "stage", "reason", "clip_id", "clip_sha256", "clip_width", "clip_height",
            "width", "height", "clip_duration_s", "clip_frames", "clip_uri"]
    cols = [c for c in cols if c in names]
    if use_column:
        cols += ["embedding"] + (["embedding_model"] if "embedding_model" in names else [])
    if cfg.quality_column:
        cols.append(cfg.quality_column)
    rows, ids, pix, dur, qual, content = [], [], [], [], [], []
    to_embed: list[tuple[int, str, int]] = []
    parts: EmbeddingParts | None = None
    models: set[str] = set()
    base = 0
    node_base = 0
    for batch in pf.iter_batches(batch_size=batch_rows, columns=cols):
        d = {c: batch.column(c) for c in batch.schema.names}
        n = batch.num_rows

        def col(name: str) -> list:
            return d[name].to_pylist() if name in d else [None] * n

        cand = _is_candidate(col("kind"), col("status"), col("stage"), col("reason"))
        sel = np.nonzero(cand)[0]
        if len(sel):
            take = pa.array(sel)
            rows.append(base + sel)
            ids.append(d["clip_id"].take(take))
            w = np.array([x or y or 0 for x, y in zip(col("clip_width"), col("width"))], np.int64)[sel]
            h = np.array([x or y or 0 for x, y in zip(col("clip_height"), col("height"))], np.int64)[sel]
            pix.append(w * h)
            dur.append(np.array([x or 0.0 for x in col("clip_duration_s")], np.float64)[sel])
            if cfg.quality_column:
                qual.append(np.array([np.nan if x is None else float(x) for x in col(cfg.quality_column)],
                                     np.float64)[sel])
            else:
                qual.append(np.zeros(len(sel)))
            sha = col("clip_sha256")
            content.append(_content_key([sha[i] for i in sel]))
            if use_column:
                valid, mat = _list_to_matrix(d["embedding"].take(take))
                if len(mat):
                    if parts is None:
                        parts = EmbeddingParts(spill, mat.shape[1], cfg.batch_rows, cfg.sample_size, cfg.seed)
                    good = np.isfinite(mat).all(axis=1)
                    vidx = np.nonzero(valid)[0][good]
                    parts.add(node_base + vidx, mat[good])
                    if "embedding_model" in d:
                        mcol = d["embedding_model"].take(take).to_pylist()
                        models.update(mcol[i] for i in vidx.tolist() if mcol[i])
            else:
                uris, frames = col("clip_uri"), col("clip_frames")
                for j, i in enumerate(sel.tolist()):
                    if uris[i]:
                        to_embed.append((node_base + j, uris[i], frames[i] or 0))
            node_base += len(sel)
        base += n
    if len(models) > 1:
        raise DedupError(f"the manifest mixes embeddings of several models ({', '.join(sorted(models))}); "
                         "dedup compares one model's embeddings")
    nodes = Nodes(
        row=np.concatenate(rows) if rows else np.zeros(0, np.int64),
        clip_id=pa.concat_arrays([a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a for a in ids])
        if ids else pa.array([], pa.string()),
        pixels=np.concatenate(pix) if pix else np.zeros(0, np.int64),
        duration=np.concatenate(dur) if dur else np.zeros(0),
        quality=np.concatenate(qual) if qual else np.zeros(0),
        content=np.concatenate(content) if content else np.zeros(0, np.uint64),
    )
    if parts is None:
        from curator.media.perceptual import DIM

        parts = EmbeddingParts(spill, DIM, cfg.batch_rows, cfg.sample_size, cfg.seed)
    parts.flush()
    stats.candidates = len(nodes)
    stats.with_embedding = parts.count
    stats.embedding_model = sorted(models)[0] if models else None
    return nodes, parts, to_embed


def _embed_missing(nodes: Nodes, parts: EmbeddingParts, to_embed: list[tuple[int, str, int]],
                   map_fn: MapFn | None, stats: DedupStats) -> None:
    """The perceptual embedding of every staged candidate clip (no embed stage in the run)."""
    from curator.media.perceptual import NAME

    t0 = time.monotonic()
    chunk = 32
    cfg_storage = storage.current_config()
    items = [{"nodes": [n for n, _, _ in to_embed[i:i + chunk]], "uris": [u for _, u, _ in to_embed[i:i + chunk]],
              "frames": [f for _, _, f in to_embed[i:i + chunk]], "storage": cfg_storage}
             for i in range(0, len(to_embed), chunk)]
    for item, emb in zip(items, (map_fn or _serial_map)(_embed_chunk, items)):
        good = np.isfinite(emb.astype(np.float32)).all(axis=1)
        parts.add(np.asarray(item["nodes"], np.int64)[good], emb[good])
    parts.flush()
    stats.with_embedding = parts.count
    stats.embedding_model = NAME
    stats.timings["embed_s"] = round(time.monotonic() - t0, 3)


def output_schema(schema: pa.Schema, with_embedding: bool) -> pa.Schema:
    fields = list(schema)
    names = set(schema.names)
    for name, typ in COLUMNS:
        if name not in names:
            fields.append(pa.field(name, typ))
    if with_embedding:
        for name, typ in (("embedding", pa.list_(pa.float16())), ("embedding_model", pa.string())):
            if name not in names:
                fields.append(pa.field(name, typ))
    return pa.schema(fields)


def _write_back(pf: pq.ParquetFile, man_uri: str, nodes: Nodes, dec: Decisions, stats: DedupStats,
                batch_rows: int, emb_parts: EmbeddingParts | None) -> None:
    """Stream the manifest again with the decision columns filled in; atomic replace."""
    schema = output_schema(pf.schema_arrow, emb_parts is not None)
    node_of_row: dict[int, int] = {}
    # rows -> node: nodes.row is sorted (scan order), so walk it alongside the batches
    rows = nodes.row
    ptr = 0
    part_iter = iter_parts(emb_parts.parts) if emb_parts is not None else None
    cur_idx = np.zeros(0, np.int64)
    cur_emb = np.zeros((0, 0), np.float16)
    cur_pos = 0
    ids = nodes.clip_id
    base = 0
    with storage.open_write(man_uri) as fh:
        writer = pq.ParquetWriter(fh, schema, compression="zstd")
        try:
            for batch in pf.iter_batches(batch_size=batch_rows):
                n = batch.num_rows
                tbl = pa.Table.from_batches([batch])
                end = np.searchsorted(rows, base + n, side="left")
                local = rows[ptr:end] - base
                node_ids = np.arange(ptr, end)
                ptr = end
                status = tbl.column("status").to_pylist()
                stage = tbl.column("stage").to_pylist()
                reason = tbl.column("reason").to_pylist()
                detail = tbl.column("detail").to_pylist()
                group = [None] * n
                dup_of = [None] * n
                simv = [None] * n
                for r, nd in zip(local.tolist(), node_ids.tolist()):
                    if status[r] == REJECTED and stage[r] == STAGE:  # an earlier dedup's decision
                        status[r], stage[r], reason[r], detail[r] = OK, None, None, None
                    kp = int(dec.keeper[nd])
                    if kp < 0:
                        continue
                    group[r] = ids[kp].as_py()
                    s = float(dec.similarity[nd])
                    simv[r] = None if math.isnan(s) else s
                    if kp != nd:
                        dup_of[r] = group[r]
                        status[r], stage[r], reason[r] = REJECTED, STAGE, REASON
                        detail[r] = (f"duplicate of {group[r]}" + (f" (cosine {s:.3f})" if simv[r] is not None else ""))
                cols = {"status": pa.array(status, pa.string()), "stage": pa.array(stage, pa.string()),
                        "reason": pa.array(reason, pa.string()), "detail": pa.array(detail, pa.string()),
                        "dup_group": pa.array(group, pa.string()), "duplicate_of": pa.array(dup_of, pa.string()),
                        "similarity": pa.array(simv, pa.float32())}
                if part_iter is not None:
                    embs: list[Any] = [None] * n
                    for r, nd in zip(local.tolist(), node_ids.tolist()):
                        while cur_pos >= len(cur_idx) or cur_idx[cur_pos] < nd:
                            if cur_pos < len(cur_idx):
                                cur_pos += 1
                                continue
                            nxt = next(part_iter, None)
                            if nxt is None:
                                break
                            cur_idx, cur_emb = nxt
                            cur_pos = 0
                        if cur_pos < len(cur_idx) and cur_idx[cur_pos] == nd:
                            embs[r] = cur_emb[cur_pos]
                    flat = [None if e is None else e.astype(np.float16) for e in embs]
                    cols["embedding"] = pa.array(flat, pa.list_(pa.float16()))
                    cols["embedding_model"] = pa.array([stats.embedding_model if e is not None else None
                                                        for e in flat], pa.string())
                arrays = []
                for f in schema:
                    if f.name in cols and (f.name not in tbl.column_names or f.name in
                                           ("status", "stage", "reason", "detail", *[c for c, _ in COLUMNS])
                                           or (part_iter is not None and f.name in ("embedding", "embedding_model"))):
                        arrays.append(cols[f.name].cast(f.type))
                    elif f.name in tbl.column_names:
                        arrays.append(tbl.column(f.name).combine_chunks())
                    else:
                        arrays.append(pa.nulls(n, f.type))
                writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
                base += n
        finally:
            writer.close()
    del node_of_row


def run_phase(output_uri: str, config: Any, runner: Any = None) -> RunResult:
    """Dedup as a phase of a run (`curator run`, `curator dedup`): the runner's parallel map
    for the per-cluster work; under Ray the assignment streams through Ray Data, and with a
    cluster address the spill goes under <output>/_work/dedup so every node can read it."""
    cfg: DedupConfig = config.dedup
    use_ray = runner is not None and runner.distributed
    if use_ray and cfg.spill_uri is None and config.run.address:
        cfg = cfg.model_copy(update={"spill_uri": RunDir.of(output_uri).work("dedup")})
    if use_ray:
        from curator.runners.ray import init_ray

        init_ray(config.run)
    return dedup_run(output_uri, cfg, map_fn=runner.map if runner is not None else None, use_ray=use_ray)


def format_stats(stats: DedupStats) -> str:
    lines = [
        f"clips considered: {stats.candidates} ({stats.with_embedding} with an embedding"
        + (f", {stats.embedding_model}" if stats.embedding_model else "") + ")",
        f"exact duplicates: {stats.exact_removed} in {stats.exact_groups} groups",
        f"semantic:         {stats.semantic_nodes} clips, k={stats.k} ({stats.method}/{stats.device}), "
        f"threshold {stats.threshold}, {stats.visits} border visits"
        + (f", {stats.capped} clips capped at max_probes" if stats.capped else ""),
        f"groups:           {stats.groups}; removed {stats.removed}",
        f"time:             {stats.timings.get('total_s', 0):.1f} s",
    ]
    return "\n".join(lines)
