"""Run manifests with given clip embeddings, for index and dedup tests and benchmarks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from curator import manifest, storage
from curator.records import schema_for, to_table
from curator.rundir import RunDir


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def write_run(out: str, prefix: str, emb: np.ndarray, model: str = "test-model", **cols) -> list[str]:
    """A manifest of clips with embeddings, motion tags, captions and a check score."""
    extra = [("embedding", pa.list_(pa.float16())), ("embedding_model", pa.string()), ("motion_tag", pa.string()),
             ("caption", pa.string()), ("tags", pa.list_(pa.string()))]
    rows: list[dict[str, Any]] = [{"kind": "video", "video_id": prefix, "status": "ok", "source_uri": f"s3://raw/{prefix}.mp4"}]
    ids = []
    for i, e in enumerate(emb):
        cid = f"{prefix}-{i:05d}"
        ids.append(cid)
        rows.append({"kind": "clip", "video_id": prefix, "clip_id": cid, "clip_index": i, "status": "ok",
                     "source_uri": f"s3://raw/{prefix}.mp4", "start_s": 2.0 * i, "end_s": 2.0 * i + 2,
                     "clip_uri": RunDir.of(out).clip(prefix, cid),
                     "embedding": [float(x) for x in e], "embedding_model": model,
                     "motion_tag": ["pan_left", "static", "zoom_in"][i % 3], "caption": f"clip {i} of {prefix}",
                     "tags": ["even"] if i % 2 == 0 else ["odd"],
                     "checks": [{"stage": "quality", "metric": "brisque", "value": float(i), "threshold": 50.0,
                                 "op": "<=", "passed": True}],
                     **{k: v[i] for k, v in cols.items()}})
    storage.write_bytes(RunDir.of(out).manifest, manifest.table_bytes(to_table(rows, schema_for(extra))))
    return ids


def planted(n: int, d: int = 64, seed: int = 0) -> np.ndarray:
    """n random unit vectors (float32 [n, d])."""
    rng = np.random.default_rng(seed)
    return unit(rng.standard_normal((n, d))).astype(np.float32)
