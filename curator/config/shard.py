"""Run-level phases' options: shard splits and profiles, dedup, the clip index."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from curator.config.base import Resources, _Model
from curator.where import columns as _where_columns
from curator.where import parse_condition, parse_rule  # noqa: F401  split rules: the one condition language

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
                    "'checks.<metric>' reads a filter's recorded score. Columns are checked against the manifest "
                    "when sharding; a clip whose value is missing does not qualify.",
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


class LatentProfileConfig(_Model):
    """Tokenizer windows encoded once by a video tokenizer's encoder (the Cosmos Tokenizer, or any
    TorchScript file / torch module with its contract): samples hold latents or token indices,
    so trainers never decode video. Windows, sizes and fps come from shard.tokenizer."""

    model: str = Field(
        "cosmos-tokenizer:CV8x8x8",
        description="The encoder: a registered id (cosmos-tokenizer:CV8x8x8, CV8x16x16, DV8x8x8, DV8x16x16; read "
                    "from the model directory, `curator models download ID`), a TorchScript file or a folder "
                    "holding encoder.jit (+ decoder.jit), or 'module:callable' returning a torch.nn.Module. Input "
                    "[B, 3, T, H, W] in [-1, 1]; output the latent [B, C, t, h, w] (continuous) or the indices "
                    "[B, t, h, w] (discrete), alone or first in a tuple.")
    decoder: str | None = Field(
        None, description="Decoder for `curator latents verify` (same forms as model); default: decoder.jit next "
                          "to the encoder.")
    revision: str | None = Field(
        None, description="Recorded with every sample (and part of the shards' digest); default: the sha256 of "
                          "the TorchScript file, or of the factory's module source.")
    kind: Literal["auto", "continuous", "discrete"] = Field(
        "auto", description="'auto': discrete when the encoder returns integers.")
    codebook_size: int | None = Field(
        None, ge=2, description="Discrete tokenizers: codebook size, which picks the smallest index dtype "
                                "(<= 256: uint8, <= 65536: uint16, else int32). Default: the registered id's "
                                "(64000 for Cosmos DV), else the module's `codebook_size` attribute.")
    dtype: Literal["float16", "bfloat16", "float32"] = Field(
        "float16", description="Continuous latents are stored in this dtype (.npy; bfloat16 as its uint16 bit "
                               "pattern, the json says so and the loader restores it).")
    precision: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Compute dtype of the encoder: 'auto' is bfloat16 on CUDA (as NVIDIA's examples) and "
                            "float32 on CPU.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where the encoder runs: 'auto' is CUDA when the worker sees a GPU (under Ray give "
                            "shard.latent.resources.num_gpus), else CPU.")
    batch_size: int = Field(4, ge=1, description="Windows per forward pass (one bucket, so one shape).")
    keep_video: bool = Field(False, description="Also store each window as mp4 (as the tokenizer profile does).")
    resources: Resources = Field(
        default_factory=lambda: Resources(num_cpus=1.0),
        description="Ray: num_cpus, num_gpus, memory_gb and custom of each latent shard task, e.g. {num_gpus: 1} "
                    "on a GPU cluster (a GPU task's worker is kept, so the encoder loads once per worker); the "
                    "actor-pool and batch keys do not apply.")


class ShardConfig(_Model):
    profile: list[Literal["wfm", "tokenizer", "latent"]] = Field(
        default_factory=lambda: ["wfm"],  # type: ignore[arg-type]  # mypy reads the lambda as list[str]
        description="Output profiles, one or a list: 'wfm' (clips as curated, bucketed by resolution x aspect "
                    "ratio x length), 'tokenizer' (re-encoded windows, see shard.tokenizer) and/or 'latent' "
                    "(the same windows encoded by a tokenizer, see shard.latent).")
    splits: dict[str, SplitRules] = Field(
        default_factory=lambda: {"pretrain": SplitRules()},
        description="Training sets and their selection rules, all written in one pass over the manifest: "
                    "shards/<split>/<profile>/<bucket>/. Default: 'pretrain' with every kept clip. Example: "
                    "{pretrain: {}, finetune: {where: ['quality_score >= 0.7'], bucket_max: 1000}}.")
    tokenizer: TokenizerProfileConfig = Field(default_factory=TokenizerProfileConfig)
    latent: LatentProfileConfig = Field(default_factory=LatentProfileConfig)
    samples_per_shard: int = Field(256, ge=1, description="Samples per tar (at most).")
    max_generated_fraction: float | None = Field(
        None, ge=0, le=1, description="At most this share of each split's clips per bucket may be generated footage "
        "(origin 'generated', `curator generate`); generated clips beyond it are left out, deciding in manifest "
        "order (deterministic). None: no limit.")
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
        default_factory=lambda: [0, 5, 10, 20, 30, 60],  # type: ignore[arg-type]  # ints kept: the docs and hash show them
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
        if "latent" in self.profile:
            from curator.models.cosmos import check_windows

            t = self.tokenizer
            check_windows(self.latent.model, t.temporal_factor, t.multiple, t.sizes)
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
    reference_index: str | None = Field(
        None, description="A clip index (storage URI) to dedup against as well: a kept clip within `threshold` of "
                          "a clip in it is marked `reason=duplicate_of_index` (`duplicate_of` = that clip). Needs the "
                          "same embedding model; runs even with `enabled: false` (then only this comparison). "
                          "`curator generate` sets it to its source index.")


class IndexConfig(_Model):
    """The clip index users search (`curator search`); see docs/dedup.md."""

    enabled: bool = Field(True, description="Add the run's clips to the clip index after dedup.")
    uri: str | None = Field(None, description="Index location (storage URI); default: <output>/index. Point several "
                                              "runs at one URI to search them together.")
    ivf_min_rows: int = Field(20_000, ge=1, description="Segments with at least this many clips get an IVF ANN "
                                                        "index; smaller ones are searched exactly.")
    nprobe: int = Field(16, ge=1, description="IVF lists searched per query.")
