"""Blurring regions of frames, and holding detections over neighbouring frames.

- :func:`blur_regions` blurs boxes of an image in place (Gaussian or pixelate), nothing
  outside them; :func:`blur_yuv420` does it on a decoded yuv420p frame (luma at full size,
  chroma at half), so pixels outside the boxes keep their exact values until re-encoding.
- :func:`track` links detections made every few frames into tracks and gives each frame the
  boxes to blur: between two detections of a track its box is interpolated, and a track is
  held ``hold`` frames before its first and after its last detection, so a region does not
  flicker in and out when the detector misses it on a frame or runs only every k-th frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (pixels, x1 / y1 exclusive)


def pad_box(box: Sequence[float], pad: float, w: int, h: int) -> Box:
    """`box` grown by `pad` of its size on every side, clipped to a w x h frame."""
    x0, y0, x1, y1 = box
    px, py = pad * (x1 - x0), pad * (y1 - y0)
    return (max(0, int(np.floor(x0 - px))), max(0, int(np.floor(y0 - py))),
            min(w, int(np.ceil(x1 + px))), min(h, int(np.ceil(y1 + py))))


def blur_regions(img: np.ndarray, boxes: Sequence[Box], method: str = "gaussian") -> np.ndarray:
    """Blur each box of `img` ([H, W] or [H, W, C] uint8) in place and return it. Gaussian:
    sigma a quarter of the box's short side (features are gone, the region's colours stay);
    pixelate: about 6 blocks across the short side."""
    import cv2

    h, w = img.shape[:2]
    for x0, y0, x1, y1 in boxes:
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        roi = img[y0:y1, x0:x1]
        short = min(x1 - x0, y1 - y0)
        if method == "pixelate":
            block = max(2, short // 6)
            small = cv2.resize(roi, (max(1, (x1 - x0) // block), max(1, (y1 - y0) // block)),
                               interpolation=cv2.INTER_AREA)
            roi[...] = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
        else:
            sigma = max(2.0, short / 4)
            roi[...] = cv2.GaussianBlur(roi, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
    return img


def yuv420_planes(yuv: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y, U and V planes of a yuv420p frame in PyAV's ndarray layout: the planes
    one after the other, flattened, shaped [H * 3 / 2, W] (H and W even)."""
    h = yuv.shape[0] * 2 // 3
    w = yuv.shape[1]
    flat = yuv.reshape(-1)  # a view: the frame array is contiguous
    c = (h // 2) * (w // 2)
    return (flat[:h * w].reshape(h, w), flat[h * w:h * w + c].reshape(h // 2, w // 2),
            flat[h * w + c:h * w + 2 * c].reshape(h // 2, w // 2))


def blur_yuv420(yuv: np.ndarray, boxes: Sequence[Box], method: str = "gaussian") -> np.ndarray:
    """Blur boxes (luma pixels) of a yuv420p frame as PyAV lays it out (``to_ndarray(format=
    "yuv420p")``: [H * 3 / 2, W], the Y plane then U and V at half size), in place."""
    y, u, v = yuv420_planes(yuv)
    blur_regions(y, boxes, method)
    half = [(x0 // 2, y0 // 2, (x1 + 1) // 2, (y1 + 1) // 2) for x0, y0, x1, y1 in boxes]
    blur_regions(u, half, method)
    blur_regions(v, half, method)
    return yuv


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _near(a: Sequence[float], b: Sequence[float]) -> bool:
    """Same object on two detection frames: overlapping, or centres within half a box."""
    if _iou(a, b) >= 0.2:
        return True
    ca = ((a[0] + a[2]) / 2, (a[1] + a[3]) / 2)
    cb = ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)
    size = max(a[2] - a[0], a[3] - a[1], b[2] - b[0], b[3] - b[1])
    return float(np.hypot(ca[0] - cb[0], ca[1] - cb[1])) <= 0.5 * size


@dataclass
class Track:
    kind: str
    hits: list[tuple[int, Box]] = field(default_factory=list)  # (frame, box), frames increasing

    @property
    def first(self) -> int:
        return self.hits[0][0]

    @property
    def last(self) -> int:
        return self.hits[-1][0]

    def box_at(self, f: int) -> tuple[float, float, float, float]:
        """The track's box on frame f: interpolated between detections, held outside them."""
        if f <= self.first:
            return tuple(map(float, self.hits[0][1]))  # type: ignore[return-value]
        if f >= self.last:
            return tuple(map(float, self.hits[-1][1]))  # type: ignore[return-value]
        for (fa, a), (fb, b) in zip(self.hits, self.hits[1:]):
            if fa <= f <= fb:
                t = (f - fa) / (fb - fa)
                return tuple(float(p + (q - p) * t) for p, q in zip(a, b))  # type: ignore[return-value]
        raise AssertionError("unreachable")  # pragma: no cover


def track(detections: dict[int, list[tuple[str, Box]]], hold: int) -> list[Track]:
    """Link per-frame detections (frame -> [(kind, box)]) into tracks of one kind each: a
    detection joins the nearest track of its kind last seen at most ``2 * hold`` frames
    earlier, else starts a new one."""
    tracks: list[Track] = []
    for f in sorted(detections):
        taken: set[int] = set()
        for kind, box in detections[f]:
            best, best_iou = None, -1.0
            for i, t in enumerate(tracks):
                if i in taken or t.kind != kind or f - t.last > 2 * hold or t.last == f:
                    continue
                prev = t.hits[-1][1]
                if _near(prev, box) and _iou(prev, box) > best_iou:
                    best, best_iou = i, _iou(prev, box)
            if best is None:
                tracks.append(Track(kind, [(f, box)]))
                taken.add(len(tracks) - 1)
            else:
                tracks[best].hits.append((f, box))
                taken.add(best)
    return tracks


def boxes_for_frame(tracks: Sequence[Track], f: int, hold: int, pad: float, w: int, h: int) -> list[tuple[str, Box]]:
    """The (kind, padded box) pairs to blur on frame f."""
    out = []
    for t in tracks:
        if t.first - hold <= f <= t.last + hold:
            out.append((t.kind, pad_box(t.box_at(f), pad, w, h)))
    return out
