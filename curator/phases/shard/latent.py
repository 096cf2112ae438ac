"""The ``latent`` profile: each tokenizer window encoded once by a video tokenizer's encoder.

A latent shard holds the same windows (keys, buckets, frames) as the ``tokenizer`` profile,
but each sample's leading member is ``<key>.latent.npy``: the continuous latent
``[C, t, h, w]`` (``shard.latent.dtype``) or the discrete indices ``[t, h, w]`` (the smallest
integer dtype that holds the codebook). Its json gains a ``latent`` entry: tokenizer id,
revision, kind, shape, dtype, codebook size, compute precision and the window's source span
(video and clip id, first and last+1 frame of the clip it shows). ``<key>.mp4`` is added with
``shard.latent.keep_video``.

Where it runs. A shard is the unit of work (the shard phase's ``runner.map``, with
``shard.latent.resources``): one bucket, so every window has one shape and batches of
``shard.latent.batch_size`` windows stack without padding. A task decodes its clips once
(the frames never leave the process), batches windows across clips, and runs the encoder
on the GPU when the worker has one. The encoder is loaded once per worker process
(:func:`curator.models.tokenizer.load_cached`; the Ray runner keeps a GPU task's worker
for the next shard). Shards are complete, digest-checked units, so a rerun skips finished
latent shards like any other.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from curator import storage
from curator.config import LatentProfileConfig
from curator.media import windows as win
from curator.models import cosmos
from curator.models import tokenizer as tk
from curator.phases.shard.plan import Sample, ShardSpec
from curator.phases.shard.write import CLIP_ERRORS, Payload, Produced, _groups, encode_group


def identity(cfg: LatentProfileConfig, model_dir: str) -> dict[str, Any]:
    """What the plan's digest records of the encoder: a new model file or setting rewrites
    the latent shards, nothing else does. Raises TokenizerError when the model is missing."""
    ref = tk.resolve(cfg.model, model_dir)
    return {"model": cfg.model, "revision": tk.revision(ref, cfg.revision), "kind": cfg.kind,
            "codebook_size": cfg.codebook_size, "dtype": cfg.dtype, "precision": cfg.precision,
            "keep_video": cfg.keep_video}


def source_span(row: dict[str, Any], w: win.Window, fps: float) -> dict[str, Any]:
    """The clip frames a window shows: [start_frame, end_frame) at the clip's own rate (and
    the same span in the source video's frames when the row knows the clip's start)."""
    src, dst = win.rate(row["clip_fps"]), win.rate(fps)
    first = win.source_index(w.start, src, dst)
    last = win.source_index(w.start + w.frames - 1, src, dst)
    n = row.get("clip_frames")
    if n:  # a source that ended early repeated its last frame
        first, last = min(first, n - 1), min(last, n - 1)
    span = {"video_id": row.get("video_id"), "clip_id": row["clip_id"], "start_frame": first, "end_frame": last + 1}
    if row.get("start_frame") is not None:
        span.update(video_start_frame=row["start_frame"] + first, video_end_frame=row["start_frame"] + last + 1)
    return span


@dataclass
class _Group:
    samples: list[Sample]
    latents: list[Any] = field(default_factory=list)
    todo: int = 0
    videos: list[bytes] | None = None
    error: Exception | None = None


class Payloads:
    """`payloads` for :func:`curator.phases.shard.write.write_shard`: encode a latent shard's
    windows in batches; clips come out in order once all their windows are encoded."""

    def __init__(self, cfg: LatentProfileConfig, model_dir: str):
        self.cfg, self.model_dir = cfg, model_dir

    def __call__(self, spec: ShardSpec) -> Produced:
        enc = spec.encode or {}
        ident = enc["latent"]
        ref = tk.resolve(ident["model"], self.model_dir)
        model = tk.load_cached(ref, tk.resolve_device(self.cfg.device), ident["precision"])
        known = cosmos.info(ident["model"])
        codebook = ident["codebook_size"] or (known.codebook_size if known else None) or model.codebook_size
        precision = str(model.dtype).removeprefix("torch.")
        size = (enc["width"], enc["height"])
        pending: deque[_Group] = deque()
        batch: list[tuple[_Group, int, np.ndarray]] = []

        def flush() -> None:
            if not batch:
                return
            out = model.encode(np.stack([a for _, _, a in batch]))
            for (g, i, _), z in zip(batch, out):
                g.latents[i] = z
                g.todo -= 1
            batch.clear()

        def payload(g: _Group, i: int) -> Payload:
            s = g.samples[i]
            discrete = tk.is_discrete(g.latents[i], ident["kind"])
            arr, dtype = tk.to_numpy(g.latents[i], discrete, ident["dtype"], codebook)
            front = [("latent.npy", tk.npy_bytes(arr))]
            if g.videos is not None:
                front.append(("mp4", g.videos[i]))
            assert s.window is not None
            meta = {"tokenizer": ident["model"], "revision": ident["revision"],
                    "kind": "discrete" if discrete else "continuous", "shape": list(arr.shape), "dtype": dtype,
                    "codebook_size": codebook if discrete else None, "precision": precision,
                    "source": source_span(s.row, s.window, enc["fps"])}
            return front, {"latent": meta}

        def ready() -> Produced:
            while pending and (pending[0].error is not None or pending[0].todo == 0):
                g = pending.popleft()
                yield g.samples, g.error if g.error is not None else [payload(g, i) for i in range(len(g.samples))]

        for group in _groups(spec.samples):
            g = _Group(group, [None] * len(group), len(group))
            pending.append(g)
            row = group[0].row
            try:
                mp4 = storage.read_bytes(row["clip_uri"])
            except CLIP_ERRORS as exc:
                g.error = exc
                continue
            frames = win.window_arrays(mp4, [s.window for s in group if s.window is not None],
                                       src_fps=win.rate(row["clip_fps"]), dst_fps=win.rate(enc["fps"]), size=size)
            while True:
                try:
                    i, arr = next(frames)
                except StopIteration:
                    break
                except CLIP_ERRORS as exc:  # the clip does not decode: left out, the shard goes on
                    g.error = exc
                    break
                batch.append((g, i, arr))
                if len(batch) >= self.cfg.batch_size:
                    flush()  # the encoder's own errors are not the clip's: they end the shard
            if g.error is None and ident.get("keep_video"):
                try:
                    g.videos = encode_group(spec, group, mp4)
                except CLIP_ERRORS as exc:
                    g.error = exc
            yield from ready()
        flush()
        yield from ready()
