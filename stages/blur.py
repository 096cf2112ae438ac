"""Privacy blur: faces (and licence plates, given a plate detector) blurred in every clip.

Off by default (``stages.blur.enabled``). When on, it runs right after transcode — before any
filter, embedding or caption model sees a clip's pixels and before staging writes it — so
every clip that exists downstream is the blurred one: the clips a filter rejects and staging
keeps for ``curator refilter`` too, and captions cannot describe what was blurred.

Per clip, two decode passes of the encoded clip (nothing is held but one frame):

1. **detect**: every ``detect_every``-th frame, scaled to ``detect_side``, goes through the
   detectors (:mod:`curator.models.detectors`: scikit-image's LBP face cascade by default,
   or LBP cascades from the model directory); detections are linked into tracks
   (:func:`curator.media.blur.track`).
2. **blur and re-encode** (only when something was found): each frame's boxes — interpolated
   along each track between detections, held ``hold_frames`` before and after it, grown by
   ``pad`` — are blurred on the decoded yuv420p planes, and the clip is encoded again with
   libx264 at transcode's ``crf`` / ``preset`` / ``threads`` and the clip's frame rate. The
   transient ``mp4`` column, ``clip_bytes`` and ``clip_sha256`` are replaced. A clip in which
   nothing was found keeps its bytes (no generation loss).

Manifest columns: ``blurred`` (any region), ``blur_faces`` / ``blur_plates`` (tracks of each
kind), ``blur_frames`` (frames with a blurred region), ``blur_tracks`` (JSON: kind, first
and last frame, detections, the first box, in clip pixels).

A run that asks for blurring never goes on without it: a missing detector fails start-up
(``skip_if_missing = False``) instead of skipping the stage.
"""

from __future__ import annotations

import hashlib
import json
from fractions import Fraction
from typing import Any

import numpy as np
import pyarrow as pa

from curator.config import BlurConfig
from curator.records import Row
from curator.stage import Requirement, Stage

KINDS = {"faces": "face", "plates": "plate"}


class BlurStage(Stage):
    name = "blur"
    kind = "clip"
    stateful = True
    skip_if_missing = False
    config: BlurConfig
    columns = [
        ("blurred", pa.bool_()),
        ("blur_faces", pa.int32()),
        ("blur_plates", pa.int32()),
        ("blur_frames", pa.int32()),
        ("blur_tracks", pa.string()),
    ]

    def requirements(self) -> list[Requirement]:
        from curator.models import detectors

        missing = []
        for key, kind in KINDS.items():
            req = detectors.requirement(getattr(self.config, key), self.ctx.model_dir, kind)
            if req:
                missing.append(req)
        return missing

    def setup(self) -> None:
        from curator.models import detectors

        cfg = self.config
        self.detectors: list[tuple[str, Any]] = []
        for key, kind in KINDS.items():
            det = detectors.load(getattr(cfg, key), self.ctx.model_dir, scale_factor=cfg.scale_factor,
                                 min_neighbors=cfg.min_neighbors, min_size=cfg.min_size)
            if det is not None:
                self.detectors.append((kind, det))

    def detect(self, gray: np.ndarray) -> list[tuple[str, tuple[int, int, int, int]]]:
        """(kind, box) of every detector on one grey frame, boxes in that frame's pixels."""
        return [(kind, box) for kind, det in self.detectors for box in det(gray)]

    def process_row(self, row: Row) -> Row:
        from curator.media.blur import track
        from curator.media.decode import iter_frames
        from curator.media.frames import even

        data = row.get("mp4")
        if data is None:
            raise ValueError("clip has no encoded bytes (mp4)")
        cfg = self.config
        w = h = 0
        scale = 1.0
        found: dict[int, list[tuple[str, tuple[int, int, int, int]]]] = {}
        total = 0
        for idx, _, frame in iter_frames(data):
            total = idx + 1
            if idx % cfg.detect_every:
                continue
            if not w:
                w, h = frame.width, frame.height
                scale = min(1.0, cfg.detect_side / max(w, h))
            if scale < 1:
                gray = frame.to_ndarray(format="gray", width=even(w * scale), height=even(h * scale),
                                        interpolation="AREA")
            else:
                gray = frame.to_ndarray(format="gray")
            sx, sy = w / gray.shape[1], h / gray.shape[0]
            hits = [(k, (int(x0 * sx), int(y0 * sy), int(np.ceil(x1 * sx)), int(np.ceil(y1 * sy))))
                    for k, (x0, y0, x1, y1) in self.detect(gray)]
            if hits:
                found[idx] = hits
        tracks = [t for t in track(found, cfg.hold_frames) if len(t.hits) >= cfg.min_detections]
        row["blur_faces"] = sum(t.kind == "face" for t in tracks)
        row["blur_plates"] = sum(t.kind == "plate" for t in tracks)
        row["blur_tracks"] = json.dumps([{"kind": t.kind, "first": t.first, "last": t.last, "detections": len(t.hits),
                                          "box": list(t.hits[0][1])} for t in tracks], separators=(",", ":"))
        if not tracks:
            row.update(blurred=False, blur_frames=0)
            return row
        blurred_frames = self._reencode(row, data, tracks, total, w, h)
        row.update(blurred=blurred_frames > 0, blur_frames=blurred_frames)
        return row

    def _reencode(self, row: Row, data: bytes, tracks: list[Any], total: int, w: int, h: int) -> int:
        import av

        from curator.media.blur import blur_yuv420, boxes_for_frame
        from curator.media.decode import iter_frames, video_stream
        from curator.media.encode import X264Writer

        cfg = self.config
        tc = self.ctx.config.stages.transcode
        container, vs = video_stream(data)
        rate = vs.average_rate or vs.guessed_rate or Fraction(int(round(row.get("clip_fps") or 25)))
        container.close()
        writer = X264Writer(w, h, Fraction(rate), tc.crf, tc.preset, tc.threads)
        frames = 0
        blurred = 0
        try:
            for idx, _, frame in iter_frames(data):
                yuv = frame.to_ndarray(format="yuv420p")
                boxes = [b for _, b in boxes_for_frame(tracks, idx, cfg.hold_frames, cfg.pad, w, h)]
                if boxes:
                    blur_yuv420(yuv, boxes, cfg.method)
                    blurred += 1
                writer.write(av.VideoFrame.from_ndarray(yuv, format="yuv420p"))
                frames += 1
            out = writer.finish()
        except BaseException:
            writer.abort()
            raise
        if frames != total:
            raise RuntimeError(f"blur: decoded {frames} frames on the second pass, {total} on the first")
        row["mp4"] = out
        row["clip_bytes"] = len(out)
        row["clip_sha256"] = hashlib.sha256(out).hexdigest()
        return blurred
