"""Shard writing: one tar and its index per spec (on a worker), the split indexes, stale removal.

Tar members carry fixed metadata (mtime 0, uid 0, mode 0644); re-encoded windows use a
fixed thread count. A shard's index is written after its tar, both atomically; a rerun
skips shards whose index exists with the same digest (the per-shard completion marker).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import tarfile
from typing import Any, Callable, Iterable, Iterator, Sequence

from curator import storage
from curator.config import ShardConfig
from curator.media import windows as win
from curator.phases.shard.plan import FORMAT, INDEX_NAME, Sample, ShardSpec, sample_json
from curator.rundir import RunDir

log = logging.getLogger("curator.phases.shard")

# ---------------------------------------------------------------------------- writing
def shard_uris(output_uri: str, spec: ShardSpec) -> tuple[str, str]:
    base = RunDir(output_uri).shards(spec.name)
    return base + ".tar", base + ".json"


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def _window_json(row: dict[str, Any], w: win.Window, enc: dict[str, Any]) -> dict[str, Any]:
    fps = enc["fps"]
    return {"index": w.index, "start_frame": w.start, "num_frames": w.frames, "fps": fps,
            "width": enc["width"], "height": enc["height"],
            "start_s": round(w.start / fps, 6), "end_s": round((w.start + w.frames) / fps, 6),
            "source_start_s": round((row.get("start_s") or 0.0) + w.start / fps, 6)}


def _groups(samples: Sequence[Sample]) -> Iterator[list[Sample]]:
    """Consecutive samples of one clip (its windows): decoded once."""
    group: list[Sample] = []
    for s in samples:
        if group and group[0].row["clip_id"] != s.row["clip_id"]:
            yield group
            group = []
        group.append(s)
    if group:
        yield group


#: one sample's payload: its leading members (extension, bytes), e.g. [("mp4", ...)], and
#: what to add to its json (e.g. {"latent": {...}})
Payload = tuple[list[tuple[str, bytes]], dict[str, Any]]
#: a clip's samples, each with its payload, or the error that left the clip out
Produced = Iterator[tuple[list[Sample], "list[Payload] | Exception"]]

#: what a clip that cannot be read or re-encoded raises (av errors are OSError / ValueError)
CLIP_ERRORS: tuple[type[Exception], ...] = (storage.StorageError, OSError, ValueError, RuntimeError)


def _videos(spec: ShardSpec, group: list[Sample]) -> list[bytes]:
    row = group[0].row
    mp4 = storage.read_bytes(row["clip_uri"])
    if spec.profile == "wfm":
        return [mp4] * len(group)
    return encode_group(spec, group, mp4)


def encode_group(spec: ShardSpec, group: list[Sample], mp4: bytes) -> list[bytes]:
    """The windows of one clip, re-encoded as the tokenizer profile stores them."""
    enc = spec.encode or {}
    return win.encode_windows(mp4, [s.window for s in group if s.window is not None],
                              src_fps=win.rate(group[0].row["clip_fps"]), dst_fps=win.rate(enc["fps"]),
                              size=(enc["width"], enc["height"]), crf=enc["crf"], preset=enc["preset"],
                              threads=enc["threads"])


def video_payloads(spec: ShardSpec) -> Produced:
    """wfm and tokenizer samples: the clip's mp4, or its windows re-encoded."""
    for group in _groups(spec.samples):
        try:
            videos = _videos(spec, group)
        except CLIP_ERRORS as exc:
            yield group, exc
            continue
        yield group, [([("mp4", v)], {}) for v in videos]


def sampling_fields(row: dict[str, Any]) -> dict[str, Any]:
    """What the loader weighs a sample by, before reading it (docs/training.md, "Mixtures
    and weights"): its clip id (re-weighting files name clips), video type and the
    type_weight the video_type stage recorded, and whether it is generated footage
    (provenance column ``origin`` = ``generated``)."""
    out: dict[str, Any] = {"clip": row.get("clip_id")}
    if row.get("video_type") is not None:
        out["type"] = row["video_type"]
    if row.get("type_weight") is not None:
        out["tw"] = float(row["type_weight"])
    if row.get("origin") == "generated":
        out["gen"] = True
    return out


def write_shard(spec: ShardSpec, output_uri: str, extra_files: Any = None,
                payloads: Callable[[ShardSpec], Produced] | None = None) -> dict[str, Any]:
    """Write one shard (tar, then its index) unless an identical one is already there.

    `payloads(spec)` gives each clip's samples with their leading members (default: the
    mp4s, :func:`video_payloads`); `extra_files(row)` may add members per clip, named
    `<clip_id>.<ext>` (e.g. a caption as `.txt`); windows get them under their own key. A
    clip that cannot be read or re-encoded is left out of the shard and listed under
    `errors` in its index. The index counts the bytes of each leading member kind
    (`member_bytes`, e.g. mp4 vs latent.npy) for the dataset card."""
    tar_uri, index_uri = shard_uris(output_uri, spec)
    digest = spec.digest()
    try:
        existing = json.loads(storage.read_bytes(index_uri))
        if existing.get("digest") == digest and storage.exists(tar_uri):
            return {**existing, "skipped": True}
    except storage.NotFound:
        pass
    members: list[dict[str, Any]] = []
    errors: list[dict[str, str]] = []
    member_bytes: dict[str, int] = {}
    first_meta: dict[str, Any] = {}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for group, produced in (payloads or video_payloads)(spec):
            if isinstance(produced, Exception):
                exc = produced
                log.error("shard %s: clip %s left out: %s", spec.name, group[0].row["clip_id"], exc)
                errors += [{"key": s.key, "error": f"{type(exc).__name__}: {exc}"[:500]} for s in group]
                continue
            extra = list(extra_files(group[0].row)) if extra_files is not None else []
            for sample, (front, meta_extra) in zip(group, produced):
                meta = sample_json(sample.row)
                if sample.window is not None:
                    meta["window"] = _window_json(sample.row, sample.window, spec.encode or {})
                meta.update(meta_extra)
                if not first_meta:
                    first_meta = meta_extra
                files = [(f"{sample.key}.{ext}", data) for ext, data in front]
                files.append((f"{sample.key}.json", json.dumps(meta, sort_keys=True, default=str).encode()))
                files += [(f"{sample.key}.{name.split('.', 1)[1]}", data) for name, data in extra]
                for ext, data in front:
                    member_bytes[ext] = member_bytes.get(ext, 0) + len(data)
                offset = buf.tell()
                for name, data in files:
                    _add(tar, name, data)
                members.append({"key": sample.key, "offset": offset, "size": buf.tell() - offset,
                                **sampling_fields(sample.row)})
    data = buf.getvalue()
    storage.write_bytes(tar_uri, data)
    index = {
        "shard": spec.name + ".tar",
        "split": spec.split,
        "profile": spec.profile,
        "bucket": spec.bucket,
        "samples": len(members),
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "digest": digest,
        "members": members,
        "member_bytes": member_bytes,
    }
    if spec.encode:
        index["encode"] = spec.encode
    if "latent" in first_meta:  # every sample of a bucket has the same latent shape and dtype
        index["latent"] = {k: v for k, v in first_meta["latent"].items() if k != "source"}
    if errors:
        index["errors"] = errors
    tws = [m["tw"] for m in members if "tw" in m]
    gen = sum(1 for m in members if m.get("gen"))
    if (tws and max(tws) > 1) or gen:  # the loader weighs samples only in shard sets that need it
        index["sampling"] = {"tw_max": max(tws, default=1.0), "generated": gen}
    storage.write_bytes(index_uri, json.dumps(index, indent=1).encode())
    return {**index, "skipped": False}


# ---------------------------------------------------------------------------- indexes
def split_index_uri(output_uri: str, split: str, profile: str) -> str:
    return RunDir(output_uri).split_index(split, profile)


def build_indexes(results: list[dict[str, Any]], cfg: ShardConfig) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (split, profile): its shards in name order with sample counts, the global
    position of each shard's first sample, bytes and per-bucket totals."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for split in cfg.splits:
        for profile in cfg.profile:
            prefix = f"{split}/{profile}/"
            rows = sorted((r for r in results if r["shard"].startswith(prefix)), key=lambda r: r["shard"])
            shards: list[Any] = []
            buckets: dict[str, Any] = {}
            first = 0
            for r in rows:
                rel = r["shard"][len(prefix):]
                shards.append({"path": rel, "index": rel[: -len(".tar")] + ".json", "bucket": r["bucket"],
                               "samples": r["samples"], "first": first, "bytes": r["bytes"], "sha256": r["sha256"]})
                if r.get("sampling"):
                    shards[-1]["sampling"] = r["sampling"]
                first += r["samples"]
                b = buckets.setdefault(r["bucket"], {"samples": 0, "shards": 0, "bytes": 0})
                b["samples"] += r["samples"]
                b["shards"] += 1
                b["bytes"] += r["bytes"]
                for ext, n in (r.get("member_bytes") or {}).items():
                    b.setdefault("member_bytes", {}).setdefault(ext, 0)
                    b["member_bytes"][ext] += n
                if r.get("encode"):
                    b.update({k: r["encode"][k] for k in ("width", "height", "frames", "fps")})
                if r.get("latent"):
                    b["latent"] = {k: r["latent"][k] for k in ("shape", "dtype", "kind")}
            doc: dict[str, Any] = {"format": FORMAT, "split": split, "profile": profile, "samples": first,
                                   "bytes": sum(s["bytes"] for s in shards), "buckets": buckets, "shards": shards}
            if profile in ("tokenizer", "latent"):
                doc["tokenizer"] = cfg.tokenizer.model_dump(mode="json")
            if profile == "latent":
                lat = next((r["latent"] for r in rows if r.get("latent")), None)
                doc["latent"] = {k: lat[k] for k in ("tokenizer", "revision", "kind", "dtype", "codebook_size")
                                 } if lat else None
            out[(split, profile)] = doc
    return out


def write_indexes(output_uri: str, indexes: dict[tuple[str, str], dict[str, Any]],
                  extra: dict[str, Any] | None = None) -> str:
    """shards/<split>/<profile>/index.json for each, then shards/index.json over them all."""
    top: dict[str, Any] = {"format": FORMAT, **(extra or {}), "splits": {}}
    for (split, profile), doc in sorted(indexes.items()):
        storage.write_bytes(split_index_uri(output_uri, split, profile),
                            json.dumps(doc, indent=1, sort_keys=True).encode())
        top["splits"].setdefault(split, {})[profile] = {
            "index": f"{split}/{profile}/{INDEX_NAME}", "samples": doc["samples"], "shards": len(doc["shards"]),
            "bytes": doc["bytes"]}
    uri = RunDir(output_uri).shard_index
    storage.write_bytes(uri, json.dumps(top, indent=1, sort_keys=True).encode())
    return uri


def remove_stale(output_uri: str, written: Iterable[str], keep: Iterable[str] = ()) -> list[str]:
    """Delete shards and indexes a previous plan wrote that this plan no longer has.

    `written` holds this plan's shard names ("<split>/<profile>/<bucket>/shard-000000.tar");
    `keep` more URIs to leave (this plan's index files)."""
    keep_set = set(keep) | {RunDir(output_uri).shard_index}
    for name in written:
        base = RunDir(output_uri).shards(name[: -len(".tar")])
        keep_set.update((base + ".tar", base + ".json"))
    removed = []
    prefix = RunDir(output_uri).shards() + "/"
    for info in storage.list_objects(prefix, suffixes=[".tar", ".json"]):
        if info.uri in keep_set:
            continue
        storage.delete(info.uri)
        removed.append(info.uri)
    return removed
