"""The model directory and the models curator knows.

Layout under the model directory (``models.dir``, env ``CURATOR_MODEL_DIR``, default
``~/.cache/curator/models``)::

    open_clip/<arch>/<pretrained>/open_clip_config.json        {"model_cfg": ..., "preprocess_cfg": ...}
    open_clip/<arch>/<pretrained>/open_clip_model.safetensors  (or open_clip_pytorch_model.bin)
    hf/<org>/<name>/config.json + *.safetensors + processor / tokenizer files   (transformers layout)
    <name>/<file>...                                           small heads and other single files
    cosmos-tokenizer/<ID>/encoder.jit + decoder.jit            Cosmos Tokenizers (cosmos-tokenizer:<ID>)

Model names say which part of the layout they live in: ``open_clip:<arch>/<pretrained>``,
``hf:<org>/<name>``, or a bare ``<name>`` registered with its files. A Hugging Face name
may pin a revision (``hf:<org>/<name>@<revision>``: a commit, tag or branch); a pinned
model lives in ``hf/<org>/<name>@<revision>/`` so revisions sit side by side, is
downloaded at that revision, and is recorded with it in the manifest. Before the model
directory, the Hugging Face cache (``HF_HUB_CACHE``, else ``HF_HOME/hub``, else
``~/.cache/huggingface/hub``) is read: a complete ``models--<org>--<name>/snapshots/<commit>/``
there (the pinned revision, or the one ``refs/main`` names) is used as it is. Names that are not in
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
    revision: str | None = None  # a pinned revision (commit, tag, branch) of an hf source

    @property
    def rel_path(self) -> str:
        pin = f"@{self.revision}" if self.revision else ""
        if self.path:
            return os.path.join(*self.path.split("/")) + pin
        if self.kind == "open_clip":
            arch, tag = split_open_clip(self.name)
            return os.path.join("open_clip", arch, tag)
        if self.kind == "hf":
            base, _ = split_revision(self.name)
            prefix, _, body = base.partition(":")
            return os.path.join("hf", *body.split("/")) + pin
        return self.name

    @property
    def repo_id(self) -> str | None:
        """The Hugging Face repository of an hf source (None for others)."""
        return self.source[len("hf:"):] if self.source.startswith("hf:") else None


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
    ModelSpec("hf-video:microsoft/xclip-base-patch32", "hf", "hf:microsoft/xclip-base-patch32", None,
              "X-CLIP base/32 (8 frames): video embeddings with a text tower (transformers XCLIPModel)"),
    ModelSpec("hf-video:nvidia/Cosmos-Embed1-224p", "hf", "hf:nvidia/Cosmos-Embed1-224p", 2400,
              "Cosmos-Embed1 224p (8 frames): video-text embeddings; runs its repository code "
              "(stages.embed.trust_remote_code=true)"),
]:
    register(_spec)
#: DOVER's published weights (README of github VQAssessment/DOVER links teowu/DOVER on Hugging Face)
register(ModelSpec("dover", "files", "hf:teowu/DOVER", None,
                   "DOVER video quality (technical + aesthetic views): stage dover; needs the dover package",
                   ("DOVER.pth",), "dover"))
#: the LAION improved-aesthetic-predictor head over CLIP ViT-L/14 image embeddings
register(ModelSpec("aesthetic", "files",
                   "url:https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/main/", 3.7,
                   "LAION improved-aesthetic-predictor head (sac+logos+ava1, linear MSE) over CLIP ViT-L/14: "
                   "stage aesthetic (with open_clip:ViT-L-14/openai)",
                   ("sac+logos+ava1-l14-linearMSE.pth",), "aesthetic"))
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


#: prefixes whose body is a Hugging Face repository (hf-video: video-text models for stages.embed)
HF_PREFIXES = ("hf:", "hf-video:")
_REV_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def split_revision(name: str) -> tuple[str, str | None]:
    """("hf:org/name", "rev") for "hf:org/name@rev"; (name, None) without a pin."""
    base, sep, rev = name.rpartition("@")
    if not sep:
        return name, None
    if not rev or not set(rev) <= _REV_OK or rev in (".", ".."):
        raise ModelError(f"{name!r}: a revision is a commit, tag or branch name (letters, digits, '._-')")
    return base, rev


def spec_for(name: str) -> ModelSpec:
    """The registered spec, or one derived from the name's prefix; '@<revision>' pins an hf source."""
    import dataclasses

    if name in KNOWN:
        return KNOWN[name]
    base, rev = split_revision(name)
    if rev is not None:
        spec = spec_for(base)
        if not spec.source.startswith("hf:"):
            raise ModelError(f"{name!r}: only models from Hugging Face (hf:, hf-video:, registered hf sources) "
                             "take a pinned revision")
        return dataclasses.replace(spec, name=name, revision=rev)
    if name.startswith("open_clip:"):
        split_open_clip(name)
        return ModelSpec(name, "open_clip", name)
    for prefix in HF_PREFIXES:
        if name.startswith(prefix):
            parts = name[len(prefix):].split("/")
            if len(parts) != 2 or not all(parts) or any(p in (".", "..") for p in parts):
                raise ModelError(f"{name!r}: Hugging Face models are named '{prefix}<org>/<name>[@<revision>]'")
            return ModelSpec(name, "hf", "hf:" + name[len(prefix):])
    raise ModelError(f"unknown model {name!r}: use 'open_clip:<arch>/<pretrained>', 'hf:<org>/<name>' "
                     f"or a registered name ({', '.join(sorted(KNOWN))})")


def dir_path(name: str, model_dir: str) -> str:
    """Where the model lives (or would be downloaded to) under the model directory."""
    return os.path.join(os.path.expanduser(model_dir), spec_for(name).rel_path)


def model_path(name: str, model_dir: str) -> str:
    """Where the model is read from: a complete copy in the Hugging Face cache, else the model directory."""
    own = dir_path(name, model_dir)
    if os.path.isdir(own):
        return own
    cached = hf_cache_path(name)
    if cached is not None:
        return cached
    base, rev = split_revision(name)
    if rev is not None and name not in KNOWN:  # a recorded id: the unpinned copy downloaded at that commit
        plain = dir_path(base, model_dir)
        try:
            with open(os.path.join(plain, REVISION_FILE)) as fh:
                if fh.read().strip() == rev:
                    return plain
        except OSError:
            pass
    return own


# ---------------------------------------------------------------- Hugging Face cache
def hf_cache_dir() -> str:
    """The hub cache huggingface_hub uses: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return os.path.join(os.path.expanduser(home), "hub")


def hf_cache_snapshot(repo_id: str, revision: str | None) -> tuple[str, str] | None:
    """(snapshot folder, commit) of repo_id at revision (None: main) in the hub cache, if it is there."""
    root = os.path.join(hf_cache_dir(), "models--" + repo_id.replace("/", "--"))
    rev = revision or "main"
    commit = rev
    ref = os.path.join(root, "refs", rev)
    if os.path.isfile(ref):
        with open(ref) as fh:
            commit = fh.read().strip()
    snap = os.path.join(root, "snapshots", commit)
    return (snap, commit) if commit and os.path.isdir(snap) else None


def hf_cache_path(name: str) -> str | None:
    """The complete hub-cache snapshot of an hf model (None: not there, not complete, not from the hub)."""
    try:
        spec = spec_for(name)
    except ModelError:
        return None
    if spec.repo_id is None:
        return None
    found = hf_cache_snapshot(spec.repo_id, spec.revision)
    if found is None:
        return None
    snap = found[0]
    if spec.kind == "hf":
        complete = os.path.isfile(os.path.join(snap, "config.json")) and not _missing_hf_weights(snap)
    else:
        complete = all(os.path.isfile(os.path.join(snap, f)) for f in spec.files)
    return snap if complete else None


REVISION_FILE = ".curator-revision"


def revision_of(name: str, model_dir: str) -> str | None:
    """The revision of the copy that is read: the pin, the hub-cache snapshot's commit, or the commit
    `curator models download` recorded (None: unknown, e.g. placed by hand)."""
    spec = spec_for(name)
    if spec.revision:
        return spec.revision
    path = model_path(name, model_dir)
    if spec.repo_id and path != dir_path(name, model_dir):
        found = hf_cache_snapshot(spec.repo_id, None)
        return found[1] if found else None
    try:
        with open(os.path.join(path, REVISION_FILE)) as fh:
            return fh.read().strip() or None
    except OSError:
        return None


def recorded_name(name: str, model_dir: str) -> str:
    """The model id the manifest records: the name with '@<revision>' when the revision is known."""
    try:
        if split_revision(name)[1] is not None:
            return name
        rev = revision_of(name, model_dir)
    except ModelError:
        return name
    return f"{name}@{rev}" if rev else name


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


@dataclass
class DownloadPlan:
    """What `curator models download NAME` would do, without doing it."""

    name: str
    source: str  # "hf:<repo>" or "open_clip:<arch>/<tag>" or "url:..."
    revision: str | None
    files: tuple[str, ...]
    dest: str
    cached: str | None  # a complete hub-cache snapshot that is used instead
    command: str

    def describe(self) -> str:
        if self.cached:
            return f"{self.name}: found in the Hugging Face cache at {self.cached}; nothing to download"
        rev = f" at revision {self.revision}" if self.revision else ""
        files = f" ({', '.join(self.files)})" if self.files else ""
        return f"{self.name}: would download from {self.source}{rev}{files} into {self.dest}"


def plan(name: str, model_dir: str) -> DownloadPlan:
    """The download of `name` (dry run: no network)."""
    spec = spec_for(name)
    return DownloadPlan(name, spec.source, spec.revision, spec.files, dir_path(name, model_dir),
                        hf_cache_path(name), download_command(name, model_dir))


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
    cached = hf_cache_path(name)
    if cached is not None:
        log(f"{name}: found in the Hugging Face cache at {cached}; nothing to download")
        return cached
    dest = dir_path(name, model_dir)
    rev = f" at revision {spec.revision}" if spec.revision else ""
    log(f"downloading {name} from {spec.source}{rev} into {dest}")
    os.makedirs(dest, exist_ok=True)
    if spec.kind == "open_clip":
        _download_open_clip(spec, dest, log)
    elif spec.source.startswith("url:"):
        _download_urls(spec, dest, log)
    elif spec.kind == "hf":
        _download_hf(spec.source[len("hf:"):], dest, None, spec.revision)
    else:
        if not spec.source.startswith("hf:"):
            raise ModelError(f"{name}: no download source; put {', '.join(spec.files)} into {dest}")
        _download_hf(spec.source[len("hf:"):], dest, list(spec.files), spec.revision)
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


def _download_hf(repo_id: str, dest: str, files: list[str] | None, revision: str | None = None) -> None:
    from huggingface_hub import HfApi, snapshot_download

    api = HfApi()
    commit = api.model_info(repo_id, revision=revision).sha
    if files is None:
        listed = api.list_repo_files(repo_id, revision=commit or revision)
        patterns = ["*.json", "*.jinja", "*.txt", "*.model", "*.tiktoken", "*.py"]
        patterns.append("*.safetensors" if any(f.endswith(".safetensors") for f in listed) else "*.bin")
    else:
        patterns = files
    snapshot_download(repo_id, local_dir=dest, allow_patterns=patterns, revision=commit or revision)
    if commit:
        with open(os.path.join(dest, REVISION_FILE), "w") as fh:
            fh.write(commit + "\n")


def _download_urls(spec: ModelSpec, dest: str, log: Callable[[str], None]) -> None:
    """Files published at plain URLs (source "url:<base>/"; one file per name in spec.files)."""
    import urllib.parse
    import urllib.request

    base = spec.source[len("url:"):]
    for f in spec.files:
        url = base + urllib.parse.quote(f)
        log(f"fetching {url}")
        part = os.path.join(dest, f + ".part")
        with urllib.request.urlopen(url, timeout=120) as resp, open(part, "wb") as out:  # noqa: S310
            shutil.copyfileobj(resp, out)
        os.replace(part, os.path.join(dest, f))


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
