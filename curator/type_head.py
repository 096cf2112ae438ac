"""Classifier heads over clip embeddings: building, training, saving and loading them.

- the video-type head: a small MLP, one label per clip; `curator train-type-head`;
- the multi-field tag head (place tags): one shared hidden layer and one output layer per
  field, trained on clips labelled in any subset of the fields (a clip's missing fields do
  not count); `curator train-tag-head`.

Both train with the same full-batch AdamW loop (:func:`_fit`) on L2-normalised embeddings
joined from a run's manifest with a user's labels (:func:`read_label_table`)."""

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

    idx = {c: i for i, c in enumerate(classes)}
    torch.manual_seed(seed)
    model = build_head(x.shape[1], hidden, len(classes))
    y = {"label": torch.tensor([idx[label] for label in labels], dtype=torch.long)}
    return _fit(model, lambda out: {"label": out}, x, y, epochs=epochs, lr=lr, weight_decay=weight_decay, seed=seed)


IGNORE = -100  # a clip without a label in a field (CrossEntropyLoss's ignore_index)


def _fit(model: Any, outputs: Any, x: np.ndarray, targets: dict[str, Any], *, epochs: int, lr: float,
         weight_decay: float, seed: int) -> Any:
    """The training loop both heads share: minibatches of 256, AdamW, summed cross-entropy over the
    fields (`outputs(model(x))` -> {field: logits}; IGNORE targets do not count)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    xt = torch.from_numpy(_normalise(x))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=IGNORE)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), 256):
            b = perm[i:i + 256]
            opt.zero_grad()
            logits = outputs(model(xt[b]))
            losses = [loss_fn(logits[f], y[b]) for f, y in targets.items() if bool((y[b] != IGNORE).any())]
            if not losses:
                continue
            loss = torch.stack(losses).sum()
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


# ------------------------------------------------------------------ the multi-field tag head
TAG_HEAD_FORMAT = "curator-tag-head-v1"


def build_tag_head(dim: int, hidden: int, sizes: dict[str, int]) -> Any:
    """Standardised inputs (the training set's per-dimension mean and spread, kept as buffers in the
    state dict: embeddings of one model share a large common direction, and what tells places apart
    is often a small part of each vector), a shared hidden layer, then one linear output per field;
    forward -> {field: logits}."""
    import torch
    import torch.nn as nn

    class TagHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mu", torch.zeros(dim))
            self.register_buffer("sigma", torch.ones(dim))
            self.trunk = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.1))
            self.out = nn.ModuleDict({f: nn.Linear(hidden, n) for f, n in sizes.items()})

        def forward(self, x: Any) -> dict[str, Any]:
            h = self.trunk((x - self.mu) / self.sigma)
            return {f: layer(h) for f, layer in self.out.items()}

    return TagHead()


def train_tag_head(x: np.ndarray, labels: dict[str, list[str | None]], classes: dict[str, list[str]], *,
                   hidden: int = 256, epochs: int = 200, lr: float = 1e-3, weight_decay: float = 1e-4,
                   seed: int = 0) -> Any:
    """`labels[field][i]`: clip i's label in that field, or None (not labelled there)."""
    import torch

    targets = {}
    for f, ys in labels.items():
        idx = {c: i for i, c in enumerate(classes[f])}
        targets[f] = torch.tensor([IGNORE if y is None else idx[y] for y in ys], dtype=torch.long)
    torch.manual_seed(seed)
    model = build_tag_head(x.shape[1], hidden, {f: len(c) for f, c in classes.items()})
    xn = torch.from_numpy(_normalise(x))
    model.mu.copy_(xn.mean(0))
    model.sigma.copy_(xn.std(0, unbiased=False).clamp_min(1e-4) if len(xn) > 1 else torch.ones(xn.shape[1]))
    return _fit(model, lambda out: out, x, targets, epochs=epochs, lr=lr, weight_decay=weight_decay, seed=seed)


def save_tag_head(path: str, model: Any, classes: dict[str, list[str]], embedding_model: str | None, hidden: int,
                  dim: int) -> None:
    import torch

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    torch.save({"format": TAG_HEAD_FORMAT, "fields": {f: list(c) for f, c in classes.items()},
                "embedding_model": embedding_model, "dim": dim, "hidden": hidden,
                "state_dict": model.state_dict()}, tmp)
    os.replace(tmp, path)


def load_tag_head(path: str) -> tuple[Any, dict[str, Any]]:
    import torch

    doc = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(doc, dict) or doc.get("format") != TAG_HEAD_FORMAT:
        raise ValueError(f"{path} is not a tag head written by `curator train-tag-head`")
    model = build_tag_head(int(doc["dim"]), int(doc["hidden"]), {f: len(c) for f, c in doc["fields"].items()})
    model.load_state_dict(doc["state_dict"])
    return model.eval(), doc


def tag_head_probs(model: Any, x: np.ndarray) -> dict[str, np.ndarray]:
    """{field: probabilities [n, classes]} for embeddings x."""
    import torch

    with torch.no_grad():
        out = model(torch.from_numpy(_normalise(x)))
    return {f: _softmax(v.numpy()) for f, v in out.items()}


#: label-table columns that name the clip (one of them is needed)
KEY_COLUMNS = ("clip_id", "clip_uri")
#: separators of several labels in one cell (multi-label fields)
MULTI_SEPARATORS = (";", "|")


def read_label_table(path: str) -> tuple[str, list[dict[str, Any]]]:
    """A user's labelled clips, CSV or Parquet: a key column (clip_id or clip_uri) and one column
    per field. Returns (key column, rows as dicts with string values; empty cells are None)."""
    import io

    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from curator import storage

    data = storage.read_bytes(storage.normalize(path))
    if path.lower().endswith(".parquet"):
        table = pq.read_table(io.BytesIO(data))
    else:
        names = pcsv.read_csv(io.BytesIO(data)).column_names
        table = pcsv.read_csv(io.BytesIO(data), convert_options=pcsv.ConvertOptions(
            column_types={n: pa.string() for n in names}, strings_can_be_null=True))
    key = next((k for k in KEY_COLUMNS if k in table.column_names), None)
    if key is None:
        raise ConfigError(f"{path}: needs a clip_id or clip_uri column (has {', '.join(table.column_names)})")
    rows = []
    for r in table.to_pylist():
        if r.get(key) in (None, ""):
            continue
        rows.append({k: (None if v is None or str(v).strip() == "" else str(v).strip()) for k, v in r.items()})
    return key, rows


def _clip_key(key: str, value: str) -> str:
    """clip_uri keys compare by their normalised URI (a plain path and file:// match)."""
    from curator import storage

    return storage.normalize(value) if key == "clip_uri" else value


def join_embeddings(run_uri: str, key: str, wanted: set[str]) -> dict[str, tuple[np.ndarray, str | None]]:
    """key value -> (embedding, embedding model) for the run's clips named in `wanted`."""
    from curator.rundir import RunDir

    out: dict[str, tuple[np.ndarray, str | None]] = {}
    with RunDir.of(run_uri).open_manifest("train-tag-head") as mf:
        names = mf.names
        if "embedding" not in names:
            raise ConfigError(f"{run_uri}: the manifest has no clip embeddings (did the embed stage run?)")
        cols = [c for c in ("kind", key, "embedding", "embedding_model") if c in names]
        for r in mf.rows(cols):
            k = r.get(key)
            if r.get("kind") != "clip" or k is None or r.get("embedding") is None:
                continue
            k = _clip_key(key, k)
            if k in wanted:
                out[k] = (np.asarray(r["embedding"], dtype=np.float32), r.get("embedding_model"))
    return out


def train_tag_head_cli(run_uri: str, labels_path: str, config: PipelineConfig, *, out: str | None = None,
                       epochs: int = 200, hidden: int = 256, seed: int = 0, holdout: float = 0.2) -> str:
    """`curator train-tag-head`: join labelled clips (any of the taxonomy's single-label fields) with the
    run's manifest embeddings, train one head for all of them, save it. Holds out a `holdout` share of
    the clips (random, when there are at least 10) and reports each field's accuracy on them; 0 trains
    on every clip (measure with `curator eval-tags` on other labelled clips instead)."""
    from curator.taxonomy import load_places

    tax = load_places(config.stages.place_tag.taxonomy)
    key, table = read_label_table(labels_path)
    fields = [f for f in tax.closed if any(f in r for r in table)]
    if not fields:
        raise ConfigError(f"{labels_path}: no column names a taxonomy field to train ({', '.join(tax.closed)})")
    labelled: dict[str, dict[str, str]] = {}
    for r in table:
        got = {}
        for f in fields:
            v = r.get(f)
            if v is None:
                continue
            k = tax.fields[f].lookup(v)
            if k is None:
                raise ConfigError(f"{labels_path}: {f} label {v!r} is not in the taxonomy "
                                  f"({', '.join(tax.fields[f].keys)})")
            got[f] = k
        if got:
            labelled[_clip_key(key, r[key])] = got
    found = join_embeddings(run_uri, key, set(labelled))
    models = {m for _, m in found.values()}
    if len(found) < 2:
        raise ConfigError(f"need labelled clips with embeddings in {run_uri}; found {len(found)} of "
                          f"{len(labelled)} (are the {key}s from this run's manifest?)")
    if len(models) > 1:
        raise ConfigError(f"the labelled clips have embeddings from several models: {sorted(map(str, models))}")
    ids = sorted(found)
    x = np.stack([found[i][0] for i in ids])
    ys = {f: [labelled[i].get(f) for i in ids] for f in fields}
    classes = {f: [k for k in tax.fields[f].keys if k in set(ys[f])] for f in fields}
    classes = {f: c for f, c in classes.items() if len(c) >= 2}
    if not classes:
        raise ConfigError("every labelled field has a single label: a head needs at least 2 labels in a field")
    ys = {f: ys[f] for f in classes}
    rng = np.random.default_rng(seed)
    test = set(rng.permutation(len(ids))[:int(len(ids) * holdout)].tolist()) if len(ids) >= 10 else set()
    train = [i for i in range(len(ids)) if i not in test]
    model = train_tag_head(x[train], {f: [y[i] for i in train] for f, y in ys.items()}, classes, hidden=hidden,
                           epochs=epochs, seed=seed)
    report = [f"trained on {len(train)} clips: " + "; ".join(f"{f} ({len(c)} labels)" for f, c in classes.items())]
    if test:
        order = sorted(test)
        probs = tag_head_probs(model, x[order])
        for f, c in classes.items():
            pairs = [(c[int(p.argmax())], ys[f][i]) for p, i in zip(probs[f], order) if ys[f][i] is not None]
            if pairs:
                acc = float(np.mean([a == b for a, b in pairs]))
                report.append(f"held-out accuracy {f}: {acc:.3f} on {len(pairs)} clips")
    dest = out or os.path.join(config.models.dir, config.stages.place_tag.head)
    save_tag_head(dest, model, classes, next(iter(models)), hidden, x.shape[1])
    report.append(f"saved: {dest}")
    return "\n".join(report)
