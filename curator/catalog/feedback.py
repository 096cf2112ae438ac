"""``curator feedback CATALOG (--clips FILE | --query TEXT) --k N --weight W --output FILE``.

Training flags clips it wants more of (high loss, a failure case, a place it renders
badly). Feedback finds, for each flagged clip, its ``k`` nearest neighbours in the catalog
(cosine similarity of the catalog's embeddings, every site and run; tombstoned clips left
out) — or the ``k`` clips nearest a text query (the CLIP text tower of the catalog's model)
— and writes a *re-weighting file*: those clips get sampling weight ``W``. The loader reads
it (``ShardDataset(..., weights=FILE)``, also through ``MixtureDataset``): each named clip is
drawn ``W`` times per epoch on average instead of once, on every rank and site that holds it.

Format (JSON)::

    {"format": "curator-weights/1", "catalog": URI, "created": ISO time, "k": N, "weight": W,
     "flagged": [clip ids or the query], "weights": {clip_id: W, ...}}

A clip near several flagged clips gets W once (not W times W). Clip ids are what shards
name samples by; ids that repeat across clouds (the same key under two input roots) are
re-weighted together.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curator import index, storage
from curator.catalog import core
from curator.loader import WEIGHTS_FORMAT


def read_clip_list(uri: str) -> list[str]:
    """Clip ids from a file: one per line (blank lines and # comments skipped), a JSON list,
    or a JSON object with a `clips` list."""
    text = storage.read_bytes(uri).decode("utf-8")
    if text.lstrip().startswith(("[", "{")):
        doc = json.loads(text)
        clips = doc.get("clips", []) if isinstance(doc, dict) else doc
        return [str(c) for c in clips]
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def _vectors(meta: index.IndexMeta, clip_ids: list[str]) -> dict[str, np.ndarray]:
    """The embedding of each flagged clip (a visible row; one pass over the segments)."""
    want = set(clip_ids)
    out: dict[str, np.ndarray] = {}
    for seg in meta.segments:
        t = index._read_parquet(meta.seg_uri(seg, "parquet"), ["clip_id", "source_uri", "embedding"])
        vis = meta.visible(seg, t.column("source_uri"))
        hit = np.asarray(pc.is_in(t.column("clip_id"), value_set=pa.array(sorted(want), pa.string())))
        for i in np.nonzero(hit if vis is None else hit & vis)[0].tolist():
            cid = t.column("clip_id")[i].as_py()
            out.setdefault(cid, np.asarray(t.column("embedding")[i].as_py(), np.float32))
    return out


def nearest(meta: index.IndexMeta, queries: np.ndarray, k: int, nprobe: int = 16) -> list[list[tuple[float, str]]]:
    """For each query vector, the k nearest visible clips as (cosine, clip id), over every
    segment (each segment's ANN index loaded once for all queries)."""
    import faiss

    q = np.ascontiguousarray(queries.astype(np.float32))
    faiss.normalize_L2(q)
    found: list[list[tuple[float, int, int]]] = [[] for _ in range(len(q))]
    for sn, seg in enumerate(meta.segments):
        ix = faiss.deserialize_index(np.frombuffer(storage.read_bytes(meta.seg_uri(seg, "faiss")), np.uint8))
        vis = meta.visible(seg)
        # faiss's stubs lack the keyword constructor its SWIG wrapper accepts
        params: Any = faiss.SearchParametersIVF(nprobe=nprobe) if hasattr(ix, "nprobe") else faiss.SearchParameters()  # type: ignore[call-arg]  # noqa: E501
        allowed = np.nonzero(vis)[0] if vis is not None else None
        if allowed is not None:
            if not len(allowed):
                continue
            params.sel = faiss.IDSelectorBatch(allowed.astype(np.int64))
        kk = min(k, ix.ntotal if allowed is None else len(allowed))
        if kk <= 0:
            continue
        sc, ids = ix.search(q, kk, params=params)
        for qi in range(len(q)):
            found[qi].extend((float(s), sn, int(r)) for s, r in zip(sc[qi], ids[qi]) if r >= 0)
    names: dict[int, list[str]] = {}
    out = []
    for hits in found:
        hits.sort(key=lambda h: (-h[0], h[1], h[2]))
        row = []
        for s, sn, r in hits[:k]:
            if sn not in names:
                names[sn] = index._read_parquet(meta.seg_uri(meta.segments[sn], "parquet"),
                                                ["clip_id"]).column("clip_id").to_pylist()
            row.append((s, names[sn][r]))
        out.append(row)
    return out


def build(catalog: str, *, clips: list[str] | None = None, query: str | None = None, k: int = 10,
          weight: float = 2.0, model_dir: str = "", nprobe: int = 16) -> dict[str, Any]:
    """The re-weighting document for flagged clips (or a text query)."""
    if (clips is None) == (query is None):
        raise core.CatalogError("give flagged clips (--clips FILE) or a text query (--query TEXT), one of them")
    if k < 1 or weight <= 0:
        raise core.CatalogError("--k must be >= 1 and --weight > 0")
    meta = index.read_meta(catalog)
    if query is not None:
        queries = index.text_vector(meta, query, model_dir).reshape(1, -1)
        flagged: list[str] = [query]
    else:
        vecs = _vectors(meta, clips or [])
        missing = [c for c in clips or [] if c not in vecs]
        if not vecs:
            raise core.CatalogError(f"none of the {len(clips or [])} flagged clips is in the catalog at "
                                    f"{storage.display(meta.uri)}")
        flagged = list(vecs)
        queries = np.stack([vecs[c] for c in flagged])
    weights: dict[str, float] = {}
    for row in nearest(meta, queries, k, nprobe):
        for _, cid in row:
            weights[cid] = float(weight)
    doc = {"format": WEIGHTS_FORMAT, "catalog": meta.uri, "created": core.now_iso(), "k": k, "weight": weight,
           "flagged": flagged, "weights": dict(sorted(weights.items()))}
    if query is None and missing:
        doc["missing"] = missing
    return doc
