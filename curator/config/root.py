"""The root model of a run (``PipelineConfig``): YAML loading, ``--set`` overrides, content hash."""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError

from curator.config.base import ConfigError, _Model
from curator.config.generate import GenerateConfig
from curator.config.run import RUNTIME_KEYS, ModelsConfig, ReportConfig, RunConfig
from curator.config.shard import DedupConfig, IndexConfig, ShardConfig
from curator.config.stages import StagesConfig
from curator.storage.config import StorageConfig


class PipelineConfig(_Model):
    """A whole curation run."""

    input: str | None = Field(None, description="Input URI: a folder or bucket prefix of raw videos.")
    output: str | None = Field(None, description="Output URI: staging, manifest and shards go here.")
    input_list: str | None = Field(
        None, description="Instead of (or beside) listing `input`: a file of input URIs (path or URI): text, one per "
                          "line; CSV or Parquet with a `uri` column, whose other columns (e.g. source_caption, "
                          "license) become string columns of the manifest's video and clip rows. Relative paths in "
                          "it are relative to the file's folder; with `input` too, keys below it name the videos.")
    run: RunConfig = Field(default_factory=RunConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    stages: StagesConfig = Field(default_factory=StagesConfig)
    shard: ShardConfig = Field(default_factory=ShardConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    index: IndexConfig = Field(default_factory=IndexConfig)
    generate: GenerateConfig = Field(default_factory=GenerateConfig)

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, overrides: list[str] | None = None,
             base: dict[str, Any] | None = None, **top: Any) -> "PipelineConfig":
        """`base` (e.g. a finished run's config) < YAML file (optional) < `key.path=value`
        overrides < keyword arguments."""
        data: dict[str, Any] = copy.deepcopy(base or {})
        if path:
            try:
                text = Path(path).read_text()
            except OSError as exc:
                raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
            try:
                loaded = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise ConfigError(f"{path} is not valid YAML: {exc}") from None
            if loaded is not None and not isinstance(loaded, dict):
                raise ConfigError(f"{path}: top level must be a mapping")
            _merge(data, loaded or {})
        for item in overrides or []:
            key, sep, raw = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"override {item!r} is not of the form key.path=value")
            _set_path(data, key.strip().split("."), yaml.safe_load(raw) if raw.strip() else None)
        for k, v in top.items():
            if v is not None:
                data[k] = v
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(_format_validation(exc)) from None

    def to_yaml(self, comments: bool = False) -> str:
        if comments:
            return _commented_yaml(self)
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def content_hash(self) -> str:
        """A hash of what determines the output (not where it runs or where it goes): recorded
        in config.yaml and the shard indexes. Whether a rerun may reuse finished videos is
        decided per key (:mod:`curator.config.changes`, the resume key), not by this hash."""
        d = self.model_dump(mode="json", exclude={"input", "output", "input_list", "run", "storage", "models",
                                                    "dedup", "index", "report", "generate"})
        for name, stage in d.get("stages", {}).items():
            if isinstance(stage, dict):
                stage.pop("resources", None)
                for dotted in RUNTIME_KEYS.get(name, ()):
                    *parents, leaf = dotted.split(".")
                    node: Any = stage
                    for p in parents:
                        node = node.get(p) if isinstance(node, dict) else None
                    if isinstance(node, dict):
                        node.pop(leaf, None)
        latent = d.get("shard", {}).get("latent", {})
        for key in ("resources", "device", "batch_size"):  # where and how wide the encoder runs
            latent.pop(key, None)
        blob = json.dumps(d, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> None:
    """Deep-merge `extra` into `base` (mappings merge, everything else replaces)."""
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v


def _set_path(data: dict[str, Any], keys: list[str], value: Any) -> None:
    cur = data
    for k in keys[:-1]:
        nxt = cur.get(k)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[k] = nxt
        cur = nxt
    cur[keys[-1]] = value


def _format_validation(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")  # pydantic's prefix for a validator's own message
        if err["type"] == "extra_forbidden":
            msg = "unknown key (see `curator config --defaults`)"
        lines.append(f"{loc}: {msg}")
    return "invalid config: " + "; ".join(lines)


def _commented_yaml(model: BaseModel, indent: int = 0) -> str:
    """YAML whose comments are the field descriptions."""
    out: list[str] = []
    pad = "  " * indent
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if field.description:
            out.append(f"{pad}# {field.description}")
        if isinstance(value, BaseModel):
            out.append(f"{pad}{name}:")
            out.append(_commented_yaml(value, indent + 1))
        elif isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value):
            out.append(f"{pad}{name}: {json.dumps(value)}")  # JSON is YAML flow style
        else:
            plain = model.model_dump(mode="json", include={name})[name]  # dicts of models, too
            dumped = yaml.safe_dump({name: plain}, sort_keys=False, default_flow_style=False).rstrip("\n")
            out.extend(pad + line for line in dumped.splitlines())
    return "\n".join(x for x in out if x != "")
