"""Motion filter: drop static and shaky clips, tag camera motion.

Two estimators of the motion between frames, one output:

- **codec motion vectors** (``method: mv``): the clip is decoded once with FFmpeg's
  ``+export_mvs``; every P-frame's block vectors (``MOTION_VECTORS`` side data) give the
  content displacement from its reference frame (the previous I/P frame in display order).
  Nearly free: no pixel work beyond the decode.
- **optical flow** (``method: flow``): a few windows of consecutive frames, decoded at
  ``analysis_size`` (long side), Farneback dense flow between neighbours.

``auto`` uses motion vectors when the decoder exports them for the clip (H.264, MPEG-2/4)
and falls back to flow otherwise (intra-only clips, codecs without export).

Per frame step a similarity transform (scale, rotation, translation) is fitted robustly
(RANSAC) to the displacement field: that is the **global (camera) motion**. From the steps:

- ``motion_score``: mean displacement magnitude of everything (camera and objects), as a
  fraction of the frame diagonal per second. Below ``min_motion`` the clip is ``static``.
- ``shake_score``: RMS deviation of the camera path (cumulative global translation) from a
  straight line over short windows, in % of the frame diagonal — high-frequency jitter that
  a smooth pan or zoom does not have. Above ``max_shake`` the clip is ``shaky``.
- ``camera_pan`` / ``camera_tilt`` / ``camera_zoom``: the median camera motion per second,
  in the *camera's* convention (see below), and ``camera_motion`` tags.

Tag convention (the camera's point of view, as a cinematographer says it):

=========== ==================================== ====================================
tag         camera                               content on screen
=========== ==================================== ====================================
pan_left    turns left                           moves right
pan_right   turns right                          moves left
tilt_up     turns up                             moves down
tilt_down   turns down                           moves up
zoom_in     zooms in (or dollies forward)        expands from the centre
zoom_out    zooms out                            shrinks towards the centre
static      none of the above over its threshold (objects may still move)
=========== ==================================== ====================================

``camera_pan`` > 0 is a pan right, ``camera_tilt`` > 0 a tilt up, ``camera_zoom`` > 0 a
zoom in; pan/tilt are fractions of the frame width/height per second, zoom is the log
scale change per second. Tags are derived from these by ``pan_threshold`` /
``zoom_threshold`` and can be re-derived by ``curator refilter`` without decoding.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from curator.config import MotionConfig
from curator.deadline import check as check_deadline
from curator.filters import Filter, Rule
from curator.media import globalmotion
from curator.records import Row

log = logging.getLogger(__name__)

STATIC = "static"
SHAKY = "shaky"
TAGS = ("static", "pan_left", "pan_right", "tilt_up", "tilt_down", "zoom_in", "zoom_out")


@dataclass
class Step:
    """Motion between two frames, normalised to one frame interval."""

    t: float  # time of the later frame, s
    frames: int  # frame intervals spanned (for MVs: distance to the reference frame)
    magnitude: float  # mean |displacement| per frame, px
    tx: float  # global content translation at the frame centre per frame, px (+x right)
    ty: float  # ... (+y down)
    log_scale: float  # log of the global scale change per frame (> 0: content expands)
    raw_tx: float  # the translation over the whole step (for the camera path), px
    raw_ty: float
    ok: bool  # a global fit was found


def fit_similarity(p0: np.ndarray, p1: np.ndarray, center: tuple[float, float]) -> tuple[float, float, float] | None:
    """Robust similarity fit p1 ≈ s·R·p0 + t. Returns (translation of the centre x, y, log s)."""
    m = globalmotion.fit_similarity(p0, p1)
    if m is None:
        return None
    tx, ty = globalmotion.moved(m, *center)
    return tx, ty, math.log(math.hypot(float(m[0, 0]), float(m[1, 0])))


# ------------------------------------------------------------------ motion vectors
def mv_steps(source: Any) -> tuple[list[Step], tuple[int, int], float] | None:
    """Steps from codec motion vectors of every P-frame; None when the decoder exports none."""
    import av

    from curator.media.decode import _open

    container = _open(source)
    try:
        vs = container.streams.video[0]
        vs.codec_context.options = {"flags2": "+export_mvs"}
        vs.thread_type = "SLICE"  # frame threading exports a varying set of vectors; slices do not
        fps = float(vs.average_rate or vs.guessed_rate or 25)
        w, h = vs.codec_context.width, vs.codec_context.height
        steps: list[Step] = []
        last_ref = None
        any_mvs = False
        for idx, frame in enumerate(container.decode(vs)):
            check_deadline()
            ptype = int(frame.pict_type)  # 1 I, 2 P, 3 B
            if ptype == 3:
                continue
            sd = frame.side_data.get("MOTION_VECTORS") if ptype == 2 else None
            if sd is not None and last_ref is not None:
                mv = sd.to_ndarray()
                mv = mv[mv["source"] < 0]
                if len(mv):
                    any_mvs = True
                    steps.append(_mv_step(mv, idx - last_ref, idx / fps, (w, h)))
            last_ref = idx
    except av.error.FFmpegError as exc:
        log.debug("motion vectors stopped: %s", exc)
    finally:
        container.close()
    if not any_mvs:
        return None
    return steps, (w, h), fps


def _mv_step(mv: np.ndarray, d: int, t: float, size: tuple[int, int]) -> Step:
    src = np.stack([mv["src_x"], mv["src_y"]], 1).astype(np.float32)
    dst = np.stack([mv["dst_x"], mv["dst_y"]], 1).astype(np.float32)
    area = (mv["w"].astype(np.float32) * mv["h"].astype(np.float32))
    disp = dst - src
    d = max(1, d)
    mag = float((np.hypot(disp[:, 0], disp[:, 1]) * area).sum() / max(1.0, area.sum())) / d
    # each vector stands for a block: repeat 16x16 blocks' points so big blocks weigh more
    reps = np.maximum(1, (area / 64).astype(int))
    fit = fit_similarity(np.repeat(src, reps, 0), np.repeat(dst, reps, 0), (size[0] / 2, size[1] / 2))
    if fit is None:
        return Step(t, d, mag, 0.0, 0.0, 0.0, 0.0, 0.0, False)
    tx, ty, ls = fit
    return Step(t, d, mag, tx / d, ty / d, ls / d, tx, ty, True)


# ------------------------------------------------------------------ optical flow
def window_indices(num_frames: int, windows: int, window_frames: int) -> list[list[int]]:
    """`windows` runs of `window_frames` consecutive indices spread evenly over the clip."""
    wf = min(window_frames, num_frames)
    if wf < 2:
        return []
    starts = np.linspace(0, num_frames - wf, max(1, windows)).round().astype(int)
    runs: list[list[int]] = []
    for s in sorted(set(int(x) for x in starts)):
        runs.append(list(range(s, s + wf)))
    return runs


def flow_steps(row: Row, num_frames: int, fps: float, size: tuple[int, int], cfg: MotionConfig) -> tuple[
        list[list[Step]], tuple[int, int]]:
    from curator.media.frames import even, sample_clip_frames

    w, h = size
    scale = cfg.analysis_size / max(w, h)
    aw = even(w * scale, minimum=16)
    ah = even(h * scale, minimum=16)
    runs = window_indices(num_frames, cfg.windows, cfg.window_frames)
    flat = sorted({i for r in runs for i in r})
    frames, used = sample_clip_frames(row, len(flat), (aw, ah), "gray", indices=flat, require=False)
    got = {i: f for i, f in zip(used, frames)}
    step = 8
    ys, xs = np.mgrid[step // 2:ah:step, step // 2:aw:step]
    grid = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float32)
    out: list[list[Step]] = []
    for run in runs:
        steps: list[Step] = []
        for a, b in zip(run[:-1], run[1:]):
            check_deadline()
            fa, fb = got.get(a), got.get(b)
            if fa is None or fb is None or fa is fb:
                continue
            flow = globalmotion.dense_flow(fa, fb)
            mag = float(np.hypot(flow[..., 0], flow[..., 1]).mean())
            disp = flow[grid[:, 1].astype(int), grid[:, 0].astype(int)]
            fit = fit_similarity(grid, grid + disp, (aw / 2, ah / 2))
            t = b / fps
            if fit is None:
                steps.append(Step(t, 1, mag, 0.0, 0.0, 0.0, 0.0, 0.0, False))
            else:
                tx, ty, ls = fit
                steps.append(Step(t, 1, mag, tx, ty, ls, tx, ty, True))
        out.append(steps)
    return out, (aw, ah)


# ------------------------------------------------------------------ summarising
def shake_of(runs: list[list[Step]], diag: float, seg: int = 6) -> float:
    """RMS deviation of the camera path from a straight line over short segments, % of diagonal."""
    res: list[float] = []
    for steps in runs:
        good = [s for s in steps if s.ok]
        for k in range(0, len(good), seg):
            part = good[k:k + seg]
            if len(part) < 3:
                continue
            t = np.cumsum([s.frames for s in part]).astype(np.float64)
            t = np.concatenate([[0.0], t])
            for comp in ("raw_tx", "raw_ty"):
                p = np.concatenate([[0.0], np.cumsum([getattr(s, comp) for s in part])])
                coef = np.polyfit(t, p, 1)
                r = p - np.polyval(coef, t)
                res.extend((r ** 2).tolist())
    if not res:
        return 0.0
    return float(math.sqrt(float(np.mean(res))) / diag * 100.0)


def summarise(runs: list[list[Step]], size: tuple[int, int], fps: float) -> dict[str, Any]:
    w, h = size
    diag = math.hypot(w, h)
    steps = [s for r in runs for s in r]
    if not steps:
        return {"motion_score": 0.0, "shake_score": 0.0, "camera_pan": 0.0, "camera_tilt": 0.0,
                "camera_zoom": 0.0}
    mag = float(np.mean([s.magnitude for s in steps]))
    good = [s for s in steps if s.ok]
    if good:
        vx = float(np.median([s.tx for s in good])) * fps
        vy = float(np.median([s.ty for s in good])) * fps
        zs = float(np.median([s.log_scale for s in good])) * fps
    else:
        vx = vy = zs = 0.0
    return {
        "motion_score": round(mag * fps / diag, 6),
        "shake_score": round(shake_of(runs, diag), 6),
        # camera convention: content moving left = camera panning right, content moving down = tilting up
        "camera_pan": round(-vx / w, 6),
        "camera_tilt": round(vy / h, 6),
        "camera_zoom": round(zs, 6),
    }


def camera_tags(pan: float | None, tilt: float | None, zoom: float | None, pan_thr: float,
                zoom_thr: float) -> list[str]:
    tags = []
    if pan is not None and abs(pan) >= pan_thr:
        tags.append("pan_right" if pan > 0 else "pan_left")
    if tilt is not None and abs(tilt) >= pan_thr:
        tags.append("tilt_up" if tilt > 0 else "tilt_down")
    if zoom is not None and abs(zoom) >= zoom_thr:
        tags.append("zoom_in" if zoom > 0 else "zoom_out")
    return tags or ["static"]


class MotionStage(Filter):
    name = "motion"
    reasons = (STATIC, SHAKY)
    config: MotionConfig
    columns = [
        ("motion_score", pa.float64()),
        ("shake_score", pa.float64()),
        ("camera_pan", pa.float64()),
        ("camera_tilt", pa.float64()),
        ("camera_zoom", pa.float64()),
        ("camera_motion", pa.list_(pa.string())),
        ("motion_method", pa.string()),
    ]

    @classmethod
    def rules(cls, config: MotionConfig) -> list[Rule]:
        return [Rule("motion_score", ">=", config.min_motion, STATIC, "min_motion"),
                Rule("shake_score", "<=", config.max_shake, SHAKY, "max_shake")]

    @classmethod
    def derive(cls, row: Row, config: MotionConfig) -> None:
        if row.get("camera_pan") is None and row.get("camera_zoom") is None:
            return
        row["camera_motion"] = camera_tags(row.get("camera_pan"), row.get("camera_tilt"), row.get("camera_zoom"),
                                           config.pan_threshold, config.zoom_threshold)

    def measure(self, row: Row) -> dict[str, Any]:
        data = row.get("mp4")
        if data is None:
            raise ValueError("clip has no encoded bytes (mp4)")
        fps = float(row.get("clip_fps") or row.get("fps") or 25.0)
        method = self.config.method
        if method in ("auto", "mv"):
            got = mv_steps(data)
            if got is not None:
                steps, size, _ = got
                out = summarise([steps], size, fps)
                out["motion_method"] = "mv"
                return out
            if method == "mv":
                log.debug("clip %s: no motion vectors exported; using optical flow", row.get("clip_id"))
        size = (int(row.get("clip_width") or 0), int(row.get("clip_height") or 0))
        if not all(size):
            from curator.media.decode import video_stream

            c, vs = video_stream(data)
            size = (vs.codec_context.width, vs.codec_context.height)
            c.close()
        n = int(row.get("clip_frames") or 0)
        runs, asize = flow_steps(row, n, fps, size, self.config)
        out = summarise(runs, asize, fps)
        out["motion_method"] = "flow"
        return out
