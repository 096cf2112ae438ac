"""Text filter: keep scene text (signs, street names), reject overlays (captions, titles, tickers).

Scene text localises footage (a museum sign, a street name, a hospital ward board); burned-in
text does not belong to the scene. The two differ in how they move: an overlay is fixed to
the screen (same place while the camera pans) or scrolls along a fixed band (a ticker); scene
text moves, and deforms, with the scene.

**Reading.** RapidOCR (PP-OCR detection + recognition, ONNX models shipped in its wheel) runs
on ``sample_frames`` uniformly sampled frames, scaled so the long side is at most
``det_limit_side`` (640 by default: larger is much slower for little gain). A detected box
counts as text only when recognition reads at least ``min_chars`` letters or digits with
confidence >= ``min_text_confidence`` and the box is wide enough for that many glyphs on
one line — detection alone fires on textures, and recognition sometimes reads a face as
"16.6". (Vertical text is therefore not counted.)

**Motion.** Each OCR frame is compared with its neighbour ``motion_gap_s`` later (the same
decode pass: :func:`curator.media.frames.sample_clip_frames` with both indices). The
background's motion is a similarity transform fitted (RANSAC) to the dense optical flow
outside the text boxes (:func:`curator.media.globalmotion.global_motion`, shared with the
motion filter); each box's own shift is found by normalised cross-correlation of its content
(:func:`curator.media.globalmotion.region_shift`). Each observed box gets a ``motion``:

- ``fixed``: the camera moves (at least ``min_camera_motion`` of the frame diagonal per
  second) and the box does not — screen-fixed;
- ``with_scene``: the box moves as the background does at that place;
- ``scroll``: it slides horizontally on its own (a ticker, or text on a passing vehicle);
- ``moving``: it moves on its own some other way (text on a moving object);
- ``still``: neither the camera nor the box moves — no evidence;
- ``unknown``: the box could not be matched (too small, no texture, last frame only).

**Kinds** (:meth:`TextOverlayStage.derive`, re-run by ``curator refilter`` without
decoding). Boxes with the same reading in different frames form a *track*; a track is an
``overlay`` when its boxes are ``fixed``, or ``scroll`` inside the top or bottom ``band``
(a ticker), and ``scene`` text when they move with the scene or on their own (by majority
of the boxes with evidence). A track without evidence (``still``, ``unknown``) follows
``still_text``: ``layout`` (default) calls it an overlay where overlays sit — in the top or
bottom band, or centred horizontally — and scene text elsewhere.

Scores (manifest columns):

- ``text_kind``: ``none`` | ``scene`` | ``overlay`` | ``both``.
- ``scene_text``: the scene-text readings, one per track, joined with `` | `` (search them:
  ``curator search --where "scene_text CONTAINS 'MUSEUM'"``).
- ``overlay_area``: mean over the sampled frames of the fraction of the frame covered by
  overlay text. Rejected (``text_overlay``) above ``max_overlay_area`` (default 0.01).
- ``text_area``: the same for all text, scene text included; ``max_text_area`` (default
  off; 0.01 = the old "reject any text") rejects on it.
- ``text_frames_fraction``: the fraction of sampled frames with any text. Optional
  threshold ``max_text_frames``.
- ``text_persistence``: the fraction of text boxes that reappear at the same place in
  another sampled frame.
- ``text_camera_motion``: the median background motion seen, fraction of the diagonal per
  second.
- ``text_samples``: how many frames were read.
- ``text_boxes``: JSON ``[{"frame": i, "box": [x0, y0, x1, y1], "text": "...", "score": s,
  "motion": "...", "shift": [dx, dy], "bg": [dx, dy]}]``, boxes in the clip's pixels and
  shifts (the box's and the background's there) in clip pixels per frame.
- ``text_tracks``: JSON ``[{"text": "...", "kind": "scene", "why": "with_scene",
  "frames": [0, 1, ...]}]`` — what was decided for each track, and why.
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


# ------------------------------------------------------------------ motion of one box
FIXED, WITH_SCENE, SCROLL, MOVING, STILL, UNKNOWN = "fixed", "with_scene", "scroll", "moving", "still", "unknown"
#: box motions that are evidence (the others leave the decision to `still_text`)
EVIDENCE = (FIXED, WITH_SCENE, SCROLL, MOVING)
#: below this correlation a box's match in the neighbouring frame is not trusted
MIN_MATCH = 0.6


def box_motion(shift: tuple[float, float] | None, bg: tuple[float, float] | None, camera_moves: bool,
               tol_px: float = 0.75, rel_tol: float = 0.3) -> str:
    """How one text box moved over the gap between two frames, given its own shift and the
    background's shift at its place (pixels over the gap; None: unknown)."""
    if shift is None:
        return UNKNOWN
    sx, sy = shift
    s = float(np.hypot(sx, sy))
    if camera_moves and bg is not None:
        bx, by = bg
        b = float(np.hypot(bx, by))
        tol = max(tol_px, rel_tol * b)
        if s <= tol:
            return FIXED
        if float(np.hypot(sx - bx, sy - by)) <= tol:
            return WITH_SCENE
        ex, ey = sx - bx, sy - by
        return SCROLL if abs(ex) > 2 * abs(ey) and abs(sx) >= 2 * tol_px else MOVING
    if s <= tol_px:
        return STILL
    return SCROLL if abs(sx) > 2 * abs(sy) else MOVING


def in_band(box: list[int] | tuple[int, ...], h: int, band: float) -> bool:
    """Whether a box's centre lies in the top or the bottom `band` of the frame."""
    cy = (box[1] + box[3]) / 2
    return cy <= band * h or cy >= (1 - band) * h


def centred(box: list[int] | tuple[int, ...], w: int, tol: float = 0.06) -> bool:
    return abs((box[0] + box[2]) / 2 - w / 2) <= tol * w


def box_kind(b: dict[str, Any], w: int, h: int, cfg: TextOverlayConfig) -> tuple[str, str]:
    """(kind, why) of one observed box from its recorded motion: `scene` or `overlay`."""
    motion = b.get("motion") or UNKNOWN
    if motion == FIXED:
        return "overlay", FIXED
    if motion == SCROLL:
        return ("overlay", "ticker") if in_band(b["box"], h, cfg.band) else ("scene", SCROLL)
    if motion in (WITH_SCENE, MOVING):
        return "scene", motion
    if cfg.still_text != "layout":
        return cfg.still_text, "still_text"
    layout = in_band(b["box"], h, cfg.band) or centred(b["box"], w)
    return ("overlay" if layout else "scene"), "layout"


def _norm(text: str) -> str:
    return "".join(ch for ch in text.upper() if ch.isalnum())


def tracks(boxes: list[dict[str, Any]], min_similarity: float = 0.6) -> list[list[dict[str, Any]]]:
    """Boxes of different sampled frames that read (nearly) the same text: one list per track,
    at most one box per frame, in order of first appearance."""
    from difflib import SequenceMatcher

    out: list[list[dict[str, Any]]] = []
    for b in sorted(boxes, key=lambda b: (b["frame"], b["box"][1], b["box"][0])):
        key = _norm(b.get("text") or "")
        best, best_r = None, min_similarity
        for t in out:
            if t[-1]["frame"] == b["frame"]:
                continue
            r = SequenceMatcher(None, key, _norm(t[-1].get("text") or "")).ratio()
            if r >= best_r:
                best, best_r = t, r
        if best is None:
            out.append([b])
        else:
            best.append(b)
    return out


def classify(boxes: list[dict[str, Any]], w: int, h: int, samples: int,
             cfg: TextOverlayConfig) -> dict[str, Any]:
    """text_kind, scene_text, overlay_area and text_tracks from recorded boxes (pure)."""
    per_track = []
    overlay_boxes: dict[int, list[tuple[int, int, int, int]]] = {}
    scene_texts: list[str] = []
    for t in tracks(boxes):
        kinds = [box_kind(b, w, h, cfg) for b in t]
        decisive = [k for k in kinds if k[1] not in ("layout", "still_text")]
        pool = decisive or kinds
        n_overlay = sum(k == "overlay" for k, _ in pool)
        kind = "overlay" if n_overlay * 2 >= len(pool) else "scene"
        whys = [why for k, why in pool if k == kind]
        why = max(set(whys), key=whys.count)
        best = max(t, key=lambda b: (b.get("score") or 0.0, len(b.get("text") or "")))
        per_track.append({"text": best.get("text") or "", "kind": kind, "why": why, "frames": [b["frame"] for b in t]})
        if kind == "overlay":
            for b in t:
                overlay_boxes.setdefault(b["frame"], []).append(tuple(b["box"]))  # type: ignore[arg-type]
        elif _norm(best.get("text") or "") not in {_norm(x) for x in scene_texts}:
            scene_texts.append(best.get("text") or "")
    found = {t["kind"] for t in per_track}
    text_kind = "both" if found == {"scene", "overlay"} else (found.pop() if found else "none")
    # union area on a frame scaled down to at most 640 px (boxes are in clip pixels)
    s = min(1.0, 640 / max(w, h, 1))
    sw, sh = max(1, int(round(w * s))), max(1, int(round(h * s)))
    areas = [_union_area([(int(x0 * s), int(y0 * s), int(np.ceil(x1 * s)), int(np.ceil(y1 * s)))
                          for x0, y0, x1, y1 in bs], sw, sh) for bs in overlay_boxes.values()]
    return {
        "text_kind": text_kind,
        "scene_text": " | ".join(scene_texts) if scene_texts else None,
        "overlay_area": round(float(sum(areas)) / max(1, samples), 6),
        "text_tracks": json.dumps(per_track, separators=(",", ":")),
    }


class TextOverlayStage(Filter):
    name = "text_overlay"
    reasons = (TEXT_OVERLAY,)
    stateful = True
    config: TextOverlayConfig
    columns = [
        ("text_kind", pa.string()),
        ("scene_text", pa.string()),
        ("overlay_area", pa.float64()),
        ("text_area", pa.float64()),
        ("text_frames_fraction", pa.float64()),
        ("text_persistence", pa.float64()),
        ("text_camera_motion", pa.float64()),
        ("text_samples", pa.int32()),
        ("text_boxes", pa.string()),
        ("text_tracks", pa.string()),
    ]

    @classmethod
    def rules(cls, config: TextOverlayConfig) -> list[Rule]:
        return [Rule("overlay_area", "<=", config.max_overlay_area, TEXT_OVERLAY, "max_overlay_area"),
                Rule("text_area", "<=", config.max_text_area, TEXT_OVERLAY, "max_text_area"),
                Rule("text_frames_fraction", "<=", config.max_text_frames, TEXT_OVERLAY, "max_text_frames")]

    @classmethod
    def derive(cls, row: Row, config: TextOverlayConfig) -> None:
        if row.get("text_boxes") is None:
            return
        w = int(row.get("clip_width") or 0)
        h = int(row.get("clip_height") or 0)
        boxes = json.loads(row["text_boxes"])
        if not (w and h):  # no size recorded: the boxes' extent is the best bound there is
            w = max([b["box"][2] for b in boxes] + [1])
            h = max([b["box"][3] for b in boxes] + [1])
        row.update(classify(boxes, w, h, int(row.get("text_samples") or 0)
                            or len({b["frame"] for b in boxes}), config))

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

    def motions(self, a: np.ndarray, b: np.ndarray, boxes: list[dict[str, Any]], gap: int,
                fps: float) -> float | None:
        """Annotate each box of frame `a` (RGB) with how it and the background moved by frame
        `b`, `gap` frames later (negative: earlier); returns the camera's speed (fraction of
        the diagonal per second) or None when no global motion fits."""
        import cv2

        from curator.media import globalmotion as gm

        ga = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY)
        gb = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY)
        fh, fw = ga.shape
        # the background's motion on frames of at most 320 px (flow is slower than OCR otherwise)
        s = min(1.0, 320 / max(fw, fh))
        small = (max(16, int(round(fw * s))), max(16, int(round(fh * s))))
        sa, sb = (cv2.resize(ga, small, interpolation=cv2.INTER_AREA),
                  cv2.resize(gb, small, interpolation=cv2.INTER_AREA)) if s < 1 else (ga, gb)
        sx, sy = small[0] / fw, small[1] / fh
        m = gm.global_motion(sa, sb, [(int(x0 * sx), int(y0 * sy), int(np.ceil(x1 * sx)), int(np.ceil(y1 * sy)))
                                      for x0, y0, x1, y1 in (bx["box"] for bx in boxes)])
        if m is not None:
            m = m.copy()
            m[0, 2] /= sx
            m[1, 2] /= sy
        diag = float(np.hypot(fw, fh))
        speed = None
        if m is not None:
            cx, cy = gm.moved(m, fw / 2, fh / 2)
            speed = float(np.hypot(cx, cy)) / abs(gap) * fps / diag
        camera_moves = speed is not None and speed >= self.config.min_camera_motion
        search = int(max(8, 0.06 * max(fw, fh), 3 * (speed or 0) * diag / fps * abs(gap) + 4))
        for bx in boxes:
            shift = gm.region_shift(ga, gb, tuple(bx["box"]), search)  # type: ignore[arg-type]
            own = None if shift is None or shift[2] < MIN_MATCH else (shift[0], shift[1])
            x0, y0, x1, y1 = bx["box"]
            bg = gm.moved(m, (x0 + x1) / 2, (y0 + y1) / 2) if m is not None else None
            bx["motion"] = box_motion(own, bg, camera_moves)
            if own is not None:
                bx["shift"] = [round(own[0] / gap, 3), round(own[1] / gap, 3)]
            if bg is not None:
                bx["bg"] = [round(bg[0] / gap, 3), round(bg[1] / gap, 3)]
        return speed

    def measure(self, row: Row) -> dict[str, Any]:
        from curator.media.decode import iter_frames, uniform_indices
        from curator.media.frames import even, sample_clip_frames
        from curator.media.source import clip_source_of

        w = int(row.get("clip_width") or 0)
        h = int(row.get("clip_height") or 0)
        size = None
        if w and h and max(w, h) > self.config.det_limit_side:
            s = self.config.det_limit_side / max(w, h)
            size = (even(w * s), even(h * s))
        total = int(row.get("clip_frames") or 0) or sum(1 for _ in iter_frames(clip_source_of(row), threads=False))
        fps = float(row.get("clip_fps") or row.get("fps") or 25.0)
        gap = max(1, int(round(self.config.motion_gap_s * fps)))
        picks = uniform_indices(total, self.config.sample_frames)
        partners = [i + gap if i + gap < total else max(0, i - gap) for i in picks]
        frames, used = sample_clip_frames(row, len(picks) * 2, size, indices=picks + partners)
        n = len(picks)
        fh, fw = frames.shape[1:3]
        per_frame = []
        speeds = []
        for k in range(n):
            check_deadline()
            boxes = self.detect(frames[k])
            p = n + k
            if boxes and used[p] != used[k]:
                speed = self.motions(frames[k], frames[p], boxes, used[p] - used[k], fps)
                if speed is not None:
                    speeds.append(speed)
            per_frame.append(boxes)
        out = summarise(per_frame, fw, fh)
        out["text_samples"] = n
        out["text_camera_motion"] = round(float(np.median(speeds)), 6) if speeds else None
        if size:  # boxes (and shifts) back to clip pixels
            sx, sy = (w / fw), (h / fh)
            boxes = json.loads(out["text_boxes"])
            for b in boxes:
                x0, y0, x1, y1 = b["box"]
                b["box"] = [int(x0 * sx), int(y0 * sy), int(round(x1 * sx)), int(round(y1 * sy))]
                for key in ("shift", "bg"):
                    if key in b:
                        b[key] = [round(b[key][0] * sx, 3), round(b[key][1] * sy, 3)]
            out["text_boxes"] = json.dumps(boxes, separators=(",", ":"))
        return out
