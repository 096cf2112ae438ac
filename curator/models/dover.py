"""DOVER (Disentangled Objective Video Quality Evaluator): its two views, its models, its fusion.

What follows is DOVER's inference as its repository does it (github VQAssessment/DOVER:
``dover.yml`` ``val-l1080p`` sample types, ``evaluate_one_video.py``,
``dover/datasets/basic_datasets.py`` ``get_spatial_fragments``,
``dover/datasets/dover_datasets.py`` ``UnifiedFrameSampler`` / ``get_resized_video``):

* **technical view** — temporal fragments: ``num_clips`` (3) clips of ``clip_len`` (32)
  frames ``frame_interval`` (2) apart, one clip per third of the video; spatial fragments:
  from each *full-resolution* frame a 7x7 grid of 32x32 patches (one patch per grid cell,
  the same positions for the 32 frames of a clip), spliced into a 224x224 frame; a frame
  smaller than 224 on a side is upsampled (bilinear) first. Shape ``[3, 3, 32, 224, 224]``
  (clips, RGB, frames, height, width).
* **aesthetic view** — one frame from each of 32 equal segments, the whole frame resized
  to 224x224 (``torchvision.transforms.Resize((224, 224))``: bilinear, antialiased, aspect
  not kept). Shape ``[1, 3, 32, 224, 224]``.
* both normalised with mean (123.675, 116.28, 103.53) and std (58.395, 57.12, 57.375) on
  0..255 values.
* the model returns a technical and an aesthetic score map; each score is its mean, and the
  overall score is DOVER's fusion: ``sigmoid((t - 0.1107) / 0.07355 * 0.6104 +
  (a + 0.08285) / 0.03774 * 0.3896)`` (0..1).

One deliberate difference: DOVER draws the offsets of the temporal segments and of the
patches inside their grid cells at random (``np.random`` / ``torch.randint``) at every
call; curator takes the centre of each range, so a clip's score does not change between
runs.

Models (``stages.dover.weights``, relative to the model directory):

* ``dover/DOVER.pth`` — the published weights (``curator models download dover``:
  ``teowu/DOVER`` on Hugging Face, the file the repository's README links); loaded into
  DOVER's own network classes (Swin-T 3D with GRPB for the technical branch, ConvNeXt-T 3D
  for the aesthetic branch, a VQA head each), which come from the ``dover`` package
  (``pip install git+https://github.com/VQAssessment/DOVER``; imported without its dataset
  code, and without the ImageNet download its ``convnext_3d_tiny(pretrained=True)`` does).
* a TorchScript file (``.pt``) or ``torch.export`` archive (``.pt2``) of any module
  ``forward(technical, aesthetic) -> (technical_score, aesthetic_score)`` on the views above.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

MEAN = np.array([123.675, 116.28, 103.53], np.float32)
STD = np.array([58.395, 57.12, 57.375], np.float32)


@dataclass(frozen=True)
class ViewSpec:
    """dover.yml's val-l1080p sample types."""

    fragments: int = 7  # fragments_h = fragments_w
    fsize: int = 32  # fsize_h = fsize_w
    clip_len: int = 32  # technical: frames per clip; aligned = clip_len
    frame_interval: int = 2
    num_clips: int = 3  # technical clips
    aesthetic_size: int = 224
    t_frag: int = 32  # aesthetic: frames (one per segment)

    @property
    def side(self) -> int:
        return self.fragments * self.fsize


def _segment_indices(num_frames: int, fsize_t: int, fragments_t: int, interval: int) -> list[int]:
    """UnifiedFrameSampler.get_frame_indices with the centre offset instead of a random one."""
    tlength = num_frames // fragments_t
    span = fsize_t * interval
    off = (tlength - span) // 2 if tlength > span else 0
    out = [num_frames // fragments_t * i + off + k * interval for i in range(fragments_t) for k in range(fsize_t)]
    return [i % num_frames for i in out]  # UnifiedFrameSampler wraps around short videos


def technical_indices(num_frames: int, spec: ViewSpec = ViewSpec()) -> list[int]:
    """``num_clips`` x ``clip_len`` frame indices (UnifiedFrameSampler(clip_len, num_clips, frame_interval))."""
    return _segment_indices(num_frames, spec.clip_len, spec.num_clips, spec.frame_interval)


def aesthetic_indices(num_frames: int, spec: ViewSpec = ViewSpec()) -> list[int]:
    """``t_frag`` frame indices, one per segment (UnifiedFrameSampler(clip_len // t_frag, t_frag, interval))."""
    return _segment_indices(num_frames, spec.clip_len // spec.t_frag, spec.t_frag, spec.frame_interval)


def fragment_grid(height: int, width: int, spec: ViewSpec = ViewSpec()) -> tuple[list[int], list[int]]:
    """Top-left corners (rows, columns) of the patches in a height x width frame
    (get_spatial_fragments' grids, with the centre offset inside each cell)."""
    f, s = spec.fragments, spec.fsize
    hl, wl = height // f, width // f
    oh = (hl - s) // 2 if hl > s else 0
    ow = (wl - s) // 2 if wl > s else 0
    rows = [min(height // f * i, height - s) + oh for i in range(f)]
    cols = [min(width // f * j, width - s) + ow for j in range(f)]
    return rows, cols


def _upsample_if_small(frame: np.ndarray, spec: ViewSpec) -> np.ndarray:
    h, w = frame.shape[:2]
    ratio = min(h / spec.side, w / spec.side)
    if ratio >= 1:
        return frame
    import torch

    t = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float() / 255.0
    t = torch.nn.functional.interpolate(t, scale_factor=1 / ratio, mode="bilinear")
    return (t[0].permute(1, 2, 0) * 255.0).to(torch.uint8).numpy()  # type_as(uint8) truncates, as DOVER's does


def fragments(frame: np.ndarray, spec: ViewSpec = ViewSpec()) -> np.ndarray:
    """One full-resolution RGB frame [H, W, 3] -> its 7x7 mosaic of 32x32 patches [224, 224, 3]."""
    frame = _upsample_if_small(frame, spec)
    h, w = frame.shape[:2]
    rows, cols = fragment_grid(h, w, spec)
    s = spec.fsize
    out = np.empty((spec.side, spec.side, 3), frame.dtype)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            out[i * s:(i + 1) * s, j * s:(j + 1) * s] = frame[r:r + s, c:c + s]
    return out


def resize(frames: np.ndarray, size: int) -> np.ndarray:
    """[T, H, W, 3] uint8 -> float32 [T, size, size, 3] on 0..255 (bilinear, antialiased: torchvision's Resize)."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    t = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return t.round().clamp(0, 255).permute(0, 2, 3, 1).numpy()  # Resize on uint8 frames gives uint8


def _to_view(frames: np.ndarray, clips: int) -> np.ndarray:
    """[T, S, S, 3] 0..255 -> normalised float32 [clips, 3, T / clips, S, S]."""
    x = (frames.astype(np.float32) - MEAN) / STD
    t, s1, s2, _ = x.shape
    return np.ascontiguousarray(x.reshape(clips, t // clips, s1, s2, 3).transpose(0, 4, 1, 2, 3))


def decode_views(source: Any, num_frames: int, spec: ViewSpec = ViewSpec()) -> dict[str, np.ndarray]:
    """Both views of a video in one decode pass; only the full-resolution frames the technical
    view needs are held, one at a time (the view keeps their 224x224 mosaics)."""
    from curator.media.decode import iter_frames

    tech = technical_indices(num_frames, spec)
    aes = aesthetic_indices(num_frames, spec)
    want_t, want_a = set(tech), set(aes)
    last = max(tech + aes)
    mosaics: dict[int, np.ndarray] = {}
    small: dict[int, np.ndarray] = {}
    held: np.ndarray | None = None
    for idx, _, frame in iter_frames(source):
        if idx in want_t or idx in want_a:
            held = frame.to_ndarray(format="rgb24")
            if idx in want_t:
                mosaics[idx] = fragments(held, spec)
            if idx in want_a:
                small[idx] = resize(held[None], spec.aesthetic_size)[0]
        if idx >= last:
            break
    if held is None:
        raise ValueError("no decodable frames")
    # a clip shorter than its header claims: the last decoded frame stands in
    last_m = mosaics[max(mosaics)] if mosaics else fragments(held, spec)
    last_s = small[max(small)] if small else resize(held[None], spec.aesthetic_size)[0]
    t = np.stack([mosaics.get(i, last_m) for i in tech])
    a = np.stack([small.get(i, last_s) for i in aes])
    return {"technical": _to_view(t, spec.num_clips), "aesthetic": _to_view(a, 1)}


def views_from_frames(frames: np.ndarray, spec: ViewSpec = ViewSpec()) -> dict[str, np.ndarray]:
    """Both views from a decoded video [N, H, W, 3] (tests, small clips)."""
    n = len(frames)
    t = np.stack([fragments(frames[i], spec) for i in technical_indices(n, spec)])
    a = resize(frames[aesthetic_indices(n, spec)], spec.aesthetic_size)
    return {"technical": _to_view(t, spec.num_clips), "aesthetic": _to_view(a, 1)}


def fuse(technical: float, aesthetic: float) -> float:
    """DOVER's score-level fusion (evaluate_one_video.fuse_results): the overall score in 0..1."""
    x = (technical - 0.1107) / 0.07355 * 0.6104 + (aesthetic + 0.08285) / 0.03774 * 0.3896
    return float(1.0 / (1.0 + np.exp(-x)))


# ------------------------------------------------------------------------- models
def dover_package_missing() -> str | None:
    """Why the published-weights loader cannot run here (None: it can)."""
    if importlib.util.find_spec("dover") is None:
        return "the dover package (pip install git+https://github.com/VQAssessment/DOVER)"
    for mod in ("einops", "timm"):
        if importlib.util.find_spec(mod) is None:
            return f"{mod}, which DOVER's network code imports (pip install {mod})"
    return None


def _dover_models() -> types.ModuleType:
    """dover.models' backbone and head modules, imported without dover/__init__.py (which pulls in
    its dataset code: decord, scikit-video, OpenCV)."""
    name = "_curator_dover_models"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec("dover")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(dover_package_missing() or "dover")
    pkg = types.ModuleType(name)
    pkg.__path__ = [os.path.join(list(spec.submodule_search_locations)[0], "models")]
    sys.modules[name] = pkg
    for sub in ("swin_backbone", "conv_backbone", "head"):
        importlib.import_module(f"{name}.{sub}")
    return pkg


class DoverNet:
    """DOVER's network as dover.yml builds it (technical: swin_tiny_grpb, aesthetic: conv_tiny,
    divide_head, vqa_head in_channels 768 / hidden 64), weights from DOVER.pth."""

    @staticmethod
    def build() -> Any:
        import torch.nn as nn

        m = _dover_models()
        swin, conv, head = (sys.modules[f"{m.__name__}.{s}"] for s in ("swin_backbone", "conv_backbone", "head"))

        class _Dover(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.technical_backbone = swin.SwinTransformer3D()  # DOVER's VideoBackbone() (swin_tiny_grpb)
                # convnext_3d_tiny(pretrained=True) without the ImageNet download: DOVER.pth holds every weight
                self.aesthetic_backbone = conv.ConvNeXt3D(depths=[3, 3, 9, 3], dims=[96, 192, 384, 768])
                self.technical_head = head.VQAHead(in_channels=768, hidden_channels=64, pre_pool=False)
                self.aesthetic_head = head.VQAHead(in_channels=768, hidden_channels=64, pre_pool=False)

            def forward(self, technical: Any, aesthetic: Any) -> tuple[Any, Any]:
                t = self.technical_head(self.technical_backbone(technical, multi=False, layer=-1))
                a = self.aesthetic_head(self.aesthetic_backbone(aesthetic, multi=False, layer=-1))
                return t, a

        return _Dover()

    @classmethod
    def load(cls, path: str) -> Any:
        from curator.models import read_state_dict

        net = cls.build()
        net.load_state_dict(read_state_dict(path))
        return net.eval()


def load(path: str, device: str) -> Any:
    """The model at `path`: DOVER.pth (the published weights), TorchScript (.pt) or torch.export (.pt2)."""
    import torch

    if path.endswith(".pth"):
        return DoverNet.load(path).to(device)
    if path.endswith(".pt2"):
        return torch.export.load(path).module().to(device)
    return torch.jit.load(path, map_location=device).eval()


def score(model: Any, views: Sequence[dict[str, np.ndarray]], device: str) -> list[tuple[float, float]]:
    """(technical, aesthetic) per clip; the clips' views go through the model together."""
    import torch

    tech = torch.from_numpy(np.concatenate([v["technical"] for v in views])).to(device)
    aes = torch.from_numpy(np.concatenate([v["aesthetic"] for v in views])).to(device)
    with torch.no_grad():
        t, a = model(tech, aes)
    nt, na = len(views[0]["technical"]), len(views[0]["aesthetic"])
    t = t.float().reshape(len(views), nt, -1).mean(dim=(1, 2)).cpu().numpy()
    a = a.float().reshape(len(views), na, -1).mean(dim=(1, 2)).cpu().numpy()
    return [(float(x), float(y)) for x, y in zip(t, a)]
