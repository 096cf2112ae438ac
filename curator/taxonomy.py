"""Taxonomies: YAML files of labels with CLIP text prompts, shipped as package data and replaceable
by a user's file through a config key.

- the video-type taxonomy (``stages.video_type.taxonomy``, default ``data/taxonomy.yaml``): types
  with prompts and a sampling weight, and the deterministic per-clip draw the video_type stage
  samples types with;
- the place taxonomy (``stages.place_tag.taxonomy``, default ``data/places.yaml``): a fixed set of
  fields (:data:`PLACE_FIELDS`: place with its sub-kinds, setting, time of day, weather, crowd,
  decor, decor elements, city, region), each a closed list of labels with prompts and aliases,
  or free text (city, region). The manifest has one column per field (docs/places.md).

Both are read by :func:`_read_yaml` and their prompts checked by :func:`_prompts`."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from curator.config import ConfigError

#: the packaged taxonomies (stages.video_type.taxonomy / stages.place_tag.taxonomy unset)
DEFAULT_TAXONOMY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "taxonomy.yaml")
DEFAULT_PLACES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "places.yaml")


@dataclass(frozen=True)
class VideoType:
    key: str
    label: str
    prompts: tuple[str, ...]
    weight: float


@dataclass(frozen=True)
class Taxonomy:
    types: tuple[VideoType, ...]
    prompt_template: str = "{}"

    @property
    def keys(self) -> list[str]:
        return [t.key for t in self.types]

    def weight(self, key: str | None, overrides: dict[str, float]) -> float:
        if key in overrides:
            return float(overrides[key])
        for t in self.types:
            if t.key == key:
                return t.weight
        return 1.0


def data_path(path: str | None, name: str = "taxonomy.yaml") -> str:
    """`path` when given, else the packaged data file `name` (installed package data first)."""
    if path:
        return path
    try:  # installed package data
        from importlib.resources import files

        p = files("curator").joinpath(f"data/{name}")
        if p.is_file():
            return str(p)
    except Exception:
        pass
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", name)


def taxonomy_path(path: str | None) -> str:
    return data_path(path, "taxonomy.yaml")


def _read_yaml(path: str) -> dict[str, Any]:
    import yaml

    try:
        with open(path) as fh:
            doc = yaml.safe_load(fh) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read taxonomy {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"taxonomy {path} is not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"taxonomy {path}: top level must be a mapping")
    return doc


def _prompts(p: str, what: str, given: Any, default: str) -> tuple[str, ...]:
    prompts = given if given is not None else [default]
    if not isinstance(prompts, list) or not prompts or not all(isinstance(x, str) and x.strip() for x in prompts):
        raise ConfigError(f"taxonomy {p}: {what}: prompts must be a non-empty list of strings")
    return tuple(prompts)


def _template(p: str, doc: dict[str, Any]) -> str:
    template = str(doc.get("prompt_template") or "{}")
    if "{}" not in template:
        raise ConfigError(f"taxonomy {p}: prompt_template must contain '{{}}'")
    return template


@lru_cache(maxsize=8)
def load_taxonomy(path: str | None = None) -> Taxonomy:
    """Parse and validate a taxonomy YAML file (the packaged one by default)."""
    p = taxonomy_path(path)
    doc = _read_yaml(p)
    types = doc.get("types")
    if not isinstance(types, dict) or not types:
        raise ConfigError(f"taxonomy {p}: 'types' must be a non-empty mapping of type key -> spec")
    out = []
    for key, spec in types.items():
        spec = spec or {}
        prompts = _prompts(p, f"type {key!r}", spec.get("prompts"), spec.get("label") or key.replace("_", " "))
        w = spec.get("weight", 1.0)
        if not isinstance(w, (int, float)) or w < 0:
            raise ConfigError(f"taxonomy {p}: type {key!r}: weight must be a number >= 0")
        out.append(VideoType(str(key), str(spec.get("label") or key), prompts, float(w)))
    return Taxonomy(tuple(out), _template(p, doc))


def draw(clip_id: str, seed: int) -> float:
    """A deterministic u in (0, 1] per clip and seed."""
    h = hashlib.sha256(f"{seed}:{clip_id}".encode()).digest()
    return (int.from_bytes(h[:8], "big") + 1) / 2.0 ** 64


# ------------------------------------------------------------------ the place taxonomy
#: the fields of the place taxonomy, in column order (place_sub follows place); the manifest
#: has one column per field, so a user's taxonomy changes labels, never fields
PLACE_FIELDS = ("place", "setting", "time_of_day", "weather", "crowd", "decor", "decor_elements", "city", "region")
#: fields whose value is a list of labels (zero or more)
MULTI_FIELDS = frozenset({"decor_elements"})
#: fields whose value is free text (a VLM answer), not a label
TEXT_FIELDS = frozenset({"city", "region"})
#: the derived field of place sub-kinds (labels with a parent place)
SUB_FIELD = "place_sub"

_KEY = re.compile(r"^[a-z0-9][a-z0-9_]*$")


def norm_label(value: str) -> str:
    """A label as a key: lower case, runs of spaces, hyphens and slashes as one '_'."""
    return re.sub(r"[\s\-/]+", "_", value.strip().lower()).strip("_")


@dataclass(frozen=True)
class Label:
    key: str
    prompts: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    parent: str | None = None  # place_sub labels: their place kind


@dataclass(frozen=True)
class TagField:
    name: str
    kind: str  # "single" | "multi" | "text"
    labels: tuple[Label, ...] = ()
    nullable: bool = False
    description: str = ""

    @property
    def keys(self) -> list[str]:
        return [lab.key for lab in self.labels]

    def lookup(self, value: str) -> str | None:
        """The label key a (VLM) answer names, through aliases; None when it names none."""
        v = norm_label(value)
        for lab in self.labels:
            if v == lab.key or v in lab.aliases:
                return lab.key
        return None


@dataclass(frozen=True)
class PlaceTaxonomy:
    fields: dict[str, TagField]  # PLACE_FIELDS present in the file, plus place_sub when place has sub-kinds
    prompt_template: str = "{}"
    path: str = ""

    @property
    def closed(self) -> list[str]:
        """Single-label fields (classified from embeddings: zero-shot or a trained head)."""
        return [n for n, f in self.fields.items() if f.kind == "single"]

    def parent(self, sub: str) -> str | None:
        f = self.fields.get(SUB_FIELD)
        for lab in f.labels if f else ():
            if lab.key == sub:
                return lab.parent
        return None

    def subs_of(self, place: str | None) -> list[str]:
        f = self.fields.get(SUB_FIELD)
        return [lab.key for lab in (f.labels if f else ()) if lab.parent == place]

    def prompts(self, field: str, key: str) -> list[str]:
        """The text prompts of one label (a place kind's include its sub-kinds'), with the template."""
        f = self.fields[field]
        out: list[str] = []
        for lab in f.labels:
            if lab.key == key:
                out += lab.prompts
        if field == "place":
            sf = self.fields.get(SUB_FIELD)
            out += [p for lab in (sf.labels if sf else ()) if lab.parent == key for p in lab.prompts]
        return [self.prompt_template.format(p) for p in out]


def places_path(path: str | None) -> str:
    return data_path(path, "places.yaml")


def _label(p: str, field: str, key: Any, spec: Any, parent: str | None = None) -> tuple[Label, Any]:
    if not isinstance(key, str) or not _KEY.match(key):
        raise ConfigError(f"taxonomy {p}: {field}: label {key!r} must be lower case letters, digits and '_'")
    what = f"{field} label {key!r}"
    sub = None
    aliases: list[str] = []
    if spec is None or isinstance(spec, list):
        prompts = spec
    elif isinstance(spec, dict):
        unknown = set(spec) - {"prompts", "aliases", "sub", "description"}
        if unknown:
            raise ConfigError(f"taxonomy {p}: {what}: unknown keys {sorted(unknown)} "
                              "(a label has prompts, aliases, description, and for place kinds sub)")
        prompts, aliases, sub = spec.get("prompts"), spec.get("aliases") or [], spec.get("sub")
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise ConfigError(f"taxonomy {p}: {what}: aliases must be a list of strings")
    else:
        raise ConfigError(f"taxonomy {p}: {what}: give a list of prompts or a mapping (prompts, aliases, sub)")
    lab = Label(key, _prompts(p, what, prompts, key.replace("_", " ")),
                tuple(norm_label(a) for a in aliases), parent)
    return lab, sub


@lru_cache(maxsize=8)
def load_places(path: str | None = None) -> PlaceTaxonomy:
    """Parse and validate a place taxonomy YAML file (the packaged data/places.yaml by default)."""
    p = places_path(path)
    doc = _read_yaml(p)
    fields = doc.get("fields")
    if not isinstance(fields, dict) or not fields:
        raise ConfigError(f"taxonomy {p}: 'fields' must be a non-empty mapping of field -> spec")
    unknown = [f for f in fields if f not in PLACE_FIELDS]
    if unknown:
        raise ConfigError(f"taxonomy {p}: unknown fields {unknown}; the manifest has a column for each of "
                          f"{', '.join(PLACE_FIELDS)} (and place_sub for the sub-kinds of place)")
    out: dict[str, TagField] = {}
    for name in PLACE_FIELDS:
        if name not in fields:
            continue
        spec = fields[name] or {}
        if not isinstance(spec, dict):
            raise ConfigError(f"taxonomy {p}: field {name!r} must be a mapping (labels, nullable, description)")
        allowed = {"description", "nullable"} | (set() if name in TEXT_FIELDS else {"labels"})
        bad = set(spec) - allowed
        if bad:
            raise ConfigError(f"taxonomy {p}: field {name!r}: unknown keys {sorted(bad)} (allowed: "
                              f"{', '.join(sorted(allowed))}{'; it is free text' if name in TEXT_FIELDS else ''})")
        desc = str(spec.get("description") or "")
        if name in TEXT_FIELDS:
            out[name] = TagField(name, "text", (), True, desc)
            continue
        labels = spec.get("labels")
        if not isinstance(labels, dict) or not labels:
            raise ConfigError(f"taxonomy {p}: field {name!r}: 'labels' must be a non-empty mapping of label -> "
                              "prompts")
        labs, subs = [], []
        for key, lspec in labels.items():
            lab, sub = _label(p, name, key, lspec)
            if sub is not None:
                if name != "place":
                    raise ConfigError(f"taxonomy {p}: {name} label {key!r}: only place kinds have sub-kinds")
                if not isinstance(sub, dict) or not sub:
                    raise ConfigError(f"taxonomy {p}: place {key!r}: sub must be a mapping of sub-kind -> prompts")
                subs += [_label(p, SUB_FIELD, sk, sspec, parent=key)[0] for sk, sspec in sub.items()]
            labs.append(lab)
        kind = "multi" if name in MULTI_FIELDS else "single"
        nullable = bool(spec.get("nullable", kind == "multi"))
        for f in [TagField(name, kind, tuple(labs), nullable, desc)] + (
                [TagField(SUB_FIELD, "single", tuple(subs), True, f"the sub-kind of {name}")] if subs else []):
            _check_unique(p, f)
            out[f.name] = f
    return PlaceTaxonomy(out, _template(p, doc), p)


def _check_unique(p: str, f: TagField) -> None:
    seen: dict[str, str] = {}
    for lab in f.labels:
        for name in (lab.key, *lab.aliases):
            if name in seen and seen[name] != lab.key:
                raise ConfigError(f"taxonomy {p}: {f.name}: {name!r} names both {seen[name]!r} and {lab.key!r}")
            if name == lab.key and name in seen:
                raise ConfigError(f"taxonomy {p}: {f.name}: label {name!r} appears twice"
                                  + (" (sub-kind keys are unique over all place kinds)" if f.name == SUB_FIELD
                                     else ""))
            seen[name] = lab.key
