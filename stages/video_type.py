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

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa

from curator.config import ConfigError, PipelineConfig, VideoTypeConfig
from curator.filters import Filter, Rule
from curator.records import Row
from curator.stage import Requirement

log = logging.getLogger(__name__)

TYPE_DROPPED = "type_dropped"
TYPE_UNCERTAIN = "type_uncertain"
HEAD_FORMAT = "curator-type-head-v1"
DEFAULT_TAXONOMY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "curator", "data",
                                "taxonomy.yaml")


# ------------------------------------------------------------------ taxonomy
@dataclass(frozen=True)
class VideoType:
    key: str
    label: str
    prompts: tuple[str, ...]
    weight: float


@dataclass(frozen=True)
class Taxonomy:
    types: tuple[VideoType, ...]
    prompt_template: str = "{}"

    @property
    def keys(self) -> list[str]:
        return [t.key for t in self.types]

    def weight(self, key: str | None, overrides: dict[str, float]) -> float:
        if key in overrides:
            return float(overrides[key])
        for t in self.types:
            if t.key == key:
                return t.weight
        return 1.0


def taxonomy_path(path: str | None) -> str:
    if path:
        return path
    try:  # installed package data
        from importlib.resources import files

        p = files("curator").joinpath("data/taxonomy.yaml")
        if p.is_file():
            return str(p)
    except Exception:
        pass
    return DEFAULT_TAXONOMY


@lru_cache(maxsize=8)
def load_taxonomy(path: str | None = None) -> Taxonomy:
    """Parse and validate a taxonomy YAML file (the packaged one by default)."""
    import yaml

    p = taxonomy_path(path)
    try:
        with open(p) as fh:
            doc = yaml.safe_load(fh) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read taxonomy {p}: {exc.strerror}") from None
    types = doc.get("types")
    if not isinstance(types, dict) or not types:
        raise ConfigError(f"taxonomy {p}: 'types' must be a non-empty mapping of type key -> spec")
    out = []
    for key, spec in types.items():
        spec = spec or {}
        prompts = spec.get("prompts") or [spec.get("label") or key.replace("_", " ")]
        if not isinstance(prompts, list) or not all(isinstance(x, str) and x.strip() for x in prompts):
            raise ConfigError(f"taxonomy {p}: type {key!r}: prompts must be a list of strings")
        w = spec.get("weight", 1.0)
        if not isinstance(w, (int, float)) or w < 0:
            raise ConfigError(f"taxonomy {p}: type {key!r}: weight must be a number >= 0")
        out.append(VideoType(str(key), str(spec.get("label") or key), tuple(prompts), float(w)))
    template = str(doc.get("prompt_template") or "{}")
    if "{}" not in template:
        raise ConfigError(f"taxonomy {p}: prompt_template must contain '{{}}'")
    return Taxonomy(tuple(out), template)


def draw(clip_id: str, seed: int) -> float:
    """A deterministic u in (0, 1] per clip and seed."""
    h = hashlib.sha256(f"{seed}:{clip_id}".encode()).digest()
    return (int.from_bytes(h[:8], "big") + 1) / 2.0 ** 64


# ------------------------------------------------------------------ the MLP head
def build_head(dim: int, hidden: int, classes: int) -> Any:
    import torch.nn as nn

    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.1), nn.Linear(hidden, classes))


def train_head(x: np.ndarray, labels: list[str], classes: list[str], *, hidden: int = 256, epochs: int = 200,
               lr: float = 1e-3, weight_decay: float = 1e-4, seed: int = 0) -> Any:
    """Full-batch AdamW on L2-normalised embeddings; returns the trained module (eval mode)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    idx = {c: i for i, c in enumerate(classes)}
    xt = torch.from_numpy(_normalise(x))
    yt = torch.tensor([idx[label] for label in labels], dtype=torch.long)
    torch.manual_seed(seed)
    model = build_head(xt.shape[1], hidden, len(classes))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), 256):
            b = perm[i:i + 256]
            opt.zero_grad()
            loss = loss_fn(model(xt[b]), yt[b])
            loss.backward()
            opt.step()
    return model.eval()


def save_head(path: str, model: Any, classes: list[str], embedding_model: str | None, hidden: int, dim: int) -> None:
    import torch

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    torch.save({"format": HEAD_FORMAT, "labels": list(classes), "embedding_model": embedding_model, "dim": dim,
                "hidden": hidden, "state_dict": model.state_dict()}, tmp)
    os.replace(tmp, path)


def load_head(path: str) -> tuple[Any, dict[str, Any]]:
    import torch

    doc = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(doc, dict) or doc.get("format") != HEAD_FORMAT:
        raise ValueError(f"{path} is not a video-type head written by `curator train-type-head`")
    model = build_head(int(doc["dim"]), int(doc["hidden"]), len(doc["labels"]))
    model.load_state_dict(doc["state_dict"])
    return model.eval(), doc


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-8)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


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


# ------------------------------------------------------------------ train-type-head
def read_labels(path: str) -> dict[str, str]:
    """clip_id -> label from a CSV (header clip_id,label) or a Parquet file."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from curator import storage

    data = storage.read_bytes(storage.normalize(path))
    import io

    if path.lower().endswith(".parquet"):
        table = pq.read_table(io.BytesIO(data))
    else:
        table = pcsv.read_csv(io.BytesIO(data))
    missing = {"clip_id", "label"} - set(table.column_names)
    if missing:
        raise ConfigError(f"{path}: needs columns clip_id and label (missing {sorted(missing)})")
    ids = table.column("clip_id").to_pylist()
    labels = table.column("label").to_pylist()
    return {str(i): str(lab) for i, lab in zip(ids, labels) if i is not None and lab is not None}


def train_head_cli(run_uri: str, labels_path: str, config: PipelineConfig, *, out: str | None = None,
                   epochs: int = 200, hidden: int = 256, seed: int = 0) -> str:
    """`curator train-type-head`: join labels with the run's manifest embeddings, train, save.
    Holds out a stratified 20 % when every label has >= 5 clips and reports its accuracy."""
    from curator import manifest, storage

    labels = read_labels(labels_path)
    tax = load_taxonomy(config.stages.video_type.taxonomy)
    unknown = sorted(set(labels.values()) - set(tax.keys))
    if unknown:
        raise ConfigError(f"labels {unknown} are not taxonomy types ({', '.join(tax.keys)})")
    storage.configure(config.storage)
    table = manifest.read_manifest(storage.normalize(run_uri), columns=["kind", "clip_id", "embedding",
                                                                         "embedding_model"])
    xs, ys, models = [], [], set()
    for r in table.to_pylist():
        if r["kind"] == "clip" and r["clip_id"] in labels and r["embedding"] is not None:
            xs.append(np.asarray(r["embedding"], dtype=np.float32))
            ys.append(labels[r["clip_id"]])
            models.add(r["embedding_model"])
    if len(xs) < 2 or len(set(ys)) < 2:
        raise ConfigError(f"need labelled clips of at least 2 types with embeddings in {run_uri}; found {len(xs)} "
                          f"clips of {len(set(ys))} types (are the clip ids from this run's manifest?)")
    if len(models) > 1:
        raise ConfigError(f"the labelled clips have embeddings from several models: {sorted(map(str, models))}")
    x = np.stack(xs)
    classes = sorted(set(ys), key=tax.keys.index)
    train_idx, test_idx = _split(ys, seed)
    model = train_head(x[train_idx], [ys[i] for i in train_idx], classes, hidden=hidden, epochs=epochs, seed=seed)
    report = [f"trained on {len(train_idx)} clips, {len(classes)} types: {', '.join(classes)}"]
    if test_idx:
        acc = head_accuracy(model, x[test_idx], [ys[i] for i in test_idx], classes)
        report.append(f"held-out accuracy: {acc:.3f} on {len(test_idx)} clips")
    dest = out or os.path.join(config.models.dir, config.stages.video_type.head or "video_type/head.pt")
    save_head(dest, model, classes, next(iter(models)), hidden, x.shape[1])
    report.append(f"saved: {dest}")
    return "\n".join(report)


def head_accuracy(model: Any, x: np.ndarray, labels: list[str], classes: list[str]) -> float:
    import torch

    with torch.no_grad():
        pred = model(torch.from_numpy(_normalise(x))).argmax(1).numpy()
    return float(np.mean([classes[p] == y for p, y in zip(pred, labels)]))


def _split(labels: list[str], seed: int) -> tuple[list[int], list[int]]:
    by: dict[str, list[int]] = {}
    for i, y in enumerate(labels):
        by.setdefault(y, []).append(i)
    if min(len(v) for v in by.values()) < 5:
        return list(range(len(labels))), []
    rng = np.random.default_rng(seed)
    train, test = [], []
    for v in by.values():
        v = list(rng.permutation(v))
        k = max(1, len(v) // 5)
        test += v[:k]
        train += v[k:]
    return sorted(train), sorted(test)
