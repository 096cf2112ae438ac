"""Video tokenizer encoders and decoders for latent shards: resolve, load, run, store.

A model string (``shard.latent.model`` / ``shard.latent.decoder``) is one of:

- ``cosmos-tokenizer:<ID>`` — ``<model dir>/cosmos-tokenizer/<ID>/encoder.jit`` (and
  ``decoder.jit``), fetched by ``curator models download cosmos-tokenizer:<ID>``;
- a path to a TorchScript file (its decoder: ``decoder.jit`` beside it), or to a folder
  holding ``encoder.jit`` and ``decoder.jit``;
- ``module:callable`` — a function returning a ``torch.nn.Module`` (called without
  arguments), for tokenizers that are not TorchScript.

The contract is the Cosmos Tokenizer's (:mod:`curator.models.cosmos`): the encoder takes
``[B, 3, T, H, W]`` in [-1, 1] and returns the latent ``[B, C, t, h, w]`` (continuous) or
the indices ``[B, t, h, w]`` (discrete), alone or as the first element of a tuple; the
decoder takes that and returns ``[B, 3, T, H, W]`` in [-1, 1].

torch is imported inside functions: importing this module costs nothing, and a worker
without a GPU never touches CUDA (:func:`resolve_device` asks
:func:`curator.media.nvcodec.api.has_cuda` first).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import io
import os
import re
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from curator.models import cosmos, registry
from curator.stage import Requirement

_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class TokenizerError(ValueError):
    """A tokenizer cannot be found, loaded or does not keep its contract; the message says why."""


@dataclass(frozen=True)
class ModelRef:
    text: str  # as configured
    kind: str  # "jit" | "factory"
    target: str  # file path or "module:callable"


def resolve(model: str, model_dir: str, part: str = "encoder") -> ModelRef:
    """Where the encoder (or decoder) of `model` is. Raises TokenizerError with the exact
    path and the fix when a file is missing."""
    if part not in ("encoder", "decoder"):
        raise ValueError(part)
    fname = cosmos.ENCODER_FILE if part == "encoder" else cosmos.DECODER_FILE
    if model.startswith(cosmos.PREFIX):
        if model not in cosmos.KNOWN:
            raise TokenizerError(f"unknown tokenizer {model!r}; known: {', '.join(sorted(cosmos.KNOWN))}")
        path = os.path.join(registry.model_path(model, model_dir), fname)
        if not os.path.isfile(path):
            raise TokenizerError(f"{model}: {path} is missing; fix: {registry.download_command(model, model_dir)}")
        return ModelRef(model, "jit", path)
    path = os.path.expanduser(model)
    if os.path.isdir(path):
        path = os.path.join(path, fname)
        if not os.path.isfile(path):
            raise TokenizerError(f"{model}: no {fname} in that folder")
        return ModelRef(model, "jit", path)
    if os.path.isfile(path):
        if part == "decoder":
            sibling = os.path.join(os.path.dirname(path), cosmos.DECODER_FILE)
            if os.path.basename(path) == cosmos.DECODER_FILE or not os.path.isfile(sibling):
                raise TokenizerError(f"{model}: no {cosmos.DECODER_FILE} beside it; set shard.latent.decoder")
            return ModelRef(model, "jit", sibling)
        return ModelRef(model, "jit", path)
    if _FACTORY.match(model):
        if part == "decoder":
            raise TokenizerError(f"{model} is a module factory: set shard.latent.decoder to its decoder")
        return ModelRef(model, "factory", model)
    raise TokenizerError(f"tokenizer {model!r}: not a known id ({', '.join(sorted(cosmos.KNOWN))}), not an "
                         "existing file or folder, and not 'module:callable'")


def resolve_decoder(model: str, decoder: str | None, model_dir: str) -> ModelRef:
    """The decoder for `model`: `decoder` when set (any model form; a factory is taken as is),
    else the one beside the encoder."""
    if decoder:
        if _FACTORY.match(decoder) and not decoder.startswith(cosmos.PREFIX) and not os.path.exists(decoder):
            return ModelRef(decoder, "factory", decoder)
        return resolve(decoder, model_dir, "decoder")
    return resolve(model, model_dir, "decoder")


def requirement(model: str, model_dir: str, used_by: str = "shard profile latent") -> Requirement | None:
    """A start-up Requirement naming the missing path and the command that fetches it."""
    if model.startswith(cosmos.PREFIX) and model in cosmos.KNOWN:
        return registry.requirement(model, model_dir, used_by)
    try:
        resolve(model, model_dir)
    except TokenizerError as exc:
        return Requirement(f"{used_by}: {exc}")
    return None


_HASHES: dict[tuple[str, int, int], str] = {}


def _file_sha(path: str) -> str:
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


def revision(ref: ModelRef, configured: str | None = None) -> str:
    """What identifies the weights: the configured revision, else ``sha256:<16 hex>`` of the
    TorchScript file, else of the factory's module source."""
    if configured:
        return configured
    if ref.kind == "jit":
        return "sha256:" + _file_sha(ref.target)[:16]
    module = importlib.import_module(ref.target.partition(":")[0])
    try:
        src = inspect.getsourcefile(module)
    except TypeError:
        src = None
    return "sha256:" + _file_sha(src)[:16] if src else "factory:" + ref.target


# ------------------------------------------------------------------------- running
def resolve_device(device: str = "auto") -> str:
    """'cuda' or 'cpu'. No torch.cuda call on a machine without the NVIDIA device nodes."""
    from curator.media.nvcodec.api import has_cuda

    if device == "cpu":
        return "cpu"
    ok = has_cuda()
    if device == "cuda" and not ok:
        raise TokenizerError("shard.latent.device is 'cuda' but this worker sees no CUDA device")
    return "cuda" if ok else "cpu"


def compute_dtype(precision: str, device: str) -> Any:
    import torch

    if precision == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    return getattr(torch, precision)


def _first(out: Any) -> Any:
    import torch

    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise TokenizerError(f"the model returned {type(out).__name__}, not a tensor (or a tuple starting with one)")
    return out


class Tokenizer:
    """A loaded encoder or decoder on its device, in its compute dtype."""

    def __init__(self, module: Any, ref: ModelRef, device: str, dtype: Any):
        self.module, self.ref, self.device, self.dtype = module, ref, device, dtype

    @property
    def codebook_size(self) -> int | None:
        """The module's own `codebook_size` attribute (TorchScript keeps int attributes)."""
        value = getattr(self.module, "codebook_size", None)
        return int(value) if isinstance(value, int) and not isinstance(value, bool) else None

    def encode(self, frames: np.ndarray) -> Any:
        """uint8 RGB ``[B, T, H, W, 3]`` -> the encoder's latent or indices (a CPU tensor)."""
        import torch

        if frames.ndim != 5 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 [B, T, H, W, 3], not {frames.dtype} {frames.shape}")
        with torch.inference_mode():
            x = torch.from_numpy(frames).to(self.device)  # uint8 crosses to the GPU, 4x fewer bytes
            x = x.permute(0, 4, 1, 2, 3).to(self.dtype).div_(127.5).sub_(1.0)
            out = _first(self.module(x))
            if out.shape[0] != frames.shape[0]:
                raise TokenizerError(f"{self.ref.text}: {frames.shape[0]} windows in, {out.shape[0]} latents out")
            return out.detach().cpu()

    def decode(self, latent: Any) -> Any:
        """A latent (continuous) or indices (discrete) ``[B, ...]`` -> float32 ``[B, 3, T, H, W]``."""
        import torch

        with torch.inference_mode():
            z = latent.to(self.device)
            z = z.to(self.dtype) if z.is_floating_point() else z.to(torch.int32)  # Cosmos DV indices are int32
            return _first(self.module(z)).detach().float().cpu()


def load(ref: ModelRef, device: str, precision: str = "auto") -> Tokenizer:
    import torch

    dtype = compute_dtype(precision, device)
    try:
        if ref.kind == "jit":
            with warnings.catch_warnings():  # torch deprecates TorchScript; Cosmos ships it, and it loads
                warnings.simplefilter("ignore", FutureWarning)
                module = torch.jit.load(ref.target, map_location=device)
        else:
            mod_name, _, attr = ref.target.partition(":")
            obj: Any = importlib.import_module(mod_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
            module = obj()
    except (OSError, RuntimeError, ImportError, AttributeError) as exc:
        raise TokenizerError(f"cannot load {ref.text} ({ref.target}): {exc}") from exc
    if not isinstance(module, torch.nn.Module):
        raise TokenizerError(f"{ref.text} gave {type(module).__name__}, not a torch.nn.Module")
    module = module.eval().to(device)
    if dtype != torch.float32:
        module = module.to(dtype)
    return Tokenizer(module, ref, device, dtype)


_CACHE: dict[tuple[str, str, str, str], Tokenizer] = {}


def load_cached(ref: ModelRef, device: str, precision: str = "auto") -> Tokenizer:
    """One loaded model per process (a shard task's worker keeps it for its next shard)."""
    key = (ref.kind, ref.target, device, precision)
    if key not in _CACHE:
        _CACHE.clear()  # one model at a time: GPU memory is not a cache
        _CACHE[key] = load(ref, device, precision)
    return _CACHE[key]


# ---------------------------------------------------------------------- storing
def is_discrete(latent: Any, kind: str) -> bool:
    if kind != "auto":
        return kind == "discrete"
    return not latent.is_floating_point()


def to_numpy(latent: Any, discrete: bool, dtype: str, codebook_size: int | None) -> tuple[np.ndarray, str]:
    """One sample's latent as the array stored in the shard and its dtype name.

    Continuous: cast to `dtype` (bfloat16 stored as its uint16 bit pattern); a value that
    does not fit is an error, never an inf. Discrete: the smallest integer dtype holding the
    codebook; an index outside [0, codebook_size) is an error, never wrapped."""
    import torch

    if discrete:
        if codebook_size is None:
            raise TokenizerError("a discrete tokenizer needs its codebook size: set shard.latent.codebook_size")
        lo, hi = int(latent.min()), int(latent.max())
        if lo < 0 or hi >= codebook_size:
            raise TokenizerError(f"indices span [{lo}, {hi}], outside the codebook [0, {codebook_size})")
        name = cosmos.index_dtype(codebook_size)
        return latent.to(torch.int64).numpy().astype(name), name
    t = latent.to(getattr(torch, dtype))
    if not bool(torch.isfinite(t).all()):
        bad = "non-finite values" if not bool(torch.isfinite(latent).all()) else f"values beyond {dtype}'s range"
        raise TokenizerError(f"the latent has {bad}; store it as float32 (shard.latent.dtype)")
    if dtype == "bfloat16":
        return t.view(torch.int16).numpy().view(np.uint16), dtype
    return t.numpy(), dtype


def from_numpy(arr: np.ndarray, dtype: str) -> Any:
    """The stored array back as a tensor: bfloat16 restored from its bit pattern, indices as int64
    (what embedding lookups take)."""
    import torch

    if dtype == "bfloat16":
        return torch.from_numpy(arr.view(np.int16).copy()).view(torch.bfloat16)
    if np.issubdtype(arr.dtype, np.integer):
        return torch.from_numpy(arr.astype(np.int64))
    return torch.from_numpy(arr.copy())


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def load_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)
