"""Per cluster: pairs above the threshold in blocks, merged into a spanning forest."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from curator import storage
from curator.dedup.spill import record_dtype

#: records per panel when a cluster is read in pieces
PANEL_ROWS = 16_384


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

    local = storage.local_path(uri)

    def read(a: int, b: int) -> np.ndarray:
        if a == 0 and b >= n and local is not None:
            return np.fromfile(local, dtype=rec)
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
