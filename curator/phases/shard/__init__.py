"""Phase `shard`: kept clips into webdataset tars, per training split, output profile and bucket.

A global phase over the consolidated manifest, in one pass: each kept clip is tested
against every split's rules (`shard.splits`), and each split it enters receives the clip
in every output profile (`shard.profile`):

- ``wfm``: the clip as curated (its staged mp4), bucketed by resolution x aspect ratio x
  length (``res720_ar16x9_len5-10s``);
- ``tokenizer``: the clip resampled to a fixed fps, resized and centre-cropped to a size
  divisible by the tokenizer's spatial factor, cut into windows of 1 + factor*k frames,
  each re-encoded as its own sample ``<clip_id>-w000``; bucketed by exact shape
  (``448x256_t121``: width x height, frames), so a batch from one bucket stacks.
- ``latent``: the same windows, encoded once by a video tokenizer (Cosmos Tokenizer or
  any encoder with its contract): ``<key>.latent.npy`` instead of an mp4 (:mod:`.latent`);
  its shards run with ``shard.latent.resources`` (a GPU share on a GPU cluster).

Layout under the output (names from :class:`curator.rundir.RunDir`)::

    shards/index.json                                   splits x profiles, with counts
    shards/README.md                                    dataset card
    shards/<split>/<profile>/index.json                 the split's shards: samples, first sample, bytes
    shards/<split>/<profile>/<bucket>/shard-000000.tar  <key>.mp4 + <key>.json (+ <key>.txt, ...)
    shards/<split>/<profile>/<bucket>/shard-000000.json shard index: keys, byte offsets, digest

Modules: :mod:`.plan` (buckets, split selection, the plan), :mod:`.write` (tars, indexes,
stale removal), :mod:`.latent` (the latent profile's encoding), :mod:`.card` (the dataset
card). The plan is deterministic (manifest order, then bucket); the same manifest gives the
same names and bytes.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from curator.config import LatentProfileConfig
from curator.models.tokenizer import TokenizerError
from curator.phases.base import PhaseError, PhaseState
from curator.phases.shard import latent
from curator.phases.shard.card import ManifestStats, card, write_card
from curator.phases.shard.plan import (
    JSON_EXCLUDE,
    PROFILES,
    Planner,
    Sample,
    Selection,
    ShardError,
    ShardSpec,
    aspect_of,
    bucket_of,
    plan,
    sample_json,
    tokenizer_bucket,
)
from curator.phases.shard.write import (
    build_indexes,
    remove_stale,
    shard_uris,
    split_index_uri,
    write_indexes,
    write_shard,
)
from curator.records import Row
from curator.rundir import RunDir

NAME = "shard"
REQUIRES = ("manifest",)
POPULATES = ("shards",)

__all__ = ["JSON_EXCLUDE", "PROFILES", "ManifestStats", "Planner", "Sample", "Selection", "ShardError",
           "ShardSpec", "aspect_of", "build_indexes", "bucket_of", "card", "plan", "remove_stale", "run",
           "sample_json", "shard_uris", "split_index_uri", "tokenizer_bucket", "write_card", "write_indexes",
           "write_shard"]


def sample_text_files(row: Row) -> list[tuple[str, bytes]]:
    """Extra members of a shard sample: the caption as `<clip_id>.txt` (webdataset's text key)."""
    caption = row.get("caption")
    return [(f"{row['clip_id']}.txt", caption.encode("utf-8"))] if caption else []


class _Write:
    """The per-shard work shipped to the runner's workers: the run folder travels with
    its storage options (and the latent profile's settings with the model directory), so a
    worker needs nothing from the driver's process state."""

    def __init__(self, rundir: RunDir, latent_cfg: LatentProfileConfig | None = None, model_dir: str = ""):
        self.rundir = rundir
        self.latent = latent_cfg
        self.model_dir = model_dir

    def __call__(self, spec: ShardSpec) -> dict[str, Any]:
        self.rundir.activate()
        payloads = None
        if spec.profile == "latent":
            assert self.latent is not None
            payloads = latent.Payloads(self.latent, self.model_dir)
        return write_shard(spec, self.rundir.uri, extra_files=sample_text_files, payloads=payloads)


def _hash(doc: Any) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def run(state: PhaseState) -> list[dict[str, Any]]:
    """Plan shards from the manifest (one open, one pass feeding every split and profile)
    and write them with the runner's parallel map; then the split indexes,
    shards/index.json and the dataset card (shards/README.md). Returns one result per shard."""
    rundir, config = state.rundir, state.config
    stats = ManifestStats()
    results = []
    lat = config.shard.latent
    identity = None
    if "latent" in config.shard.profile:
        try:  # before anything is written: the encoder exists, and its revision goes into the digests
            identity = latent.identity(lat, config.models.dir)
        except TokenizerError as exc:
            raise PhaseError(f"shard profile latent: {exc}") from None
    with rundir.open_manifest(NAME) as mf:
        try:
            planner = Planner(config.shard, mf.names, latent=identity)
        except ShardError as exc:
            raise PhaseError(str(exc)) from None
        specs = planner.plan(stats.tally(mf.rows(batch_rows=2048)))
        work = _Write(rundir, lat, config.models.dir)
        for r in state.map(work, specs, resources=lambda spec: lat.resources if spec.profile == "latent" else None):
            results.append(r)
            if state.on_shard:
                state.on_shard()
    indexes = build_indexes(results, config.shard)
    index_uris = [split_index_uri(rundir.uri, s, p) for s, p in indexes]
    remove_stale(rundir.uri, [r["shard"] for r in results], keep=index_uris)
    run_rec = rundir.run_info()
    info = {"run_config_hash": run_rec.get("config_hash"), "stages": run_rec.get("stages"),
            "shard_config_hash": _hash(config.shard.model_dump(mode="json"))}
    write_indexes(rundir.uri, indexes, {"config_hash": info["run_config_hash"],
                                        "shard_config_hash": info["shard_config_hash"],
                                        "profiles": list(config.shard.profile),
                                        "clips": planner.clips})
    write_card(rundir.uri, card(indexes, config.shard, planner, stats, info))
    return results
