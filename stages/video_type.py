"""Video-type filter: classify each clip into a taxonomy and sample by type.

The taxonomy is a YAML file (``stages.video_type.taxonomy``; default the packaged
``curator/data/taxonomy.yaml``): types with CLIP text prompts and a sampling weight.
The clip's ``embedding`` (from the embed stage, which must run before this one) is
classified

- by a small MLP head when ``models.dir/<stages.video_type.head>`` exists (trained by
  ``curator train-type-head`` on labelled clips of a run; it must have been trained on
  the same embedding model), else
- zero-shot: cosine similarity to the mean text embedding of each type's prompts, with
  the text tower of the CLIP model that made the embeddings (``stages.embed.model`` must
  be an ``open_clip:`` model), softmax at CLIP's temperature (100).

Columns: ``video_type`` (the type key), ``video_type_score`` (its probability),
``video_type_top`` (JSON of the top 3), ``type_weight`` (the sampling weight in force:
``stages.video_type.weights`` over the taxonomy's) and ``type_sample`` = weight - u, with
u in (0, 1] a deterministic per-clip draw (hash of clip id and seed). The check
``type_sample >= 0`` keeps every clip of a type with weight >= 1, a `weight` fraction of
a type with 0 < weight < 1, and none of a weight-0 type (reason ``type_dropped``).
Weights above 1 (up-sampling) are recorded in ``type_weight`` for the trainer's sampler;
shards hold each clip once. ``curator refilter`` re-derives ``type_weight`` and
``type_sample`` from ``video_type`` with new weights, without decoding.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import numpy as np
import pyarrow as pa

from curator.config import ConfigError, VideoTypeConfig
from curator.filters import Filter, Rule
from curator.records import Row
from curator.stage import Requirement
from curator.taxonomy import draw, load_taxonomy
from curator.type_head import (
    _normalise,
    _softmax,
    load_head,
    train_head_cli,  # noqa: F401  (re-exported: `curator train-type-head` calls it here)
)

log = logging.getLogger(__name__)

TYPE_DROPPED = "type_dropped"
TYPE_UNCERTAIN = "type_uncertain"


# ------------------------------------------------------------------ the stage
class VideoTypeStage(Filter):
    name = "video_type"
    reasons = (TYPE_DROPPED, TYPE_UNCERTAIN)
    stateful = True
    config: VideoTypeConfig
    columns = [
        ("video_type", pa.string()),
        ("video_type_score", pa.float64()),
        ("video_type_top", pa.string()),
        ("type_weight", pa.float64()),
        ("type_sample", pa.float64()),
    ]

    @classmethod
    def rules(cls, config: VideoTypeConfig) -> list[Rule]:
        return [Rule("type_sample", ">=", 0.0, TYPE_DROPPED, "weights"),
                Rule("video_type_score", ">=", config.min_confidence, TYPE_UNCERTAIN, "min_confidence")]

    @classmethod
    def derive(cls, row: Row, config: VideoTypeConfig) -> None:
        if row.get("video_type") is None:
            return
        w = load_taxonomy(config.taxonomy).weight(row["video_type"], config.weights)
        row["type_weight"] = w
        row["type_sample"] = round(w - draw(str(row.get("clip_id")), config.seed), 9)

    # ---- where the classifier comes from
    def _head_path(self) -> str | None:
        if not self.config.head:
            return None
        p = self.config.head if os.path.isabs(self.config.head) else os.path.join(self.ctx.model_dir, self.config.head)
        return p if os.path.isfile(p) else None

    def _embed_model(self) -> str | None:
        embed = getattr(self.ctx.config.stages, "embed", None)
        return getattr(embed, "model", None)

    def requirements(self) -> list[Requirement]:
        try:
            tax = load_taxonomy(self.config.taxonomy)
        except ConfigError as exc:
            return [Requirement(str(exc))]
        unknown = sorted(set(self.config.weights) - set(tax.keys))
        if unknown:
            return [Requirement(f"stages.video_type.weights names unknown types {unknown} "
                                f"(taxonomy types: {', '.join(tax.keys)})")]
        order = list(self.ctx.config.stages.order)
        embed = getattr(self.ctx.config.stages, "embed", None)
        if ("embed" not in order or self.name not in order or order.index("embed") > order.index(self.name)
                or embed is None or not getattr(embed, "enabled", True)):
            return [Requirement("stage video_type classifies the clip embedding: the embed stage must run before it",
                                fix="put 'embed' before 'video_type' in stages.order")]
        if self._head_path():
            return []
        model = self._embed_model() or ""
        if not model.startswith("open_clip:"):
            return [Requirement(f"zero-shot video types need a CLIP embedding, but stages.embed.model is {model!r}",
                                fix="set stages.embed.model=open_clip:ViT-B-32/openai, or train a head with "
                                    "`curator train-type-head`")]
        from curator.models import registry

        req = registry.requirement(model, self.ctx.model_dir, "stage video_type")
        return [req] if req else []

    def setup(self) -> None:
        self.taxonomy = load_taxonomy(self.config.taxonomy)
        head = self._head_path()
        self.head = None
        self.text = None
        if head:
            self.head, doc = load_head(head)
            self.classes = list(doc["labels"])
            unknown = sorted(set(self.classes) - set(self.taxonomy.keys))
            if unknown:
                raise ValueError(f"video-type head {head} has labels {unknown} that the taxonomy does not have")
            self.head_model = doc.get("embedding_model")
            log.info("video_type: MLP head %s (%d types, trained on %s)", head, len(self.classes), self.head_model)
            return
        from curator.models import clip

        model = clip.load_name(self._embed_model() or "", self.ctx.model_dir, device=self.config.device)
        self.classes = self.taxonomy.keys
        rows = []
        for t in self.taxonomy.types:
            e = model.encode_text([self.taxonomy.prompt_template.format(p) for p in t.prompts])
            m = e.mean(axis=0)
            rows.append(m / (np.linalg.norm(m) + 1e-8))
        self.text = np.stack(rows).astype(np.float32)
        del model  # only the text embeddings are needed
        log.info("video_type: zero-shot over %d types with %s", len(self.classes), self._embed_model())

    def probabilities(self, emb: np.ndarray) -> np.ndarray:
        x = _normalise(emb)
        if self.head is not None:
            import torch

            with torch.no_grad():
                logits = self.head(torch.from_numpy(x)).numpy()
            return _softmax(logits)
        assert self.text is not None
        if x.shape[1] != self.text.shape[1]:
            raise ValueError(f"embedding has {x.shape[1]} dims, the text embeddings {self.text.shape[1]}")
        return _softmax(100.0 * x @ self.text.T)

    def measure_rows(self, rows: list[Row]) -> list[dict[str, Any]]:
        embs = []
        for r in rows:
            e = r.get("embedding")
            if e is None:
                raise ValueError(f"clip {r.get('clip_id')} has no embedding (the embed stage must run first)")
            if self.head is not None and self.head_model and r.get("embedding_model") not in (None, self.head_model):
                raise ValueError(f"the head was trained on {self.head_model} embeddings, "
                                 f"this clip has {r.get('embedding_model')}")
            embs.append(np.asarray(e, dtype=np.float32))
        probs = self.probabilities(np.stack(embs))
        out = []
        for p in probs:
            order = np.argsort(-p)
            top = {self.classes[i]: round(float(p[i]), 4) for i in order[:3]}
            out.append({"video_type": self.classes[order[0]], "video_type_score": round(float(p[order[0]]), 6),
                        "video_type_top": json.dumps(top, separators=(",", ":"))})
        return out

    def measure(self, row: Row) -> dict[str, Any]:
        return self.measure_rows([row])[0]
