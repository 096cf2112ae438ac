"""Video-text models through Hugging Face transformers: a video tower and a text tower.

    m = load("hf-video:microsoft/xclip-base-patch32", model_dir, device="auto")
    size = m.decode_size(width, height)         # decode frames at this (width, height)
    vid = m.embed_clips([frames_a, frames_b])   # uint8 [T, H, W, 3] each -> float32 [B, D], unit norm
    txt = m.encode_text(["a dog on a beach"])   # -> float32 [M, D], unit norm, same space

The model folder is ``<model_dir>/hf/<org>/<name>/`` (``hf-video:<org>/<name>[@rev]``, the same
folder as ``hf:<org>/<name>``; the Hugging Face cache is read first, see
:mod:`curator.models.registry`). It is loaded with ``AutoModel.from_pretrained`` (with
``trust_remote_code`` when the config allows it: InternVideo2 and Cosmos-Embed1 ship their
code in the repository) and ``AutoProcessor.from_pretrained``; the processor does the
model's own preprocessing (resize, crop, mean/std from its preprocessor config). Frames per
clip: ``num_frames`` / ``num_video_frames`` of the model config (``vision_config`` for X-CLIP)
or of the processor (Cosmos-Embed1), else the configured number. The processor gets a list of
frame lists (transformers' video processors) or, when it refuses that, one uint8
``[B, T, C, H, W]`` array (Cosmos-Embed1's ``CosmosEmbed1Processor``).

The towers are found by name: video ``get_video_features`` (X-CLIP and transformers' video
models) or ``get_video_embeddings`` (Cosmos-Embed1); text ``get_text_features`` or
``get_text_embeddings``. Their output is a tensor, or a model output whose ``visual_proj`` /
``text_proj`` (Cosmos-Embed1), ``video_embeds`` / ``text_embeds`` or ``pooler_output``
(transformers 5 ``get_*_features``) holds the projected embedding.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from curator.models import registry

log = logging.getLogger(__name__)

PREFIX = "hf-video:"
VIDEO_METHODS = ("get_video_features", "get_video_embeddings")
TEXT_METHODS = ("get_text_features", "get_text_embeddings")
VIDEO_FIELDS = ("visual_proj", "video_embeds", "pooler_output", "image_embeds")
TEXT_FIELDS = ("text_proj", "text_embeds", "pooler_output")


def _vector(out: Any, fields: Sequence[str]) -> Any:
    import torch

    if isinstance(out, torch.Tensor):
        return out
    for f in fields:
        v = getattr(out, f, None)
        if v is None and isinstance(out, dict):
            v = out.get(f)
        if v is not None:
            return v
    if isinstance(out, (tuple, list)) and out:
        return out[0]
    raise TypeError(f"cannot find an embedding in the model's output {type(out).__name__} (looked for "
                    f"{', '.join(fields)})")


def _method(model: Any, names: Sequence[str], what: str) -> Any:
    for n in names:
        if callable(getattr(model, n, None)):
            return getattr(model, n)
    raise TypeError(f"{type(model).__name__} has no {what} tower ({' or '.join(names)})")


def _num_frames(config: Any, processor: Any, default: int) -> int:
    for holder in (getattr(config, "vision_config", None), config, processor):
        for key in ("num_frames", "num_video_frames"):
            v = getattr(holder, key, None) if holder is not None else None
            if isinstance(v, int) and v > 0:
                return v
    return default


def _size(processor: Any) -> dict[str, int]:
    res = getattr(processor, "resolution", None)  # Cosmos-Embed1's processor: one square side
    if isinstance(res, int) and res > 0:
        return {"height": res, "width": res}
    for part in ("video_processor", "image_processor"):
        p = getattr(processor, part, None)
        size = getattr(p, "crop_size", None) or getattr(p, "size", None)
        if isinstance(size, dict) and size:
            return {k: int(v) for k, v in size.items() if isinstance(v, (int, float))}
        if size is not None and hasattr(size, "__dict__"):  # a SizeDict
            d = {k: int(v) for k, v in vars(size).items() if isinstance(v, (int, float))}
            if d:
                return d
    return {}


@dataclass
class HFVideoModel:
    model: Any
    processor: Any
    name: str  # the recorded id (with @revision when known)
    device: str
    num_frames: int
    size: dict[str, int]  # the processor's target: {"height", "width"} or {"shortest_edge"}
    text_max_tokens: int | None = None
    amp_dtype: Any = None
    clips_per_forward: int = 8

    def decode_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) to decode at: the short side at the processor's target (aspect kept),
        so its own resize and crop see what they expect, from fewer pixels."""
        from curator.media.frames import even

        short = self.size.get("shortest_edge") or min(self.size.get("height", 224), self.size.get("width", 224))
        if not width or not height:
            return even(short), even(short)
        scale = short / min(width, height)
        return max(2, even(width * scale)), max(2, even(height * scale))

    def _autocast(self) -> Any:
        import contextlib

        import torch

        if self.amp_dtype is None or self.device == "cpu":
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.amp_dtype)

    def _to_device(self, inputs: Any) -> dict[str, Any]:
        out = {}
        for k, v in dict(inputs).items():
            if hasattr(v, "to"):
                out[k] = v.to(self.device)
        return out

    def _video_inputs(self, clips: Sequence[np.ndarray]) -> Any:
        """The processor's inputs: a list of frame lists (transformers' video processors), or — for
        processors that take one array (Cosmos-Embed1) — uint8 [B, T, C, H, W]."""
        try:
            return self.processor(videos=[list(c) for c in clips], return_tensors="pt")
        except (TypeError, ValueError, AttributeError):
            return self.processor(videos=np.stack(clips).transpose(0, 1, 4, 2, 3), return_tensors="pt")

    def embed_clips(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """One unit-norm vector per clip (each uint8 [T, H, W, 3], T = num_frames)."""
        import torch

        video = _method(self.model, VIDEO_METHODS, "video")
        outs = []
        for i in range(0, len(clips), self.clips_per_forward):
            inputs = self._to_device(self._video_inputs(clips[i:i + self.clips_per_forward]))
            with torch.inference_mode(), self._autocast():
                v = _vector(video(**{k: x for k, x in inputs.items() if k.startswith("pixel_values")}), VIDEO_FIELDS)
            outs.append(torch.nn.functional.normalize(v.float(), dim=-1).cpu().numpy())
        return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        text = _method(self.model, TEXT_METHODS, "text")
        kw: dict[str, Any] = dict(return_tensors="pt", padding=True)
        if self.text_max_tokens:
            kw.update(truncation=True, max_length=self.text_max_tokens)
        inputs = self._to_device(self.processor(text=list(texts), **kw))
        with torch.inference_mode(), self._autocast():
            t = _vector(text(**{k: x for k, x in inputs.items() if k in ("input_ids", "attention_mask")}),
                        TEXT_FIELDS)
        return torch.nn.functional.normalize(t.float(), dim=-1).cpu().numpy()


def _allows_remote_code(path: str) -> bool:
    try:
        with open(os.path.join(path, "config.json")) as fh:
            return bool(json.load(fh).get("auto_map"))
    except (OSError, ValueError):
        return False


def load(name: str, model_dir: str, device: str = "auto", precision: str = "auto", num_frames: int = 8,
         forward_batch_size: int = 64, trust_remote_code: bool = False) -> HFVideoModel:
    """Load a video-text model from the model directory (or the hub cache); never downloads."""
    from transformers import AutoModel, AutoProcessor

    from curator.models.clip import ModelMissing, autocast_dtype, resolve_device

    gaps = registry.missing(name, model_dir)
    if gaps:
        raise ModelMissing(f"model {name} is not in the model directory: missing {', '.join(gaps)}; "
                           f"fix: {registry.download_command(name, model_dir)}")
    path = registry.model_path(name, model_dir)
    if _allows_remote_code(path) and not trust_remote_code:
        raise ValueError(f"{name} ships its own model code (auto_map in config.json); set "
                         "stages.embed.trust_remote_code=true to run it")
    dev = resolve_device(device)
    processor = AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
    model = AutoModel.from_pretrained(path, trust_remote_code=trust_remote_code)
    model = model.to(dev).eval()  # type: ignore[arg-type]
    cfg = model.config
    text_cfg = getattr(cfg, "text_config", None)
    max_tokens = getattr(text_cfg, "max_position_embeddings", None) if text_cfg is not None else None
    frames = _num_frames(cfg, processor, num_frames)
    return HFVideoModel(model=model, processor=processor, name=registry.recorded_name(name, model_dir), device=dev,
                        num_frames=frames, size=_size(processor), text_max_tokens=max_tokens,
                        amp_dtype=autocast_dtype(dev, precision),
                        clips_per_forward=max(1, forward_batch_size // max(1, frames)))
