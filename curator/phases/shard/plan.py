"""Shard planning: which kept clips go into which split, profile, bucket and shard.

Buckets, split rules and the deterministic plan (manifest order, then bucket; shards cut
by sample count and bytes). The phase, its layout and its guarantees are described in
:mod:`curator.phases.shard`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from curator import where
from curator.config import ShardConfig, SplitRules
from curator.media import windows as win
from curator.records import GENERATED, REAL
from curator.rundir import SHARD_CARD, SHARD_INDEX

log = logging.getLogger(__name__)

#: manifest columns that never go into a sample's json: bytes, per-run timings, video-only
#: columns, and the staging location (so shards do not depend on where the run wrote)
JSON_EXCLUDE = {"timings", "finished_at", "clip_uri", "mp4", "video_bytes", "spans", "num_clips", "split_method", "num_shots", "shots"}

PROFILES = ("wfm", "tokenizer", "latent")
WINDOWED = ("tokenizer", "latent")  # profiles whose samples are tokenizer windows
INDEX_NAME = SHARD_INDEX  # shards/<split>/<profile>/index.json and shards/index.json
CARD_NAME = SHARD_CARD
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
def _column_value(row: dict[str, Any], column: str) -> Any:
    if column.startswith("checks."):
        metric = column[len("checks."):]
        for c in row.get("checks") or []:
            if c.get("metric") == metric:
                return c.get("value")
        return None
    return row.get(column)


class Selection:
    """Split membership of kept clips, decided in one pass (manifest order).

    Per split: all `where` conditions, then the type quotas, then the bucket caps. Quotas
    and caps count the clips admitted so far, so `type_max_fraction` holds at every point
    of the pass, and the outcome depends only on the manifest (deterministic)."""

    def __init__(self, splits: dict[str, SplitRules], columns: Iterable[str] | None = None,
                 max_generated_fraction: float | None = None):
        self.splits = splits
        self.max_generated_fraction = max_generated_fraction
        self.conditions = {name: [(w, where.parse_rule(w)) for w in rules.where] for name, rules in splits.items()}
        if columns is not None:
            self.validate(set(columns))
        self.admitted: dict[str, int] = Counter()
        self.by_type: dict[str, Counter[str]] = {n: Counter() for n in splits}
        self.by_bucket: dict[str, Counter[str]] = {n: Counter() for n in splits}
        self.generated: dict[str, Counter[str]] = {n: Counter() for n in splits}  # split -> bucket -> generated
        #: split -> origin ('real' | 'generated') -> [clips, seconds] selected (the card's provenance table)
        self.origins: dict[str, dict[str, list[float]]] = {n: {} for n in splits}
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
            origin = str(row.get("origin") or REAL)
            if origin == GENERATED:
                self.generated[name][bucket] += 1
            tally = self.origins[name].setdefault(origin, [0, 0.0])
            tally[0] += 1
            tally[1] += float(row.get("clip_duration_s") or 0.0)
        return out

    def _refusal(self, name: str, rules: SplitRules, row: dict[str, Any], bucket: str) -> str | None:
        for text, tree in self.conditions[name]:
            if not where.matches(tree, row, lambda column: _column_value(row, column)):
                return f"where: {text}"
        kind = str(row.get(rules.type_column))
        if kind in rules.type_max_count and self.by_type[name][kind] + 1 > rules.type_max_count[kind]:
            return f"type_max_count: {kind}"
        if kind in rules.type_max_fraction:
            if self.by_type[name][kind] + 1 > rules.type_max_fraction[kind] * (self.admitted[name] + 1) + 1e-9:
                return f"type_max_fraction: {kind}"
        frac = self.max_generated_fraction
        if frac is not None and row.get("origin") == GENERATED:
            if self.generated[name][bucket] + 1 > frac * (self.by_bucket[name][bucket] + 1) + 1e-9:
                return f"max_generated_fraction: {bucket}"
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
    encode: dict[str, Any] | None = None  # tokenizer/latent: width, height, fps, crf, preset, threads (+ latent)

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


#: manifest columns that hold JSON text: the shard json carries them as objects
JSON_TEXT_COLUMNS = ("caption_windows",)


def sample_json(row: dict[str, Any]) -> dict[str, Any]:
    d = {k: v for k, v in row.items() if k not in JSON_EXCLUDE and v is not None}
    if "checks" in d:
        d["checks"] = [dict(c) for c in d["checks"]]
    for k in JSON_TEXT_COLUMNS:
        if isinstance(d.get(k), str):
            try:
                d[k] = json.loads(d[k])
            except ValueError:
                pass  # kept as the text it is
    return d


@dataclass
class ProfileStats:
    clips: int = 0  # clips of this split that gave at least one sample
    samples: int = 0
    left_out: Counter[str] = field(default_factory=Counter)  # reason -> clips with no sample


class Planner:
    """Streams kept clips (manifest order) into shard specs for every split x profile.

    Memory holds one open shard per (split, profile, bucket), never the whole manifest."""

    def __init__(self, cfg: ShardConfig, columns: Iterable[str] | None = None,
                 latent: dict[str, Any] | None = None):
        """`latent`: what identifies the latent profile's encoder in the plan's digest (model,
        revision, ...; :func:`curator.phases.shard.latent.identity`); default: the config's."""
        self.cfg = cfg
        self.selection = Selection(cfg.splits, columns, cfg.max_generated_fraction)
        self.stats: dict[tuple[str, str], ProfileStats] = {
            (s, p): ProfileStats() for s in cfg.splits for p in cfg.profile}
        self.clips = 0  # distinct clips with a sample in some split and profile
        t = cfg.tokenizer
        self.encode = {"fps": t.fps, "crf": t.crf, "preset": t.preset, "threads": t.threads}
        lat = cfg.latent
        self.latent = latent or {"model": lat.model, "revision": lat.revision, "kind": lat.kind,
                                 "codebook_size": lat.codebook_size, "dtype": lat.dtype, "precision": lat.precision,
                                 "keep_video": lat.keep_video}

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
        for open_key in sorted(open_):
            if open_[open_key].samples:
                yield open_[open_key]

    def _spec(self, split: str, profile: str, bucket: str, index: int) -> ShardSpec:
        enc = None
        if profile in WINDOWED:
            size, _, frames = bucket.partition("_t")
            w, _, h = size.partition("x")
            enc = {**self.encode, "width": int(w), "height": int(h), "frames": int(frames)}
            if profile == "latent":
                enc["latent"] = dict(self.latent)
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
        # bytes: the clip's bits per pixel-frame, at the window's pixel-frames (a planning estimate);
        # latents: a 16-channel float16 latent at 8x8x8 compression (Cosmos CV8x8x8), 1/16 byte per pixel-frame
        bpp = int(c.get("clip_bytes") or 0) / max(1, c["clip_width"] * c["clip_height"] * c["clip_frames"])
        if profile == "latent":
            bpp = 1 / 16 + (bpp if self.latent.get("keep_video") else 0)
        return [(Sample(f"{c['clip_id']}-w{w.index:03d}", c, w), tokenizer_bucket(width, height, w.frames),
                 int(bpp * width * height * w.frames) + 2048) for w in ws]


def plan(clips: Iterable[dict[str, Any]], cfg: ShardConfig) -> Iterator[ShardSpec]:
    """Shard specs for kept clip rows in manifest order (no column validation)."""
    return Planner(cfg).plan(clips)
