"""Dedup against an existing clip index (``dedup.reference_index``): a candidate clip whose
embedding lies within the semantic threshold of a clip already in the index is a near-copy of it.

The embeddings are the scan's (the manifest's column, or the perceptual embedding computed
for the run), looked up part by part with :func:`curator.index.nearest` (each segment's ANN
index, top 1). The index must hold the same embedding model. Segments the run itself added are
passed over, so a run whose index is the reference is not compared with its own clips. The
decisions go into the manifest with the run's own (:func:`curator.dedup.phase._write_back`):
``status=rejected, stage=dedup, reason=duplicate_of_index``, ``duplicate_of`` the index's clip id.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curator import storage
from curator.dedup.common import DedupError
from curator.dedup.spill import EmbeddingParts, iter_parts

REASON_INDEX = "duplicate_of_index"


@dataclass
class ReferenceMatches:
    """Per node: the index clip it nearly copies (None: none) and the cosine similarity."""

    clip_id: list[str | None]
    similarity: np.ndarray  # float32, NaN where no match
    source_run: list[str | None]

    def matched(self) -> np.ndarray:
        return np.array([c is not None for c in self.clip_id], bool)


def reference_matches(parts: EmbeddingParts, n_nodes: int, index_uri: str, model: str | None,
                      threshold: float, run_uri: str, nprobe: int = 16) -> ReferenceMatches:
    from curator import index

    meta = index.read_meta(index_uri)
    if meta.model and model and meta.model != model:
        raise DedupError(f"dedup.reference_index {storage.display(meta.uri)} holds {meta.model} embeddings, "
                         f"this run {model}: they cannot be compared (use the same embed model)")
    ids: list[str | None] = [None] * n_nodes
    runs: list[str | None] = [None] * n_nodes
    sim = np.full(n_nodes, np.nan, np.float32)
    for idx, emb in iter_parts(parts.parts):
        own = idx >= 0
        idx, emb = idx[own], emb[own]
        if not len(idx):
            continue
        s, found, src = index.nearest(meta.uri, emb.astype(np.float32), exclude_runs=(run_uri,), nprobe=nprobe)
        for j, node in enumerate(idx.tolist()):
            if found[j] is not None and s[j] >= threshold:
                ids[node], runs[node], sim[node] = found[j], src[j], s[j]
    return ReferenceMatches(ids, sim, runs)
