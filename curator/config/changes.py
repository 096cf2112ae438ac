"""What changed between the config a run was made with and the config of a rerun into the
same output, and what the rerun has to redo for each change.

Every key of the config falls in one of these kinds:

- ``clips``: changes the clips' bytes or the scores recorded on them (split, transcode,
  ingest guards, what a filter measures and how, embedding, captions, which stages run).
  Finished videos cannot be reused: a rerun is refused unless ``--force``.
- ``decisions``: a filter's thresholds, weights, derived tags and percentile rules
  (:data:`DECISION_KEYS`). Every clip is re-decided from its recorded scores after
  consolidation (the refilter phase, as `curator refilter`) — nothing is decoded.
- ``dedup``, ``index``, ``shard``: run-level phases that redo their work from the manifest
  on every run (as `curator dedup` / `curator index` / `curator shard`).
- ignored: where the run reads and writes and how wide it runs (``input``, ``output``,
  ``input_list``, ``run``, ``storage``, ``models``, ``report``, per-stage ``resources``,
  :data:`~curator.config.run.RUNTIME_KEYS`, ``stages.ingest.extensions``). Which stages run
  (``stages.order``, ``stages.*.enabled``, weights present or not) is compared as the run's
  list of stages instead: a different list is a ``clips`` change.

The *resume key* of a run (:func:`resume_hash`) hashes only the ``clips`` kind and the
stage list; ``config.yaml`` records it beside the content hash.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterable

from curator.config.run import RUNTIME_KEYS

CLIPS, DECISIONS, DEDUP, INDEX, SHARD = "clips", "decisions", "dedup", "index", "shard"
#: the kinds a rerun redoes from the manifest, in the order a run does them
CHEAP = (DECISIONS, DEDUP, INDEX, SHARD)

#: per filter stage, keys that only decide (thresholds, weights of a combined score, derived
#: tags, the sampling draw, percentile rules): re-applied from recorded scores, no decoding.
#: Each filter's `rules`, `derive` and `global_rules` read only these keys (a unit test checks
#: every `Rule.key`).
DECISION_KEYS: dict[str, tuple[str, ...]] = {
    "motion": ("min_motion", "max_shake", "pan_threshold", "zoom_threshold"),
    "quality": ("min_score", "max_brisque", "min_sharpness", "max_clipped", "max_blockiness",
                "drop_bottom_percent", "weights"),
    "aesthetic": ("min_score",),
    "dover": ("min_score", "drop_bottom_percent"),
    "text_overlay": ("max_overlay_area", "max_text_area", "max_text_frames", "still_text", "band"),
    "video_type": ("weights", "min_confidence", "seed"),
}

#: top-level sections that never change what a run produces
IGNORED_TOP = ("input", "output", "input_list", "run", "storage", "models", "report", "generate")
#: per-stage keys compared through the stage list, or that only choose inputs
IGNORED_STAGE_KEYS = ("resources", "enabled")
IGNORED_STAGE_PATHS = ("order", "ingest.extensions")


def flatten(doc: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists and scalars are leaves, empty mappings vanish."""
    out: dict[str, Any] = {}
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.update(flatten(v, f"{prefix}{k}."))
    else:
        out[prefix.rstrip(".")] = doc
    return out


def _under(key: str, path: str) -> bool:
    return key == path or key.startswith(path + ".")


def kind_of(key: str, stages: Iterable[str] | None = None) -> str | None:
    """The kind of a dotted config key (None: it changes nothing a run produces).
    `stages`: the stages that ran (in either run); keys of other stages change nothing."""
    top, _, rest = key.partition(".")
    if top in IGNORED_TOP:
        return None
    if top in (DEDUP, INDEX, SHARD):
        return top
    if top != "stages":
        return CLIPS
    if any(_under(rest, p) for p in IGNORED_STAGE_PATHS):
        return None
    name, _, sub = rest.partition(".")
    if stages is not None and name not in set(stages):
        return None
    if any(_under(sub, k) for k in IGNORED_STAGE_KEYS):
        return None
    if any(_under(sub, k) for k in RUNTIME_KEYS.get(name, ())):
        return None
    if any(_under(sub, k) for k in DECISION_KEYS.get(name, ())):
        return DECISIONS
    return CLIPS


def _short(value: Any, width: int = 40) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":")) if not isinstance(value, str) else value
    return text if len(text) <= width else text[:width - 3] + "..."


@dataclass
class Change:
    key: str
    old: Any
    new: Any
    kind: str

    def describe(self) -> str:
        if self.key == "stages":
            return f"the stages that run ({' -> '.join(self.old or [])} now {' -> '.join(self.new or [])})"
        return f"{self.key} ({_short(self.old)} -> {_short(self.new)})"


@dataclass
class ConfigChanges:
    """The differences between two configs of one output, by kind."""

    changes: list[Change] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.changes)

    def of(self, *kinds: str) -> list[Change]:
        return [c for c in self.changes if c.kind in kinds]

    @property
    def kinds(self) -> list[str]:
        return sorted({c.kind for c in self.changes})

    @property
    def needs_recompute(self) -> bool:
        """Some change makes the finished clips (or their scores) stale."""
        return bool(self.of(CLIPS))

    def names(self, *kinds: str) -> list[str]:
        return [c.key for c in (self.of(*kinds) if kinds else self.changes)]

    def as_record(self) -> dict[str, list[str]]:
        """For config.yaml's `_run` record: changed keys by kind."""
        out: dict[str, list[str]] = {}
        for c in self.changes:
            out.setdefault(c.kind, []).append(c.key)
        return out


def _doc(config: Any) -> dict[str, Any]:
    return config if isinstance(config, dict) else config.model_dump(mode="json")


def diff(old: Any, new: Any, old_stages: list[str] | None = None,
         new_stages: list[str] | None = None) -> ConfigChanges:
    """What differs between `old` and `new` (PipelineConfig or its JSON dump), by kind.
    With the two runs' stage lists, a different list is one ``clips`` change and keys of
    stages that ran in neither are left out."""
    a, b = flatten(_doc(old)), flatten(_doc(new))
    ran = None if old_stages is None or new_stages is None else set(old_stages) | set(new_stages)
    out = ConfigChanges()
    if old_stages is not None and new_stages is not None and list(old_stages) != list(new_stages):
        out.changes.append(Change("stages", list(old_stages), list(new_stages), CLIPS))
    for key in sorted(set(a) | set(b)):
        if a.get(key) == b.get(key):
            continue
        kind = kind_of(key, ran)
        if kind is not None:
            out.changes.append(Change(key, a.get(key), b.get(key), kind))
    return out


def resume_hash(config: Any, stages: list[str]) -> str:
    """The resume key: a hash of the ``clips`` kind of keys (of the stages that run) and the
    stage list — what must be equal for finished videos of an output to be reused."""
    flat = flatten(_doc(config))
    keep = {k: v for k, v in flat.items() if kind_of(k, stages) == CLIPS}
    blob = json.dumps({"stages": list(stages), "keys": keep}, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
