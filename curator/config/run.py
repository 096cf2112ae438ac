"""Run-level options: runner, models directory, report."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, field_validator

from curator.config.base import _Model


class RunConfig(_Model):
    runner: Literal["ray", "local"] = Field("ray", description="'ray' (streaming Ray Data) or 'local' (in-process).")
    address: str | None = Field(
        None, description="Ray cluster address (ray://host:10001 or 'auto'); none starts an embedded Ray."
    )
    num_cpus: int | None = Field(None, ge=1, description="CPUs for an embedded Ray; default: all.")
    listing_part_size: int = Field(2000, ge=1, description="Input URIs per listing part (the unit Ray reads).")
    fuse_stages: bool = Field(
        True, description="Ray: run neighbouring stages that need the same kind of node (same GPU share and custom "
        "resources) in one operator, at most one model-loading stage each, so rows are not passed between "
        "processes at every stage; false: one operator per stage."
    )
    max_error_rate: float = Field(
        0.5, ge=0, le=1, description="`curator run` exits non-zero (status 4) when more than this fraction of the "
        "input videos failed (status `error`: unreadable, broken, lost); rejections by filters are not errors."
    )
    limit: int | None = Field(
        None, ge=1, description="Trial runs: only the first N inputs, in listing order (after run.sample).")
    sample: float | None = Field(
        None, description="Trial runs: a fraction (0 < f <= 1) of the inputs, chosen by a hash of each input's key "
                          "and run.sample_seed: the same fraction gives the same videos on every run, a larger one "
                          "a superset.")
    sample_seed: int = Field(0, description="Seed of run.sample's selection (and of `curator plan`'s sample).")
    resume: bool = Field(True, description="Skip input videos that a previous run already finished.")
    only_failed: bool = Field(False, description="With resume: redo only videos that ended with an error before.")
    item_timeout_s: float = Field(1800.0, gt=0, description="Time limit per video or clip per stage ('timeout').")
    task_retries: int = Field(3, ge=0, description="Ray: retries of a task whose worker died (crash, kill, hang).")
    max_failed_blocks: int = Field(
        -1, description="Ray: blocks that may fail after their retries before the job stops (-1: no limit; "
                        "their videos are recorded as 'lost').")
    wait_for_resources: bool = Field(
        False, description="Ray: when the stages need more than a cluster that cannot grow has (GPUs, memory, "
        "custom resources), warn and wait for nodes to join instead of failing at start-up."
    )
    shard: bool = Field(True, description="Write webdataset shards after curation.")
    provenance: str | None = Field(
        None, description="JSONL file of per-input provenance columns (source_key + origin, generator, gen_model, "
        "prompt, seed, target_cell, condition_clip), copied onto each input's video and clip rows; inputs it does "
        "not name get origin 'real'. `curator generate` writes one for its footage (docs/generate.md).")
    log_level: str = Field("INFO", description="Python log level.")
    progress_interval_s: float = Field(15.0, gt=0, description="Seconds between progress lines when not on a terminal.")

    @field_validator("sample")
    @classmethod
    def _fraction(cls, v: float | None) -> float | None:
        if v is not None and not 0 < v <= 1:
            raise ValueError(f"must be a fraction of the inputs, 0 < f <= 1 (e.g. 0.05 for 5 %), not {v:g}")
        return v


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
    "split": ("encode_shots",),  # where clips are encoded, not what they contain
    "embed": ("device", "forward_batch_size"),
    "caption": ("device", "batch_size", "endpoint.url", "endpoint.api_key_env", "endpoint.concurrency",
                "endpoint.timeout_s", "endpoint.retries", "endpoint.backoff_s", "endpoint.rate_limit_rps",
                "vllm.gpu_memory_utilization", "vllm.tensor_parallel_size"),
    "place_tag": ("device",),
}


class ReportConfig(_Model):
    """`curator report RUN`: what the HTML report shows (it never changes a run's output)."""

    thumbs_per_reason: int = Field(3, ge=0, le=50, description="Example thumbnails per reject reason.")
    kept_thumbs: int = Field(12, ge=0, le=200, description="Thumbnails of kept clips (a deterministic sample).")
    dedup_groups: int = Field(6, ge=0, le=100, description="Duplicate groups shown with thumbnails, largest first.")
    dedup_members: int = Field(4, ge=2, le=50, description="Clips shown per duplicate group (the kept one first).")
    thumb_width: int = Field(224, ge=32, le=1024, description="Thumbnail width in pixels.")
    histogram_bins: int = Field(30, ge=2, le=500, description="Bins of each score histogram.")
    max_previews: int = Field(
        24, ge=0, le=200, description="Animated WebP previews on the page, at most (about half for kept clips, the "
                                      "rest spread over the reject reasons); 0: stills only. Each is ~10-60 KB.")
    preview_frames: int = Field(10, ge=2, le=32, description="Frames of each animated preview, uniformly spaced.")
    preview_width: int = Field(160, ge=32, le=512, description="Width of the animated previews in pixels.")
    max_source_mb: float = Field(
        256.0, ge=0, description="Video-level thumbnails come from the source video; remote sources larger "
                                 "than this are not fetched (a labelled placeholder is shown instead).")
    max_dedup_groups_counted: int = Field(
        1_000_000, ge=1, description="Memory bound: distinct duplicate groups whose sizes are tallied.")
