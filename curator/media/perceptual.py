"""A built-in, weight-free perceptual clip embedding for near-duplicate detection.

For 8 uniformly spaced frames: grey, 64x64 (area), zero mean and unit variance (so
brightness and contrast shifts cancel), then the 8x8 lowest-frequency DCT coefficients
with the DC term zeroed (robust to re-encoding, rescaling and mild crops). The 8 blocks
are concatenated in time order and L2-normalised: 512 dims, cosine similarity ≈ 1 for
near-duplicates and ≈ 0 for unrelated clips. No model, no weights, CPU only.
"""

from __future__ import annotations

import numpy as np

FRAMES = 8
SIDE = 64
BAND = 8
DIM = FRAMES * BAND * BAND  # 512
NAME = "perceptual-dct-v1"


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m.astype(np.float32)


_D = _dct_matrix(SIDE)[:BAND]  # only the low band is ever needed


def frame_descriptor(rgb: np.ndarray) -> np.ndarray:
    """uint8 [SIDE, SIDE, 3] -> float32 [BAND*BAND] (DC zeroed)."""
    g = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    g -= g.mean()
    std = g.std()
    if std > 1e-3:
        g /= std
    block = _D @ g @ _D.T
    block[0, 0] = 0.0
    return block.reshape(-1)


def embed_frames(frames: np.ndarray) -> np.ndarray:
    """uint8 [N, SIDE, SIDE, 3] (any N >= 1; resampled to 8 uniformly) -> float32 [512], unit norm."""
    if frames.ndim != 4 or frames.shape[0] == 0:
        raise ValueError(f"expected frames [N, H, W, 3], got {frames.shape}")
    if frames.shape[0] != FRAMES:
        idx = np.linspace(0, frames.shape[0] - 1, FRAMES).round().astype(int)
        frames = frames[idx]
    vec = np.concatenate([frame_descriptor(f) for f in frames])
    norm = float(np.linalg.norm(vec))
    return (vec / norm if norm > 0 else vec).astype(np.float32)


def embed_clip(source, num_frames: int | None = None) -> np.ndarray:
    """Decode 8 uniformly spaced frames of a clip (path or mp4 bytes) and embed them."""
    from curator.media.decode import sample_frames

    frames, _ = sample_frames(source, FRAMES, (SIDE, SIDE), num_frames=num_frames)
    return embed_frames(frames)
