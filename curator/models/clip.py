"""open_clip from the model directory: image and text embeddings, reusable by any stage.

    clip = load("ViT-B-32", "openai", model_dir, device="auto")
    size = clip.decode_size(width, height)        # decode frames straight at this size
    img = clip.encode_images(frames)              # uint8 [N, H, W, 3] -> float32 [N, D], unit norm
    txt = clip.encode_text(["a cat", "a car"])    # -> float32 [M, D], unit norm
    vid = clip.embed_clips([frames_a, frames_b])  # mean over each clip's frames, unit norm -> [B, D]

Weights come from ``<model_dir>/open_clip/<arch>/<pretrained>/`` (see
:mod:`curator.models.registry`); open_clip's ``local-dir:`` loader reads that folder, so
no hub is contacted. Preprocessing follows the model's preprocess config (size, mean,
std, resize mode) but runs on uint8 arrays in torch rather than on PIL images, so
frames decoded at :meth:`ClipModel.decode_size` need only a crop and a normalisation.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from curator.models import registry

log = logging.getLogger(__name__)


class ModelMissing(FileNotFoundError):
    """The weights are not in the model directory; the message names the path and the fix."""


def resolve_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch sees no CUDA device")
    return device


def autocast_dtype(device: str, precision: str) -> Any:
    import torch

    if precision == "fp32" or (precision == "auto" and device == "cpu"):
        return None
    if precision == "bf16":
        return torch.bfloat16
    return torch.float16


@dataclass
class ClipModel:
    model: Any  # open_clip CLIP / CustomTextCLIP
    preprocess: Any  # the torchvision transform open_clip built (for PIL users)
    tokenizer: Any
    name: str
    device: str
    image_size: tuple[int, int]  # (height, width) the tower takes
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize_mode: str = "shortest"
    interpolation: str = "bicubic"
    amp_dtype: Any = None
    forward_batch_size: int = 64

    # ----------------------------------------------------------------- geometry
    @property
    def embed_dim(self) -> int:
        return int(self.model.text_projection.shape[1]) if getattr(self.model, "text_projection", None) is not None \
            else int(self.model.visual.output_dim)

    def decode_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) to decode a width x height video at, so that preprocessing is a crop."""
        th, tw = self.image_size
        if self.resize_mode == "squash" or not width or not height:
            return tw, th
        if self.resize_mode == "longest":  # the long side matches, the rest is padded
            scale = min(tw / width, th / height)
            return max(1, min(tw, round(width * scale))), max(1, min(th, round(height * scale)))
        # shortest: the short side matches, the long side is center-cropped (truncated, as
        # torchvision's Resize does)
        scale = max(tw / width, th / height)
        return max(tw, int(width * scale)), max(th, int(height * scale))

    def prepare(self, frames: np.ndarray) -> Any:
        """uint8 [N, H, W, 3] (any size) -> normalised float tensor [N, 3, h, w] on the model's device."""
        import torch
        import torch.nn.functional as F

        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected uint8 frames [N, H, W, 3], got {frames.shape}")
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device).permute(0, 3, 1, 2).float()
        th, tw = self.image_size
        h, w = x.shape[-2:]
        if (h, w) != (th, tw):
            mode = "bicubic" if self.interpolation == "bicubic" else "bilinear"
            if self.resize_mode == "squash":
                x = F.interpolate(x, size=(th, tw), mode=mode, antialias=True, align_corners=False)
            else:
                nw, nh = self.decode_size(w, h)
                if (nh, nw) != (h, w):
                    x = F.interpolate(x, size=(nh, nw), mode=mode, antialias=True, align_corners=False)
                h, w = nh, nw
                if self.resize_mode == "longest":  # pad to the square, centred
                    pt, pl = (th - h) // 2, (tw - w) // 2
                    x = F.pad(x, (pl, tw - w - pl, pt, th - h - pt), value=0.0)
                else:  # center crop
                    top, left = (h - th) // 2, (w - tw) // 2
                    x = x[..., top:top + th, left:left + tw]
        x = x.clamp_(0, 255) / 255.0
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    # ---------------------------------------------------------------- encoders
    def _run(self, fn: Any, x: Any) -> Any:
        import torch

        with torch.inference_mode():
            if self.amp_dtype is not None:
                with torch.autocast(device_type=self.device.split(":")[0], dtype=self.amp_dtype):
                    out = fn(x)
            else:
                out = fn(x)
        return out.float()

    def encode_images(self, frames: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3] -> float32 [N, D], each row unit norm. Runs in forward batches."""
        import torch

        outs = []
        for i in range(0, len(frames), self.forward_batch_size):
            x = self.prepare(frames[i:i + self.forward_batch_size])
            feats = self._run(self.model.encode_image, x)
            outs.append(torch.nn.functional.normalize(feats, dim=-1).cpu().numpy())
        if not outs:
            return np.zeros((0, self.embed_dim), np.float32)
        return np.concatenate(outs).astype(np.float32)

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> float32 [M, D], each row unit norm (for zero-shot classification)."""
        import torch

        if not texts:
            return np.zeros((0, self.embed_dim), np.float32)
        tokens = self.tokenizer(list(texts)).to(self.device)
        feats = self._run(self.model.encode_text, tokens)
        return torch.nn.functional.normalize(feats, dim=-1).cpu().numpy().astype(np.float32)

    def embed_clips(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """Frames of several clips -> one embedding per clip: the mean of its frame
        embeddings, L2-normalised. All frames go through the tower together."""
        if not clips:
            return np.zeros((0, self.embed_dim), np.float32)
        counts = [len(c) for c in clips]
        if min(counts) == 0:
            raise ValueError("a clip has no frames")
        sizes = {c.shape[1:3] for c in clips}
        if len(sizes) == 1:
            per_frame = self.encode_images(np.concatenate(list(clips)))
        else:
            per_frame = np.concatenate([self.encode_images(c) for c in clips])
        out = np.zeros((len(clips), per_frame.shape[1]), np.float32)
        pos = 0
        for i, n in enumerate(counts):
            v = per_frame[pos:pos + n].mean(axis=0)
            pos += n
            norm = float(np.linalg.norm(v))
            out[i] = v / norm if norm > 0 else v
        return out


def load_dir(path: str, name: str | None = None, device: str = "auto", precision: str = "auto",
             forward_batch_size: int = 64) -> ClipModel:
    """Load an open_clip model from a folder holding open_clip_config.json and its weights."""
    import open_clip

    cfg_path = os.path.join(path, "open_clip_config.json")
    if not os.path.isfile(cfg_path):
        raise ModelMissing(f"no open_clip model at {path} (missing {cfg_path})")
    if not any(os.path.isfile(os.path.join(path, f)) for f in registry.OPEN_CLIP_WEIGHTS):
        raise ModelMissing(f"no open_clip weights in {path} (expected {registry.OPEN_CLIP_WEIGHTS[0]})")
    dev = resolve_device(device)
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{path}", device=dev)
    model.eval()
    tokenizer = open_clip.get_tokenizer(f"local-dir:{path}")
    pcfg = dict(getattr(model.visual, "preprocess_cfg", None) or {})
    size = pcfg.get("size", model.visual.image_size)
    if isinstance(size, int):
        size = (size, size)
    return ClipModel(
        model=model, preprocess=preprocess, tokenizer=tokenizer, name=name or f"local-dir:{path}", device=dev,
        image_size=(int(size[0]), int(size[1])),
        mean=tuple(pcfg.get("mean", open_clip.OPENAI_DATASET_MEAN)),  # type: ignore[arg-type]
        std=tuple(pcfg.get("std", open_clip.OPENAI_DATASET_STD)),  # type: ignore[arg-type]
        resize_mode=pcfg.get("resize_mode", "shortest"), interpolation=pcfg.get("interpolation", "bicubic"),
        amp_dtype=autocast_dtype(dev, precision), forward_batch_size=forward_batch_size,
    )


def load(arch: str, pretrained: str, model_dir: str, device: str = "auto", precision: str = "auto",
         forward_batch_size: int = 64) -> ClipModel:
    """Load ``open_clip:<arch>/<pretrained>`` from the model directory (never from a hub)."""
    name = f"open_clip:{arch}/{pretrained}"
    gaps = registry.missing(name, model_dir)
    if gaps:
        raise ModelMissing(f"model {name} is not in the model directory: missing {', '.join(gaps)}; "
                           f"fix: {registry.download_command(name, model_dir)}")
    return load_dir(registry.model_path(name, model_dir), name, device, precision, forward_batch_size)


def load_name(name: str, model_dir: str, **kwargs: Any) -> ClipModel:
    """Load by model name, ``open_clip:<arch>/<pretrained>``."""
    arch, tag = registry.split_open_clip(name)
    return load(arch, tag, model_dir, **kwargs)
