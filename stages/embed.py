"""Embed: one vector per clip, for dedup, search and zero-shot classifiers.

Backends (``stages.embed.model``):

* ``perceptual`` (default) — the built-in, weight-free DCT descriptor of 8 uniformly
  spaced frames (:mod:`curator.media.perceptual`, 512-d); works offline.
* ``open_clip:<arch>/<pretrained>`` — the open_clip image tower over ``num_frames``
  uniformly spaced frames, decoded straight at the size the model's preprocess config
  asks for; frame embeddings are mean-pooled and L2-normalised. All frames of a batch
  of clips go through the tower together (GPU when the worker has one).
* ``hf-video:<org>/<name>[@rev]`` — a transformers video-text model (X-CLIP, Cosmos-Embed1,
  InternVideo2; :mod:`curator.models.hf_video`): the model's frame count of uniformly spaced
  frames, its processor's preprocessing, its video tower; one unit-norm vector per clip in
  the space of its text tower (``curator search "text"`` uses that tower).
* ``endpoint:<server model>`` — an OpenAI-compatible ``/v1/embeddings`` server
  (:mod:`curator.models.embed_endpoint`): each of ``num_frames`` frames as an image request,
  mean-pooled, unit norm; its text embeddings answer text search.

Columns: ``embedding`` (list<float16>) and ``embedding_model``. A clip that cannot be
decoded stops here with status ``error`` (reason ``embed_failed``): dedup needs a vector
for every kept clip.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pyarrow as pa

from curator.config import EmbedConfig
from curator.media import perceptual
from curator.media.frames import sample_clip_frames
from curator.models import registry
from curator.records import Row, stop
from curator.stage import Requirement, RunContext, Stage

log = logging.getLogger(__name__)

EMBED_FAILED = "embed_failed"


class EmbedStage(Stage):
    name = "embed"
    kind = "clip"
    stateful = True
    columns = [("embedding", pa.list_(pa.float16())), ("embedding_model", pa.string())]
    config: EmbedConfig

    def __init__(self, config: EmbedConfig, ctx: RunContext):
        super().__init__(config, ctx)
        # The built-in embedding loads nothing: under Ray it runs as tasks rather than as an
        # actor pool that would hold CPUs for the whole run.
        self.stateful = config.model != "perceptual"  # type: ignore[misc]

    def requirements(self) -> list[Requirement]:
        if self.config.model == "perceptual":
            return []
        if self.config.model.startswith("endpoint:"):
            import os

            if self.config.endpoint.url or os.environ.get("OPENAI_BASE_URL"):
                return []
            return [Requirement("embed endpoint has no URL", fix="set stages.embed.endpoint.url=http://HOST:PORT/v1")]
        req = registry.requirement(self.config.model, self.ctx.model_dir, "stage embed")
        return [req] if req else []

    def setup(self) -> None:
        self.clip: Any = None
        if self.config.model != "perceptual":
            if self.config.model.startswith("endpoint:"):
                from curator.models.embed_endpoint import EndpointEmbedder

                self.clip = EndpointEmbedder(self.config.model, self.config.endpoint)
                self.num_frames = self.config.num_frames
                self.model_id = self.config.model
                return
            if self.config.model.startswith("hf-video:"):
                from curator.models import hf_video

                self.clip = hf_video.load(self.config.model, self.ctx.model_dir, device=self.config.device,
                                          precision=self.config.precision, num_frames=self.config.num_frames,
                                          forward_batch_size=self.config.forward_batch_size,
                                          trust_remote_code=self.config.trust_remote_code)
                self.num_frames = self.clip.num_frames
                self.model_id = self.clip.name
                log.info("embed: %s on %s, %d frames", self.model_id, self.clip.device, self.num_frames)
                return
            from curator.models import clip

            self.clip = clip.load_name(self.config.model, self.ctx.model_dir, device=self.config.device,
                                       precision=self.config.precision,
                                       forward_batch_size=self.config.forward_batch_size)
            self.num_frames = self.config.num_frames
            self.model_id = self.config.model
            log.info("embed: %s on %s, input %s", self.config.model, self.clip.device, self.clip.image_size)

    def process_rows(self, rows: list[Row]) -> list[list[Row]]:
        if self.clip is None:
            return [[self._perceptual(r)] for r in rows]
        frames: list[np.ndarray] = []
        ok: list[Row] = []
        for row in rows:
            try:
                size = None
                if hasattr(self.clip, "decode_size"):  # an endpoint model gets the frames as coded
                    size = self.clip.decode_size(row.get("clip_width") or 0, row.get("clip_height") or 0)
                arr, _ = sample_clip_frames(row, self.num_frames, size)
                frames.append(arr)
                ok.append(row)
            except Exception as exc:
                stop(row, self.name, EMBED_FAILED, f"{type(exc).__name__}: {exc}")
        if ok:
            vecs = self.clip.embed_clips(frames)
            for row, v in zip(ok, vecs):
                row["embedding"] = v.astype(np.float16).tolist()
                row["embedding_model"] = self.model_id
        return [[r] for r in rows]

    def _perceptual(self, row: Row) -> Row:
        try:
            frames, _ = sample_clip_frames(row, perceptual.FRAMES, (perceptual.SIDE, perceptual.SIDE), require=False)
            v = perceptual.embed_frames(frames)
        except Exception as exc:
            return stop(row, self.name, EMBED_FAILED, f"{type(exc).__name__}: {exc}")
        row["embedding"] = v.astype(np.float16).tolist()
        row["embedding_model"] = perceptual.NAME
        return row
