"""Region detectors for the privacy blur stage: faces, licence plates.

A detector is named by a spec string in the config (``stages.blur.faces``,
``stages.blur.plates``):

- ``lbp`` — the LBP frontal-face cascade that ships inside scikit-image
  (``skimage.data.lbp_frontal_face_cascade_filename()``, OpenCV's
  ``lbpcascade_frontalface.xml``); always available, nothing to download.
- ``cascade:<file>`` — any OpenCV-format **LBP** cascade XML under the model directory
  (``models.dir``), e.g. a licence-plate cascade you trained or obtained. scikit-image's
  cascade reader runs it; Haar cascades (OpenCV's ``haarcascade_*.xml``) are a different
  format it cannot read, and OpenCV 5 no longer has a cascade classifier of its own.
- ``none`` — nothing of that kind is detected.

Detectors take a grey frame (uint8) and return boxes ``(x0, y0, x1, y1)`` in its pixels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from curator.stage import Requirement

BUILTIN = {"lbp": "scikit-image's LBP frontal-face cascade"}


def describe(spec: str) -> str:
    return BUILTIN.get(spec, spec)


def path_of(spec: str, model_dir: str) -> str | None:
    """The cascade file a spec names (None for ``none``)."""
    if spec == "none":
        return None
    if spec == "lbp":
        from skimage import data

        return str(data.lbp_frontal_face_cascade_filename())
    if spec.startswith("cascade:"):
        return os.path.join(model_dir, spec[len("cascade:"):])
    raise ValueError(f"unknown detector {spec!r}: use 'lbp', 'cascade:<file under models.dir>' or 'none'")


def requirement(spec: str, model_dir: str, what: str) -> Requirement | None:
    """What is missing for this detector here, or None."""
    if spec == "none":
        return None
    try:
        import skimage.feature  # noqa: F401
    except ImportError:
        return Requirement(f"{what} detector: scikit-image is not installed", fix="pip install scikit-image")
    path = path_of(spec, model_dir)
    if path is None or not os.path.isfile(path):
        return Requirement(f"{what} detector {spec!r}: no cascade file", path,
                           fix="put an OpenCV-format LBP cascade XML there (docs/privacy.md), or set "
                               "the detector to 'none'" + (" or 'lbp'" if what == "face" else ""))
    return None


@dataclass
class CascadeDetector:
    """A multi-scale LBP cascade (scikit-image's reader and search)."""

    path: str
    scale_factor: float = 1.15
    min_neighbors: int = 4
    min_size: int = 24

    def __post_init__(self) -> None:
        from skimage.feature import Cascade

        self._cascade: Any = Cascade(self.path)

    def __call__(self, gray: np.ndarray) -> list[tuple[int, int, int, int]]:
        h, w = gray.shape[:2]
        side = min(h, w)
        if side < self.min_size:
            return []
        found = self._cascade.detect_multi_scale(
            img=np.ascontiguousarray(gray, dtype=np.float32) / 255.0, scale_factor=self.scale_factor, step_ratio=1,
            min_size=(self.min_size, self.min_size), max_size=(side, side), min_neighbor_number=self.min_neighbors)
        return merge_overlapping([(int(d["c"]), int(d["r"]), int(d["c"] + d["width"]), int(d["r"] + d["height"]))
                                  for d in found])


def merge_overlapping(boxes: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """One box per object: boxes that overlap (one's centre inside the other) are replaced
    by their union, until none do (the cascade reports an object at neighbouring scales)."""
    def centre_in(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
        cx, cy = (a[0] + a[2]) / 2, (a[1] + a[3]) / 2
        return b[0] <= cx < b[2] and b[1] <= cy < b[3]

    out = list(boxes)
    merged = True
    while merged:
        merged = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                a, b = out[i], out[j]
                if centre_in(a, b) or centre_in(b, a):
                    out[i] = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    del out[j]
                    merged = True
                    break
            if merged:
                break
    return sorted(out)


def load(spec: str, model_dir: str, **kw: Any) -> CascadeDetector | None:
    path = path_of(spec, model_dir)
    return None if path is None else CascadeDetector(path, **kw)
