"""The manifest scan: candidate clips, their sort keys and content hashes, embeddings to spill parts
(embedding clips that have none when asked to)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curator import storage
from curator.config import DedupConfig
from curator.dedup.common import REASON, STAGE, DedupError, MapFn, _serial_map, log
from curator.dedup.decisions import Nodes
from curator.dedup.reference import REASON_INDEX
from curator.dedup.semantic import DedupStats
from curator.dedup.spill import EmbeddingParts, SpillDir
from curator.records import OK, REJECTED


def _content_key(sha: list[str | None]) -> np.ndarray:
    out = np.zeros(len(sha), np.uint64)
    for i, s in enumerate(sha):
        if s:
            try:
                out[i] = np.uint64(int(s[:16], 16) | 1)
            except ValueError:
                out[i] = np.uint64(int.from_bytes(s.encode()[:8].ljust(8, b"\0"), "little") | 1)
    return out


def _list_to_matrix(col: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A list<float> column -> (valid mask, [n_valid, d] float array)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    valid = np.asarray(col.is_valid())
    if not valid.any():
        return valid, np.zeros((0, 0), np.float32)
    sub = col.filter(pa.array(valid))
    flat = sub.flatten() if not pa.types.is_fixed_size_list(sub.type) else sub.values
    vals = flat.to_numpy(zero_copy_only=False)
    d = len(vals) // len(sub)
    if d * len(sub) != len(vals):
        raise DedupError("embeddings of different sizes in one manifest")
    return valid, vals.reshape(len(sub), d)


def _is_candidate(kind: list, status: list, stage: list, reason: list) -> np.ndarray:
    return np.array([k == "clip" and (s == OK or (s == REJECTED and st == STAGE and r in (REASON, REASON_INDEX)))
                     for k, s, st, r in zip(kind, status, stage, reason)], bool)


def _embed_chunk(item: dict[str, Any]) -> np.ndarray:
    """Perceptual embeddings of staged clips (runs on a worker)."""
    from curator.media.perceptual import DIM, embed_clip

    storage.configure(item.get("storage"))
    out = np.zeros((len(item["uris"]), DIM), np.float16)
    for i, (uri, frames) in enumerate(zip(item["uris"], item["frames"])):
        try:
            out[i] = embed_clip(storage.read_bytes(uri), num_frames=frames or None)
        except Exception as exc:  # an unreadable clip: no embedding (exact dedup only)
            log.warning("dedup: cannot embed %s: %s", storage.display(uri), exc)
            out[i] = np.nan
    return out


def scan_manifest(pf: pq.ParquetFile, cfg: DedupConfig, spill: SpillDir, stats: DedupStats, batch_rows: int,
          use_column: bool) -> tuple[Nodes, EmbeddingParts, list[tuple[int, str, int]]]:
    names = set(pf.schema_arrow.names)
    cols = ["kind", "status", "stage", "reason", "clip_id", "clip_sha256", "clip_width", "clip_height",
            "width", "height", "clip_duration_s", "clip_frames", "clip_uri"]
    cols = [c for c in cols if c in names]
    if use_column:
        cols += ["embedding"] + (["embedding_model"] if "embedding_model" in names else [])
    if cfg.quality_column:
        cols.append(cfg.quality_column)
    rows, ids, pix, dur, qual, content = [], [], [], [], [], []
    to_embed: list[tuple[int, str, int]] = []
    parts: EmbeddingParts | None = None
    models: set[str] = set()
    base = 0
    node_base = 0
    for batch in pf.iter_batches(batch_size=batch_rows, columns=cols):
        d = {c: batch.column(c) for c in batch.schema.names}
        n = batch.num_rows

        def col(name: str) -> list:
            return d[name].to_pylist() if name in d else [None] * n

        cand = _is_candidate(col("kind"), col("status"), col("stage"), col("reason"))
        sel = np.nonzero(cand)[0]
        if len(sel):
            take = pa.array(sel)
            rows.append(base + sel)
            ids.append(d["clip_id"].take(take))
            w = np.array([x or y or 0 for x, y in zip(col("clip_width"), col("width"))], np.int64)[sel]
            h = np.array([x or y or 0 for x, y in zip(col("clip_height"), col("height"))], np.int64)[sel]
            pix.append(w * h)
            dur.append(np.array([x or 0.0 for x in col("clip_duration_s")], np.float64)[sel])
            if cfg.quality_column:
                qual.append(np.array([np.nan if x is None else float(x) for x in col(cfg.quality_column)],
                                     np.float64)[sel])
            else:
                qual.append(np.zeros(len(sel)))
            sha = col("clip_sha256")
            content.append(_content_key([sha[i] for i in sel]))
            if use_column:
                valid, mat = _list_to_matrix(d["embedding"].take(take))
                if len(mat):
                    if parts is None:
                        parts = EmbeddingParts(spill, mat.shape[1], cfg.batch_rows, cfg.sample_size, cfg.seed)
                    good = np.isfinite(mat).all(axis=1)
                    vidx = np.nonzero(valid)[0][good]
                    parts.add(node_base + vidx, mat[good])
                    if "embedding_model" in d:
                        mcol = d["embedding_model"].take(take).to_pylist()
                        models.update(mcol[i] for i in vidx.tolist() if mcol[i])
            else:
                uris, frames = col("clip_uri"), col("clip_frames")
                for j, i in enumerate(sel.tolist()):
                    if uris[i]:
                        to_embed.append((node_base + j, uris[i], frames[i] or 0))
            node_base += len(sel)
        base += n
    if len(models) > 1:
        raise DedupError(f"the manifest mixes embeddings of several models ({', '.join(sorted(models))}); "
                         "dedup compares one model's embeddings")
    nodes = Nodes(
        row=np.concatenate(rows) if rows else np.zeros(0, np.int64),
        clip_id=pa.concat_arrays([a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a for a in ids])
        if ids else pa.array([], pa.string()),
        pixels=np.concatenate(pix) if pix else np.zeros(0, np.int64),
        duration=np.concatenate(dur) if dur else np.zeros(0),
        quality=np.concatenate(qual) if qual else np.zeros(0),
        content=np.concatenate(content) if content else np.zeros(0, np.uint64),
    )
    if parts is None:
        from curator.media.perceptual import DIM

        parts = EmbeddingParts(spill, DIM, cfg.batch_rows, cfg.sample_size, cfg.seed)
    parts.flush()
    stats.candidates = len(nodes)
    stats.with_embedding = parts.count
    stats.embedding_model = sorted(models)[0] if models else None
    return nodes, parts, to_embed


def embed_missing(nodes: Nodes, parts: EmbeddingParts, to_embed: list[tuple[int, str, int]],
                   map_fn: MapFn | None, stats: DedupStats) -> None:
    """The perceptual embedding of every staged candidate clip (no embed stage in the run)."""
    from curator.media.perceptual import NAME

    t0 = time.monotonic()
    chunk = 32
    cfg_storage = storage.current_config()
    items = [{"nodes": [n for n, _, _ in to_embed[i:i + chunk]], "uris": [u for _, u, _ in to_embed[i:i + chunk]],
              "frames": [f for _, _, f in to_embed[i:i + chunk]], "storage": cfg_storage}
             for i in range(0, len(to_embed), chunk)]
    for item, emb in zip(items, (map_fn or _serial_map)(_embed_chunk, items)):
        good = np.isfinite(emb.astype(np.float32)).all(axis=1)
        parts.add(np.asarray(item["nodes"], np.int64)[good], emb[good])
    parts.flush()
    stats.with_embedding = parts.count
    stats.embedding_model = NAME
    stats.timings["embed_s"] = round(time.monotonic() - t0, 3)
