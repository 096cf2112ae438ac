"""Place tags: the taggers behind ``stages.place_tag`` and ``curator tag``, and the manifest columns they write.

Three taggers fill the fields of the place taxonomy (:func:`curator.taxonomy.load_places`):

- **zero-shot** over the clip embedding: per single-label field, the cosine similarity of the
  embedding to the mean text embedding of each label's prompts (a place kind's prompts include
  its sub-kinds'), through the text tower of the CLIP model that made the embedding, softmax at
  CLIP's temperature (100) — the same recipe as the video_type stage;
- a trained **head** (:func:`curator.type_head.train_tag_head`, ``curator train-tag-head``): one
  output per field over the embedding;
- a **VLM** through the caption backends (:mod:`curator.models.vlm`): the frames and a prompt that
  lists the fields and their labels and asks for one JSON object (:func:`build_prompt`,
  optionally a JSON schema as ``response_format``). The answer is validated against the taxonomy
  (:func:`parse_answer`): labels through aliases, sub-kinds that belong to the place; what is
  invalid or missing is recorded in ``tag_error`` and never stops the clip.

:func:`resolve` merges them per clip: a field the VLM answered validly takes the VLM's value
(its confidence is null: a VLM gives no probability); the others take the embedding tagger's
most probable label with its probability (``place_sub`` among the sub-kinds of the chosen
place). City and region come from the VLM only (it reads signage; the text OCR found in the
clip is added to its prompt).

Columns (:data:`COLUMNS`, fixed whatever the taxonomy): one per field (``place``, ``place_sub``,
``setting``, ``time_of_day``, ``weather``, ``crowd``, ``decor``, ``decor_elements`` (a list),
``city``, ``region``), ``<field>_conf`` for the single-label fields, ``tag_source``
(``zero_shot``, ``head``, ``vlm``, ``vlm+head``, …), ``tag_model``, ``tag_top`` (JSON: the
embedding tagger's top 3 per field), ``tag_vlm`` (JSON: the VLM's validated answer) and
``tag_error`` (why a VLM answer was not used in full).
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from curator.config import CaptionConfig, PlaceTagConfig
from curator.records import Row
from curator.taxonomy import SUB_FIELD, PlaceTaxonomy

log = logging.getLogger(__name__)

#: single-label fields, in column order (each has a <field>_conf column)
SINGLE = ("place", "place_sub", "setting", "time_of_day", "weather", "crowd", "decor")
COLUMNS: list[tuple[str, pa.DataType]] = (
    [(f, pa.string()) for f in SINGLE]
    + [("decor_elements", pa.list_(pa.string())), ("city", pa.string()), ("region", pa.string())]
    + [(f"{f}_conf", pa.float64()) for f in SINGLE]
    + [("tag_source", pa.string()), ("tag_model", pa.string()), ("tag_top", pa.string()), ("tag_vlm", pa.string()),
       ("tag_error", pa.string())]
)
#: the tag columns' names (a run's manifest without them gets them from `curator tag`)
COLUMN_NAMES = [n for n, _ in COLUMNS]
TEMPERATURE = 100.0  # CLIP's logit scale
MAX_TEXT = 80  # characters kept of a free-text answer


# --------------------------------------------------------------------- embedding taggers
class EmbeddingTagger:
    """Zero-shot or head probabilities per single-label field for a batch of clip embeddings."""

    source: str  # "zero_shot" | "head"
    model_id: str  # what tag_model names
    embedding_model: str | None  # the embeddings it expects (None: any)

    def __init__(self, tax: PlaceTaxonomy, *, head_path: str | None = None, clip_model: str | None = None,
                 model_dir: str = "", device: str = "auto", head_name: str | None = None):
        self.tax = tax
        self.head: Any = None
        self.fields: dict[str, list[str]] = {}
        if head_path:
            from curator.type_head import load_tag_head

            self.head, doc = load_tag_head(head_path)
            for f, labels in doc["fields"].items():
                known = tax.fields[f].keys if f in tax.fields else []
                unknown = sorted(set(labels) - set(known))
                if unknown:
                    raise ValueError(f"tag head {head_path} has {f} labels {unknown} that the taxonomy does not have")
                self.fields[f] = list(labels)
            self.source, self.embedding_model = "head", doc.get("embedding_model")
            self.model_id = f"head:{head_name or os.path.basename(head_path)}"
            log.info("place_tag: head %s (%s; trained on %s)", head_path, ", ".join(self.fields), self.embedding_model)
            return
        if not clip_model or not clip_model.startswith("open_clip:"):
            raise ValueError(f"zero-shot place tags need an open_clip embedding model, not {clip_model!r}")
        from curator.models import clip

        model = clip.load_name(clip_model, model_dir, device=device)
        self.text: dict[str, np.ndarray] = {}
        for f in tax.closed:
            rows = []
            for key in tax.fields[f].keys:
                e = model.encode_text(tax.prompts(f, key)).mean(axis=0)
                rows.append(e / (np.linalg.norm(e) + 1e-8))
            self.fields[f] = tax.fields[f].keys
            self.text[f] = np.stack(rows).astype(np.float32)
        del model  # only the text embeddings are needed
        self.source, self.embedding_model, self.model_id = "zero_shot", clip_model, f"zero_shot:{clip_model}"
        log.info("place_tag: zero-shot over %s with %s", ", ".join(self.fields), clip_model)

    def probs(self, emb: np.ndarray) -> list[dict[str, tuple[list[str], np.ndarray]]]:
        """Per clip: {field: (labels, probabilities)}."""
        from curator.type_head import _normalise, _softmax, tag_head_probs

        if self.head is not None:
            out = tag_head_probs(self.head, emb)
        else:
            x = _normalise(emb)
            out = {}
            for f, t in self.text.items():
                if x.shape[1] != t.shape[1]:
                    raise ValueError(f"embedding has {x.shape[1]} dims, the text embeddings {t.shape[1]}")
                out[f] = _softmax(TEMPERATURE * x @ t.T)
        return [{f: (self.fields[f], out[f][i]) for f in self.fields} for i in range(len(emb))]


def embedding_tagger(cfg: PlaceTagConfig, tax: PlaceTaxonomy, model_dir: str, clip_model: str | None,
                     device: str | None = None) -> EmbeddingTagger | None:
    """The embedding tagger `cfg.method` asks for, or None ('off')."""
    if cfg.method == "off":
        return None
    head = head_path(cfg, model_dir)
    if cfg.method == "head" or (cfg.method == "auto" and head):
        if not head:
            raise FileNotFoundError(f"no place-tag head at {head_file(cfg, model_dir)} (`curator train-tag-head`)")
        return EmbeddingTagger(tax, head_path=head, head_name=cfg.head)
    return EmbeddingTagger(tax, clip_model=clip_model, model_dir=model_dir, device=device or cfg.device)


def head_file(cfg: PlaceTagConfig, model_dir: str) -> str:
    return cfg.head if os.path.isabs(cfg.head) else os.path.join(model_dir, cfg.head)


def head_path(cfg: PlaceTagConfig, model_dir: str) -> str | None:
    p = head_file(cfg, model_dir)
    return p if os.path.isfile(p) else None


# ------------------------------------------------------------------------ the VLM tagger
def _labels_text(keys: Sequence[str]) -> str:
    return ", ".join(keys)


def build_prompt(tax: PlaceTaxonomy) -> str:
    """The instruction: every field with its labels, one JSON object as the answer."""
    lines = ["You tag a video for a dataset of real places. Look at the frames and answer with one JSON object "
             "and nothing else, with exactly these keys:"]
    for name, f in tax.fields.items():
        desc = f" ({f.description})" if f.description else ""
        if name == SUB_FIELD:
            kinds = "; ".join(f"{p}: {_labels_text(tax.subs_of(p))}" for p in tax.fields["place"].keys
                              if tax.subs_of(p))
            lines.append(f'- "{name}": the sub-kind of the place, or null if none fits. {kinds}')
        elif f.kind == "text":
            lines.append(f'- "{name}": free text{desc}, or null when nothing identifies it')
        elif f.kind == "multi":
            lines.append(f'- "{name}": a list of zero or more of {_labels_text(f.keys)}{desc}')
        else:
            null = ", or null when it cannot be seen" if f.nullable else ""
            lines.append(f'- "{name}": one of {_labels_text(f.keys)}{desc}{null}')
    return "\n".join(lines)


def json_schema(tax: PlaceTaxonomy) -> dict[str, Any]:
    """The JSON schema of an answer (for servers that constrain decoding to it)."""
    props: dict[str, Any] = {}
    for name, f in tax.fields.items():
        if f.kind == "text":
            props[name] = {"type": ["string", "null"]}
        elif f.kind == "multi":
            props[name] = {"type": "array", "items": {"type": "string", "enum": f.keys}}
        else:
            props[name] = {"enum": f.keys + ([None] if f.nullable else [])}
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


def scene_text(row: Row, limit: int = 12) -> list[str]:
    """The distinct scene texts of the clip, first seen first: the text_overlay stage's `scene_text`
    (overlays left out) when it recorded one, else every text OCR read (its text_boxes)."""
    kept = row.get("scene_text")
    if isinstance(kept, str) and kept.strip():
        return [t.strip()[:40] for t in kept.split(" | ") if t.strip()][:limit]
    if row.get("text_kind") in ("none", "overlay"):
        return []
    raw = row.get("text_boxes")
    if not raw:
        return []
    try:
        boxes = json.loads(raw)
    except (TypeError, ValueError):
        return []
    out: list[str] = []
    for b in boxes if isinstance(boxes, list) else []:
        t = str(b.get("text") or "").strip() if isinstance(b, dict) else ""
        if t and t not in out:
            out.append(t[:40])
        if len(out) >= limit:
            break
    return out


def clip_prompt(base: str, row: Row, with_text: bool) -> str:
    texts = scene_text(row) if with_text else []
    if not texts:
        return base
    return base + "\nText read in the video (OCR): " + "; ".join(json.dumps(t, ensure_ascii=False) for t in texts)


@dataclass
class Answer:
    """A VLM answer checked against the taxonomy: the fields it answered validly (None: a valid
    null), and what was wrong (empty: a full, valid answer)."""

    values: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def error(self) -> str | None:
        return "; ".join(self.problems)[:1000] if self.problems else None


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S | re.I)
_NULLISH = {"", "null", "none", "unknown", "n/a", "na", "-", "unclear"}


def extract_json(text: str) -> Any:
    """The JSON value in a model's answer: the whole text, a fenced block, or the outermost {...}."""
    t = text.strip()
    m = _FENCE.search(t)
    if m:
        t = m.group(1).strip()
    try:
        return json.loads(t)
    except ValueError:
        i, j = t.find("{"), t.rfind("}")
        if 0 <= i < j:
            return json.loads(t[i:j + 1])
        raise


def _short(value: Any) -> str:
    s = json.dumps(value, ensure_ascii=False)
    return s if len(s) <= 40 else s[:37] + "..."


def parse_answer(text: str | None, tax: PlaceTaxonomy) -> Answer:
    """Validate a VLM answer against the taxonomy, field by field."""
    ans = Answer()
    try:
        doc = extract_json(text or "")
    except ValueError:
        ans.problems.append(f"invalid_json: {_short((text or '').strip())}")
        return ans
    if not isinstance(doc, dict):
        ans.problems.append(f"invalid_json: not an object: {_short(doc)}")
        return ans
    missing, invalid = [], []
    for name, f in tax.fields.items():
        if name not in doc:
            missing.append(name)
            continue
        v = doc[name]
        if f.kind == "text":
            if v is None or (isinstance(v, str) and v.strip().lower() in _NULLISH):
                ans.values[name] = None
            elif isinstance(v, str):
                ans.values[name] = " ".join(v.split())[:MAX_TEXT]
            else:
                invalid.append(f"{name}={_short(v)} (not text)")
            continue
        if f.kind == "multi":
            items = v if isinstance(v, list) else ([] if v is None else str(v).split(","))
            keys: list[str] = []
            bad: list[Any] = []
            for item in items:
                k = f.lookup(item) if isinstance(item, str) else None
                if k:
                    keys.append(k)
                else:
                    bad.append(item)
            if bad:
                invalid.append(f"{name}: {_short(bad)} not in the taxonomy")
            ans.values[name] = [k for k in f.keys if k in keys]
            continue
        if v is None or (isinstance(v, str) and v.strip().lower() in _NULLISH):
            if f.nullable:
                ans.values[name] = None
            else:
                missing.append(name)
            continue
        k = f.lookup(v) if isinstance(v, str) else None
        if k is None:
            invalid.append(f"{name}={_short(v)} is not a label ({_labels_text(f.keys[:8])}"
                           f"{', ...' if len(f.keys) > 8 else ''})")
        else:
            ans.values[name] = k
    sub = ans.values.get(SUB_FIELD)
    if sub is not None:
        parent = tax.parent(sub)
        if "place" not in ans.values and "place" in tax.fields:
            ans.values["place"] = parent  # a sub-kind names its place
            missing = [m for m in missing if m != "place"]
            invalid = [i for i in invalid if not i.startswith("place=")]
        elif ans.values.get("place") != parent:
            invalid.append(f"{SUB_FIELD}={sub!r} is a kind of {parent!r}, not of {ans.values.get('place')!r}")
            del ans.values[SUB_FIELD]
    if invalid:
        ans.problems.append("invalid: " + "; ".join(invalid))
    if missing:
        ans.problems.append("partial: missing " + ", ".join(missing))
    return ans


class VlmTagger:
    """The caption backend (stages.caption) asked for the tags; one request per clip."""

    def __init__(self, cfg: PlaceTagConfig, caption: CaptionConfig, tax: PlaceTaxonomy, model_dir: str):
        from curator.models import vlm

        self.cfg, self.tax = cfg.vlm, tax
        self.prompt = cfg.vlm.prompt or build_prompt(tax)
        endpoint = caption.endpoint
        if cfg.vlm.json_schema:
            extra = {**endpoint.extra_body, "response_format": {
                "type": "json_schema", "json_schema": {"name": "place_tags", "schema": json_schema(tax)}}}
            endpoint = endpoint.model_copy(update={"extra_body": extra})
        self.caption = caption.model_copy(update={"prompt": self.prompt, "num_frames": cfg.vlm.num_frames,
                                                  "max_tokens": cfg.vlm.max_tokens, "endpoint": endpoint})
        self.backend = vlm.make_backend(self.caption, model_dir)
        self.model_id = f"vlm:{self.backend.model_id}"

    def tag(self, rows: list[Row]) -> list[Answer]:
        from curator.media.frames import sample_clip_frames
        from curator.models import vlm

        out: list[Answer | None] = [None] * len(rows)
        jobs: list[vlm.CaptionJob] = []
        where: list[int] = []
        for i, row in enumerate(rows):
            try:
                size = vlm.frame_size(self.caption, row.get("clip_width") or 0, row.get("clip_height") or 0)
                frames, idx = sample_clip_frames(row, self.caption.num_frames, size)
            except Exception as exc:
                out[i] = Answer(problems=[f"vlm_failed: frames: {type(exc).__name__}: {exc}"])
                continue
            jobs.append(vlm.CaptionJob(row.get("clip_id") or "", frames, idx,
                                       prompt=clip_prompt(self.prompt, row, self.cfg.scene_text)))
            where.append(i)
        if jobs:
            for i, res in zip(where, self.backend.caption(jobs)):
                out[i] = parse_answer(res.text, self.tax) if res.ok else Answer(problems=[f"vlm_failed: {res.error}"])
        return [a or Answer(problems=["vlm_failed: no answer"]) for a in out]

    def close(self) -> None:
        self.backend.close()


# ------------------------------------------------------------------------------ merging
def resolve(tax: PlaceTaxonomy, probs: dict[str, tuple[list[str], np.ndarray]] | None, answer: Answer | None,
            *, emb_source: str | None = None, model_ids: Sequence[str] = (),
            min_confidence: float | None = None) -> Row:
    """The tag columns of one clip from the embedding tagger's probabilities and the VLM's answer."""
    out: Row = {n: None for n in COLUMN_NAMES}
    vlm_values = answer.values if answer is not None else {}
    used_vlm = used_emb = False
    for name, f in tax.fields.items():
        if name in vlm_values:
            out[name] = vlm_values[name]
            used_vlm = True
            continue
        if f.kind != "single" or not probs or name not in probs:
            continue
        labels, p = probs[name]
        p = np.asarray(p, dtype=np.float64)
        if name == SUB_FIELD:  # among the sub-kinds of the chosen place
            allowed = set(tax.subs_of(out.get("place")))
            mask = np.array([lab in allowed for lab in labels])
            if not mask.any() or p[mask].sum() <= 0:
                continue
            p = np.where(mask, p, 0.0) / p[mask].sum()
        i = int(np.argmax(p))
        conf = round(float(p[i]), 6)
        out[f"{name}_conf"] = conf
        out[name] = labels[i] if min_confidence is None or conf >= min_confidence else None
        used_emb = True
    if probs:
        top = {}
        for name, (labels, p) in probs.items():
            order = np.argsort(-np.asarray(p))[:3]
            top[name] = {labels[i]: round(float(p[i]), 4) for i in order}
        out["tag_top"] = json.dumps(top, separators=(",", ":"))
    if answer is not None:
        out["tag_vlm"] = json.dumps(answer.values, separators=(",", ":"), ensure_ascii=False) if answer.values else None
        out["tag_error"] = answer.error
    sources = (["vlm"] if used_vlm else []) + ([emb_source] if used_emb and emb_source else [])
    out["tag_source"] = "+".join(sources) or None
    out["tag_model"] = "; ".join(model_ids) or None
    return out


def answer_from_json(text: str | None, tax: PlaceTaxonomy) -> Answer | None:
    """A recorded tag_vlm (a validated answer) read back: its values, re-checked against `tax`."""
    if not text:
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    ans = parse_answer(json.dumps(doc), tax)
    ans.problems = []  # the run recorded what was wrong with the original answer in tag_error
    return ans


# ------------------------------------------------------------------ retagging a finished run
def retag_run(run_uri: str, config: Any) -> dict[str, Any]:
    """`curator tag RUN`: the embedding tagger (a new head, a new taxonomy) over the clip embeddings
    of a finished run's manifest, merged with the VLM answers it recorded (tag_vlm); the manifest is
    rewritten atomically. No decoding, no VLM requests. Every clip with an embedding is tagged."""
    from curator.records import to_table
    from curator.rundir import RunDir
    from curator.taxonomy import load_places

    cfg: PlaceTagConfig = config.stages.place_tag
    tax = load_places(cfg.taxonomy)
    rundir = RunDir.of(run_uri)
    counts: dict[str, Any] = {"clips": 0, "tagged": 0, "by_source": {}}
    tagger: EmbeddingTagger | None = None
    with rundir.open_manifest("tag") as mf:
        schema = mf.schema
        missing = [(n, t) for n, t in COLUMNS if n not in schema.names]
        if missing:
            schema = pa.schema(list(schema) + [pa.field(n, t) for n, t in missing])
        with rundir.manifest_writer(schema) as writer:
            for batch in mf.batches():
                rows = batch.to_pylist()
                todo = [r for r in rows if r.get("kind") == "clip" and r.get("embedding") is not None]
                if todo:
                    if tagger is None:
                        model = todo[0].get("embedding_model")
                        tagger = embedding_tagger(cfg, tax, config.models.dir, model)
                        if tagger is None:
                            raise ValueError("stages.place_tag.method=off: nothing to retag from embeddings")
                    bad = {r.get("embedding_model") for r in todo} - {tagger.embedding_model} \
                        if tagger.embedding_model else set()
                    if bad:
                        raise ValueError(f"the tagger expects {tagger.embedding_model} embeddings; the manifest has "
                                         f"{sorted(map(str, bad))}")
                    probs = tagger.probs(np.stack([np.asarray(r["embedding"], np.float32) for r in todo]))
                    for r, p in zip(todo, probs):
                        ans = answer_from_json(r.get("tag_vlm"), tax)
                        ids = [tagger.model_id] + ([m for m in (r.get("tag_model") or "").split("; ")
                                                    if m.startswith("vlm:")] if ans else [])
                        vals = resolve(tax, p, ans, emb_source=tagger.source, model_ids=ids,
                                       min_confidence=cfg.min_confidence)
                        if ans is not None:
                            vals["tag_error"] = r.get("tag_error")
                        r.update(vals)
                        counts["tagged"] += 1
                        src = vals["tag_source"] or "none"
                        counts["by_source"][src] = counts["by_source"].get(src, 0) + 1
                counts["clips"] += sum(1 for r in rows if r.get("kind") == "clip")
                writer.write_table(to_table(rows, schema))
    return counts
