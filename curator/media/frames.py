"""Frames for the filter and model stages, sampled one way, and the even sizes codecs need.

Every stage that looks at a clip's pixels (motion, quality, aesthetic, DOVER, text overlay,
embed, caption) takes its frames through :func:`sample_clip_frames`: the clip's encoded
bytes (before staging) or its staged file, decoded once at the size the model needs,
``n`` uniformly spaced frames or the given indices.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import numpy as np

from curator.records import Row


def even(x: float, *, minimum: int = 2, how: Literal["nearest", "down", "up"] = "nearest") -> int:
    """``x`` as an even integer (yuv420p and the encoders need even sizes), at least ``minimum``:
    the nearest even number (halves round to even, as ``round`` does), or rounded down or up."""
    if how == "nearest":
        n = int(round(x / 2)) * 2
    elif how == "down":
        n = math.floor(x / 2) * 2
    else:
        n = math.ceil(x / 2) * 2
    return max(minimum, n)


def sample_clip_frames(row: Row, n: int, size: tuple[int, int] | None = None, fmt: str = "rgb24", *,
                       indices: Sequence[int] | None = None, require: bool = True) -> tuple[np.ndarray, list[int]]:
    """A clip's frames as uint8 ``[n, H, W, C]`` at ``size`` = (width, height) (None: as coded)
    in ``fmt`` (``rgb24``, ``gray``), and the frame indices they hold. ``n`` uniformly spaced
    frames unless ``indices`` are given; the manifest's ``clip_frames`` spares a counting pass.
    Raises ValueError when no frame decodes, unless ``require`` is false."""
    from curator.media.decode import sample_frames  # PyAV: imported where frames are decoded
    from curator.media.source import clip_source_of

    frames, used = sample_frames(clip_source_of(row), n, size, num_frames=row.get("clip_frames") or None, fmt=fmt,
                                 indices=indices)
    if require and not len(frames):
        raise ValueError("no decodable frames")
    return frames, used
