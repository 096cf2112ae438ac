"""GPU twin of :mod:`curator.media.encode`: PyNvVideoCodec NVDEC decode + NVENC encode.

Imported lazily: `PyNvVideoCodec` installs without a GPU but fails to import without the
NVIDIA encode library, so every entry point goes through :func:`unavailable_reason`.
"""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=1)
def unavailable_reason() -> str | None:
    """None when NVDEC + NVENC are usable here, else one line saying why not."""
    try:
        import torch

        if not torch.cuda.is_available():
            return "no CUDA device"
    except Exception as exc:  # pragma: no cover - torch is a hard dependency
        return f"torch cannot query CUDA: {exc}"
    try:
        import PyNvVideoCodec  # noqa: F401
    except ImportError:
        return "PyNvVideoCodec is not installed (pip install 'curator[gpu]')"
    except Exception as exc:  # the wheel imports only where libnvidia-encode exists
        return f"PyNvVideoCodec cannot load: {exc}"
    return None
