"""One typed config for a curation run.

The pydantic model below is the single source of truth: it is the schema of the YAML
file, the set of keys `--set a.b=c` accepts on the command line, and the text of
`curator config --defaults` (field descriptions become comments). No parallel list of
flags exists anywhere else.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from curator.storage.config import StorageConfig
from curator.where import columns as _where_columns
from curator.where import parse_condition, parse_rule  # noqa: F401  split rules: the one condition language


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the key."""


# --------------------------------------------------------------------------- resources
class Resources(_Model):
    """Where and how wide a stage runs. The runner maps this onto Ray resources."""

    num_cpus: float = Field(1.0, ge=0, description="CPUs reserved per task / actor.")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per actor (fractions share a GPU).")
    memory_gb: float | None = Field(None, ge=0, description="Memory reserved per task / actor (scheduling hint).")
    custom: dict[str, float] = Field(
        default_factory=dict, description="Custom Ray resources, e.g. {nvenc: 1} to run only where NVENC exists."
    )
    min_actors: int = Field(1, ge=1, description="Actor pool lower bound (model-loading stages).")
    max_actors: int = Field(2, ge=1, description="Actor pool upper bound; the pool autoscales between the two.")
    batch_size: int = Field(1, ge=1, description="Rows per process() call.")


def _res(**kw: Any) -> Any:
    return Field(default_factory=lambda: Resources(**kw), description="Resources for this stage.")


class StageConfig(_Model):
    enabled: bool = Field(True, description="Run this stage.")
    resources: Resources = _res()


# ------------------------------------------------------------------------------ stages
VIDEO_EXTENSIONS = [".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".mts", ".flv", ".wmv", ".3gp"]


class IngestConfig(StageConfig):
    extensions: list[str] = Field(default_factory=lambda: list(VIDEO_EXTENSIONS),
                                  description="Listed objects with these suffixes are inputs (case-insensitive).")
    max_size_gb: float = Field(20.0, gt=0, description="Larger inputs are rejected (reason 'too_large').")
    max_duration_s: float = Field(6 * 3600.0, gt=0, description="Longer inputs are rejected ('too_long').")
    max_pixels: int = Field(8192 * 8192, gt=0, description="Width x height above this is rejected ('too_many_pixels').")
    max_fps: float = Field(1000.0, gt=0, description="Frame rates above this (or zero) mean a broken header ('bad_header').")
    min_duration_s: float = Field(2.0, ge=0, description="Shorter inputs are rejected ('too_short').")
    resources: Resources = _res(num_cpus=0.5, batch_size=1)


class SplitConfig(StageConfig):
    method: Literal["transnetv2", "scenedetect", "fixed"] = Field(
        "transnetv2", description="Shot detector: TransNetV2 (default), PySceneDetect adaptive, or a fixed stride."
    )
    threshold: float = Field(0.4, gt=0, lt=1, description="TransNetV2 transition probability threshold.")
    scenedetect_threshold: float = Field(3.0, gt=0, description="PySceneDetect AdaptiveDetector adaptive_threshold.")
    stride_s: float = Field(10.0, gt=0, description="Clip length for method 'fixed'.")
    min_clip_s: float = Field(2.0, ge=0, description="Shots shorter than this are dropped.")
    max_clip_s: float = Field(60.0, gt=0, description="Shots longer than this are cut into pieces of at most this.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Device for TransNetV2.")
    resources: Resources = _res(num_cpus=1.0, min_actors=1, max_actors=2)

    @field_validator("max_clip_s")
    @classmethod
    def _max_ge_min(cls, v: float, info: Any) -> float:
        mn = info.data.get("min_clip_s", 0)
        if v < mn:
            raise ValueError(f"max_clip_s ({v}) must be >= min_clip_s ({mn})")
        return v


#: the custom Ray resource that cluster configs advertise on NVENC-capable GPU nodes
NVENC_RESOURCE = "nvenc"


class TranscodeConfig(StageConfig):
    encoder: Literal["auto", "cpu", "gpu"] = Field(
        "auto", description="'gpu' = PyNvVideoCodec NVDEC + NVENC; 'cpu' = libx264; 'auto' = GPU when usable."
    )
    crf: int = Field(18, ge=0, le=51, description="libx264 constant rate factor (lower = higher quality).")
    preset: str = Field("veryfast", description="libx264 preset.")
    gpu_bitrate_mbps: float = Field(10.0, gt=0, description="NVENC target bitrate.")
    max_short_side: int | None = Field(None, ge=16, description="Downscale clips whose short side is larger.")
    resources: Resources = _res(num_cpus=1.0, batch_size=1)

    @model_validator(mode="before")
    @classmethod
    def _gpu_wants_nvenc(cls, data: Any) -> Any:
        """encoder=gpu places transcoding where NVENC exists: unless set explicitly, the
        stage asks for the custom Ray resource `nvenc` (1) and one GPU. Cluster configs
        advertise `nvenc` only on NVENC-capable GPU nodes (L4, L40S, A10G; not H100/A100)."""
        if not isinstance(data, dict) or data.get("encoder") != "gpu":
            return data
        given = data.get("resources")
        if isinstance(given, Resources):  # an instance (assignment): keep what was set on it
            res = given.model_dump(exclude_unset=True)
        else:
            res = dict(given) if isinstance(given, dict) else {"num_cpus": 1.0, "batch_size": 1}
        if "custom" in res and not isinstance(res["custom"], dict):
            return data  # let field validation report it
        res["custom"] = {NVENC_RESOURCE: 1.0, **(res.get("custom") or {})}
        res.setdefault("num_gpus", 1.0)
        # on assignment pydantic keeps the other fields as returned: hand back an instance
        return {**data, "resources": Resources(**res) if isinstance(given, Resources) else res}


# ----------------------------------------------------------------------------- filters
class FilterConfig(StageConfig):
    """What every filter stage has. A threshold of null records the score without checking it."""

    score_rejected: bool = Field(
        False, description="Also score clips that an earlier filter rejected (their status is kept), so "
                           "`curator refilter` can re-admit them with every score known. Costs compute.")


class MotionConfig(FilterConfig):
    method: Literal["auto", "mv", "flow"] = Field(
        "auto", description="'mv' = codec motion vectors (PyAV export_mvs); 'flow' = Farneback optical flow on "
                            "sampled low-resolution frames; 'auto' = motion vectors when the decoder exports "
                            "them, else flow.")
    analysis_size: int = Field(160, ge=32, description="Long side (px) of the frames optical flow runs on.")
    windows: int = Field(3, ge=1, description="Flow: windows of consecutive frames sampled over the clip.")
    window_frames: int = Field(6, ge=3, description="Flow: consecutive frames per window (>= 3 for shakiness).")
    min_motion: float | None = Field(
        0.005, ge=0, description="Keep clips whose motion_score (mean motion, fraction of the frame diagonal per "
                                "second) is at least this; below is 'static'.")
    max_shake: float | None = Field(
        1.0, ge=0, description="Keep clips whose shake_score (frame-to-frame jitter of the global motion, % of "
                               "the frame diagonal) is at most this; above is 'shaky'.")
    pan_threshold: float = Field(
        0.04, gt=0, description="Camera translation (fraction of the frame width/height per second) from which "
                                "a clip is tagged pan_*/tilt_*.")
    zoom_threshold: float = Field(
        0.04, gt=0, description="Relative scale change per second from which a clip is tagged zoom_in/zoom_out.")
    resources: Resources = _res(num_cpus=1.0, batch_size=4)


class QualityConfig(FilterConfig):
    sample_frames: int = Field(3, ge=1, description="Frames sampled uniformly per clip.")
    max_side: int = Field(480, ge=64, description="Frames with a longer side are downscaled to this for BRISQUE, "
                                                  "sharpness and noise (blockiness uses the coded size).")
    min_score: float | None = Field(
        0.5, ge=0, le=1, description="Keep clips whose combined technical quality_score (0..1) is at least this.")
    max_brisque: float | None = Field(None, description="Keep clips whose mean BRISQUE (0 best .. 100 worst) is "
                                                        "at most this (null: not checked on its own).")
    min_sharpness: float | None = Field(None, ge=0, description="Keep clips whose sharpness (variance of the "
                                                                "Laplacian at max_side) is at least this.")
    max_clipped: float | None = Field(None, ge=0, le=1, description="Keep clips whose fraction of clipped "
                                                                     "(black or white) pixels is at most this.")
    max_blockiness: float | None = Field(None, ge=0, description="Keep clips whose blockiness (8x8 grid edge "
                                                                 "ratio, 1 = none) is at most this.")
    drop_bottom_percent: float = Field(
        0.0, ge=0, lt=100, description="Global rule: after the run, drop this percentage of clips with the lowest "
                                       "quality_score over the whole run's manifest (the reference design drops "
                                       "the bottom 15 % by DOVER). 0 = off.")
    weights: dict[str, float] = Field(
        default_factory=lambda: {"brisque": 0.35, "sharpness": 0.2, "noise": 0.2, "exposure": 0.1,
                                 "blockiness": 0.15},
        description="Weights of the sub-scores in quality_score.")
    resources: Resources = _res(num_cpus=1.0, batch_size=4)


class AestheticConfig(FilterConfig):
    weights: str = Field("aesthetic/head.pth", description="MLP head over CLIP image embeddings (state dict in the "
                                                           "LAION improved-aesthetic-predictor layout), relative "
                                                           "to models.dir.")
    clip_model: str = Field("open_clip:ViT-L-14/openai", description="The CLIP model the head was trained on "
                                                                    "(a model-directory name).")
    sample_frames: int = Field(4, ge=1, description="Frames scored per clip (the clip score is their mean).")
    min_score: float | None = Field(3.5, description="Keep clips whose aesthetic_score is at least this (reference: 3.5).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Torch device.")
    resources: Resources = _res(num_cpus=1.0, batch_size=8)


class DoverConfig(FilterConfig):
    weights: str = Field("dover/dover.pt", description="A DOVER-style video quality model exported with "
                                                        "TorchScript, relative to models.dir (see docs/filters.md).")
    frames: int = Field(32, ge=1, description="Frames per clip given to the model.")
    size: int = Field(224, ge=32, description="Side of the square frames given to the model.")
    min_score: float | None = Field(None, description="Keep clips whose dover_score is at least this.")
    drop_bottom_percent: float = Field(
        15.0, ge=0, lt=100, description="Global rule: drop this percentage of clips with the lowest dover_score "
                                        "over the whole run (the reference design: 15).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Torch device.")
    resources: Resources = _res(num_cpus=1.0, batch_size=4)


class TextOverlayConfig(FilterConfig):
    sample_frames: int = Field(6, ge=1, description="Frames sampled uniformly per clip for OCR.")
    det_limit_side: int = Field(640, ge=64, description="Frames are scaled so the long side is at most this "
                                                        "before detection (larger is slower).")
    min_text_confidence: float = Field(0.5, ge=0, le=1, description="A detected box counts as text when "
                                                                    "recognition reads it with this confidence.")
    min_chars: int = Field(2, ge=1, description="... and at least this many letters or digits.")
    max_text_area: float | None = Field(
        0.01, ge=0, le=1, description="Keep clips whose text_area (mean fraction of the frame covered by text "
                                      "boxes over the sampled frames) is at most this.")
    max_text_frames: float | None = Field(
        None, ge=0, le=1, description="Keep clips whose text_frames_fraction (sampled frames with text) is at "
                                      "most this (null: not checked).")
    resources: Resources = _res(num_cpus=1.0, batch_size=4)


class VideoTypeConfig(FilterConfig):
    taxonomy: str | None = Field(None, description="Taxonomy YAML (types, prompts, sampling weights); null = the "
                                                   "built-in curator/data/taxonomy.yaml.")
    head: str | None = Field(
        "video_type/head.pt", description="MLP head from `curator train-type-head`, relative to models.dir; used "
                                          "instead of zero-shot prompts when the file exists.")
    weights: dict[str, float] = Field(
        default_factory=dict, description="Per-type sampling weights overriding the taxonomy's: 0 = drop, "
                                          "<1 = down-sample, >1 = up-sample.")
    min_confidence: float | None = Field(
        None, ge=0, le=1, description="Keep clips whose video_type_score (probability of the chosen type) is at "
                                      "least this.")
    seed: int = Field(0, description="Seed of the deterministic per-clip sampling draw for weights < 1.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Torch device for the text tower / head.")
    resources: Resources = _res(num_cpus=1.0, batch_size=16)


class StagingConfig(_Model):
    keep_rejected_clips: bool = Field(
        True, description="Also stage clips a filter rejected, so `curator refilter` can re-admit them."
    )
    resources: Resources = _res(num_cpus=0.25, batch_size=4)


_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


class SplitRules(_Model):
    """Which kept clips go into one training set. Every split selects independently from all
    kept clips, so a clip can be in several (the fine-tuning set is normally a subset of
    the pre-training set)."""

    where: list[str] = Field(
        default_factory=list,
        description="Conditions that must all hold, each a `curator search --where` predicate "
                    "(e.g. \"quality_score >= 0.6 AND video_type != 'talking_head'\", \"tags CONTAINS 'indoor'\") or "
                    "'<column> <op> <value>' with a bare value (e.g. 'video_type != talking_head'); "
                    "'checks.<metric>' reads a filter's recorded score. Columns are checked against the manifest when sharding; a clip "
                    "whose value is missing does not qualify.",
    )
    type_column: str = Field("video_type", description="Manifest column holding a clip's type (for type quotas).")
    type_max_fraction: dict[str, float] = Field(
        default_factory=dict,
        description="Per type: at most this fraction of the split's clips. Held at every point of the single "
                    "pass over the manifest (a clip is admitted only if the fraction stays within bounds).",
    )
    type_max_count: dict[str, int] = Field(default_factory=dict, description="Per type: at most this many clips.")
    bucket_max: int | None = Field(
        None, ge=1, description="At most this many clips per bucket (resolution x aspect ratio x length).")
    bucket_caps: dict[str, int] = Field(
        default_factory=dict, description="Per bucket name (e.g. res720_ar16x9_len5-10s): at most this many clips.")

    @field_validator("where")
    @classmethod
    def _conditions(cls, v: list[str]) -> list[str]:
        for text in v:
            parse_rule(text)
        return v

    @field_validator("type_max_fraction")
    @classmethod
    def _fractions(cls, v: dict[str, float]) -> dict[str, float]:
        for k, f in v.items():
            if not 0 <= f <= 1:
                raise ValueError(f"type_max_fraction[{k}] must be within [0, 1]")
        return v

    @field_validator("type_max_count", "bucket_caps")
    @classmethod
    def _counts(cls, v: dict[str, int]) -> dict[str, int]:
        for k, n in v.items():
            if n < 0:
                raise ValueError(f"[{k}] must be >= 0")
        return v

    def columns(self) -> list[str]:
        """Manifest columns these rules read (checks.<metric> reads `checks`)."""
        cols = [c.split(".")[0] for w in self.where for c in sorted(_where_columns(parse_rule(w)))]
        if self.type_max_fraction or self.type_max_count:
            cols.append(self.type_column)
        return list(dict.fromkeys(cols))


class TokenizerProfileConfig(_Model):
    """Samples shaped for causal video tokenizers: fixed fps, 1 + factor*k frames, sizes
    divisible by the spatial compression, long clips cut into windows."""

    short_side: int = Field(
        256, ge=1, description="Short side in pixels (a multiple of `multiple`); the long side follows the clip's "
                               "aspect-ratio bucket (shard.aspect_ratios), rounded to a multiple.")
    multiple: int = Field(16, ge=1, description="Width and height are multiples of this (8 or 16 for tokenizers).")
    sizes: dict[str, list[int]] = Field(
        default_factory=dict,
        description="Exact [width, height] per aspect-ratio bucket, e.g. {'16:9': [1280, 704]}; overrides short_side.")
    temporal_factor: int = Field(8, ge=1, description="Frame counts are 1 + temporal_factor * k (8 or 4).")
    max_frames: int = Field(
        121, ge=1, description="Window length (1 + temporal_factor * k): clips are cut into non-overlapping "
                               "windows of this many frames, each its own sample (<clip_id>-w000, -w001, ...).")
    min_frames: int = Field(
        17, ge=1, description="The rest of a clip after its full windows (or a whole shorter clip) becomes one "
                              "window of the largest 1 + temporal_factor * k frames that fits, if that is at least "
                              "this many; otherwise it is left out.")
    fps: float = Field(24.0, gt=0, description="Frame rate of the samples: frames are dropped or repeated to reach it.")
    crf: int = Field(18, ge=0, le=51, description="libx264 constant rate factor of the re-encoded windows.")
    preset: str = Field("veryfast", description="libx264 preset of the re-encoded windows.")
    threads: int = Field(
        1, ge=0, description="libx264 threads per encode (0 = auto). A fixed number keeps shard bytes identical "
                             "across machines; shards are written in parallel anyway.")

    @model_validator(mode="after")
    def _check(self) -> "TokenizerProfileConfig":
        m, f = self.multiple, self.temporal_factor
        if self.short_side % m:
            raise ValueError(f"short_side ({self.short_side}) must be a multiple of multiple ({m})")
        if (self.max_frames - 1) % f:
            raise ValueError(f"max_frames ({self.max_frames}) must be 1 + {f} * k")
        if self.min_frames > self.max_frames:
            raise ValueError("min_frames must be <= max_frames")
        for ar, wh in self.sizes.items():
            if len(wh) != 2 or any(x <= 0 or x % m for x in wh):
                raise ValueError(f"sizes[{ar}] must be [width, height], positive multiples of {m}")
        return self


class ShardConfig(_Model):
    profile: list[Literal["wfm", "tokenizer"]] = Field(
        default_factory=lambda: ["wfm"],
        description="Output profiles, one or a list: 'wfm' (clips as curated, bucketed by resolution x aspect "
                    "ratio x length) and/or 'tokenizer' (re-encoded windows, see shard.tokenizer).")
    splits: dict[str, SplitRules] = Field(
        default_factory=lambda: {"pretrain": SplitRules()},
        description="Training sets and their selection rules, all written in one pass over the manifest: "
                    "shards/<split>/<profile>/<bucket>/. Default: 'pretrain' with every kept clip. Example: "
                    "{pretrain: {}, finetune: {where: ['quality_score >= 0.7'], bucket_max: 1000}}.")
    tokenizer: TokenizerProfileConfig = Field(default_factory=TokenizerProfileConfig)
    samples_per_shard: int = Field(256, ge=1, description="Samples per tar (at most).")
    max_shard_mb: float = Field(1024.0, gt=0, description="Bytes per tar (at most, unless one sample is larger).")
    resolution_edges: list[int] = Field(
        default_factory=lambda: [0, 240, 360, 480, 720, 1080, 1440, 2160],
        description="Bucket edges on the short side in pixels; a clip goes to the largest edge <= its short side.",
    )
    aspect_ratios: list[str] = Field(
        default_factory=lambda: ["9:16", "3:4", "1:1", "4:3", "16:9", "21:9"],
        description="Aspect-ratio buckets (width:height); a clip goes to the nearest on a log scale.",
    )
    length_edges_s: list[float] = Field(
        default_factory=lambda: [0, 5, 10, 20, 30, 60],
        description="Bucket edges on clip duration in seconds.",
    )

    @field_validator("profile", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [v]
        if isinstance(v, list):
            if not v:
                raise ValueError("at least one profile")
            v = list(dict.fromkeys(v))
        return v

    @field_validator("splits")
    @classmethod
    def _split_names(cls, v: dict[str, SplitRules]) -> dict[str, SplitRules]:
        if not v:
            raise ValueError("at least one split")
        for name in v:
            if not _NAME.match(name):
                raise ValueError(f"split name {name!r}: use letters, digits, '_' and '-' only")
        return v

    @field_validator("resolution_edges", "length_edges_s")
    @classmethod
    def _sorted(cls, v: list[float]) -> list[float]:
        if not v or sorted(v) != list(v) or len(set(v)) != len(v):
            raise ValueError("bucket edges must be strictly increasing and non-empty")
        return v

    @field_validator("aspect_ratios")
    @classmethod
    def _ratios(cls, v: list[str]) -> list[str]:
        for r in v:
            w, sep, h = r.partition(":")
            if not sep or not (w.isdigit() and h.isdigit()) or int(w) == 0 or int(h) == 0:
                raise ValueError(f"aspect ratio {r!r} is not of the form W:H")
        return v

    @model_validator(mode="after")
    def _sizes_known(self) -> "ShardConfig":
        unknown = set(self.tokenizer.sizes) - set(self.aspect_ratios)
        if unknown:
            raise ValueError(f"tokenizer.sizes names aspect ratios not in aspect_ratios: {sorted(unknown)}")
        return self


class DedupConfig(_Model):
    """The global dedup phase over a run's manifest (docs/dedup.md)."""

    enabled: bool = Field(True, description="Run dedup after curation, before sharding (`curator dedup RUN` runs it alone).")
    exact: bool = Field(True, description="Group clips whose encoded bytes are identical (clip_sha256).")
    semantic: bool = Field(True, description="Group clips whose embeddings are near-identical (k-means, then "
                                             "pairwise cosine similarity inside each cluster).")
    embeddings: Literal["auto", "manifest", "perceptual"] = Field(
        "auto", description="Embeddings to compare: the manifest's `embedding` column ('manifest'), the built-in "
                            "perceptual embedding computed from the staged clips ('perceptual'), or the column "
                            "when the run has one and the perceptual embedding otherwise ('auto').")
    threshold: float | None = Field(
        None, gt=0, le=1, description="Cosine similarity at or above which two clips are duplicates; default: "
                                      "0.8 for the built-in perceptual embedding, 0.9 for model embeddings (CLIP).")
    k: int | None = Field(None, ge=1, description="k-means clusters; default: round(sqrt(clips)), capped by the sample.")
    sample_size: int = Field(100_000, ge=1, description="Embeddings k-means is trained on (a uniform reservoir sample).")
    niter: int = Field(20, ge=1, description="k-means iterations.")
    block_size: int = Field(256, ge=1, description="Rows per similarity block inside a cluster.")
    max_probes: int = Field(4, ge=1, description="Clusters a clip is compared in at most: its own plus those whose "
                                                 "border lies within the threshold of it (1 = own cluster only).")
    method: Literal["auto", "faiss", "sklearn", "cuml"] = Field(
        "auto", description="k-means implementation: cuML on a GPU, faiss or scikit-learn on CPU; 'auto' picks "
                            "cuML when device resolves to cuda, else faiss, else scikit-learn.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where k-means runs ('auto': cuda when usable).")
    batch_rows: int = Field(65_536, ge=256, description="Embeddings per streamed batch / spill part.")
    quality_column: str | None = Field(
        None, description="Manifest column (higher is better) that breaks ties after resolution and length "
                          "when choosing the clip to keep.")
    spill_uri: str | None = Field(
        None, description="Where per-cluster spill files go (a storage URI). Default: a local temp dir; with a "
                          "multi-node Ray cluster: <output>/_work/dedup.")
    seed: int = Field(0, description="Seed of the sample and of k-means (same input + seed = same decisions).")


class IndexConfig(_Model):
    """The clip index users search (`curator search`); see docs/dedup.md."""

    enabled: bool = Field(True, description="Add the run's clips to the clip index after dedup.")
    uri: str | None = Field(None, description="Index location (storage URI); default: <output>/index. Point several "
                                              "runs at one URI to search them together.")
    ivf_min_rows: int = Field(20_000, ge=1, description="Segments with at least this many clips get an IVF ANN "
                                                        "index; smaller ones are searched exactly.")
    nprobe: int = Field(16, ge=1, description="IVF lists searched per query.")

# ------------------------------------------------------------------ embed and caption
class EmbedConfig(StageConfig):
    model: str = Field(
        "perceptual",
        description="'perceptual' (built-in, weight-free 512-d DCT descriptor; works offline) or "
                    "'open_clip:<arch>/<pretrained>' (e.g. open_clip:ViT-B-32/openai) read from the model directory.",
    )
    num_frames: int = Field(8, ge=1, le=256, description="Uniformly spaced frames per clip (open_clip backend).")
    forward_batch_size: int = Field(
        64, ge=1, description="Frames per forward pass of the image tower (clips per call is resources.batch_size)."
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="'auto' = CUDA when the worker sees a GPU.")
    precision: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        "auto", description="Inference precision; 'auto' = fp16 autocast on CUDA, fp32 on CPU."
    )
    resources: Resources = _res(num_cpus=1.0, min_actors=1, max_actors=2, batch_size=8)

    @field_validator("model")
    @classmethod
    def _model_name(cls, v: str) -> str:
        if v != "perceptual" and not (v.startswith("open_clip:") and "/" in v[len("open_clip:"):]):
            raise ValueError("must be 'perceptual' or 'open_clip:<arch>/<pretrained>'")
        return v


class CaptionEndpointConfig(_Model):
    url: str | None = Field(
        None, description="OpenAI-compatible base URL (http://host:8000/v1) or full .../chat/completions URL."
    )
    api_key_env: str | None = Field(
        None, description="Name of the environment variable that holds the API key (sent as a Bearer token; "
                          "never logged). None: no Authorization header."
    )
    concurrency: int = Field(8, ge=1, le=1024, description="Requests in flight per caption worker.")
    timeout_s: float = Field(60.0, gt=0, description="Per-request socket timeout in seconds.")
    retries: int = Field(3, ge=0, description="Retries after the first attempt on 5xx, 408/429, timeouts, "
                                              "connection errors and malformed JSON.")
    backoff_s: float = Field(1.0, ge=0, description="First retry delay; doubles per retry (capped at 30 s), "
                                                    "with jitter; a Retry-After header is honoured.")
    rate_limit_rps: float | None = Field(
        None, gt=0, description="Requests per second per caption worker (None: unlimited)."
    )
    image_format: Literal["jpeg", "png"] = Field("jpeg", description="Encoding of the frames in the data URLs.")
    jpeg_quality: int = Field(90, ge=1, le=100, description="JPEG quality of the frames sent.")
    extra_body: dict[str, Any] = Field(
        default_factory=dict, description="Extra JSON fields merged into every request body."
    )


class CaptionVllmConfig(_Model):
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1, description="Share of GPU memory vLLM may take.")
    max_model_len: int | None = Field(None, ge=256, description="Context length (None: the model's).")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs per engine.")
    dtype: str = Field("auto", description="vLLM dtype ('auto', 'bfloat16', 'float16').")
    quantization: str | None = Field(None, description="vLLM quantization, e.g. 'fp8' (None: as stored).")


DEFAULT_CAPTION_PROMPT = "Elaborate on the visual and narrative elements of the video in detail"


class CaptionConfig(StageConfig):
    backend: Literal["transformers", "vllm", "endpoint"] = Field(
        "transformers", description="'transformers' (generate on CPU or GPU; small VLMs), 'vllm' (offline engine, "
                                    "GPU, batched) or 'endpoint' (an OpenAI-compatible chat-completions server).",
    )
    model: str = Field(
        "hf:HuggingFaceTB/SmolVLM-256M-Instruct",
        description="transformers / vllm: a model-directory name 'hf:<org>/<name>' (see `curator models list`); "
                    "endpoint: the model name sent to the server.",
    )
    prompt: str = Field(DEFAULT_CAPTION_PROMPT, description="The instruction sent with the frames.")
    prompt_version: str | None = Field(
        None, description="Stored per clip as caption_prompt_version; None: 'sha-' + the prompt's hash."
    )
    num_frames: int = Field(8, ge=1, le=64, description="Uniformly spaced frames per clip (first and last included).")
    frame_size: list[int] | None = Field(
        None, description="Exact [width, height] of the frames given to the model; None: keep the aspect ratio "
                          "with the long side at max_side.",
    )
    max_side: int = Field(448, ge=16, description="Long side of the frames when frame_size is None (never upscaled).")
    max_tokens: int = Field(512, ge=1, description="Maximum new tokens per caption.")
    temperature: float = Field(0.0, ge=0, description="Sampling temperature (0: greedy).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass.")
    batch_size: int = Field(8, ge=1, description="Clips per generate call (transformers, vllm).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="transformers backend device.")
    precision: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        "auto", description="transformers backend dtype; 'auto' = bf16 on CUDA, fp32 on CPU."
    )
    on_error: Literal["keep", "error"] = Field(
        "keep", description="A clip whose caption failed after retries: 'keep' it (caption null, reason in "
                            "caption_error) or mark it status 'error' (reason caption_failed; not sharded).",
    )
    text_encoder: str | None = Field(
        None, description="Optional: 'hf:<org>/<name>' text encoder (e.g. a T5) in the model directory; captions "
                          "are then also stored as caption_embedding (mean-pooled, unit norm, float16).",
    )
    text_encoder_max_tokens: int = Field(512, ge=8, description="Caption tokens the text encoder reads.")
    endpoint: CaptionEndpointConfig = Field(default_factory=CaptionEndpointConfig)
    vllm: CaptionVllmConfig = Field(default_factory=CaptionVllmConfig)
    resources: Resources = _res(num_cpus=1.0, min_actors=1, max_actors=1, batch_size=8)

    @field_validator("frame_size")
    @classmethod
    def _frame_size(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (len(v) != 2 or min(v) < 16):
            raise ValueError("frame_size must be [width, height], each >= 16")
        return v

    def resolved_prompt_version(self) -> str:
        if self.prompt_version:
            return self.prompt_version
        return "sha-" + hashlib.sha256(self.prompt.encode()).hexdigest()[:10]
#: the default middle of the pipeline: filters cheapest first (see benchmarks/filters_bench.py)
DEFAULT_ORDER = ["motion", "quality", "text_overlay", "embed", "video_type", "aesthetic", "dover", "caption"]


class StagesConfig(_Model):
    order: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ORDER),
        description="Stages between transcode and staging, in run order (filters cheapest first, then "
                    "embed, video type, caption). A stage listed here still needs enabled: true.",
    )
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    transcode: TranscodeConfig = Field(default_factory=TranscodeConfig)
    embed: EmbedConfig = Field(default_factory=EmbedConfig)
    caption: CaptionConfig = Field(default_factory=CaptionConfig)
    motion: MotionConfig = Field(default_factory=MotionConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    aesthetic: AestheticConfig = Field(default_factory=AestheticConfig)
    dover: DoverConfig = Field(default_factory=DoverConfig)
    text_overlay: TextOverlayConfig = Field(default_factory=TextOverlayConfig)
    video_type: VideoTypeConfig = Field(default_factory=VideoTypeConfig)
    staging: StagingConfig = Field(default_factory=StagingConfig)


# -------------------------------------------------------------------------- run level
class RunConfig(_Model):
    runner: Literal["ray", "local"] = Field("ray", description="'ray' (streaming Ray Data) or 'local' (in-process).")
    address: str | None = Field(
        None, description="Ray cluster address (ray://host:10001 or 'auto'); none starts an embedded Ray."
    )
    num_cpus: int | None = Field(None, ge=1, description="CPUs for an embedded Ray; default: all.")
    listing_part_size: int = Field(2000, ge=1, description="Input URIs per listing part (the unit Ray reads).")
    resume: bool = Field(True, description="Skip input videos that a previous run already finished.")
    only_failed: bool = Field(False, description="With resume: redo only videos that ended with an error before.")
    item_timeout_s: float = Field(1800.0, gt=0, description="Time limit per video or clip per stage ('timeout').")
    task_retries: int = Field(3, ge=0, description="Ray: retries of a task whose worker died (crash, kill, hang).")
    max_failed_blocks: int = Field(
        -1, description="Ray: blocks that may fail after their retries before the job stops (-1: no limit; "
                        "their videos are recorded as 'lost').")
    shard: bool = Field(True, description="Write webdataset shards after curation.")
    log_level: str = Field("INFO", description="Python log level.")
    progress_interval_s: float = Field(15.0, gt=0, description="Seconds between progress lines when not on a terminal.")


def default_model_dir() -> str:
    return os.environ.get("CURATOR_MODEL_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "curator", "models"
    )


class ModelsConfig(_Model):
    dir: str = Field(default_factory=default_model_dir,
                     description="Model directory (env CURATOR_MODEL_DIR). See docs/models.md for its layout.")


#: per stage, keys that say how a stage runs, not what it produces: left out of the
#: content hash, so changing them does not make a rerun into the same output refuse
RUNTIME_KEYS: dict[str, tuple[str, ...]] = {
    "embed": ("device", "forward_batch_size"),
    "caption": ("device", "batch_size", "endpoint.url", "endpoint.api_key_env", "endpoint.concurrency",
                "endpoint.timeout_s", "endpoint.retries", "endpoint.backoff_s", "endpoint.rate_limit_rps",
                "vllm.gpu_memory_utilization", "vllm.tensor_parallel_size"),
}
class ReportConfig(_Model):
    """`curator report RUN`: what the HTML report shows (it never changes a run's output)."""

    thumbs_per_reason: int = Field(3, ge=0, le=50, description="Example thumbnails per reject reason.")
    kept_thumbs: int = Field(12, ge=0, le=200, description="Thumbnails of kept clips (a deterministic sample).")
    dedup_groups: int = Field(6, ge=0, le=100, description="Duplicate groups shown with thumbnails, largest first.")
    dedup_members: int = Field(4, ge=2, le=50, description="Clips shown per duplicate group (the kept one first).")
    thumb_width: int = Field(224, ge=32, le=1024, description="Thumbnail width in pixels.")
    histogram_bins: int = Field(30, ge=2, le=500, description="Bins of each score histogram.")
    max_source_mb: float = Field(
        256.0, ge=0, description="Video-level thumbnails come from the source video; remote sources larger "
                                 "than this are not fetched (a labelled placeholder is shown instead).")
    max_dedup_groups_counted: int = Field(
        1_000_000, ge=1, description="Memory bound: distinct duplicate groups whose sizes are tallied.")


class PipelineConfig(_Model):
    """A whole curation run."""

    input: str | None = Field(None, description="Input URI: a folder or bucket prefix of raw videos.")
    output: str | None = Field(None, description="Output URI: staging, manifest and shards go here.")
    run: RunConfig = Field(default_factory=RunConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    stages: StagesConfig = Field(default_factory=StagesConfig)
    shard: ShardConfig = Field(default_factory=ShardConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    index: IndexConfig = Field(default_factory=IndexConfig)

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
        """A hash of what determines the output (not where it runs or where it goes)."""
        # dedup and index are global phases that redo their work from the manifest on every
        # run, so changing them never invalidates staged clips.
        d = self.model_dump(mode="json", exclude={"input", "output", "run", "storage", "models", "dedup", "index",
                                                    "report"})
        for name, stage in d.get("stages", {}).items():
            if isinstance(stage, dict):
                stage.pop("resources", None)
                for dotted in RUNTIME_KEYS.get(name, ()):
                    *parents, leaf = dotted.split(".")
                    node = stage
                    for p in parents:
                        node = node.get(p) if isinstance(node, dict) else None
                    if isinstance(node, dict):
                        node.pop(leaf, None)
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
        msg = err["msg"]
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
