"""Decisions: exact groups, the keep order, and which clip of each group is kept."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa


@dataclass
class Nodes:
    """One entry per candidate clip (active clip rows of the manifest)."""

    row: np.ndarray  # manifest row number
    clip_id: pa.Array  # strings
    pixels: np.ndarray
    duration: np.ndarray
    quality: np.ndarray
    content: np.ndarray  # uint64 prefix of clip_sha256 (0 = none)

    def __len__(self) -> int:
        return len(self.row)


def exact_groups(content: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges (node -> first node with the same content hash) and a mask of the nodes
    that represent their content (first of each hash, and nodes without a hash)."""
    n = len(content)
    rep = np.ones(n, bool)
    has = np.nonzero(content != 0)[0]
    if not len(has):
        return np.zeros((0, 2), np.int64), rep
    _, first, inv = np.unique(content[has], return_index=True, return_inverse=True)
    target = has[first[inv]]
    dup = target != has
    rep[has[dup]] = False
    return np.stack([has[dup], target[dup]], axis=1).astype(np.int64), rep


def keep_order(nodes: Nodes) -> np.ndarray:
    """Node indices from most to least preferred: resolution, length, quality desc; clip id asc."""
    import pyarrow.compute as pc

    id_rank = np.empty(len(nodes), np.int64)
    id_rank[np.asarray(pc.sort_indices(nodes.clip_id))] = np.arange(len(nodes))
    q = np.nan_to_num(nodes.quality, nan=-np.inf)
    return np.lexsort((id_rank, -q, -np.nan_to_num(nodes.duration), -nodes.pixels))


@dataclass
class Decisions:
    keeper: np.ndarray  # per node: node index of its group's kept clip (-1 = no group)
    similarity: np.ndarray  # float32, NaN where no group


def decide(nodes: Nodes, edges: np.ndarray, best_idx: np.ndarray, best_sim: np.ndarray) -> Decisions:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(nodes)
    keeper = np.full(n, -1, np.int64)
    sim = np.full(n, np.nan, np.float32)
    if n == 0 or not len(edges):
        return Decisions(keeper, sim)
    g = coo_matrix((np.ones(len(edges), np.int8), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, lab = connected_components(g, directed=False)
    size = np.bincount(lab)
    order = keep_order(nodes)
    labs, first = np.unique(lab[order], return_index=True)
    best_of_label = np.empty(lab.max() + 1, np.int64)
    best_of_label[labs] = order[first]
    grouped = size[lab] > 1
    keeper[grouped] = best_of_label[lab[grouped]]
    best = np.zeros(n, np.float32)
    np.maximum.at(best, best_idx, best_sim.astype(np.float32))
    sim[grouped] = np.minimum(best[grouped], 1.0)  # float16 rounding can give 1.00002
    return Decisions(keeper, sim)
