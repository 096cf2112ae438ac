"""Caption: a VLM describes each clip, window by window, and the windows make the clip's caption.

A clip is cut into windows of ``window_frames`` frames (default 256, as the reference
pipelines do; a remainder shorter than half a window joins the last one; 0: one window).
``num_frames`` (default 8) uniformly spaced frames of each window, first and last included,
are decoded at ``frame_size`` (or with the long side at ``max_side``) and sent with the
prompt to the configured backend (:mod:`curator.models.vlm`: transformers, vLLM — as one
video for Qwen-VL models — or an OpenAI-compatible endpoint). The windows of all clips of a
batch go to the backend together (one batched generate, or concurrent requests) and come
back in order. The clip's ``caption`` is the single window's caption, the window captions
joined (one per line), or — with ``enhance.enabled`` — a text LLM's rewrite of them.

The prompt can depend on the clip's domain: ``prompts: {<place>: ..., default: ...}``
is chosen by the clip's ``place`` column (run ``place_tag`` before ``caption``).

Columns: ``caption``, ``caption_model`` (with ``@revision`` when pinned),
``caption_prompt_version``, ``caption_error``, ``caption_windows`` (JSON: the windows'
frame ranges, frames and captions, and how the summary was made),
``caption_enhance_model``, and (with ``text_encoder`` set) ``caption_embedding`` +
``caption_embedding_model``. A clip whose caption fails (any window, after the endpoint's
retries) keeps flowing with ``caption`` null and the reason in ``caption_error``
(``on_error: keep``, the default), or stops with status ``error`` and reason
``caption_failed`` (``on_error: error``). Either way the other clips keep their captions.
A failed enhancement keeps the joined captions and records the reason in ``caption_windows``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import pyarrow as pa

from curator.config import CaptionConfig
from curator.media.decode import uniform_indices
from curator.media.frames import sample_clip_frames
from curator.models import registry, vlm
from curator.records import Row, stop
from curator.stage import Requirement, Stage

log = logging.getLogger(__name__)

CAPTION_FAILED = "caption_failed"


def windows(num_frames: int, window_frames: int) -> list[tuple[int, int]]:
    """[start, end) frame ranges of consecutive windows over a clip of num_frames frames.

    A remainder shorter than half a window joins the last window; 0 or a clip no longer
    than one window: one window."""
    if num_frames <= 0:
        return []
    if window_frames <= 0 or num_frames <= window_frames:
        return [(0, num_frames)]
    full, rest = divmod(num_frames, window_frames)
    out = [(i * window_frames, (i + 1) * window_frames) for i in range(full)]
    if rest >= (window_frames + 1) // 2:
        out.append((full * window_frames, num_frames))
    elif rest:
        out[-1] = (out[-1][0], num_frames)
    return out


def window_indices(span: tuple[int, int], n: int) -> list[int]:
    start, end = span
    return [start + i for i in uniform_indices(end - start, n)]


class CaptionStage(Stage):
    name = "caption"
    kind = "clip"
    stateful = True
    columns = [
        ("caption", pa.string()),
        ("caption_model", pa.string()),
        ("caption_prompt_version", pa.string()),
        ("caption_error", pa.string()),
        ("caption_windows", pa.string()),
        ("caption_enhance_model", pa.string()),
        ("caption_embedding", pa.list_(pa.float16())),
        ("caption_embedding_model", pa.string()),
    ]
    config: CaptionConfig

    def requirements(self) -> list[Requirement]:
        reqs = vlm.requirements(self.config, self.ctx.model_dir)
        reqs += vlm.enhance_requirements(self.config, self.ctx.model_dir)
        if self.config.text_encoder:
            req = registry.requirement(self.config.text_encoder, self.ctx.model_dir, "caption text encoder")
            reqs += [req] if req else []
        return reqs

    def setup(self) -> None:
        self.backend = vlm.make_backend(self.config, self.ctx.model_dir)
        self.enhancer = vlm.make_enhancer(self.config, self.ctx.model_dir)
        self.text_encoder = None
        if self.config.text_encoder:
            from curator.models.text import TextEncoder

            self.text_encoder = TextEncoder(self.config.text_encoder, self.ctx.model_dir, self.config.device,
                                            self.config.text_encoder_max_tokens)
        log.info("caption: backend %s, model %s, windows of %d frames", self.config.backend, self.backend.model_id,
                 self.config.window_frames)

    def _windows_of(self, row: Row) -> tuple[list[tuple[int, int]], np.ndarray, list[list[int]]]:
        """The clip's windows, their frames decoded in one pass, and each window's frame indices."""
        cfg = self.config
        size = vlm.frame_size(cfg, row.get("clip_width") or 0, row.get("clip_height") or 0)
        total = int(row.get("clip_frames") or 0)
        if not total:  # frame count unknown: the whole clip is one window, sampled as before
            frames, idx = sample_clip_frames(row, cfg.num_frames, size)
            return [(0, (idx[-1] + 1) if idx else 0)], frames, [list(idx)]
        spans = windows(total, cfg.window_frames)
        wanted = [window_indices(sp, cfg.num_frames) for sp in spans]
        frames, used = sample_clip_frames(row, cfg.num_frames, size, indices=[i for w in wanted for i in w])
        pos = {i: k for k, i in enumerate(used)}
        per = [[i for i in w if i in pos] for w in wanted]
        return spans, frames, per

    def process_rows(self, rows: list[Row]) -> list[list[Row]]:
        jobs: list[vlm.CaptionJob] = []
        plan: list[tuple[Row, list[dict[str, Any]]]] = []  # per clip: its window records, in order
        for row in rows:
            prompt = self.config.prompt_for(row.get("place"))
            row["caption_prompt_version"] = self.config.resolved_prompt_version(prompt)
            row["caption_model"] = self.backend.model_id
            row["caption_enhance_model"] = None
            try:
                spans, frames, per = self._windows_of(row)
                if not any(per):
                    raise ValueError("no decodable frames")
            except Exception as exc:
                self._failed(row, f"frames: {type(exc).__name__}: {exc}")
                continue
            pos = {i: k for k, i in enumerate(i for w in per for i in w)}
            recs: list[dict[str, Any]] = []
            for (start, end), idx in zip(spans, per):
                recs.append({"start": start, "end": end, "frames": idx})
                jobs.append(vlm.CaptionJob(f"{row.get('clip_id') or ''}[{start}:{end}]",
                                           frames[[pos[i] for i in idx]], idx, prompt))
            plan.append((row, recs))
        results = iter(self.backend.caption(jobs) if jobs else [])
        done: list[tuple[Row, dict[str, Any], list[str]]] = []
        for row, recs in plan:
            errors = []
            for rec in recs:
                res = next(results)
                rec["caption"] = res.text if res.ok else None
                if not res.ok:
                    rec["error"] = res.error or "unknown error"
                    errors.append(rec["error"] if len(recs) == 1 else
                                  f"window [{rec['start']}, {rec['end']}): {rec['error']}")
            doc: dict[str, Any] = {"window_frames": self.config.window_frames, "windows": recs,
                                   "summary": "single" if len(recs) == 1 else "join"}
            row["caption_windows"] = json.dumps(doc)
            if errors:
                self._failed(row, "; ".join(errors))
                continue
            texts = [str(r["caption"]) for r in recs]
            row["caption"] = texts[0] if len(texts) == 1 else "\n".join(texts)
            row["caption_error"] = None
            done.append((row, doc, texts))
        if self.enhancer is not None and done:
            enhanced = self.enhancer.enhance([vlm.enhance_prompt(self.config.enhance.prompt, t) for _, _, t in done])
            for (row, doc, _), res in zip(done, enhanced):
                if res.ok:
                    row["caption"] = res.text
                    row["caption_enhance_model"] = self.enhancer.model_id
                    doc["summary"] = "enhance"
                    doc["enhance_model"] = self.enhancer.model_id
                else:
                    doc["enhance_error"] = res.error
                    log.warning("caption %s: enhancement failed (%s); keeping the window captions",
                                row.get("clip_id"), res.error)
                row["caption_windows"] = json.dumps(doc)
        if self.text_encoder is not None:
            self._embed_captions([r for r, _, _ in done if r.get("caption")])
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
