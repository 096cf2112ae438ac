"""Dedup: find exact and near-duplicate clips in a run's manifest and mark all but one.

A global phase over the consolidated manifest (docs/dedup.md). It never touches clips:
it writes its decisions back into the manifest as columns

    dup_group     clip id of the kept clip of the group (on every member, kept one included)
    duplicate_of  clip id of the kept clip (on removed clips only)
    similarity    highest cosine similarity between this clip and another member of its group

and marks removed clips ``status=rejected, stage=dedup, reason=duplicate``.

The steps, each with bounded memory:

1. Scan: stream the manifest once; per candidate clip keep a few scalars (resolution,
   length, quality, content hash, clip id: ~60 bytes); write the embeddings to spill
   parts; keep a reservoir sample of ``sample_size`` embeddings for k-means.
2. Exact: clips with the same ``clip_sha256`` form a group; only one of each takes part
   in the semantic step (the others have the same pixels).
3. k-means (spherical) on the sample: cuML on GPU, faiss or scikit-learn on CPU.
4. Assignment, streamed batch by batch (Ray Data under Ray): each clip is *owned* by its
   nearest centroid and also *visits* every other centroid whose Voronoi border lies
   within the similarity threshold of it (a cap-versus-half-space test, see
   :class:`Assigner`), at most ``max_probes`` in all. Records go to per-cluster spill files.
5. Per cluster (in parallel with the runner's map): cosine similarity in blocks of
   ``block_size`` rows — owners against owners, visitors against owners — pairs at or
   above the threshold are merged with a union-find that is compacted to a spanning
   forest, so only one block and one cluster's forest are in memory.
6. Groups: the connected components of all forests and exact edges; the kept clip of a
   group has the highest resolution, then the longest duration, then the best quality,
   then the smallest clip id.

Modules: ``common`` (columns, thresholds, errors), ``kmeans`` (backend and training),
``assign`` (cells with multi-probing), ``spill`` (embedding parts), ``pairs`` (one
cluster's pairs and forest), ``semantic`` (the semantic phase), ``decisions`` (groups
and keepers), ``scan`` (the manifest scan), ``phase`` (the manifest phase: ``dedup_run``,
``run_phase``, ``format_stats``).
"""

from __future__ import annotations

from curator.dedup.assign import Assigner
from curator.dedup.common import (
    BORDER_SLACK,
    COLUMNS,
    DEFAULT_THRESHOLD,
    MODEL_THRESHOLDS,
    REASON,
    REPORT_NAME,
    STAGE,
    DedupError,
    MapFn,
    threshold_for,
)
from curator.dedup.decisions import Decisions, Nodes, decide, exact_groups, keep_order
from curator.dedup.kmeans import auto_k, normalize_rows, resolve_backend, train_kmeans
from curator.dedup.pairs import PANEL_ROWS, ClusterResult, cluster_pairs
from curator.dedup.phase import RunResult, dedup_run, format_stats, output_schema, run_phase
from curator.dedup.reference import REASON_INDEX, ReferenceMatches, reference_matches
from curator.dedup.semantic import DedupStats, SemanticResult, semantic_edges
from curator.dedup.spill import EmbeddingParts, SpillDir, iter_parts, load_part, record_dtype

__all__ = [
    "BORDER_SLACK", "COLUMNS", "DEFAULT_THRESHOLD", "MODEL_THRESHOLDS", "PANEL_ROWS", "REASON", "REASON_INDEX", "ReferenceMatches", "REPORT_NAME",
    "STAGE", "Assigner", "ClusterResult", "DedupError", "DedupStats", "Decisions", "EmbeddingParts", "MapFn",
    "Nodes", "RunResult", "SemanticResult", "SpillDir", "auto_k", "cluster_pairs", "decide", "dedup_run",
    "exact_groups", "format_stats", "iter_parts", "keep_order", "load_part", "normalize_rows", "output_schema",
    "record_dtype", "reference_matches", "resolve_backend", "run_phase", "semantic_edges", "threshold_for", "train_kmeans",
]
