"""Caption: a VLM describes each clip from its uniformly spaced frames.

``num_frames`` (default 8) frames, first and last included, are decoded at
``frame_size`` (or with the long side at ``max_side``) and sent with the prompt to the
configured backend (:mod:`curator.models.vlm`: transformers, vLLM, or an
OpenAI-compatible endpoint). All clips of a batch go to the backend together (one
batched generate, or concurrent requests).

Columns: ``caption``, ``caption_model``, ``caption_prompt_version``, ``caption_error``,
and (with ``text_encoder`` set) ``caption_embedding`` + ``caption_embedding_model``. A
clip whose caption fails (after the endpoint's retries) keeps flowing with ``caption``
null and the reason in ``caption_error`` (``on_error: keep``, the default), or stops with
status ``error`` and reason ``caption_failed`` (``on_error: error``). Either way the
other clips keep their captions.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa

from curator.config import CaptionConfig
from curator.media.frames import sample_clip_frames
from curator.models import registry, vlm
from curator.records import Row, stop
from curator.stage import Requirement, Stage

log = logging.getLogger(__name__)

CAPTION_FAILED = "caption_failed"


class CaptionStage(Stage):
    name = "caption"
    kind = "clip"
    stateful = True
    columns = [
        ("caption", pa.string()),
        ("caption_model", pa.string()),
        ("caption_prompt_version", pa.string()),
        ("caption_error", pa.string()),
        ("caption_embedding", pa.list_(pa.float16())),
        ("caption_embedding_model", pa.string()),
    ]
    config: CaptionConfig

    def requirements(self) -> list[Requirement]:
        reqs = vlm.requirements(self.config, self.ctx.model_dir)
        if self.config.text_encoder:
            req = registry.requirement(self.config.text_encoder, self.ctx.model_dir, "caption text encoder")
            reqs += [req] if req else []
        return reqs

    def setup(self) -> None:
        self.backend = vlm.make_backend(self.config, self.ctx.model_dir)
        self.text_encoder = None
        if self.config.text_encoder:
            from curator.models.text import TextEncoder

            self.text_encoder = TextEncoder(self.config.text_encoder, self.ctx.model_dir, self.config.device,
                                            self.config.text_encoder_max_tokens)
        self.prompt_version = self.config.resolved_prompt_version()
        log.info("caption: backend %s, model %s", self.config.backend, self.backend.model_id)

    def process_rows(self, rows: list[Row]) -> list[list[Row]]:
        jobs: list[vlm.CaptionJob] = []
        job_rows: list[Row] = []
        for row in rows:
            row["caption_prompt_version"] = self.prompt_version
            row["caption_model"] = self.backend.model_id
            try:
                size = vlm.frame_size(self.config, row.get("clip_width") or 0, row.get("clip_height") or 0)
                frames, idx = sample_clip_frames(row, self.config.num_frames, size)
            except Exception as exc:
                self._failed(row, f"frames: {type(exc).__name__}: {exc}")
                continue
            jobs.append(vlm.CaptionJob(row.get("clip_id") or "", frames, idx))
            job_rows.append(row)
        if jobs:
            for row, res in zip(job_rows, self.backend.caption(jobs)):
                if res.ok:
                    row["caption"] = res.text
                    row["caption_error"] = None
                else:
                    self._failed(row, res.error or "unknown error")
        if self.text_encoder is not None:
            self._embed_captions([r for r in job_rows if r.get("caption")])
        return [[r] for r in rows]

    def _embed_captions(self, rows: list[Row]) -> None:
        if not rows:
            return
        vecs = self.text_encoder.encode([r["caption"] for r in rows])  # type: ignore[union-attr]
        for row, v in zip(rows, vecs):
            row["caption_embedding"] = v.astype(np.float16).tolist()
            row["caption_embedding_model"] = self.config.text_encoder

    def _failed(self, row: Row, reason: str) -> None:
        log.warning("caption %s failed: %s", row.get("clip_id"), reason)
        row["caption"] = None
        row["caption_error"] = reason[:1000]
        if self.config.on_error == "error":
            stop(row, self.name, CAPTION_FAILED, reason)
