"""Shard: kept clips into webdataset tars, bucketed by resolution x aspect ratio x length.

A global phase over the consolidated manifest. The plan is deterministic (clips sorted by
bucket then clip id, cut by sample count and bytes), tar members carry fixed metadata
(mtime 0, uid 0, mode 0644), so the same manifest gives the same shard names and bytes.

Layout::

    shards/<bucket>/shard-000000.tar        <clip_id>.mp4 + <clip_id>.json per sample
    shards/<bucket>/shard-000000.json       shard index: keys, sizes, byte offsets, digest
    shards/index.json                       all shards with sample counts

A shard's index is written after its tar, both atomically; a rerun skips shards whose
index exists with the same digest (the per-shard completion marker).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import tarfile
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from curator import storage
from curator.config import ShardConfig

#: manifest columns that never go into a sample's json: bytes, per-run timings, video-only
#: columns, and the staging location (so shards do not depend on where the run wrote)
JSON_EXCLUDE = {"timings", "finished_at", "clip_uri", "mp4", "video_bytes", "spans", "num_clips", "split_method", "num_shots"}


def _ratio(text: str) -> float:
    w, _, h = text.partition(":")
    return float(w) / float(h)


def bucket_of(width: int, height: int, duration_s: float, cfg: ShardConfig) -> str:
    short = min(width, height)
    res = max((e for e in cfg.resolution_edges if e <= short), default=cfg.resolution_edges[0])
    ar = width / height if height else 1.0
    nearest = min(cfg.aspect_ratios, key=lambda r: abs(math.log(ar) - math.log(_ratio(r))))
    edges = cfg.length_edges_s
    lo = max((e for e in edges if e <= duration_s), default=edges[0])
    higher = [e for e in edges if e > lo]
    length = f"{_fmt(lo)}-{_fmt(higher[0])}s" if higher else f"{_fmt(lo)}s+"
    return f"res{res}_ar{nearest.replace(':', 'x')}_len{length}"


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x).replace(".", "p")


@dataclass
class ShardSpec:
    bucket: str
    index: int
    clips: list[dict[str, Any]] = field(default_factory=list)  # manifest rows

    @property
    def name(self) -> str:
        return f"{self.bucket}/shard-{self.index:06d}"

    def digest(self) -> str:
        h = hashlib.sha256()
        for c in self.clips:
            h.update(json.dumps(sample_json(c), sort_keys=True, default=str).encode())
        return h.hexdigest()[:24]


def sample_json(row: dict[str, Any]) -> dict[str, Any]:
    d = {k: v for k, v in row.items() if k not in JSON_EXCLUDE and v is not None}
    if "checks" in d:
        d["checks"] = [dict(c) for c in d["checks"]]
    return d


def plan(clips: Iterable[dict[str, Any]], cfg: ShardConfig) -> Iterator[ShardSpec]:
    """Group kept clips into shards, streaming.

    Input: kept clip rows in manifest order (video_id, clip_index) — which is clip_id
    order. Memory holds one open shard per bucket, never the whole manifest.
    """
    open_: dict[str, ShardSpec] = {}
    sizes: dict[str, int] = {}
    max_bytes = cfg.max_shard_mb * 1024 * 1024
    for c in clips:
        bucket = bucket_of(c["clip_width"], c["clip_height"], c["clip_duration_s"] or 0.0, cfg)
        cur = open_.get(bucket)
        nbytes = int(c.get("clip_bytes") or 0) + 2048
        if cur is not None and (len(cur.clips) >= cfg.samples_per_shard or sizes[bucket] + nbytes > max_bytes):
            yield cur
            cur = None
            open_[bucket] = ShardSpec(bucket, open_[bucket].index + 1)
            sizes[bucket] = 0
        if cur is None:
            cur = open_.setdefault(bucket, ShardSpec(bucket, 0))
            sizes.setdefault(bucket, 0)
        cur.clips.append(c)
        sizes[bucket] += nbytes
    for bucket in sorted(open_):
        if open_[bucket].clips:
            yield open_[bucket]


def shard_uris(output_uri: str, spec: ShardSpec) -> tuple[str, str]:
    base = storage.join(output_uri, "shards", spec.bucket, f"shard-{spec.index:06d}")
    return base + ".tar", base + ".json"


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def write_shard(spec: ShardSpec, output_uri: str, extra_files: Any = None) -> dict[str, Any]:
    """Write one shard (tar, then its index) unless an identical one is already there."""
    tar_uri, index_uri = shard_uris(output_uri, spec)
    digest = spec.digest()
    try:
        existing = json.loads(storage.read_bytes(index_uri))
        if existing.get("digest") == digest and storage.exists(tar_uri):
            return {**existing, "skipped": True}
    except storage.NotFound:
        pass
    members = []
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for row in spec.clips:
            key = row["clip_id"]
            mp4 = storage.read_bytes(row["clip_uri"])
            files = [(f"{key}.mp4", mp4),
                     (f"{key}.json", json.dumps(sample_json(row), sort_keys=True, default=str).encode())]
            if extra_files is not None:
                files += list(extra_files(row))
            offset = buf.tell()
            for name, data in files:
                _add(tar, name, data)
            members.append({"key": key, "offset": offset, "size": buf.tell() - offset})
    data = buf.getvalue()
    storage.write_bytes(tar_uri, data)
    index = {
        "shard": spec.name + ".tar",
        "bucket": spec.bucket,
        "samples": len(members),
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "digest": digest,
        "members": members,
    }
    storage.write_bytes(index_uri, json.dumps(index, indent=1).encode())
    return {**index, "skipped": False}


def write_index(output_uri: str, results: list[dict[str, Any]]) -> str:
    """shards/index.json: every shard with its sample count and bucket, sorted by name."""
    entries = sorted(({k: r[k] for k in ("shard", "bucket", "samples", "bytes", "sha256")} for r in results),
                     key=lambda e: e["shard"])
    buckets: dict[str, int] = {}
    for e in entries:
        buckets[e["bucket"]] = buckets.get(e["bucket"], 0) + e["samples"]
    doc = {"shards": entries, "samples": sum(e["samples"] for e in entries), "buckets": buckets}
    uri = storage.join(output_uri, "shards", "index.json")
    storage.write_bytes(uri, json.dumps(doc, indent=1, sort_keys=True).encode())
    return uri


def remove_stale(output_uri: str, written: Iterable[str]) -> list[str]:
    """Delete shards a previous plan wrote that this plan no longer has.

    `written` holds the shard names ("<bucket>/shard-000000.tar") of this plan."""
    keep = set()
    for name in written:
        base = storage.join(output_uri, "shards", name[: -len(".tar")])
        keep.update((base + ".tar", base + ".json"))
    removed = []
    prefix = storage.join(output_uri, "shards") + "/"
    for info in storage.list_objects(prefix, suffixes=[".tar", ".json"]):
        if info.uri.endswith("/index.json") or info.uri in keep:
            continue
        storage.delete(info.uri)
        removed.append(info.uri)
    return removed

