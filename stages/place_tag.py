"""Place tags: every clip tagged by place kind and sub-kind, setting, time of day, weather, crowd,
decor, and (where the evidence allows) city and region — for coverage against targets
(`curator coverage`, docs/places.md).

The fields and their labels come from the place taxonomy (``stages.place_tag.taxonomy``;
default the packaged ``curator/data/places.yaml``). Taggers (:mod:`curator.tagging`):

- the **embedding tagger** over the clip's ``embedding`` (the embed stage must run before this
  one): the trained head at ``models.dir/<stages.place_tag.head>`` when it exists (``method:
  auto`` or ``head``), else zero-shot with the text tower of the CLIP model that made the
  embeddings (``stages.embed.model`` must be ``open_clip:``);
- the **VLM tagger** (``stages.place_tag.vlm.enabled``): the caption backend configured under
  ``stages.caption`` (transformers, vLLM or an OpenAI-compatible endpoint) asked for one JSON
  object; answers are validated against the taxonomy, and whatever is invalid or missing is
  recorded in ``tag_error`` while the clip flows on.

The stage runs when at least one tagger can; with neither (the default config's perceptual
embedding and no VLM) it is named at start-up with the fix and skipped, like video_type. It
never rejects a clip: tags are data, coverage and ``shard.splits[].where`` act on them.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from curator.config import PlaceTagConfig
from curator.records import Row
from curator.stage import Requirement, Stage
from curator.tagging import COLUMNS, Answer, EmbeddingTagger, VlmTagger, embedding_tagger, head_file, head_path, resolve
from curator.taxonomy import load_places

log = logging.getLogger(__name__)


class PlaceTagStage(Stage):
    name = "place_tag"
    kind = "clip"
    stateful = True
    columns = COLUMNS
    config: PlaceTagConfig

    # ---- which taggers can run here
    def _embed_model(self) -> str:
        embed = getattr(self.ctx.config.stages, "embed", None)
        return str(getattr(embed, "model", "") or "")

    def _embedding_missing(self) -> list[Requirement]:
        """Why the embedding tagger cannot run ([] when it can; one entry when method is off)."""
        if self.config.method == "off":
            return [Requirement("stages.place_tag.method is off")]
        order = list(self.ctx.config.stages.order)
        embed = getattr(self.ctx.config.stages, "embed", None)
        if ("embed" not in order or self.name not in order or order.index("embed") > order.index(self.name)
                or embed is None or not getattr(embed, "enabled", True)):
            return [Requirement("place tags from embeddings need the embed stage before place_tag",
                                fix="put 'embed' before 'place_tag' in stages.order")]
        head = head_path(self.config, self.ctx.model_dir)
        if self.config.method == "head" and not head:
            return [Requirement("stages.place_tag.method=head but the head file is missing",
                                path=head_file(self.config, self.ctx.model_dir),
                                fix="train it with `curator train-tag-head RUN --labels LABELS.csv`")]
        if head:
            return []
        model = self._embed_model()
        if not model.startswith("open_clip:"):
            return [Requirement(f"zero-shot place tags need a CLIP embedding, but stages.embed.model is {model!r}",
                                fix="set stages.embed.model=open_clip:ViT-B-32/openai, train a head with "
                                    "`curator train-tag-head`, or set stages.place_tag.vlm.enabled=true")]
        from curator.models import registry

        req = registry.requirement(model, self.ctx.model_dir, "stage place_tag")
        return [req] if req else []

    def _vlm_missing(self) -> list[Requirement]:
        from curator.models import vlm

        return vlm.requirements(self.ctx.config.stages.caption, self.ctx.model_dir)

    def requirements(self) -> list[Requirement]:
        load_places(self.config.taxonomy)  # a broken taxonomy is a config error: start-up fails, naming it
        if self.config.vlm.enabled:
            missing = self._vlm_missing()
            if missing:  # asked for explicitly: not silently left out
                return [Requirement("place_tag's VLM tagger (stages.caption's backend): " + r.what, r.path, r.fix)
                        for r in missing]
            return []
        return self._embedding_missing()

    def setup(self) -> None:
        self.tax = load_places(self.config.taxonomy)
        self.emb: EmbeddingTagger | None = None
        if not self._embedding_missing():
            self.emb = embedding_tagger(self.config, self.tax, self.ctx.model_dir, self._embed_model())
        self.vlm = VlmTagger(self.config, self.ctx.config.stages.caption, self.tax, self.ctx.model_dir) \
            if self.config.vlm.enabled else None
        self.model_ids = [t.model_id for t in (self.emb, self.vlm) if t is not None]

    def process_rows(self, rows: list[Row]) -> list[list[Row]]:
        probs: list[Any] = [None] * len(rows)
        errors: list[str | None] = [None] * len(rows)
        if self.emb is not None:
            probs, errors = self._embedding_probs(rows)
        answers: list[Answer | None] = [None] * len(rows)
        if self.vlm is not None:
            answers = list(self.vlm.tag(rows))
        for i, row in enumerate(rows):
            vals = resolve(self.tax, probs[i], answers[i], emb_source=self.emb.source if self.emb else None,
                           model_ids=self.model_ids, min_confidence=self.config.min_confidence)
            if errors[i]:
                vals["tag_error"] = "; ".join(e for e in (vals["tag_error"], errors[i]) if e)
            row.update(vals)
        return [[r] for r in rows]

    def _embedding_probs(self, rows: list[Row]) -> tuple[list[Any], list[str | None]]:
        assert self.emb is not None
        probs: list[Any] = [None] * len(rows)
        errors: list[str | None] = [None] * len(rows)
        want = self.emb.embedding_model
        idx = []
        for i, r in enumerate(rows):
            if r.get("embedding") is None:
                errors[i] = "embedding: the clip has none"
            elif want and r.get("embedding_model") not in (None, want):
                errors[i] = f"embedding: the tagger expects {want}, the clip has {r.get('embedding_model')}"
            else:
                idx.append(i)
        if idx:
            got = self.emb.probs(np.stack([np.asarray(rows[i]["embedding"], np.float32) for i in idx]))
            for i, p in zip(idx, got):
                probs[i] = p
        return probs, errors
