"""Clips with scene text, overlays, tickers and faces, with exact ground truth.

Each clip is a camera moving over a generated *world*: a textured image (smoothed colour
noise, wall-like blocks) larger than the frame, with things placed in it — a sign whose text
is part of the scene (it moves with everything else when the camera pans), or a real face
(scikit-image's ``astronaut``, a NASA public-domain photograph that ships inside the
scikit-image wheel). Screen-fixed things are then drawn on each frame after the camera's
crop: a burned-in caption (same place on every frame) or a broadcast ticker (text scrolling
right to left in a fixed band at the bottom). Text is rendered with Pillow in the OFL font of
``tests/data/fonts``; clips are encoded with the pipeline's own libx264 writer
(:class:`curator.media.encode.X264Writer`), as transcode would.

``make_text_clip(path, ...)`` writes one clip and returns its :class:`TextTruth`:
where the sign was on every frame (world and screen coordinates), the caption's box, the
ticker band, and the face box per frame.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from curator.testing.synth_filters import find_font

W, H, FPS = 320, 180, 25


@dataclass
class TextTruth:
    path: str
    frames: int
    width: int
    height: int
    sign_text: str | None = None
    caption_text: str | None = None
    ticker_text: str | None = None
    caption_box: tuple[int, int, int, int] | None = None  # screen pixels, every frame
    ticker_band: tuple[int, int] | None = None  # rows [y0, y1) of the ticker band
    sign_boxes: list[tuple[int, int, int, int]] = field(default_factory=list)  # per frame, screen pixels
    face_boxes: list[tuple[int, int, int, int]] = field(default_factory=list)  # per frame, screen pixels


def _font(size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.truetype(find_font(), size)


def world_texture(width: int, height: int, seed: int = 0) -> np.ndarray:
    """uint8 RGB: smooth colour noise at two scales plus wall-like blocks (trackable by
    optical flow and template matching everywhere, and read as text nowhere)."""
    import cv2

    rng = np.random.default_rng(seed)
    coarse = cv2.resize(rng.random((max(2, height // 24), max(2, width // 24), 3)).astype(np.float32),
                        (width, height), interpolation=cv2.INTER_CUBIC)
    fine = cv2.GaussianBlur(rng.random((height, width, 3)).astype(np.float32), (0, 0), 1.6)
    img = 0.55 * coarse + 0.45 * (fine - fine.mean() + 0.5) * 2.2
    for _ in range(width * height // 3000):  # blocks of varied tone: a wall, windows, paving
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        bw, bh = int(rng.integers(8, 40)), int(rng.integers(8, 30))
        img[y:y + bh, x:x + bw] = img[y:y + bh, x:x + bw] * 0.6 + rng.random(3) * 0.4
    return np.clip(img * 200 + 20, 0, 255).astype(np.uint8)


def draw_sign(world: np.ndarray, text: str, x: int, y: int, size: int = 24) -> tuple[int, int, int, int]:
    """A street/museum sign in the world: a dark plate with a light border and white text.
    Returns its box (x0, y0, x1, y1) in world pixels."""
    from PIL import Image, ImageDraw

    font = _font(size)
    img = Image.fromarray(world)
    d = ImageDraw.Draw(img)
    left, top, right, bottom = (int(v) for v in d.textbbox((0, 0), text, font=font))
    pad = size // 2
    box = (x, y, x + (right - left) + 2 * pad, y + (bottom - top) + 2 * pad)
    d.rectangle(box, fill=(20, 70, 40), outline=(235, 235, 235), width=3)
    d.text((x + pad - left, y + pad - top), text, font=font, fill=(250, 250, 250))
    world[:] = np.asarray(img)
    return box


def paste_face(world: np.ndarray, x: int, y: int, size: int = 150) -> tuple[int, int, int, int]:
    """scikit-image's astronaut portrait (head and shoulders), scaled to `size` px wide, pasted
    into the world. Returns the box of the face itself (world pixels)."""
    import cv2
    from skimage import data

    src = data.astronaut()[0:300, 80:330]  # head and shoulders
    s = size / src.shape[1]
    patch = cv2.resize(src, (size, int(round(src.shape[0] * s))), interpolation=cv2.INTER_AREA)
    ph, pw = patch.shape[:2]
    world[y:y + ph, x:x + pw] = patch[:world.shape[0] - y, :world.shape[1] - x]
    fx0, fy0, fx1, fy1 = 178 - 80, 68, 262 - 80, 160  # the face (brows to chin) in the astronaut image
    return (x + int(fx0 * s), y + int(fy0 * s), x + int(fx1 * s), y + int(fy1 * s))


def render_caption(frame: np.ndarray, text: str, where: str = "bottom", size: int = 18) -> tuple[int, int, int, int]:
    """A burned-in caption (white, black outline), centred at the bottom or top."""
    from PIL import Image, ImageDraw

    font = _font(size)
    img = Image.fromarray(frame)
    d = ImageDraw.Draw(img)
    left, top, right, bottom = (int(v) for v in d.textbbox((0, 0), text, font=font, stroke_width=2))
    x = (frame.shape[1] - (right - left)) // 2
    y = frame.shape[0] - (bottom - top) - 10 if where == "bottom" else 10
    d.text((x - left, y - top), text, font=font, fill=(255, 255, 255), stroke_width=2, stroke_fill=(0, 0, 0))
    frame[:] = np.asarray(img)
    return (x, y, x + (right - left), y + (bottom - top))


def ticker_strip(text: str, height: int, size: int = 16) -> np.ndarray:
    """The ticker's text rendered once on its band colour: uint8 RGB [height, length]."""
    from PIL import Image, ImageDraw

    font = _font(size)
    probe = ImageDraw.Draw(Image.new("RGB", (8, 8)))
    left, top, right, bottom = (int(v) for v in probe.textbbox((0, 0), text, font=font))
    img = Image.new("RGB", (right - left + 16, height), (150, 15, 20))
    ImageDraw.Draw(img).text((8 - left, (height - (bottom - top)) // 2 - top), text, font=font, fill=(255, 255, 255))
    return np.asarray(img)


def write_clip(path: str | os.PathLike[str], frames: list[np.ndarray], fps: int = FPS, crf: int = 18) -> None:
    """RGB frames -> an H.264 mp4 through the pipeline's libx264 writer."""
    import av

    from curator.media.encode import X264Writer

    h, w = frames[0].shape[:2]
    writer = X264Writer(w, h, Fraction(fps), crf, "veryfast", threads=1)
    try:
        for f in frames:
            writer.write(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24"))
        data = writer.finish()
    except BaseException:
        writer.abort()
        raise
    Path(path).write_bytes(data)


def make_text_clip(path: str | os.PathLike[str], *, sign: str | None = "CITY MUSEUM", caption: str | None = None,
                   ticker: str | None = None, face: bool = False, pan_px: float = 2.0, tilt_px: float = 0.0,
                   frames: int = 60, width: int = W, height: int = H, seed: int = 1,
                   sign_at: tuple[int, int] = (150, 40), sign_size: int = 24, ticker_px: float = 4.0,
                   face_at: tuple[int, int] = (120, 10), face_size: int = 150) -> TextTruth:
    """A camera panning `pan_px` px per frame right (and tilting `tilt_px` down) over a world;
    in the world a sign (at `sign_at` in the first frame's screen coordinates) and/or a face;
    on the screen a fixed caption and/or a ticker scrolling `ticker_px` px per frame."""
    travel_x = int(abs(pan_px) * frames) + 2
    travel_y = int(abs(tilt_px) * frames) + 2
    world = world_texture(width + travel_x, height + travel_y, seed)
    ox = 0 if pan_px >= 0 else travel_x - 1  # where the camera starts in the world
    oy = 0 if tilt_px >= 0 else travel_y - 1
    sign_world = draw_sign(world, sign, ox + sign_at[0], oy + sign_at[1], sign_size) if sign else None
    face_world = paste_face(world, ox + face_at[0], oy + face_at[1], face_size) if face else None
    strip = ticker_strip(ticker, 26) if ticker else None
    truth = TextTruth(str(path), frames, width, height, sign_text=sign, caption_text=caption, ticker_text=ticker)
    out = []
    for i in range(frames):
        cx, cy = ox + pan_px * i, oy + tilt_px * i
        x0, y0 = int(round(cx)), int(round(cy))
        frame = world[y0:y0 + height, x0:x0 + width].copy()
        if sign_world:
            truth.sign_boxes.append((sign_world[0] - x0, sign_world[1] - y0, sign_world[2] - x0, sign_world[3] - y0))
        if face_world:
            truth.face_boxes.append((face_world[0] - x0, face_world[1] - y0, face_world[2] - x0, face_world[3] - y0))
        if caption:
            truth.caption_box = render_caption(frame, caption)
        if strip is not None:
            band = height - strip.shape[0]
            off = int(round(ticker_px * i))
            seg = strip[:, off:off + width]
            frame[band:, :seg.shape[1]] = seg
            frame[band:, seg.shape[1]:] = strip[0, 0]
            truth.ticker_band = (band, height)
        out.append(frame)
    write_clip(path, out)
    return truth


def clip_row(truth: TextTruth, clip_id: str | None = None) -> dict[str, Any]:
    """A pipeline clip row for a made clip (what transcode would hand a filter)."""
    data = Path(truth.path).read_bytes()
    cid = clip_id or Path(truth.path).stem
    return {"kind": "clip", "video_id": cid, "clip_id": cid, "status": "ok", "clip_index": 0,
            "clip_width": truth.width, "clip_height": truth.height, "clip_fps": float(FPS),
            "clip_frames": truth.frames, "clip_duration_s": truth.frames / FPS, "mp4": data,
            "clip_bytes": len(data)}
