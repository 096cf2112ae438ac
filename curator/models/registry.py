"""The model directory and the models curator knows.

Layout under the model directory (``models.dir``, env ``CURATOR_MODEL_DIR``, default
``~/.cache/curator/models``)::

    open_clip/<arch>/<pretrained>/open_clip_config.json        {"model_cfg": ..., "preprocess_cfg": ...}
    open_clip/<arch>/<pretrained>/open_clip_model.safetensors  (or open_clip_pytorch_model.bin)
    hf/<org>/<name>/config.json + *.safetensors + processor / tokenizer files   (transformers layout)
    <name>/<file>...                                           small heads and other single files
    cosmos-tokenizer/<ID>/encoder.jit + decoder.jit            Cosmos Tokenizers (cosmos-tokenizer:<ID>)

Model names say which part of the layout they live in: ``open_clip:<arch>/<pretrained>``,
``hf:<org>/<name>``, or a bare ``<name>`` registered with its files. Names that are not in
:data:`KNOWN` still resolve (their layout follows from the prefix); registering a model
adds its size, description and download source for ``curator models list``.

Nothing here downloads except :func:`download`, which only ``curator models download``
calls.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Callable

from curator.models import cosmos
from curator.stage import Requirement


class ModelError(ValueError):
    """A model name is malformed or cannot be downloaded; the message says why."""


@dataclass(frozen=True)
class ModelSpec:
    """A model curator can use: where it lives in the model directory and where it comes from."""

    name: str  # "open_clip:ViT-B-32/openai", "hf:Qwen/Qwen2.5-VL-3B-Instruct", "my-head"
    kind: str  # "open_clip" | "hf" | "files"
    source: str  # download source: "open_clip:<arch>/<tag>", "hf:<org>/<repo>"
    size_mb: float | None = None
    description: str = ""
    files: tuple[str, ...] = field(default_factory=tuple)  # kind "files": files in <dir>/<name>/
    path: str = ""  # kind "files": folder under the model directory when it is not <name>

    @property
    def rel_path(self) -> str:
        if self.path:
            return os.path.join(*self.path.split("/"))
        if self.kind == "open_clip":
            arch, tag = split_open_clip(self.name)
            return os.path.join("open_clip", arch, tag)
        if self.kind == "hf":
            return os.path.join("hf", *self.name[len("hf:"):].split("/"))
        return self.name


KNOWN: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add a model (other modules register their heads here at import time)."""
    spec_kind_check(spec)
    KNOWN[spec.name] = spec
    return spec


def spec_kind_check(spec: ModelSpec) -> None:
    if spec.kind not in ("open_clip", "hf", "files"):
        raise ModelError(f"model {spec.name}: unknown kind {spec.kind!r}")
    if spec.kind == "files" and not spec.files:
        raise ModelError(f"model {spec.name}: kind 'files' needs its file names")


for _spec in [
    ModelSpec("open_clip:ViT-B-32/openai", "open_clip", "open_clip:ViT-B-32/openai", 605,
              "CLIP ViT-B/32 (OpenAI weights): clip embeddings, zero-shot video type"),
    ModelSpec("open_clip:ViT-B-32/laion2b_s34b_b79k", "open_clip", "open_clip:ViT-B-32/laion2b_s34b_b79k", 605,
              "CLIP ViT-B/32 trained on LAION-2B"),
    ModelSpec("open_clip:ViT-L-14/openai", "open_clip", "open_clip:ViT-L-14/openai", 1710,
              "CLIP ViT-L/14 (OpenAI weights): stronger embeddings, ~5x slower than ViT-B/32"),
    ModelSpec("hf:HuggingFaceTB/SmolVLM-256M-Instruct", "hf", "hf:HuggingFaceTB/SmolVLM-256M-Instruct", 515,
              "SmolVLM 256M: small VLM for the transformers caption backend (CPU-friendly)"),
    ModelSpec("hf:Qwen/Qwen2.5-VL-3B-Instruct", "hf", "hf:Qwen/Qwen2.5-VL-3B-Instruct", 7510,
              "Qwen2.5-VL 3B: captions (transformers on GPU, or vLLM)"),
    ModelSpec("hf:Qwen/Qwen2.5-VL-7B-Instruct", "hf", "hf:Qwen/Qwen2.5-VL-7B-Instruct", 16580,
              "Qwen2.5-VL 7B: captions with the vLLM backend"),
]:
    register(_spec)
for _tok in cosmos.KNOWN.values():
    register(ModelSpec(_tok.name, "files", f"hf:{_tok.repo}", _tok.size_mb,
                       f"Cosmos Tokenizer {_tok.id} ({_tok.kind}, {_tok.temporal}x time, {_tok.spatial}x space): "
                       "latent shards", (cosmos.ENCODER_FILE, cosmos.DECODER_FILE), _tok.rel_path))


# ------------------------------------------------------------------------ names
def split_open_clip(name: str) -> tuple[str, str]:
    body = name[len("open_clip:"):] if name.startswith("open_clip:") else name
    arch, sep, tag = body.partition("/")
    if not sep or not arch or not tag or "/" in tag:
        raise ModelError(f"{name!r}: open_clip models are named 'open_clip:<arch>/<pretrained>'")
    return arch, tag


def spec_for(name: str) -> ModelSpec:
    """The registered spec, or one derived from the name's prefix."""
    if name in KNOWN:
        return KNOWN[name]
    if name.startswith("open_clip:"):
        split_open_clip(name)
        return ModelSpec(name, "open_clip", name)
    if name.startswith("hf:"):
        parts = name[len("hf:"):].split("/")
        if len(parts) != 2 or not all(parts) or any(p in (".", "..") for p in parts):
            raise ModelError(f"{name!r}: Hugging Face models are named 'hf:<org>/<name>'")
        return ModelSpec(name, "hf", name)
    raise ModelError(f"unknown model {name!r}: use 'open_clip:<arch>/<pretrained>', 'hf:<org>/<name>' "
                     f"or a registered name ({', '.join(sorted(KNOWN))})")


def model_path(name: str, model_dir: str) -> str:
    """Where the model lives (a directory) under the model directory."""
    return os.path.join(os.path.expanduser(model_dir), spec_for(name).rel_path)


OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def missing(name: str, model_dir: str) -> list[str]:
    """Exact paths of what is missing for `name` (empty when it is complete)."""
    spec = spec_for(name)
    root = model_path(name, model_dir)
    if not os.path.isdir(root):
        return [root + os.sep]
    if spec.kind == "open_clip":
        out = []
        cfg = os.path.join(root, "open_clip_config.json")
        if not os.path.isfile(cfg):
            out.append(cfg)
        if not any(os.path.isfile(os.path.join(root, f)) for f in OPEN_CLIP_WEIGHTS):
            out.append(os.path.join(root, OPEN_CLIP_WEIGHTS[0]))
        return out
    if spec.kind == "hf":
        out = []
        if not os.path.isfile(os.path.join(root, "config.json")):
            out.append(os.path.join(root, "config.json"))
        out.extend(_missing_hf_weights(root))
        return out
    return [os.path.join(root, f) for f in spec.files if not os.path.isfile(os.path.join(root, f))]


def _missing_hf_weights(root: str) -> list[str]:
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = os.path.join(root, index_name)
        if os.path.isfile(index):
            try:
                with open(index) as fh:
                    shards = sorted(set(json.load(fh)["weight_map"].values()))
            except (OSError, ValueError, KeyError) as exc:
                return [f"{index} (unreadable: {exc})"]
            return [os.path.join(root, s) for s in shards if not os.path.isfile(os.path.join(root, s))]
    names = os.listdir(root)
    if any(n.endswith(".safetensors") or (n.startswith("pytorch_model") and n.endswith(".bin")) for n in names):
        return []
    return [os.path.join(root, "model.safetensors")]


def download_command(name: str, model_dir: str | None = None) -> str:
    cmd = f"curator models download {name}"
    if model_dir and os.path.abspath(os.path.expanduser(model_dir)) != os.path.abspath(_default_dir()):
        cmd += f" --model-dir {model_dir}"
    return cmd


def _default_dir() -> str:
    from curator.config import default_model_dir

    return os.path.expanduser(default_model_dir())


def requirement(name: str, model_dir: str, used_by: str) -> Requirement | None:
    """A start-up Requirement naming the exact missing path and the command that fixes it."""
    try:
        gaps = missing(name, model_dir)
    except ModelError as exc:
        return Requirement(f"{used_by}: {exc}")
    if not gaps:
        return None
    size = spec_for(name).size_mb
    what = f"{used_by} needs model {name}" + (f" (~{size:,.0f} MB)" if size else "")
    return Requirement(what, path=gaps[0] if len(gaps) == 1 else ", ".join(gaps),
                       fix=download_command(name, model_dir))


# -------------------------------------------------------------------- download
def download(name: str, model_dir: str, log: Callable[[str], None] = print) -> str:
    """Fetch a model into the model directory (the only code that touches a hub)."""
    spec = spec_for(name)
    dest = model_path(name, model_dir)
    log(f"downloading {name} from {spec.source} into {dest}")
    os.makedirs(dest, exist_ok=True)
    if spec.kind == "open_clip":
        _download_open_clip(spec, dest, log)
    elif spec.kind == "hf":
        _download_hf(spec.source[len("hf:"):], dest, None)
    else:
        if not spec.source.startswith("hf:"):
            raise ModelError(f"{name}: no download source; put {', '.join(spec.files)} into {dest}")
        _download_hf(spec.source[len("hf:"):], dest, list(spec.files))
    gaps = missing(name, model_dir)
    if gaps:
        raise ModelError(f"{name}: download finished but these are missing: {', '.join(gaps)}")
    log(f"{name}: complete in {dest}")
    return dest


def _download_open_clip(spec: ModelSpec, dest: str, log: Callable[[str], None]) -> None:
    import open_clip

    arch, tag = split_open_clip(spec.source)
    model_cfg = open_clip.get_model_config(arch)
    if model_cfg is None:
        raise ModelError(f"open_clip has no architecture {arch!r}")
    pcfg = open_clip.get_pretrained_cfg(arch, tag)
    if not pcfg:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        raise ModelError(f"open_clip has no pretrained tag {tag!r} for {arch} (known: {', '.join(tags)})")
    if pcfg.get("quick_gelu"):
        model_cfg["quick_gelu"] = True
    with tempfile.TemporaryDirectory(dir=dest, prefix=".download-") as tmp:
        path = open_clip.download_pretrained(pcfg, cache_dir=tmp)
        if not path:
            raise ModelError(f"open_clip gives no download source for {arch}/{tag}")
        target = OPEN_CLIP_WEIGHTS[0] if str(path).endswith(".safetensors") else OPEN_CLIP_WEIGHTS[1]
        shutil.copyfile(path, os.path.join(dest, target + ".part"))
        os.replace(os.path.join(dest, target + ".part"), os.path.join(dest, target))
    preprocess = {k: pcfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in pcfg}
    write_open_clip_config(dest, model_cfg, preprocess)
    log(f"wrote {os.path.join(dest, target)} and open_clip_config.json")


def write_open_clip_config(dest: str, model_cfg: dict, preprocess_cfg: dict | None = None) -> str:
    """The config file the open_clip loader reads (also used by tests that build tiny models)."""
    path = os.path.join(dest, "open_clip_config.json")
    doc = {"model_cfg": model_cfg, "preprocess_cfg": {k: list(v) if isinstance(v, tuple) else v
                                                      for k, v in (preprocess_cfg or {}).items()}}
    with open(path + ".part", "w") as fh:
        json.dump(doc, fh, indent=1)
    os.replace(path + ".part", path)
    return path


def _download_hf(repo_id: str, dest: str, files: list[str] | None) -> None:
    from huggingface_hub import HfApi, snapshot_download

    if files is None:
        listed = HfApi().list_repo_files(repo_id)
        patterns = ["*.json", "*.jinja", "*.txt", "*.model", "*.tiktoken", "*.py"]
        patterns.append("*.safetensors" if any(f.endswith(".safetensors") for f in listed) else "*.bin")
    else:
        patterns = files
    snapshot_download(repo_id, local_dir=dest, allow_patterns=patterns)


# ------------------------------------------------------------------------ report
@dataclass
class Status:
    name: str
    path: str
    present: bool
    missing: list[str]
    size_mb: float | None
    description: str


def status(name: str, model_dir: str) -> Status:
    spec = spec_for(name)
    gaps = missing(name, model_dir)
    return Status(name, model_path(name, model_dir), not gaps, gaps, spec.size_mb, spec.description)


def installed(model_dir: str) -> list[str]:
    """Names of complete models found in the model directory (registered or not)."""
    root = os.path.expanduser(model_dir)
    found: list[str] = []
    oc = os.path.join(root, "open_clip")
    if os.path.isdir(oc):
        for arch in sorted(os.listdir(oc)):
            if os.path.isdir(os.path.join(oc, arch)):
                for tag in sorted(os.listdir(os.path.join(oc, arch))):
                    found.append(f"open_clip:{arch}/{tag}")
    hf = os.path.join(root, "hf")
    if os.path.isdir(hf):
        for org in sorted(os.listdir(hf)):
            if os.path.isdir(os.path.join(hf, org)):
                for nm in sorted(os.listdir(os.path.join(hf, org))):
                    found.append(f"hf:{org}/{nm}")
    found += [n for n, s in KNOWN.items() if s.kind == "files"]
    out = []
    for n in found:
        try:
            if not missing(n, model_dir):
                out.append(n)
        except ModelError:
            continue
    return out
