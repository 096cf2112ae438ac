"""Frames that carry a 16-bit number as a 4x4 grid of black / white cells.

The code survives H.264, downscaling to 16x16 and JPEG, so a test can tell which frames
of which clip reached a model: :func:`coded_video` writes a clip whose frame i carries
``codes[i]``; :func:`read_code` reads the number back from a decoded RGB frame.
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np

GRID = 4
BITS = GRID * GRID


def code_frame(value: int, width: int, height: int) -> np.ndarray:
    """uint8 [height, width, 3]: cell (r, c) is white when bit (15 - (r*4 + c)) of value is set."""
    if not 0 <= value < 2**BITS:
        raise ValueError(f"code {value} does not fit in {BITS} bits")
    img = np.zeros((height, width, 3), np.uint8)
    for k in range(BITS):
        if value >> (BITS - 1 - k) & 1:
            r, c = divmod(k, GRID)
            img[r * height // GRID:(r + 1) * height // GRID, c * width // GRID:(c + 1) * width // GRID] = 255
    return img


def read_code(frame: np.ndarray) -> int:
    """The number a (decoded, possibly rescaled and recompressed) coded frame carries."""
    g = frame.astype(np.float32).mean(axis=2) if frame.ndim == 3 else frame.astype(np.float32)
    h, w = g.shape
    value = 0
    for k in range(BITS):
        r, c = divmod(k, GRID)
        y0, y1 = r * h // GRID, (r + 1) * h // GRID
        x0, x1 = c * w // GRID, (c + 1) * w // GRID
        qy, qx = max(1, (y1 - y0) // 4), max(1, (x1 - x0) // 4)
        cell = g[y0 + qy:y1 - qy, x0 + qx:x1 - qx]
        value = value << 1 | int(cell.mean() > 127.5)
    return value


def coded_video(codes: Sequence[int], width: int = 128, height: int = 96, fps: int = 25, crf: int = 18) -> bytes:
    """An H.264 mp4 (bytes) whose frame i carries codes[i]."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        for v in codes:
            frame = av.VideoFrame.from_ndarray(code_frame(int(v), width, height), format="rgb24")
            for pkt in stream.encode(frame):
                out.mux(pkt)
        for pkt in stream.encode():
            out.mux(pkt)
    return buf.getvalue()


def clip_row(clip_id: str, data: bytes, frames: int, width: int, height: int, **extra: object) -> dict:
    """A clip row as the transcode stage hands it on (encoded bytes in the transient `mp4`)."""
    row = {"kind": "clip", "video_id": clip_id.rsplit("-", 1)[0], "clip_id": clip_id, "status": "ok",
           "clip_frames": frames, "clip_width": width, "clip_height": height, "mp4": data}
    row.update(extra)
    return row
