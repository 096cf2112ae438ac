"""Text-overlay filter: drop clips with burned-in text (subtitles, titles, graphics).

RapidOCR (PP-OCR detection + recognition, ONNX models shipped in its wheel) runs on
``sample_frames`` uniformly sampled frames, scaled so the long side is at most
``det_limit_side`` (640 by default: larger is much slower for little gain). A detected box
counts as text only when recognition reads at least ``min_chars`` letters or digits with
confidence >= ``min_text_confidence`` and the box is wide enough for that many glyphs on
one line — detection alone fires on textures, and recognition sometimes reads a face as
"16.6". (Vertical text is therefore not counted.)

Scores (manifest columns):

- ``text_area``: mean over the sampled frames of the fraction of the frame covered by text
  boxes (union, so overlapping boxes count once). Rejected (``text_overlay``) above
  ``max_text_area``.
- ``text_frames_fraction``: the fraction of sampled frames with any text (persistence in
  time). Optional threshold ``max_text_frames``.
- ``text_persistence``: the fraction of text boxes that reappear at the same place in
  another sampled frame (overlays stay put; text in a moving scene does not).
- ``text_boxes``: JSON ``[{"frame": i, "box": [x0, y0, x1, y1], "text": "...", "score": s}]``
  with boxes in the clip's pixel coordinates.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import numpy as np
import pyarrow as pa

from curator.config import TextOverlayConfig
from curator.deadline import check as check_deadline
from curator.filters import Filter, Rule
from curator.records import Row

log = logging.getLogger(__name__)

TEXT_OVERLAY = "text_overlay"
#: a line of n glyphs is at least this x n times as wide as it is tall (Latin text: ~0.5-0.6)
MIN_GLYPH_ASPECT = 0.3


def _import_onnxruntime() -> None:
    """Import onnxruntime with TMPDIR pointed at a private folder that is then removed:
    importing it writes a telemetry session file `$TMPDIR/.ses` (its bundled 1DS SDK),
    and a run must leave nothing behind outside its output."""
    import shutil
    import sys
    import tempfile

    if "onnxruntime" in sys.modules:
        return
    private = tempfile.mkdtemp(prefix="curator-ort-")
    old = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = private
    try:
        import onnxruntime  # noqa: F401
    finally:
        if old is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = old
        shutil.rmtree(private, ignore_errors=True)


def make_engine(det_limit_side: int) -> Any:
    _import_onnxruntime()
    from rapidocr import RapidOCR

    return RapidOCR(params={
        "Det.limit_side_len": det_limit_side,
        "Det.limit_type": "max",
        "Global.use_cls": False,
        "Global.log_level": "error",
    })


def _union_area(boxes: list[tuple[int, int, int, int]], w: int, h: int) -> float:
    if not boxes:
        return 0.0
    mask = np.zeros((h, w), bool)
    for x0, y0, x1, y1 in boxes:
        mask[max(0, y0):min(h, y1), max(0, x0):min(w, x1)] = True
    return float(mask.mean())


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over the smaller box."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    amin = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy / amin if amin > 0 else 0.0


def summarise(per_frame: list[list[dict[str, Any]]], w: int, h: int) -> dict[str, Any]:
    n = max(1, len(per_frame))
    areas = [_union_area([tuple(b["box"]) for b in boxes], w, h) for boxes in per_frame]
    with_text = sum(1 for boxes in per_frame if boxes)
    flat = [(i, tuple(b["box"])) for i, boxes in enumerate(per_frame) for b in boxes]
    persistent = sum(1 for i, box in flat if any(j != i and _overlap(box, other) >= 0.5 for j, other in flat))
    return {
        "text_area": round(float(np.mean(areas)) if areas else 0.0, 6),
        "text_frames_fraction": round(with_text / n, 6),
        "text_persistence": round(persistent / len(flat), 6) if flat else 0.0,
        "text_boxes": json.dumps([{"frame": i, **b} for i, boxes in enumerate(per_frame) for b in boxes],
                                 separators=(",", ":")),
    }


class TextOverlayStage(Filter):
    name = "text_overlay"
    reasons = (TEXT_OVERLAY,)
    stateful = True
    config: TextOverlayConfig
    columns = [
        ("text_area", pa.float64()),
        ("text_frames_fraction", pa.float64()),
        ("text_persistence", pa.float64()),
        ("text_boxes", pa.string()),
    ]

    @classmethod
    def rules(cls, config: TextOverlayConfig) -> list[Rule]:
        return [Rule("text_area", "<=", config.max_text_area, TEXT_OVERLAY, "max_text_area"),
                Rule("text_frames_fraction", "<=", config.max_text_frames, TEXT_OVERLAY, "max_text_frames")]

    def setup(self) -> None:
        self.engine = make_engine(self.config.det_limit_side)

    def detect(self, rgb: np.ndarray) -> list[dict[str, Any]]:
        """Text boxes of one frame (RGB uint8), in that frame's pixel coordinates."""
        res = self.engine(np.ascontiguousarray(rgb[:, :, ::-1]), use_cls=False)
        if res is None or getattr(res, "boxes", None) is None or res.txts is None:
            return []
        out = []
        for quad, txt, score in zip(res.boxes, res.txts, res.scores):
            chars = sum(ch.isalnum() for ch in txt or "")
            if score < self.config.min_text_confidence or chars < self.config.min_chars:
                continue
            q = np.asarray(quad, dtype=np.float64)
            x0, y0 = np.floor(q.min(0)).astype(int)
            x1, y1 = np.ceil(q.max(0)).astype(int)
            glyphs = sum(not ch.isspace() for ch in txt)
            if (x1 - x0) < MIN_GLYPH_ASPECT * (y1 - y0) * glyphs:
                continue  # too narrow for that many glyphs on a line: a face or texture read as text
            out.append({"box": [int(x0), int(y0), int(x1), int(y1)], "text": txt, "score": round(float(score), 4)})
        return out

    def measure(self, row: Row) -> dict[str, Any]:
        from curator.media.frames import even, sample_clip_frames

        w = int(row.get("clip_width") or 0)
        h = int(row.get("clip_height") or 0)
        size = None
        if w and h and max(w, h) > self.config.det_limit_side:
            s = self.config.det_limit_side / max(w, h)
            size = (even(w * s), even(h * s))
        frames, _ = sample_clip_frames(row, self.config.sample_frames, size)
        fh, fw = frames.shape[1:3]
        per_frame = []
        for f in frames:
            check_deadline()
            per_frame.append(self.detect(f))
        out = summarise(per_frame, fw, fh)
        if size:  # boxes back to clip pixels
            sx, sy = (w / fw), (h / fh)
            boxes = json.loads(out["text_boxes"])
            for b in boxes:
                x0, y0, x1, y1 = b["box"]
                b["box"] = [int(x0 * sx), int(y0 * sy), int(round(x1 * sx)), int(round(y1 * sy))]
            out["text_boxes"] = json.dumps(boxes, separators=(",", ":"))
        return out
