"""Quality filters: technical quality (always), aesthetic and DOVER-style scores (with weights).

``quality`` — no-reference measures on ``sample_frames`` uniformly sampled frames, CPU only
(:mod:`curator.media.quality`): BRISQUE, sharpness (variance of the Laplacian), noise
(Immerkaer), exposure (clipped pixels, mean luma) and blockiness (8x8 grid edges). Each is
mapped to 0..1 and the weighted mean is ``quality_score`` (``stages.quality.weights``).
Rejects ``low_quality`` below ``min_score``; each raw measure has an optional threshold of
its own. ``drop_bottom_percent`` is a global rule applied over the whole run's manifest
after the run (see :mod:`curator.phases.refilter`).

``aesthetic`` — a small MLP head over CLIP image embeddings (the LAION improved-aesthetic-
predictor layout: 768 -> 1024 -> 128 -> 64 -> 16 -> 1; its published
``sac+logos+ava1-l14-linearMSE.pth`` over CLIP ViT-L/14 through ``curator models download
aesthetic``), weights and CLIP from the model directory; mean over sampled frames; rejects
``low_aesthetic`` below 3.5 (the reference).

``dover`` — DOVER (:mod:`curator.models.dover`): its two views (technical: 7x7 spatial
fragments of 32x32 patches from full-resolution frames over 3 temporal clips of 32 frames;
aesthetic: 32 whole frames resized to 224x224), its published weights (``dover/DOVER.pth``
through ``curator models download dover``, with the ``dover`` package's network code) or a
TorchScript / ``torch.export`` module taking the two views; ``dover_technical``,
``dover_aesthetic`` and their fusion ``dover_score`` (0..1). Clips of a batch go through the
model together. ``input: single`` keeps the older one-tensor contract (``[1, 3, T, S, S]``,
ImageNet-normalised 0..1, the mean of the outputs). Rejects ``low_dover`` below
``min_score`` and, globally, the bottom ``drop_bottom_percent`` (15 % in the reference design).

Both optional stages name their missing weights at start-up and are skipped; nothing is
faked when the weights are absent.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import pyarrow as pa

from curator.config import AestheticConfig, DoverConfig, QualityConfig
from curator.deadline import check as check_deadline
from curator.filters import Filter, Rule
from curator.media import quality as q
from curator.records import Row
from curator.stage import Requirement

log = logging.getLogger(__name__)

LOW_QUALITY = "low_quality"


def _frames(row: Row, n: int, size: tuple[int, int] | None = None) -> np.ndarray:
    from curator.media.frames import sample_clip_frames

    return sample_clip_frames(row, n, size)[0]


class QualityStage(Filter):
    name = "quality"
    reasons = (LOW_QUALITY, "high_brisque", "blurry", "badly_exposed", "blocky")
    config: QualityConfig
    columns = [
        ("quality_score", pa.float64()),
        ("brisque", pa.float64()),
        ("sharpness", pa.float64()),
        ("noise", pa.float64()),
        ("exposure", pa.float64()),
        ("mean_luma", pa.float64()),
        ("blockiness", pa.float64()),
    ]

    @classmethod
    def rules(cls, config: QualityConfig) -> list[Rule]:
        return [
            Rule("quality_score", ">=", config.min_score, LOW_QUALITY, "min_score"),
            Rule("brisque", "<=", config.max_brisque, "high_brisque", "max_brisque"),
            Rule("sharpness", ">=", config.min_sharpness, "blurry", "min_sharpness"),
            Rule("exposure", "<=", config.max_clipped, "badly_exposed", "max_clipped"),
            Rule("blockiness", "<=", config.max_blockiness, "blocky", "max_blockiness"),
        ]

    @classmethod
    def global_rules(cls, config: QualityConfig) -> list[tuple[str, float]]:
        return [("quality_score", config.drop_bottom_percent)]

    @classmethod
    def derive(cls, row: Row, config: QualityConfig) -> None:
        # quality_score is a function of the raw measures and the weights: re-weighting needs no decode
        keys = ("brisque", "sharpness", "noise", "exposure", "mean_luma", "blockiness")
        if all(row.get(k) is not None for k in keys):
            row["quality_score"] = round(q.combine({k: float(row[k]) for k in keys}, config.weights), 6)

    def setup(self) -> None:
        self.brisque = q.brisque_model()

    def measure(self, row: Row) -> dict[str, Any]:
        frames = _frames(row, self.config.sample_frames)
        h, w = frames.shape[1:3]
        scale = min(1.0, self.config.max_side / max(h, w))
        per: dict[str, list[float]] = {k: [] for k in ("brisque", "sharpness", "noise", "exposure", "mean_luma",
                                                         "blockiness")}
        import cv2

        for rgb in frames:
            check_deadline()
            y_full = q.luma(rgb)
            per["blockiness"].append(q.blockiness(y_full))
            if scale < 1.0:
                rgb = cv2.resize(rgb, (max(8, int(w * scale)), max(8, int(h * scale))), interpolation=cv2.INTER_AREA)
            y = q.luma(rgb)
            per["brisque"].append(float(self.brisque.score(rgb)))
            per["sharpness"].append(q.sharpness(y))
            per["noise"].append(q.noise_sigma(y))
            clipped, mean = q.exposure(y)
            per["exposure"].append(clipped)
            per["mean_luma"].append(mean)
        out = {k: round(float(np.mean(v)), 6) for k, v in per.items()}
        out["quality_score"] = round(q.combine(out, self.config.weights), 6)
        return out


# ---------------------------------------------------------------------- aesthetic
class AestheticHead:
    """The LAION improved-aesthetic-predictor MLP: Linear(d,1024) Drop Linear(1024,128) Drop
    Linear(128,64) Drop Linear(64,16) Linear(16,1), on L2-normalised CLIP image embeddings."""

    @staticmethod
    def build(dim: int) -> Any:
        import torch.nn as nn

        class _MLP(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.layers = nn.Sequential(
                    nn.Linear(dim, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
                    nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1))

            def forward(self, x: Any) -> Any:
                return self.layers(x)

        return _MLP()

    @classmethod
    def load(cls, path: str) -> Any:
        from curator.models import read_state_dict

        state = read_state_dict(path)
        dim = int(state["layers.0.weight"].shape[1])
        model = cls.build(dim)
        model.load_state_dict(state)
        return model.eval()


def _device(pref: str) -> str:
    from curator.models.clip import resolve_device

    return resolve_device(pref)


class AestheticStage(Filter):
    name = "aesthetic"
    reasons = ("low_aesthetic",)
    stateful = True
    config: AestheticConfig
    columns = [("aesthetic_score", pa.float64())]

    @classmethod
    def rules(cls, config: AestheticConfig) -> list[Rule]:
        return [Rule("aesthetic_score", ">=", config.min_score, "low_aesthetic", "min_score")]

    def _head(self) -> str:
        w = self.config.weights
        return w if os.path.isabs(w) else os.path.join(self.ctx.model_dir if self.ctx else "", w)

    def requirements(self) -> list[Requirement]:
        missing = []
        if not os.path.isfile(self._head()):
            default = self._head().endswith("sac+logos+ava1-l14-linearMSE.pth")
            missing.append(Requirement("aesthetic MLP head weights", self._head(),
                                       fix="curator models download aesthetic" if default else
                                       "place the LAION improved-aesthetic-predictor state dict there "
                                       "(docs/filters.md)"))
        from curator.models import registry

        req = registry.requirement(self.config.clip_model, self.ctx.model_dir, "stage aesthetic")
        if req:
            missing.append(req)
        return missing

    def setup(self) -> None:
        import torch

        from curator.models import clip as clip_models

        self.device = _device(self.config.device)
        self.clip = clip_models.load_name(self.config.clip_model, self.ctx.model_dir, device=self.device)
        self.head = AestheticHead.load(self._head()).to(self.device)
        self.torch = torch

    def measure(self, row: Row) -> dict[str, Any]:
        return self.measure_rows([row])[0]

    def measure_rows(self, rows: list[Row]) -> list[dict[str, Any]]:
        """All frames of the batch's clips through CLIP (in its forward batches) and the head at once."""
        per: list[np.ndarray] = []
        for row in rows:
            check_deadline()
            w, h = self.clip.decode_size(row.get("clip_width") or 0, row.get("clip_height") or 0)
            per.append(_frames(row, self.config.sample_frames, (w, h)))
        emb = np.asarray(self.clip.encode_images(np.concatenate(per)), dtype=np.float32)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True) + 1e-8
        with self.torch.no_grad():
            s = self.head(self.torch.from_numpy(emb).to(self.device)).squeeze(-1).float().cpu().numpy()
        out, k = [], 0
        for f in per:
            out.append({"aesthetic_score": round(float(s[k:k + len(f)].mean()), 6)})
            k += len(f)
        return out


# -------------------------------------------------------------------------- DOVER
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


class DoverStage(Filter):
    name = "dover"
    reasons = ("low_dover",)
    stateful = True
    config: DoverConfig
    columns = [("dover_score", pa.float64()), ("dover_technical", pa.float64()), ("dover_aesthetic", pa.float64())]

    @classmethod
    def rules(cls, config: DoverConfig) -> list[Rule]:
        return [Rule("dover_score", ">=", config.min_score, "low_dover", "min_score")]

    @classmethod
    def global_rules(cls, config: DoverConfig) -> list[tuple[str, float]]:
        return [("dover_score", config.drop_bottom_percent)]

    def _path(self) -> str:
        w = self.config.weights
        return w if os.path.isabs(w) else os.path.join(self.ctx.model_dir if self.ctx else "", w)

    def requirements(self) -> list[Requirement]:
        from curator.models import dover

        p = self._path()
        if not os.path.exists(p):
            fix = ("curator models download dover" if p.endswith("DOVER.pth") else
                   "export a module forward(technical, aesthetic) with torch.jit.script/trace to that path "
                   "(docs/filters.md)")
            return [Requirement("DOVER video quality model", p, fix=fix)]
        if p.endswith(".pth") and self.config.input == "views":
            why = dover.dover_package_missing()
            if why:
                return [Requirement(f"DOVER's published weights need {why}",
                                    fix="pip install git+https://github.com/VQAssessment/DOVER einops timm")]
        return []

    def setup(self) -> None:
        import torch

        from curator.models import dover

        self.torch = torch
        self.device = _device(self.config.device)
        self.model = dover.load(self._path(), self.device)
        self.spec = dover.ViewSpec()

    def _views(self, row: Row) -> dict[str, np.ndarray]:
        from curator.media.source import clip_source_of
        from curator.models import dover

        n = int(row.get("clip_frames") or 0)
        if not n:
            from curator.media.decode import iter_frames

            n = sum(1 for _ in iter_frames(clip_source_of(row), threads=False))
        return dover.decode_views(clip_source_of(row), n, self.spec)

    def measure_rows(self, rows: list[Row]) -> list[dict[str, Any]]:
        if self.config.input == "single":
            return [self._measure_single(r) for r in rows]
        from curator.models import dover

        out: list[dict[str, Any]] = []
        bs = max(1, self.config.forward_batch_size)
        for i in range(0, len(rows), bs):
            views = []
            for r in rows[i:i + bs]:
                check_deadline()
                views.append(self._views(r))
            for t, a in dover.score(self.model, views, self.device):
                out.append({"dover_score": round(dover.fuse(t, a), 6), "dover_technical": round(t, 6),
                            "dover_aesthetic": round(a, 6)})
        return out

    def measure(self, row: Row) -> dict[str, Any]:
        return self.measure_rows([row])[0]

    def _measure_single(self, row: Row) -> dict[str, Any]:
        s = self.config.size
        frames = _frames(row, self.config.frames, (s, s)).astype(np.float32) / 255.0
        x = (frames - IMAGENET_MEAN) / IMAGENET_STD  # [T, S, S, 3]
        x = np.ascontiguousarray(x.transpose(3, 0, 1, 2))[None]  # [1, 3, T, S, S]
        with self.torch.no_grad():
            out = self.model(self.torch.from_numpy(x).to(self.device))
        if isinstance(out, (list, tuple)):
            vals = [float(o.float().mean()) for o in out]
        else:
            vals = [float(out.float().mean())]
        return {"dover_score": round(float(np.mean(vals)), 6), "dover_technical": None, "dover_aesthetic": None}
