"""Shard: kept clips into webdataset tars, per training split, output profile and bucket.

A global phase over the consolidated manifest, in one pass: each kept clip is tested
against every split's rules (`shard.splits`), and each split it enters receives the clip
in every output profile (`shard.profile`):

- ``wfm``: the clip as curated (its staged mp4), bucketed by resolution x aspect ratio x
  length (``res720_ar16x9_len5-10s``);
- ``tokenizer``: the clip resampled to a fixed fps, resized and centre-cropped to a size
  divisible by the tokenizer's spatial factor, cut into windows of 1 + factor*k frames,
  each re-encoded as its own sample ``<clip_id>-w000``; bucketed by exact shape
  (``448x256_t121``: width x height, frames), so a batch from one bucket stacks.

Layout under the output::

    shards/index.json                                   splits x profiles, with counts
    shards/README.md                                    dataset card
    shards/<split>/<profile>/index.json                 the split's shards: samples, first sample, bytes
    shards/<split>/<profile>/<bucket>/shard-000000.tar  <key>.mp4 + <key>.json (+ <key>.txt, ...)
    shards/<split>/<profile>/<bucket>/shard-000000.json shard index: keys, byte offsets, digest

The plan is deterministic (manifest order, then bucket; shards cut by sample count and
bytes) and tar members carry fixed metadata (mtime 0, uid 0, mode 0644); re-encoded
windows use a fixed thread count: the same manifest gives the same names and bytes. A
shard's index is written after its tar, both atomically; a rerun skips shards whose index
exists with the same digest (the per-shard completion marker).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import operator
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

from curator import storage
from curator.config import ShardConfig, SplitRules, parse_condition
from curator.media import windows as win

log = logging.getLogger(__name__)

#: manifest columns that never go into a sample's json: bytes, per-run timings, video-only
#: columns, and the staging location (so shards do not depend on where the run wrote)
JSON_EXCLUDE = {"timings", "finished_at", "clip_uri", "mp4", "video_bytes", "spans", "num_clips", "split_method", "num_shots"}

PROFILES = ("wfm", "tokenizer")
INDEX_NAME = "index.json"
CARD_NAME = "README.md"
FORMAT = "curator-shards/1"


class ShardError(ValueError):
    """The shard config does not fit the manifest (e.g. a rule names a missing column)."""


# ----------------------------------------------------------------------------- buckets
def _ratio(text: str) -> float:
    w, _, h = text.partition(":")
    return float(w) / float(h)


def aspect_of(width: int, height: int, cfg: ShardConfig) -> str:
    """The configured aspect ratio ('16:9') nearest to width/height on a log scale."""
    ar = width / height if height else 1.0
    return min(cfg.aspect_ratios, key=lambda r: abs(math.log(ar) - math.log(_ratio(r))))


def bucket_of(width: int, height: int, duration_s: float, cfg: ShardConfig) -> str:
    short = min(width, height)
    res = max((e for e in cfg.resolution_edges if e <= short), default=cfg.resolution_edges[0])
    nearest = aspect_of(width, height, cfg)
    edges = cfg.length_edges_s
    lo = max((e for e in edges if e <= duration_s), default=edges[0])
    higher = [e for e in edges if e > lo]
    length = f"{_fmt(lo)}-{_fmt(higher[0])}s" if higher else f"{_fmt(lo)}s+"
    return f"res{res}_ar{nearest.replace(':', 'x')}_len{length}"


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x).replace(".", "p")


def tokenizer_bucket(width: int, height: int, frames: int) -> str:
    return f"{width}x{height}_t{frames}"


# --------------------------------------------------------------------------- selection
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq, "!=": operator.ne,
}


def _column_value(row: dict[str, Any], column: str) -> Any:
    if column.startswith("checks."):
        metric = column[len("checks."):]
        for c in row.get("checks") or []:
            if c.get("metric") == metric:
                return c.get("value")
        return None
    return row.get(column)


def _compare(value: Any, op: str, target: Any) -> bool:
    if value is None:
        return False
    try:
        return bool(_OPS[op](value, target))
    except TypeError:
        return False


class Selection:
    """Split membership of kept clips, decided in one pass (manifest order).

    Per split: all `where` conditions, then the type quotas, then the bucket caps. Quotas
    and caps count the clips admitted so far, so `type_max_fraction` holds at every point
    of the pass, and the outcome depends only on the manifest (deterministic)."""

    def __init__(self, splits: dict[str, SplitRules], columns: Iterable[str] | None = None):
        self.splits = splits
        self.conditions = {name: [(w, *parse_condition(w)) for w in rules.where] for name, rules in splits.items()}
        if columns is not None:
            self.validate(set(columns))
        self.admitted: dict[str, int] = Counter()
        self.by_type: dict[str, Counter[str]] = {n: Counter() for n in splits}
        self.by_bucket: dict[str, Counter[str]] = {n: Counter() for n in splits}
        self.considered = 0
        self.refused: dict[str, Counter[str]] = {n: Counter() for n in splits}  # split -> reason -> clips

    def validate(self, columns: set[str]) -> None:
        for name, rules in self.splits.items():
            for col in rules.columns():
                if col not in columns:
                    raise ShardError(
                        f"shard.splits.{name}: column {col!r} is not in the manifest; its columns are: "
                        f"{', '.join(sorted(columns))}")

    def select(self, row: dict[str, Any], bucket: str) -> list[str]:
        self.considered += 1
        out = []
        for name, rules in self.splits.items():
            reason = self._refusal(name, rules, row, bucket)
            if reason:
                self.refused[name][reason] += 1
                continue
            out.append(name)
            self.admitted[name] += 1
            self.by_bucket[name][bucket] += 1
            self.by_type[name][str(row.get(rules.type_column))] += 1
        return out

    def _refusal(self, name: str, rules: SplitRules, row: dict[str, Any], bucket: str) -> str | None:
        for text, column, op, target in self.conditions[name]:
            if not _compare(_column_value(row, column), op, target):
                return f"where: {text}"
        kind = str(row.get(rules.type_column))
        if kind in rules.type_max_count and self.by_type[name][kind] + 1 > rules.type_max_count[kind]:
            return f"type_max_count: {kind}"
        if kind in rules.type_max_fraction:
            if self.by_type[name][kind] + 1 > rules.type_max_fraction[kind] * (self.admitted[name] + 1) + 1e-9:
                return f"type_max_fraction: {kind}"
        cap = rules.bucket_caps.get(bucket, rules.bucket_max)
        if cap is not None and self.by_bucket[name][bucket] + 1 > cap:
            return f"bucket cap: {bucket}"
        return None


# ----------------------------------------------------------------------------- the plan
@dataclass
class Sample:
    key: str
    row: dict[str, Any]  # the clip's manifest row
    window: win.Window | None = None  # tokenizer profile


@dataclass
class ShardSpec:
    bucket: str
    index: int
    samples: list[Sample] = field(default_factory=list)
    split: str = "pretrain"
    profile: str = "wfm"
    encode: dict[str, Any] | None = None  # tokenizer: width, height, fps, crf, preset, threads

    @property
    def name(self) -> str:
        """Path below shards/, without the extension."""
        return f"{self.split}/{self.profile}/{self.bucket}/shard-{self.index:06d}"

    def digest(self) -> str:
        h = hashlib.sha256(json.dumps([self.profile, self.encode], sort_keys=True).encode())
        for s in self.samples:
            h.update(json.dumps([s.key, s.window and vars(s.window), sample_json(s.row)],
                                sort_keys=True, default=str).encode())
        return h.hexdigest()[:24]


def sample_json(row: dict[str, Any]) -> dict[str, Any]:
    d = {k: v for k, v in row.items() if k not in JSON_EXCLUDE and v is not None}
    if "checks" in d:
        d["checks"] = [dict(c) for c in d["checks"]]
    return d


@dataclass
class ProfileStats:
    clips: int = 0  # clips of this split that gave at least one sample
    samples: int = 0
    left_out: Counter[str] = field(default_factory=Counter)  # reason -> clips with no sample


class Planner:
    """Streams kept clips (manifest order) into shard specs for every split x profile.

    Memory holds one open shard per (split, profile, bucket), never the whole manifest."""

    def __init__(self, cfg: ShardConfig, columns: Iterable[str] | None = None):
        self.cfg = cfg
        self.selection = Selection(cfg.splits, columns)
        self.stats: dict[tuple[str, str], ProfileStats] = {
            (s, p): ProfileStats() for s in cfg.splits for p in cfg.profile}
        self.clips = 0  # distinct clips with a sample in some split and profile
        t = cfg.tokenizer
        self.encode = {"fps": t.fps, "crf": t.crf, "preset": t.preset, "threads": t.threads}

    def plan(self, clips: Iterable[dict[str, Any]]) -> Iterator[ShardSpec]:
        open_: dict[tuple[str, str, str], ShardSpec] = {}
        sizes: dict[tuple[str, str, str], int] = {}
        max_bytes = self.cfg.max_shard_mb * 1024 * 1024
        for c in clips:
            wfm_bucket = bucket_of(c["clip_width"], c["clip_height"], c["clip_duration_s"] or 0.0, self.cfg)
            sampled = False
            for split in self.selection.select(c, wfm_bucket):
                for profile in self.cfg.profile:
                    produced = self._samples(c, profile, wfm_bucket)
                    st = self.stats[(split, profile)]
                    if isinstance(produced, str):
                        st.left_out[produced] += 1
                        continue
                    st.clips += 1
                    sampled = True
                    for sample, bucket, nbytes in produced:
                        st.samples += 1
                        key = (split, profile, bucket)
                        cur = open_.get(key)
                        if cur is not None and cur.samples and (
                                len(cur.samples) >= self.cfg.samples_per_shard or sizes[key] + nbytes > max_bytes):
                            yield cur
                            cur = open_[key] = self._spec(split, profile, bucket, cur.index + 1)
                            sizes[key] = 0
                        if cur is None:
                            cur = open_[key] = self._spec(split, profile, bucket, 0)
                            sizes[key] = 0
                        cur.samples.append(sample)
                        sizes[key] += nbytes
            self.clips += sampled
        for key in sorted(open_):
            if open_[key].samples:
                yield open_[key]

    def _spec(self, split: str, profile: str, bucket: str, index: int) -> ShardSpec:
        enc = None
        if profile == "tokenizer":
            size, _, frames = bucket.partition("_t")
            w, _, h = size.partition("x")
            enc = {**self.encode, "width": int(w), "height": int(h), "frames": int(frames)}
        return ShardSpec(bucket, index, [], split, profile, enc)

    def _samples(self, c: dict[str, Any], profile: str, wfm_bucket: str) -> list[tuple[Sample, str, int]] | str:
        """(sample, bucket, estimated bytes) for one clip in one profile, or why none."""
        if profile == "wfm":
            return [(Sample(c["clip_id"], c), wfm_bucket, int(c.get("clip_bytes") or 0) + 2048)]
        t = self.cfg.tokenizer
        if not c.get("clip_fps") or not c.get("clip_frames"):
            return "no frame count or fps in the manifest"
        width, height = win.target_size(aspect_of(c["clip_width"], c["clip_height"], self.cfg),
                                        t.short_side, t.multiple, t.sizes)
        total = win.resampled_count(c["clip_frames"], win.rate(c["clip_fps"]), win.rate(t.fps))
        ws = win.windows(total, t.max_frames, t.min_frames, t.temporal_factor)
        if not ws:
            return f"shorter than min_frames ({t.min_frames} at {_fmt(t.fps)} fps)"
        # bytes: the clip's bits per pixel-frame, at the window's pixel-frames (a planning estimate)
        bpp = int(c.get("clip_bytes") or 0) / max(1, c["clip_width"] * c["clip_height"] * c["clip_frames"])
        return [(Sample(f"{c['clip_id']}-w{w.index:03d}", c, w), tokenizer_bucket(width, height, w.frames),
                 int(bpp * width * height * w.frames) + 2048) for w in ws]


def plan(clips: Iterable[dict[str, Any]], cfg: ShardConfig) -> Iterator[ShardSpec]:
    """Shard specs for kept clip rows in manifest order (no column validation)."""
    return Planner(cfg).plan(clips)


# ---------------------------------------------------------------------------- writing
def shard_uris(output_uri: str, spec: ShardSpec) -> tuple[str, str]:
    base = storage.join(output_uri, "shards", spec.name)
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


def _videos(spec: ShardSpec, group: list[Sample]) -> list[bytes]:
    row = group[0].row
    mp4 = storage.read_bytes(row["clip_uri"])
    if spec.profile == "wfm":
        return [mp4] * len(group)
    enc = spec.encode or {}
    return win.encode_windows(mp4, [s.window for s in group if s.window is not None],
                              src_fps=win.rate(row["clip_fps"]), dst_fps=win.rate(enc["fps"]),
                              size=(enc["width"], enc["height"]), crf=enc["crf"], preset=enc["preset"],
                              threads=enc["threads"])


def write_shard(spec: ShardSpec, output_uri: str, extra_files: Any = None) -> dict[str, Any]:
    """Write one shard (tar, then its index) unless an identical one is already there.

    `extra_files(row)` may add members per clip, named `<clip_id>.<ext>` (e.g. a caption
    as `.txt`); windows get them under their own key. A clip that cannot be read or
    re-encoded is left out of the shard and listed under `errors` in its index."""
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
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for group in _groups(spec.samples):
            try:
                videos = _videos(spec, group)
            except (storage.StorageError, OSError, ValueError, RuntimeError) as exc:  # av errors are OSError/ValueError
                log.error("shard %s: clip %s left out: %s", spec.name, group[0].row["clip_id"], exc)
                errors += [{"key": s.key, "error": f"{type(exc).__name__}: {exc}"[:500]} for s in group]
                continue
            extra = list(extra_files(group[0].row)) if extra_files is not None else []
            for sample, video in zip(group, videos):
                meta = sample_json(sample.row)
                if sample.window is not None:
                    meta["window"] = _window_json(sample.row, sample.window, spec.encode or {})
                files = [(f"{sample.key}.mp4", video),
                         (f"{sample.key}.json", json.dumps(meta, sort_keys=True, default=str).encode())]
                files += [(f"{sample.key}.{name.split('.', 1)[1]}", data) for name, data in extra]
                offset = buf.tell()
                for name, data in files:
                    _add(tar, name, data)
                members.append({"key": sample.key, "offset": offset, "size": buf.tell() - offset})
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
    }
    if spec.encode:
        index["encode"] = spec.encode
    if errors:
        index["errors"] = errors
    storage.write_bytes(index_uri, json.dumps(index, indent=1).encode())
    return {**index, "skipped": False}


# ---------------------------------------------------------------------------- indexes
def split_index_uri(output_uri: str, split: str, profile: str) -> str:
    return storage.join(output_uri, "shards", split, profile, INDEX_NAME)


def build_indexes(results: list[dict[str, Any]], cfg: ShardConfig) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (split, profile): its shards in name order with sample counts, the global
    position of each shard's first sample, bytes and per-bucket totals."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for split in cfg.splits:
        for profile in cfg.profile:
            prefix = f"{split}/{profile}/"
            rows = sorted((r for r in results if r["shard"].startswith(prefix)), key=lambda r: r["shard"])
            shards, buckets, first = [], {}, 0
            for r in rows:
                rel = r["shard"][len(prefix):]
                shards.append({"path": rel, "index": rel[: -len(".tar")] + ".json", "bucket": r["bucket"],
                               "samples": r["samples"], "first": first, "bytes": r["bytes"], "sha256": r["sha256"]})
                first += r["samples"]
                b = buckets.setdefault(r["bucket"], {"samples": 0, "shards": 0, "bytes": 0})
                b["samples"] += r["samples"]
                b["shards"] += 1
                b["bytes"] += r["bytes"]
                if r.get("encode"):
                    b.update({k: r["encode"][k] for k in ("width", "height", "frames", "fps")})
            doc: dict[str, Any] = {"format": FORMAT, "split": split, "profile": profile, "samples": first,
                                   "bytes": sum(s["bytes"] for s in shards), "buckets": buckets, "shards": shards}
            if profile == "tokenizer":
                doc["tokenizer"] = cfg.tokenizer.model_dump(mode="json")
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
    uri = storage.join(output_uri, "shards", INDEX_NAME)
    storage.write_bytes(uri, json.dumps(top, indent=1, sort_keys=True).encode())
    return uri


def remove_stale(output_uri: str, written: Iterable[str], keep: Iterable[str] = ()) -> list[str]:
    """Delete shards and indexes a previous plan wrote that this plan no longer has.

    `written` holds this plan's shard names ("<split>/<profile>/<bucket>/shard-000000.tar");
    `keep` more URIs to leave (this plan's index files)."""
    keep_set = set(keep) | {storage.join(output_uri, "shards", INDEX_NAME)}
    for name in written:
        base = storage.join(output_uri, "shards", name[: -len(".tar")])
        keep_set.update((base + ".tar", base + ".json"))
    removed = []
    prefix = storage.join(output_uri, "shards") + "/"
    for info in storage.list_objects(prefix, suffixes=[".tar", ".json"]):
        if info.uri in keep_set:
            continue
        storage.delete(info.uri)
        removed.append(info.uri)
    return removed


# -------------------------------------------------------------------------- the card
@dataclass
class ManifestStats:
    """What the card says about the whole manifest, tallied while the plan streams."""

    videos: int = 0
    clips: int = 0
    kept: int = 0
    rejects: Counter[str] = field(default_factory=Counter)  # "kind: stage/reason"
    checks: dict[tuple[str, str, str, float | None], list[int]] = field(default_factory=dict)  # -> [passed, failed]

    def tally(self, rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Count every row, pass on kept clips (with a staged mp4)."""
        for r in rows:
            if r["kind"] == "video":
                self.videos += 1
            else:
                self.clips += 1
                for c in r.get("checks") or []:
                    k = (c.get("stage") or "", c.get("metric") or "", c.get("op") or "", c.get("threshold"))
                    self.checks.setdefault(k, [0, 0])[0 if c.get("passed") else 1] += 1
            if r["status"] != "ok":
                self.rejects[f"{r['kind']}: {r.get('stage')}/{r.get('reason')}"] += 1
            elif r["kind"] == "clip" and r.get("clip_uri"):
                self.kept += 1
                yield r


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(x) for x in row) + " |" for row in rows]
    return out


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f}"


def card(indexes: dict[tuple[str, str], dict[str, Any]], cfg: ShardConfig, planner: Planner,
         stats: ManifestStats, info: dict[str, Any]) -> str:
    """The dataset card (shards/README.md): what is in the shards and how it was chosen."""
    L: list[str] = ["# Curated video shards", ""]
    L.append("Written by curator from a run's `manifest.parquet`: webdataset tars of kept clips, per training "
             "split, output profile and bucket.")
    L.append("")
    L += _table(["", ""], [
        ["run config hash", f"`{info.get('run_config_hash') or 'unknown'}`"],
        ["shard config hash", f"`{info.get('shard_config_hash')}`"],
        ["stages", ", ".join(info.get("stages") or []) or "unknown"],
        ["videos in manifest", stats.videos],
        ["clips cut", stats.clips],
        ["clips kept", stats.kept],
        ["profiles", ", ".join(cfg.profile)],
    ])
    L += ["", "## Splits", ""]
    for split, rules in cfg.splits.items():
        L.append(f"### `{split}`")
        L.append("")
        sel = planner.selection
        L.append(f"{sel.admitted[split]} of {sel.considered} kept clips selected.")
        conds = list(rules.where)
        if rules.type_max_fraction:
            conds += [f"at most {f:g} of the split is `{rules.type_column}` = {t}" for t, f in
                      sorted(rules.type_max_fraction.items())]
        if rules.type_max_count:
            conds += [f"at most {n} clips with `{rules.type_column}` = {t}" for t, n in
                      sorted(rules.type_max_count.items())]
        if rules.bucket_max is not None:
            conds.append(f"at most {rules.bucket_max} clips per bucket")
        conds += [f"at most {n} clips in bucket `{b}`" for b, n in sorted(rules.bucket_caps.items())]
        L.append("Rules: " + ("; ".join(f"`{c}`" for c in conds) if conds else "none (every kept clip)") + ".")
        refused = sel.refused[split]
        if refused:
            L.append("")
            L += _table(["not selected because", "clips"], sorted(refused.items(), key=lambda kv: (-kv[1], kv[0])))
        for profile in cfg.profile:
            doc = indexes[(split, profile)]
            st = planner.stats[(split, profile)]
            L += ["", f"#### `{split}/{profile}`: {doc['samples']} samples from {st.clips} clips, "
                      f"{len(doc['shards'])} shards, {_mb(doc['bytes'])} MB", ""]
            if profile == "tokenizer":
                L += _table(["bucket", "width", "height", "frames", "samples", "shards", "MB"],
                            [[b, d.get("width"), d.get("height"), d.get("frames"), d["samples"], d["shards"],
                              _mb(d["bytes"])] for b, d in sorted(doc["buckets"].items())])
            else:
                L += _table(["bucket", "samples", "shards", "MB"],
                            [[b, d["samples"], d["shards"], _mb(d["bytes"])] for b, d in sorted(doc["buckets"].items())])
            for reason, n in sorted(st.left_out.items()):
                L.append(f"\n{n} clips gave no sample: {reason}.")
        L.append("")
    if cfg.profile.count("tokenizer"):
        t = cfg.tokenizer
        L += ["## Tokenizer profile", "",
              f"Clips resampled to {t.fps:g} fps (frames dropped or repeated), scaled to cover and centre-cropped "
              f"to multiples of {t.multiple} (short side {t.short_side}"
              + (f", sizes {json.dumps(t.sizes)}" if t.sizes else "") + "), cut into windows of "
              f"{t.max_frames} frames; the rest of a clip becomes one window of the largest 1 + {t.temporal_factor}k "
              f"frames that fits (at least {t.min_frames}). Keys: `<clip_id>-w000`, …; each sample's json has a "
              f"`window` entry (start, frames, fps, size, start time in the source). libx264 crf {t.crf}, preset "
              f"{t.preset}.", ""]
    L += ["## Filters applied", ""]
    if stats.checks:
        L += _table(["stage", "metric", "keep when", "passed", "failed"],
                    [[s, m, f"{op} {thr:g}" if thr is not None else op, p, f]
                     for (s, m, op, thr), (p, f) in sorted(stats.checks.items(), key=lambda kv: kv[0][:3])])
    else:
        L.append("No filter recorded a check in the manifest.")
    if stats.rejects:
        L += ["", "Rows that went no further (from the manifest's `status`, `stage`, `reason`):", ""]
        L += _table(["reason", "rows"], sorted(stats.rejects.items(), key=lambda kv: (-kv[1], kv[0])))
    first_split = next(iter(cfg.splits))
    first_profile = cfg.profile[-1]
    L += ["", "## Layout", "",
          "```",
          "index.json                                   splits x profiles with counts",
          "<split>/<profile>/index.json                 shards, samples per shard, first sample, bytes, buckets",
          "<split>/<profile>/<bucket>/shard-NNNNNN.tar  <key>.mp4, <key>.json, (<key>.txt caption, ...)",
          "<split>/<profile>/<bucket>/shard-NNNNNN.json keys with byte offsets and sizes (random access)",
          "```", "",
          "## Loading", "",
          "```python",
          "from curator.loader import ShardDataset, Loader",
          "",
          f'ds = ShardDataset("<this folder or its run output URI>", split="{first_split}", '
          f'profile="{first_profile}",',
          '                  batch_size=8, shuffle_buffer=256, decode="float")',
          "for batch in Loader(ds, num_workers=4):",
          '    video = batch["video"]        # [B, T, C, H, W], one bucket per batch',
          '    captions = batch["caption"]   # list of str (or None)',
          "```", "",
          "Any webdataset reader also works: each tar is a plain webdataset shard.", ""]
    return "\n".join(L)


def write_card(output_uri: str, text: str) -> str:
    uri = storage.join(output_uri, "shards", CARD_NAME)
    storage.write_bytes(uri, text.encode())
    return uri
