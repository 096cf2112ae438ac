"""Global (camera) motion between two frames, and how far one region moved.

Shared by the motion filter (camera tags, shakiness) and the text filter (does a piece
of text move with the scene, stay fixed on the screen, or scroll?):

- :func:`fit_similarity` — a robust (RANSAC) similarity transform (scale, rotation,
  translation) fitted to point correspondences; the camera's motion when the points cover
  the background.
- :func:`dense_flow` — Farneback optical flow between two grey frames.
- :func:`global_motion` — both: the similarity that moves frame ``a`` onto frame ``b``,
  fitted to the flow on a grid, leaving out given boxes (text, which may not move with the
  scene).
- :func:`region_shift` — how far the content of one box moved between the two frames
  (normalised cross-correlation, sub-pixel), whatever the rest of the frame did.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (pixels, x1/y1 exclusive)


def fit_similarity(p0: np.ndarray, p1: np.ndarray) -> np.ndarray | None:
    """The 2x3 similarity matrix M with p1 ≈ M·[p0, 1], fitted robustly; None when fewer than
    6 points, too few inliers (< 20 %) or an implausible scale (outside 0.5..2)."""
    import cv2

    if len(p0) < 6:
        return None
    p0 = np.ascontiguousarray(p0, dtype=np.float32)
    p1 = np.ascontiguousarray(p1, dtype=np.float32)
    m, inliers = cv2.estimateAffinePartial2D(p0, p1, method=cv2.RANSAC, ransacReprojThreshold=1.0,
                                             maxIters=500, confidence=0.98, refineIters=5)
    if m is None or inliers is None or int(inliers.sum()) < max(6, 0.2 * len(p0)):
        return None
    s = math.hypot(float(m[0, 0]), float(m[1, 0]))
    if not (0.5 < s < 2.0):
        return None
    return np.asarray(m, dtype=np.float64)


def moved(m: np.ndarray, x: float, y: float) -> tuple[float, float]:
    """The displacement that similarity `m` gives the point (x, y)."""
    return (float(m[0, 0] * x + m[0, 1] * y + m[0, 2] - x), float(m[1, 0] * x + m[1, 1] * y + m[1, 2] - y))


def dense_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Farneback flow [H, W, 2] from grey frame `a` to grey frame `b` (uint8, same size)."""
    import cv2

    # flow=None makes OpenCV allocate the output; its stubs require an array
    return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 13, 3, 5, 1.1, 0)  # type: ignore[call-overload]


def global_motion(a: np.ndarray, b: np.ndarray, exclude: Sequence[Box] = (), step: int = 8,
                  margin: int = 4) -> np.ndarray | None:
    """The similarity (2x3) that moves grey frame `a` onto grey frame `b`: fitted to the
    dense flow on a `step`-pixel grid, without the points inside `exclude` boxes (grown by
    `margin`). None when no robust fit exists (too little texture, or no dominant motion)."""
    h, w = a.shape[:2]
    flow = dense_flow(a, b)
    ys, xs = np.mgrid[step // 2:h:step, step // 2:w:step]
    keep = np.ones(xs.shape, bool)
    for x0, y0, x1, y1 in exclude:
        keep &= ~((xs >= x0 - margin) & (xs < x1 + margin) & (ys >= y0 - margin) & (ys < y1 + margin))
    xs, ys = xs[keep], ys[keep]
    if xs.size < 6:
        return None
    grid = np.stack([xs, ys], 1).astype(np.float32)
    return fit_similarity(grid, grid + flow[ys, xs])


def _peak_offset(r: np.ndarray, y: int, x: int) -> tuple[float, float]:
    """Sub-pixel peak of a correlation map by a parabola through the neighbours."""
    def one(lo: float, mid: float, hi: float) -> float:
        den = lo - 2 * mid + hi
        return 0.0 if den >= 0 else 0.5 * (lo - hi) / den

    dx = one(r[y, x - 1], r[y, x], r[y, x + 1]) if 0 < x < r.shape[1] - 1 else 0.0
    dy = one(r[y - 1, x], r[y, x], r[y + 1, x]) if 0 < y < r.shape[0] - 1 else 0.0
    return float(dx), float(dy)


def region_shift(a: np.ndarray, b: np.ndarray, box: Box, search: int) -> tuple[float, float, float] | None:
    """How far the content of `box` in grey frame `a` moved in grey frame `b`: (dx, dy,
    correlation of the best match), within ±`search` pixels. A box wider than three times
    the search range is matched by its middle part, so content that slides along it (a
    ticker filling the frame's width) stays inside the searched area. None when the box is
    too small or has no texture."""
    import cv2

    h, w = a.shape[:2]
    x0, y0, x1, y1 = max(0, box[0]), max(0, box[1]), min(w, box[2]), min(h, box[3])
    if x1 - x0 >= 3 * search + 8:  # a wide box: its middle, which can slide either way
        tx0, tx1 = x0 + search, x1 - search
    else:
        tx0, tx1 = x0, x1
    if tx1 - tx0 < 4 or y1 - y0 < 4:
        return None
    template = a[y0:y1, tx0:tx1]
    if float(template.std()) < 2.0:
        return None
    sx0, sy0 = max(0, tx0 - search), max(0, y0 - search)
    sx1, sy1 = min(w, tx1 + search), min(h, y1 + search)
    region = b[sy0:sy1, sx0:sx1]
    if region.shape[0] < template.shape[0] or region.shape[1] < template.shape[1]:
        return None
    r = cv2.matchTemplate(region, template, cv2.TM_CCOEFF_NORMED)
    _, best, _, (px, py) = cv2.minMaxLoc(r)
    fx, fy = _peak_offset(r, py, px)
    return (sx0 + px + fx - tx0, sy0 + py + fy - y0, float(best))
