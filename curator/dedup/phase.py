"""The manifest phase: scan the manifest, run exact and semantic dedup, write decisions back."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curator import manifest, storage
from curator.config import DedupConfig
from curator.dedup.common import COLUMNS, REASON, REPORT_NAME, STAGE, DedupError, MapFn, _serial_map, log
from curator.dedup.decisions import Decisions, Nodes, decide, exact_groups
from curator.dedup.semantic import DedupStats, semantic_edges
from curator.dedup.spill import EmbeddingParts, SpillDir, iter_parts
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
    return np.array([k == "clip" and (s == OK or (s == REJECTED and st == STAGE and r == REASON))
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


@dataclass
class RunResult:
    stats: DedupStats
    manifest_uri: str
    report_uri: str


def dedup_run(output_uri: str, cfg: DedupConfig, *, map_fn: MapFn | None = None, use_ray: bool = False,
              batch_rows: int = 8192) -> RunResult:
    """Run dedup over the manifest of a run at `output_uri` and write the decisions back."""
    output_uri = storage.normalize(output_uri)
    man_uri = manifest.manifest_uri(output_uri)
    if not storage.exists(man_uri):
        raise DedupError(f"no manifest at {storage.display(man_uri)}: run `curator run` first")
    stats = DedupStats()
    t_start = time.monotonic()
    spill = SpillDir(cfg.spill_uri)
    try:
        with storage.local_copy(man_uri) as local:
            pf = pq.ParquetFile(local)
            names = set(pf.schema_arrow.names)
            if cfg.quality_column and cfg.quality_column not in names:
                raise DedupError(f"dedup.quality_column {cfg.quality_column!r} is not a manifest column")
            mode = cfg.embeddings
            has_col = "embedding" in names
            if mode == "manifest" and not has_col:
                raise DedupError("dedup.embeddings=manifest but the manifest has no `embedding` column "
                                 "(enable the embed stage, or use dedup.embeddings=auto)")
            nodes, parts, to_embed = _scan(pf, cfg, spill, stats, batch_rows, use_column=has_col and mode != "perceptual")
            if cfg.semantic and mode != "manifest" and (mode == "perceptual" or parts.count == 0) and to_embed:
                _embed_missing(nodes, parts, to_embed, map_fn, stats)
            t0 = time.monotonic()
            exact_e, rep = exact_groups(nodes.content) if cfg.exact else (np.zeros((0, 2), np.int64),
                                                                          np.ones(len(nodes), bool))
            stats.exact_groups = int(len(np.unique(exact_e[:, 1]))) if len(exact_e) else 0
            stats.timings["exact_s"] = round(time.monotonic() - t0, 3)
            sem = None
            if cfg.semantic and parts.count:
                sem = semantic_edges(parts, rep, cfg, stats, map_fn=map_fn, use_ray=use_ray)
            edges = [exact_e] + ([sem.edges] if sem is not None else [])
            bi = [exact_e[:, 0], exact_e[:, 1]] + ([sem.best_idx] if sem is not None else [])
            bs = [np.ones(2 * len(exact_e), np.float32)] + ([sem.best_sim] if sem is not None else [])
            dec = decide(nodes, np.concatenate(edges), np.concatenate(bi), np.concatenate(bs))
            removed = (dec.keeper >= 0) & (dec.keeper != np.arange(len(nodes)))
            stats.removed = int(removed.sum())
            stats.groups = int(len(np.unique(dec.keeper[dec.keeper >= 0])))
            stats.exact_removed = int(len(exact_e))
            t0 = time.monotonic()
            # computed perceptual embeddings go into the manifest when it has none (the index uses them)
            write_embeddings = parts if (stats.embedding_model and not has_col) else None
            _write_back(pf, man_uri, nodes, dec, stats, batch_rows, write_embeddings)
            stats.timings["write_s"] = round(time.monotonic() - t0, 3)
    finally:
        spill.cleanup()
    stats.timings["total_s"] = round(time.monotonic() - t_start, 3)
    report_uri = storage.join(output_uri, REPORT_NAME)
    cfg_doc = cfg.model_dump(mode="json")
    storage.write_bytes(report_uri, json.dumps({"stats": asdict(stats), "config": cfg_doc}, indent=1).encode())
    log.info("dedup: %d candidates, %d groups, %d removed (%d exact), k=%d, %.1f s", stats.candidates,
             stats.groups, stats.removed, stats.exact_removed, stats.k, stats.timings["total_s"])
    return RunResult(stats, man_uri, report_uri)


def _scan(pf: pq.ParquetFile, cfg: DedupConfig, spill: SpillDir, stats: DedupStats, batch_rows: int,
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


def _embed_missing(nodes: Nodes, parts: EmbeddingParts, to_embed: list[tuple[int, str, int]],
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


def output_schema(schema: pa.Schema, with_embedding: bool) -> pa.Schema:
    fields = list(schema)
    names = set(schema.names)
    for name, typ in COLUMNS:
        if name not in names:
            fields.append(pa.field(name, typ))
    if with_embedding:
        for name, typ in (("embedding", pa.list_(pa.float16())), ("embedding_model", pa.string())):
            if name not in names:
                fields.append(pa.field(name, typ))
    return pa.schema(fields)


def _write_back(pf: pq.ParquetFile, man_uri: str, nodes: Nodes, dec: Decisions, stats: DedupStats,
                batch_rows: int, emb_parts: EmbeddingParts | None) -> None:
    """Stream the manifest again with the decision columns filled in; atomic replace."""
    schema = output_schema(pf.schema_arrow, emb_parts is not None)
    node_of_row: dict[int, int] = {}
    # rows -> node: nodes.row is sorted (scan order), so walk it alongside the batches
    rows = nodes.row
    ptr = 0
    part_iter = iter_parts(emb_parts.parts) if emb_parts is not None else None
    cur_idx = np.zeros(0, np.int64)
    cur_emb = np.zeros((0, 0), np.float16)
    cur_pos = 0
    ids = nodes.clip_id
    base = 0
    with storage.open_write(man_uri) as fh:
        writer = pq.ParquetWriter(fh, schema, compression="zstd")
        try:
            for batch in pf.iter_batches(batch_size=batch_rows):
                n = batch.num_rows
                tbl = pa.Table.from_batches([batch])
                end = np.searchsorted(rows, base + n, side="left")
                local = rows[ptr:end] - base
                node_ids = np.arange(ptr, end)
                ptr = end
                status = tbl.column("status").to_pylist()
                stage = tbl.column("stage").to_pylist()
                reason = tbl.column("reason").to_pylist()
                detail = tbl.column("detail").to_pylist()
                group = [None] * n
                dup_of = [None] * n
                simv: list[float | None] = [None] * n
                for r, nd in zip(local.tolist(), node_ids.tolist()):
                    if status[r] == REJECTED and stage[r] == STAGE:  # an earlier dedup's decision
                        status[r], stage[r], reason[r], detail[r] = OK, None, None, None
                    kp = int(dec.keeper[nd])
                    if kp < 0:
                        continue
                    group[r] = ids[kp].as_py()
                    s = float(dec.similarity[nd])
                    simv[r] = None if math.isnan(s) else s
                    if kp != nd:
                        dup_of[r] = group[r]
                        status[r], stage[r], reason[r] = REJECTED, STAGE, REASON
                        detail[r] = (f"duplicate of {group[r]}" + (f" (cosine {s:.3f})" if simv[r] is not None else ""))
                cols = {"status": pa.array(status, pa.string()), "stage": pa.array(stage, pa.string()),
                        "reason": pa.array(reason, pa.string()), "detail": pa.array(detail, pa.string()),
                        "dup_group": pa.array(group, pa.string()), "duplicate_of": pa.array(dup_of, pa.string()),
                        "similarity": pa.array(simv, pa.float32())}
                if part_iter is not None:
                    embs: list[Any] = [None] * n
                    for r, nd in zip(local.tolist(), node_ids.tolist()):
                        while cur_pos >= len(cur_idx) or cur_idx[cur_pos] < nd:
                            if cur_pos < len(cur_idx):
                                cur_pos += 1
                                continue
                            nxt = next(part_iter, None)
                            if nxt is None:
                                break
                            cur_idx, cur_emb = nxt
                            cur_pos = 0
                        if cur_pos < len(cur_idx) and cur_idx[cur_pos] == nd:
                            embs[r] = cur_emb[cur_pos]
                    flat = [None if e is None else e.astype(np.float16) for e in embs]
                    cols["embedding"] = pa.array(flat, pa.list_(pa.float16()))
                    cols["embedding_model"] = pa.array([stats.embedding_model if e is not None else None
                                                        for e in flat], pa.string())
                arrays = []
                for f in schema:
                    if f.name in cols and (f.name not in tbl.column_names or f.name in
                                           ("status", "stage", "reason", "detail", *[c for c, _ in COLUMNS])
                                           or (part_iter is not None and f.name in ("embedding", "embedding_model"))):
                        arrays.append(cols[f.name].cast(f.type))
                    elif f.name in tbl.column_names:
                        arrays.append(tbl.column(f.name).combine_chunks())
                    else:
                        arrays.append(pa.nulls(n, f.type))
                writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
                base += n
        finally:
            writer.close()
    del node_of_row


def run_phase(output_uri: str, config: Any, runner: Any = None) -> RunResult:
    """Dedup as a phase of a run (`curator run`, `curator dedup`): the runner's parallel map
    for the per-cluster work; under Ray the assignment streams through Ray Data, and with a
    cluster address the spill goes under <output>/_work/dedup so every node can read it."""
    cfg: DedupConfig = config.dedup
    use_ray = runner is not None and type(runner).__name__ == "RayRunner"
    if use_ray and cfg.spill_uri is None and config.run.address:
        cfg = cfg.model_copy(update={"spill_uri": storage.join(output_uri, "_work", "dedup")})
    if use_ray:
        from curator.runners.ray import init_ray

        init_ray(config.run)
    return dedup_run(output_uri, cfg, map_fn=runner.map if runner is not None else None, use_ray=use_ray)


def format_stats(stats: DedupStats) -> str:
    lines = [
        f"clips considered: {stats.candidates} ({stats.with_embedding} with an embedding"
        + (f", {stats.embedding_model}" if stats.embedding_model else "") + ")",
        f"exact duplicates: {stats.exact_removed} in {stats.exact_groups} groups",
        f"semantic:         {stats.semantic_nodes} clips, k={stats.k} ({stats.method}/{stats.device}), "
        f"threshold {stats.threshold}, {stats.visits} border visits"
        + (f", {stats.capped} clips capped at max_probes" if stats.capped else ""),
        f"groups:           {stats.groups}; removed {stats.removed}",
        f"time:             {stats.timings.get('total_s', 0):.1f} s",
    ]
    return "\n".join(lines)
