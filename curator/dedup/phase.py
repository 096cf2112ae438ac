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

from curator import storage
from curator.config import DedupConfig
from curator.dedup.common import COLUMNS, REASON, STAGE, DedupError, MapFn, log, threshold_for
from curator.dedup.decisions import Decisions, Nodes, decide, exact_groups
from curator.dedup.reference import REASON_INDEX, ReferenceMatches, reference_matches
from curator.dedup.scan import embed_missing, scan_manifest
from curator.dedup.semantic import DedupStats, semantic_edges
from curator.dedup.spill import EmbeddingParts, SpillDir, iter_parts
from curator.records import OK, REJECTED
from curator.rundir import RunDir


@dataclass
class RunResult:
    stats: DedupStats
    manifest_uri: str
    report_uri: str


def dedup_run(output_uri: str, cfg: DedupConfig, *, map_fn: MapFn | None = None, use_ray: bool = False,
              batch_rows: int = 8192) -> RunResult:
    """Run dedup over the manifest of a run at `output_uri` and write the decisions back."""
    rundir = RunDir.of(output_uri)
    output_uri, man_uri = rundir.uri, rundir.manifest
    if not rundir.has_manifest():
        raise DedupError(f"no manifest at {storage.display(man_uri)}: run `curator run` first")
    stats = DedupStats()
    t_start = time.monotonic()
    spill = SpillDir(cfg.spill_uri)
    try:
        with rundir.open_manifest("dedup") as mf:
            pf = mf.parquet
            names = set(pf.schema_arrow.names)
            if cfg.quality_column and cfg.quality_column not in names:
                raise DedupError(f"dedup.quality_column {cfg.quality_column!r} is not a manifest column")
            mode = cfg.embeddings
            has_col = "embedding" in names
            if mode == "manifest" and not has_col:
                raise DedupError("dedup.embeddings=manifest but the manifest has no `embedding` column "
                                 "(enable the embed stage, or use dedup.embeddings=auto)")
            nodes, parts, to_embed = scan_manifest(pf, cfg, spill, stats, batch_rows, use_column=has_col and mode != "perceptual")
            ref_uri = cfg.reference_index
            if (cfg.semantic or ref_uri) and mode != "manifest" and (mode == "perceptual" or parts.count == 0) \
                    and to_embed:
                embed_missing(nodes, parts, to_embed, map_fn, stats)
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
            ref = None
            if ref_uri:
                t0 = time.monotonic()
                ref = reference_matches(parts, len(nodes), ref_uri, stats.embedding_model,
                                        threshold_for(cfg, stats.embedding_model), output_uri)
                hit = ref.matched()
                stats.reference_index = storage.normalize(ref_uri)
                stats.reference_removed = int(hit.sum())
                stats.removed = int((removed | hit).sum())
                stats.timings["reference_s"] = round(time.monotonic() - t0, 3)
            t0 = time.monotonic()
            # computed perceptual embeddings go into the manifest when it has none (the index uses them)
            write_embeddings = parts if (stats.embedding_model and not has_col) else None
            _write_back(pf, man_uri, nodes, dec, stats, batch_rows, write_embeddings, ref)
            stats.timings["write_s"] = round(time.monotonic() - t0, 3)
    finally:
        spill.cleanup()
    stats.timings["total_s"] = round(time.monotonic() - t_start, 3)
    report_uri = rundir.dedup_report
    cfg_doc = cfg.model_dump(mode="json")
    storage.write_bytes(report_uri, json.dumps({"stats": asdict(stats), "config": cfg_doc}, indent=1).encode())
    log.info("dedup: %d candidates, %d groups, %d removed (%d exact), k=%d, %.1f s", stats.candidates,
             stats.groups, stats.removed, stats.exact_removed, stats.k, stats.timings["total_s"])
    return RunResult(stats, man_uri, report_uri)


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
                batch_rows: int, emb_parts: EmbeddingParts | None, ref: ReferenceMatches | None = None) -> None:
    """Stream the manifest again with the decision columns filled in; atomic replace. A clip that
    nearly copies a clip of the reference index is marked so (that decision first: it is removed
    whatever its group in this run)."""
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
                    if ref is not None and ref.clip_id[nd] is not None:
                        s = float(ref.similarity[nd])
                        group[r] = dup_of[r] = ref.clip_id[nd]
                        simv[r] = s
                        status[r], stage[r], reason[r] = REJECTED, STAGE, REASON_INDEX
                        detail[r] = (f"near-copy of {ref.clip_id[nd]} in the index (cosine {s:.3f}, from "
                                     f"{storage.display(ref.source_run[nd] or '?')})")
                        continue
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
    if not cfg.enabled and cfg.reference_index:  # only the comparison with the reference index
        cfg = cfg.model_copy(update={"exact": False, "semantic": False})
    use_ray = runner is not None and runner.distributed
    if use_ray and cfg.spill_uri is None and config.run.address:
        cfg = cfg.model_copy(update={"spill_uri": RunDir.of(output_uri).work("dedup")})
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
        *([f"reference index:  {storage.display(stats.reference_index)}: {stats.reference_removed} near-copies "
           "removed"] if stats.reference_index else []),
        f"time:             {stats.timings.get('total_s', 0):.1f} s",
    ]
    return "\n".join(lines)
