"""The video-type taxonomy: a YAML file of types (key, label, CLIP prompts, sampling weight), and the
deterministic per-clip draw the video_type stage samples types with."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache

from curator.config import ConfigError

#: the packaged taxonomy (stages.video_type.taxonomy unset)
DEFAULT_TAXONOMY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "taxonomy.yaml")


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


def taxonomy_path(path: str | None) -> str:
    if path:
        return path
    try:  # installed package data
        from importlib.resources import files

        p = files("curator").joinpath("data/taxonomy.yaml")
        if p.is_file():
            return str(p)
    except Exception:
        pass
    return DEFAULT_TAXONOMY


@lru_cache(maxsize=8)
def load_taxonomy(path: str | None = None) -> Taxonomy:
    """Parse and validate a taxonomy YAML file (the packaged one by default)."""
    import yaml

    p = taxonomy_path(path)
    try:
        with open(p) as fh:
            doc = yaml.safe_load(fh) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read taxonomy {p}: {exc.strerror}") from None
    types = doc.get("types")
    if not isinstance(types, dict) or not types:
        raise ConfigError(f"taxonomy {p}: 'types' must be a non-empty mapping of type key -> spec")
    out = []
    for key, spec in types.items():
        spec = spec or {}
        prompts = spec.get("prompts") or [spec.get("label") or key.replace("_", " ")]
        if not isinstance(prompts, list) or not all(isinstance(x, str) and x.strip() for x in prompts):
            raise ConfigError(f"taxonomy {p}: type {key!r}: prompts must be a list of strings")
        w = spec.get("weight", 1.0)
        if not isinstance(w, (int, float)) or w < 0:
            raise ConfigError(f"taxonomy {p}: type {key!r}: weight must be a number >= 0")
        out.append(VideoType(str(key), str(spec.get("label") or key), tuple(prompts), float(w)))
    template = str(doc.get("prompt_template") or "{}")
    if "{}" not in template:
        raise ConfigError(f"taxonomy {p}: prompt_template must contain '{{}}'")
    return Taxonomy(tuple(out), template)


def draw(clip_id: str, seed: int) -> float:
    """A deterministic u in (0, 1] per clip and seed."""
    h = hashlib.sha256(f"{seed}:{clip_id}".encode()).digest()
    return (int.from_bytes(h[:8], "big") + 1) / 2.0 ** 64
