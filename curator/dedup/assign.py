"""Assignment of unit vectors to k-means cells with bounded multi-probing (the border test)."""

from __future__ import annotations

import math

import numpy as np

from curator.dedup.common import BORDER_SLACK
from curator.dedup.kmeans import normalize_rows


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
