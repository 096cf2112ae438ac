"""Shot detectors that run while a video decodes, one frame at a time.

Each detector takes decoded frames in order (:meth:`Detector.push`) and, at the end,
returns the shots as half-open ranges of decoded frame indices (:meth:`Detector.shots`):
the same shots whether the frames came from a dedicated decode pass or from the pass
that also encodes the clips (:mod:`curator.media.cut`).

While frames arrive, a detector also gives its *online* view: for every frame before
:meth:`Detector.settled`, a :class:`Label` saying whether the frame starts a shot,
continues one, is its last frame, or lies in a transition between shots. The cut pass
uses the labels to encode shots as they go by; the final shots are always those of
:meth:`Detector.shots`, so a late or revised online label costs work, never a wrong clip.

- ``transnetv2``: the model on windows of 48x27 RGB frames (reference rule: a shot ends at the
  first frame above the threshold and the next starts when the probability falls below).
- ``scenedetect``: PySceneDetect's AdaptiveDetector on frames 256 pixels wide.
- ``fixed``: pieces of ``stride_s`` seconds; needs no pixels.
"""

from __future__ import annotations

import enum
import functools
import time
from typing import Any

import numpy as np

SCENEDETECT_WIDTH = 256


class Label(enum.Enum):
    START = "start"  # first frame of a shot
    IN = "in"  # inside the current shot
    LAST = "last"  # last frame of the current shot (a transition follows)
    OUT = "out"  # in a transition: part of no shot


class Detector:
    """Base: subclasses set `size`/`fmt` (None: no pixels needed) and implement `_push`."""

    name = ""
    #: (width, height) of the frames the detector looks at, or None for none
    size: tuple[int, int] | None = None
    fmt = "rgb24"

    def __init__(self) -> None:
        self.n = 0
        self.times: list[float] = []
        self.busy_s = 0.0  # seconds spent in the detector itself (not decoding)
        self._reformatter: Any = None
        self._area: Any = None

    def small(self, frame: Any) -> np.ndarray | None:
        """The frame at the detector's size: the pixels of ``frame.to_ndarray(format, width,
        height, interpolation="AREA")``, with one scaler for the whole stream (about 1.5x
        cheaper than a scaler per frame; benchmarks/transnetv2_bench.py)."""
        if self.size is None:
            return None
        if self._reformatter is None:  # once per stream, not per frame
            from av.video.reformatter import Interpolation, VideoReformatter

            self._reformatter, self._area = VideoReformatter(), Interpolation.AREA
        return self._reformatter.reformat(frame, format=self.fmt, width=self.size[0], height=self.size[1],
                                          interpolation=self._area).to_ndarray()

    def push(self, idx: int, t: float, frame: Any) -> None:
        """Feed decoded frame `idx` (in order) at time `t` (seconds)."""
        self.push_small(idx, t, self.small(frame))

    def push_small(self, idx: int, t: float, img: Any) -> None:
        """Feed frame `idx` already at the detector's size (e.g. resized on a GPU)."""
        self.times.append(t)
        self.n = idx + 1
        t0 = time.perf_counter()
        self._push(idx, t, img)
        self.busy_s += time.perf_counter() - t0

    def _push(self, idx: int, t: float, img: np.ndarray | None) -> None:
        raise NotImplementedError

    def settled(self) -> int:
        """Frames before this index have their final online label."""
        return self.n

    def label(self, idx: int) -> Label:
        raise NotImplementedError

    def finish(self) -> None:
        """No more frames: settle every label."""

    def shots(self) -> list[tuple[int, int]]:
        """The shots, after :meth:`finish`."""
        raise NotImplementedError


class TransNetDetector(Detector):
    name = "transnetv2"

    def __init__(self, model: Any, threshold: float, window: int | None = None):
        super().__init__()
        from curator.models import transnetv2

        self.size = transnetv2.SIZE
        self.threshold = threshold
        self.stream = transnetv2.StreamingPredictor(model, window=window or transnetv2.DEFAULT_WINDOW)
        self.preds: list[np.ndarray] = []
        self.known = 0  # frames with a prediction

    def _add(self, p: np.ndarray) -> None:
        if len(p):
            self.preds.append(p)
            self.known += len(p)

    def _push(self, idx: int, t: float, img: np.ndarray | None) -> None:
        self._add(self.stream.push(img))

    def finish(self) -> None:
        self._add(self.stream.finish(self.known))

    def _flat(self) -> np.ndarray:
        """All predictions so far as one array (the pieces are joined once per new window)."""
        if len(self.preds) != 1:
            self.preds = [np.concatenate(self.preds) if self.preds else np.zeros(0, np.float32)]
        return self.preds[0]

    def _binary(self, idx: int) -> int:
        flat = self._flat()
        return int(flat[idx] > self.threshold) if 0 <= idx < len(flat) else 0

    def settled(self) -> int:
        return self.known

    def label(self, idx: int) -> Label:
        b, prev = self._binary(idx), self._binary(idx - 1)
        if b == 0:
            return Label.START if idx == 0 or prev == 1 else Label.IN
        return Label.LAST if prev == 0 and idx != 0 else Label.OUT

    def shots(self) -> list[tuple[int, int]]:
        from curator.models import transnetv2

        return transnetv2.scenes(self._flat()[:self.n], self.threshold)


class SceneDetectDetector(Detector):
    name = "scenedetect"
    fmt = "bgr24"
    #: PySceneDetect reports a cut a few frames after it (its rolling window); frames this
    #: far back are taken as settled. A later report only costs the cut pass some work.
    LAG = 16

    def __init__(self, threshold: float, fps: float):
        super().__init__()
        self.detector = _adaptive_detector(threshold)
        self.fps = fps
        self.cuts: set[int] = set()
        self.done = False

    def small(self, frame: Any) -> np.ndarray | None:
        if self.size is None:  # at most 256 wide, the coded aspect ratio kept
            w = min(SCENEDETECT_WIDTH, frame.width)
            self.size = (w, max(2, int(round(frame.height * w / max(1, frame.width)))))
        return super().small(frame)

    def _push(self, idx: int, t: float, img: np.ndarray | None) -> None:
        from scenedetect.common import FrameTimecode

        for tc in self.detector.process_frame(FrameTimecode(idx, self.fps), img):
            self.cuts.add(int(tc.frame_num))

    def finish(self) -> None:
        from scenedetect.common import FrameTimecode

        if self.n and hasattr(self.detector, "post_process"):
            for tc in self.detector.post_process(FrameTimecode(self.n - 1, self.fps)):
                self.cuts.add(int(tc.frame_num))
        self.done = True

    def settled(self) -> int:
        return self.n if self.done else max(0, self.n - self.LAG)

    def label(self, idx: int) -> Label:
        return Label.START if idx == 0 or idx in self.cuts else Label.IN

    def shots(self) -> list[tuple[int, int]]:
        n = self.n
        bounds = [0] + sorted(c for c in self.cuts if 0 < c < n) + [n]
        return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def _adaptive_detector(threshold: float) -> Any:
    """PySceneDetect's AdaptiveDetector with the cheaper frame score of :func:`_fast_score_class`."""
    return _fast_score_class()(adaptive_threshold=threshold)


@functools.cache
def _fast_score_class() -> Any:
    """AdaptiveDetector with a cheaper frame score that gives the same numbers (built once:
    scenedetect and OpenCV are imported only when the detector is used).

    PySceneDetect scores a frame by the mean absolute difference of its hue, saturation
    and value planes from the previous frame's, each plane split out and widened to int32
    in numpy. OpenCV's absdiff and per-channel sums on the HSV image compute the same
    integer sums (exact in float64), so scores and cuts are unchanged; about 5x less CPU
    per frame (tests/integration/test_shots.py compares the two). Edge scoring (off by
    default) and stats managers take PySceneDetect's own path."""
    import cv2
    from scenedetect import AdaptiveDetector

    class FastScore(AdaptiveDetector):  # type: ignore[misc]
        _last_hsv: np.ndarray | None = None

        def _calculate_frame_score(self, timecode: Any, frame_img: np.ndarray) -> float:
            if self._weights.delta_edges > 0.0 or self.stats_manager is not None:
                return float(super()._calculate_frame_score(timecode, frame_img))
            hsv = cv2.cvtColor(frame_img, cv2.COLOR_BGR2HSV)
            last, self._last_hsv = self._last_hsv, hsv
            if last is None:
                return 0.0
            n = float(hsv.shape[0] * hsv.shape[1])
            sums = cv2.sumElems(cv2.absdiff(hsv, last))
            parts = (sums[0] / n, sums[1] / n, sums[2] / n, 0.0)  # hue, sat, lum, edges (off)
            return sum(c * w for c, w in zip(parts, self._weights, strict=True)) / sum(abs(w) for w in self._weights)

    return FastScore


class FixedDetector(Detector):
    name = "fixed"

    def __init__(self, stride_s: float):
        super().__init__()
        self.stride_s = stride_s
        self.starts: list[int] = []
        self._start_set: set[int] = set()
        self._k = 1

    def _push(self, idx: int, t: float, img: np.ndarray | None) -> None:
        if idx == 0 or t - self.times[0] >= self._k * self.stride_s - 1e-9:
            self.starts.append(idx)
            self._start_set.add(idx)
            self._k += idx > 0

    def label(self, idx: int) -> Label:
        return Label.START if idx in self._start_set else Label.IN

    def shots(self) -> list[tuple[int, int]]:
        if not self.n:
            return []
        bounds = self.starts + [self.n]
        return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def make_detector(cfg: Any, row: dict[str, Any], model: Any = None) -> Detector:
    """The detector a split config asks for, sized for this video row."""
    if cfg.method == "transnetv2":
        return TransNetDetector(model, cfg.threshold, cfg.window_frames)
    if cfg.method == "scenedetect":
        fps = float(row.get("fps") or 0) or 25.0
        return SceneDetectDetector(cfg.scenedetect_threshold, fps)
    return FixedDetector(cfg.stride_s)
