"""Spherical k-means on a sample of embeddings: backend choice (cuML, faiss, scikit-learn) and training."""

from __future__ import annotations

import math

import numpy as np

from curator.dedup.common import DedupError


def _cuda_usable() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def _cuml_importable() -> bool:
    import importlib.util

    return importlib.util.find_spec("cuml") is not None


def resolve_backend(method: str, device: str) -> tuple[str, str]:
    """(method, device) actually used. cuML needs CUDA and the `gpu` extra; the (slow)
    CUDA probe runs only when cuML could be used or CUDA is asked for."""
    wants_gpu = device == "cuda" or method == "cuml" or (device == "auto" and method == "auto" and _cuml_importable())
    cuda = _cuda_usable() if wants_gpu else False
    if device == "cuda" and not cuda:
        raise DedupError("dedup.device=cuda but no CUDA device is usable here")
    if method == "cuml":
        if not cuda:
            raise DedupError("dedup.method=cuml needs a CUDA device")
        if not _cuml_importable():
            raise DedupError("dedup.method=cuml needs cuML: pip install 'curator[gpu]'")
        return "cuml", "cuda"
    if method == "auto":
        if cuda and _cuml_importable() and device != "cpu":
            return "cuml", "cuda"
        try:
            import faiss  # noqa: F401

            return "faiss", "cpu"
        except ImportError:
            return "sklearn", "cpu"
    return method, "cpu"


def normalize_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    n[n == 0] = 1.0
    return x / n


def train_kmeans(sample: np.ndarray, k: int, *, niter: int = 20, seed: int = 0, method: str = "auto",
                 device: str = "auto") -> np.ndarray:
    """Spherical k-means on unit vectors; returns k unit-norm centroids (float32 [k, d])."""
    x = normalize_rows(sample)
    k = max(1, min(k, len(x)))
    if k == 1:
        return normalize_rows(x.mean(axis=0, keepdims=True))
    method, device = resolve_backend(method, device)
    if method == "cuml":
        from cuml.cluster import KMeans  # type: ignore[import-not-found]

        km = KMeans(n_clusters=k, max_iter=niter, random_state=seed, n_init=1)
        km.fit(x)
        centroids = np.asarray(km.cluster_centers_.get() if hasattr(km.cluster_centers_, "get")
                               else km.cluster_centers_, dtype=np.float32)
    elif method == "faiss":
        import faiss

        km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, spherical=True, verbose=False,
                          max_points_per_centroid=max(256, len(x) // k + 1))
        km.train(x)
        centroids = np.asarray(km.centroids, dtype=np.float32)
    else:
        from sklearn.cluster import MiniBatchKMeans

        km = MiniBatchKMeans(n_clusters=k, max_iter=niter, random_state=seed, n_init=1,
                             batch_size=min(len(x), 4096))
        km.fit(x)
        centroids = km.cluster_centers_.astype(np.float32)
    return normalize_rows(centroids)


def auto_k(n: int, sample: int, k: int | None = None) -> int:
    """k = round(sqrt(n)) (≈10,000 at 100 M clips, as in the reference design), at most
    one centroid per 8 sampled points."""
    if k is None:
        k = int(round(math.sqrt(max(1, n))))
    return max(1, min(k, max(1, sample // 8), n))
