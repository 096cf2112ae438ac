"""Thumbnails: one decoded frame per example clip (or source video), as a base64 JPEG;
for clips with a staged mp4, optionally an animated WebP preview of a few uniformly
spaced frames (decoded in the same pass)."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

from curator import storage
from curator.config import ReportConfig
from curator.media.frames import even
from curator.records import OK
from curator.report.text import NO_FRAME_REASONS, log


@dataclass
class Thumb:
    data_uri: str | None  # a JPEG data URI, or None: a placeholder with `note`
    note: str = ""
    preview: str | None = None  # an animated WebP data URI (clips with a staged mp4, when asked for)


class Thumbnailer:
    """Middle frames as small JPEGs: clips from their staged mp4, videos from the source."""

    def __init__(self, cfg: ReportConfig, max_pixels: int):
        self.cfg = cfg
        self.max_pixels = max_pixels

    def __call__(self, ex: dict[str, Any], preview: bool = False) -> Thumb:
        reason = ex.get("reason") if ex.get("status") != OK else None
        try:
            if ex.get("kind") == "clip" and ex.get("clip_uri"):
                return self._clip(ex, preview)
            if reason in NO_FRAME_REASONS and ex.get("kind") == "video":
                return Thumb(None, NO_FRAME_REASONS[reason])
            return self._source(ex)
        except Exception as exc:  # a thumbnail never fails the report
            log.debug("no thumbnail for %s: %s", ex.get("clip_id") or ex.get("video_id"), exc)
            return Thumb(None, f"no decodable frame ({type(exc).__name__})")

    def _size(self, w: int | None, h: int | None) -> tuple[int, int] | None:
        if not w or not h:
            return None
        tw = self.cfg.thumb_width
        return tw, even(tw * h / w)

    def _clip(self, ex: dict[str, Any], preview: bool = False) -> Thumb:
        from curator.media.decode import iter_frames, sample_frames, uniform_indices

        uri = ex["clip_uri"]
        src: Any = storage.local_path(uri) or storage.read_bytes(uri)
        size = self._size(ex.get("clip_width"), ex.get("clip_height"))
        total = ex.get("clip_frames") or sum(1 for _ in iter_frames(src, threads=False))
        middle = uniform_indices(total, 1)
        moving = sorted(set(uniform_indices(total, self.cfg.preview_frames))) if preview else []
        wanted = sorted(set(middle + moving))
        frames, got = sample_frames(src, len(wanted), size, num_frames=total, indices=wanted)
        if not len(frames):
            return Thumb(None, "no decodable frame")
        by_index = dict(zip(got, frames))
        still = by_index[middle[0]] if middle and middle[0] in by_index else frames[len(frames) // 2]
        anim = None
        if moving:
            seconds = float(ex.get("clip_duration_s") or 0.0) or 2.0
            anim = _webp([by_index[i] for i in moving if i in by_index], self.cfg.preview_width,
                         1000.0 * seconds / len(moving))
        return Thumb(_jpeg(still), preview=anim)

    def _source(self, ex: dict[str, Any]) -> Thumb:
        uri = ex.get("source_uri")
        if not uri:
            return Thumb(None, "no source")
        if ex.get("kind") == "clip" and ex.get("start_s") is not None and ex.get("end_s") is not None:
            t = (ex["start_s"] + ex["end_s"]) / 2  # a clip whose mp4 was not staged
        else:
            t = (ex.get("duration_s") or 0.0) / 2
        local = storage.local_path(uri)
        if local is not None:
            return self._frame_at(local, t, int(ex.get("rotation") or 0))
        size = storage.stat(uri).size
        if size > self.cfg.max_source_mb * 1024 * 1024:
            return Thumb(None, f"source of {size / 2**20:.0f} MB not fetched (report.max_source_mb)")
        with storage.local_copy(uri) as path:
            return self._frame_at(path, t, int(ex.get("rotation") or 0))

    def _frame_at(self, path: str, t: float, rotation: int) -> Thumb:
        import av
        import numpy as np

        from curator.media.probe import Limits, open_options

        with av.open(path, metadata_errors="ignore", options=open_options(Limits(max_pixels=self.max_pixels))) as c:
            if not c.streams.video:
                return Thumb(None, "no video stream")
            vs = c.streams.video[0]
            w, h = vs.codec_context.width, vs.codec_context.height
            if not w or not h or w * h > self.max_pixels:
                return Thumb(None, "no usable picture size")
            if t > 0 and vs.time_base:
                try:
                    c.seek(int(t / vs.time_base) + (vs.start_time or 0), stream=vs)
                except av.error.FFmpegError:
                    c.seek(0)
            frame = None
            for i, f in enumerate(c.decode(vs)):
                frame = f
                if f.time is None or f.time >= t - 1e-3 or i >= 300:  # at most a GOP's worth
                    break
            if frame is None:
                return Thumb(None, "no decodable frame")
            rot = rotation % 360
            disp = (frame.height, frame.width) if rot in (90, 270) else (frame.width, frame.height)
            size = self._size(*disp) or disp
            coded = (size[1], size[0]) if rot in (90, 270) else size
            arr = frame.to_ndarray(format="rgb24", width=coded[0], height=coded[1], interpolation="AREA")
            k = {90: 1, 180: 2, 270: 3}.get(rot, 0)  # display matrix: counter-clockwise degrees
            return Thumb(_jpeg(np.ascontiguousarray(np.rot90(arr, k)) if k else arr))


def _jpeg(arr: Any) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=78, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def _webp(frames: list[Any], width: int, frame_ms: float) -> str | None:
    """Frames as a looping animated WebP data URI, `width` pixels wide; None with fewer than 2."""
    from PIL import Image

    if len(frames) < 2:
        return None
    imgs = []
    for arr in frames:
        img = Image.fromarray(arr)
        if img.width != width:
            img = img.resize((width, max(2, even(width * img.height / img.width))), Image.Resampling.LANCZOS)
        imgs.append(img)
    buf = io.BytesIO()
    imgs[0].save(buf, format="WEBP", save_all=True, append_images=imgs[1:], loop=0, quality=55, method=4,
                 duration=int(min(500.0, max(80.0, frame_ms))))
    return "data:image/webp;base64," + base64.b64encode(buf.getvalue()).decode()
