"""The video-type classifier head: a small MLP over clip embeddings; building, training, saving and
loading it, and `curator train-type-head` (labels joined with a run's manifest embeddings)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from curator.config import ConfigError, PipelineConfig
from curator.taxonomy import load_taxonomy

HEAD_FORMAT = "curator-type-head-v1"


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
