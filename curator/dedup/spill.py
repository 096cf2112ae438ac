"""Spill files: embedding parts written during the scan, read back part by part."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from typing import Iterable, Iterator

import numpy as np

from curator import storage
from curator.dedup.common import DedupError


def record_dtype(dim: int) -> np.dtype:
    """A spill record: global node index (owners >= 0, visitors -(idx + 1)) + float16 vector."""
    return np.dtype([("idx", "<i8"), ("emb", "<f2", (dim,))])


class SpillDir:
    """Scratch space: embedding parts and per-cluster files, under a storage URI.

    Cluster files are built by appending on local disk (the driver is their only writer)
    and uploaded when `root` is not local, so workers on other nodes can read them."""

    def __init__(self, root_uri: str | None):
        self.local = tempfile.mkdtemp(prefix="curator-dedup-")
        self.root = storage.normalize(root_uri) if root_uri else storage.normalize(self.local)
        self.remote = storage.local_path(self.root) is None
        os.makedirs(os.path.join(self.local, "clusters"), exist_ok=True)

    def uri(self, *parts: str) -> str:
        return storage.join(self.root, *parts)

    def cluster_local(self, cid: int) -> str:
        return os.path.join(self.local, "clusters", f"c-{cid:07d}.bin")

    def publish_clusters(self, cids: Iterable[int]) -> list[str]:
        out = []
        for cid in cids:
            local = self.cluster_local(cid)
            if self.remote:
                uri = self.uri("clusters", f"c-{cid:07d}.bin")
                storage.upload(local, uri)
                os.unlink(local)
                out.append(uri)
            else:
                out.append(storage.normalize(local))
        return out

    def cleanup(self) -> None:
        if self.remote:
            for info in storage.list_objects(self.root.rstrip("/") + "/"):
                with contextlib.suppress(storage.StorageError):
                    storage.delete(info.uri)
        shutil.rmtree(self.local, ignore_errors=True)


class EmbeddingParts:
    """Embeddings of candidate nodes, written in node order as .npy parts, plus a
    uniform reservoir sample for k-means."""

    def __init__(self, spill: SpillDir, dim: int, part_rows: int, sample_size: int, seed: int):
        self.spill = spill
        self.dim = dim
        self.part_rows = part_rows
        self.parts: list[tuple[str, int]] = []
        self._idx: list[np.ndarray] = []
        self._emb: list[np.ndarray] = []
        self._buffered = 0
        self.count = 0
        self.sample_cap = sample_size
        self.sample = np.zeros((0, dim), np.float16)
        self.sample_n = 0
        self._rng = np.random.default_rng(seed)

    def add(self, idx: np.ndarray, emb: np.ndarray) -> None:
        if len(idx) == 0:
            return
        emb = emb.astype(np.float16, copy=False)
        if emb.shape[1] != self.dim:
            raise DedupError(f"embeddings of different sizes in one run ({self.dim} and {emb.shape[1]})")
        self._reservoir(emb)
        self._idx.append(np.asarray(idx, np.int64))
        self._emb.append(emb)
        self._buffered += len(idx)
        self.count += len(idx)
        if self._buffered >= self.part_rows:
            self.flush()

    def _reservoir(self, emb: np.ndarray) -> None:
        """Algorithm R, vectorised: the first `cap` rows fill the sample, row p >= cap
        replaces a random slot with probability cap / (p + 1)."""
        cap = self.sample_cap
        n = len(emb)
        take = min(n, max(0, cap - self.sample_n))
        if take:
            self.sample = np.concatenate([self.sample[:self.sample_n], emb[:take]])
        seen = self.count + take
        rest = emb[take:]
        if len(rest):
            pos = seen + np.arange(len(rest))
            j = self._rng.integers(0, pos + 1)
            hit = j < cap
            self.sample[j[hit]] = rest[hit]
        self.sample_n = min(cap, self.sample_n + n)

    def flush(self) -> None:
        if not self._buffered:
            return
        idx = np.concatenate(self._idx)
        emb = np.concatenate(self._emb)
        buf = io.BytesIO()
        np.savez(buf, idx=idx, emb=emb)
        uri = self.spill.uri("parts", f"part-{len(self.parts):06d}.npz")
        storage.write_bytes(uri, buf.getvalue())
        self.parts.append((uri, len(idx)))
        self._idx, self._emb, self._buffered = [], [], 0

    def training_sample(self) -> np.ndarray:
        return self.sample[:self.sample_n].astype(np.float32)


def load_part(uri: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(io.BytesIO(storage.read_bytes(uri))) as z:
        return z["idx"], z["emb"]


def iter_parts(parts: list[tuple[str, int]]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for uri, _ in parts:
        yield load_part(uri)
