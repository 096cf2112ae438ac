"""`curator report RUN`: one self-contained HTML file that explains a finished run.

    curator report out/run1                    # -> out/run1/report.html
    curator report s3://bucket/run1 --output report.html

The file needs nothing else: CSS is inline, charts are SVG drawn here, thumbnails are
base64 JPEG data URIs. It shows

- the funnel from raw hours to clips in shards (count and hours at every step),
- rejects by kind / stage / reason (table and bar chart),
- one histogram per filter metric from the `checks` column, with its threshold,
- stage throughput and queue depth over the run (from metrics.json),
- duplicate groups (when dedup ran): group sizes, kept and removed clips,
- thumbnails of kept clips and, per reject reason, a few rejected ones with their
  detail, scores and caption; reasons for which no frame can exist get a labelled
  placeholder card.

Memory is bounded: the manifest is read in batches (twice: counts, then histogram bins
and the members of the chosen duplicate groups); only counters, histograms and a fixed
number of examples are kept. Columns written by optional stages (checks, caption,
dup_group, ...) are used when present and ignored when absent.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import html
import io
import json
import logging
import math
import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import pyarrow.parquet as pq

from curator import storage
from curator.config import ReportConfig
from curator.pipeline import PipelineError
from curator.records import OK, REJECTED, Reason, Row
from curator.rundir import MANIFEST, REPORT, SHARD_INDEX, SHARDS, RunDir

log = logging.getLogger(__name__)

REPORT_NAME = REPORT
INDEX_NAME = f"{SHARDS}/{SHARD_INDEX}"

#: reasons whose input cannot have a frame: never decoded for a thumbnail
NO_FRAME_REASONS = {
    Reason.EMPTY: "zero-byte file",
    Reason.NOT_VIDEO: "not a video",
    Reason.AUDIO_ONLY: "audio only",
    Reason.UNREADABLE: "unreadable container",
    Reason.NO_FRAMES: "no frame decodes",
    Reason.TOO_MANY_PIXELS: "over the pixel limit: never decoded",
    Reason.TOO_LARGE: "over the size limit: never fetched",
    Reason.STORAGE: "could not be read from storage",
    Reason.TIMEOUT: "timed out in the pipeline: not decoded again",
    Reason.LOST: "lost by the workers: not decoded again",
}

#: manifest columns the report reads (those present)
COLUMNS = ["kind", "video_id", "clip_id", "source_uri", "source_key", "status", "stage", "reason", "detail",
           "size_bytes", "codec", "width", "height", "rotation", "fps", "duration_s", "num_frames", "spans",
           "num_shots", "num_clips", "clip_index", "start_s", "end_s", "clip_width", "clip_height", "clip_frames",
           "clip_duration_s", "clip_uri", "checks", "caption", "dup_group", "duplicate_of", "similarity"]
#: columns pass 2 needs
PASS2_COLUMNS = ["kind", "status", "checks", "dup_group"]


class ReportError(PipelineError):
    """The run cannot be reported on (no manifest, ...); the message says why."""


# ------------------------------------------------------------------------ text
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_URL_QUERY = re.compile(r"\b([a-z][a-z0-9+.-]*://[^\s?#'\"<>]*)\?[^\s'\"<>]*", re.I)
_SECRET_KV = re.compile(r"\b(AccountKey|SharedAccessSignature|sig|X-Amz-Signature|X-Amz-Credential|"
                        r"X-Amz-Security-Token|access_token|token|password|secret)=([^;&\s'\"<>]+)", re.I)


def redact(text: str) -> str:
    """Drop URL query strings and key=secret pairs (signed URLs, connection strings)."""
    text = _URL_QUERY.sub(r"\1?…", text)
    return _SECRET_KV.sub(r"\1=***", text)


def esc(value: Any) -> str:
    """HTML-escaped, control characters shown as escapes, secrets redacted."""
    text = "" if value is None else str(value)
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return html.escape(redact(text), quote=True)


def _hours(seconds: float) -> str:
    h = seconds / 3600.0
    if h >= 100:
        return f"{h:,.0f} h"
    if h >= 1:
        return f"{h:.2f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def _num(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.4g}"


def _bytes(n: int) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} bytes"


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


# ------------------------------------------------------------------------ scan
class Sample:
    """The k items with the smallest hash of their key: a deterministic, uniform,
    streaming sample (the same run gives the same examples)."""

    def __init__(self, k: int):
        self.k = k
        self._heap: list[tuple[int, str, dict[str, Any]]] = []  # max-heap by negated hash

    def offer(self, key: str, row: Row, make: Callable[[Row], dict[str, Any]] = dict) -> None:
        """Consider `row`; `make(row)` (the kept item) runs only when it enters the sample."""
        if self.k <= 0:
            return
        h = _hash(key)
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, (-h, key, make(row)))
        elif -self._heap[0][0] > h:
            heapq.heapreplace(self._heap, (-h, key, make(row)))

    def items(self) -> list[dict[str, Any]]:
        return [it for _, _, it in sorted(self._heap, key=lambda e: (-e[0], e[1]))]


@dataclass
class Step:
    label: str
    count: int = 0
    seconds: float = 0.0
    note: str = ""


@dataclass
class MetricStats:
    stage: str
    metric: str
    count: int = 0
    passed: int = 0
    failed: int = 0
    not_scored: int = 0
    lo: float = math.inf
    hi: float = -math.inf
    thresholds: Counter = field(default_factory=Counter)  # (op, threshold) -> checks
    bins: list[list[int]] = field(default_factory=list)  # per bin: [passed, failed]
    edges: tuple[float, float] = (0.0, 1.0)

    def add(self, check: dict[str, Any]) -> None:
        value, thr = check.get("value"), check.get("threshold")
        if thr is not None:
            self.thresholds[(check.get("op") or ">=", float(thr))] += 1
        if value is None or (isinstance(value, float) and math.isnan(value)):
            self.not_scored += 1
            return
        self.count += 1
        if check.get("passed"):
            self.passed += 1
        else:
            self.failed += 1
        self.lo, self.hi = min(self.lo, value), max(self.hi, value)

    def prepare_bins(self, n: int) -> None:
        lo, hi = self.lo, self.hi
        for (_, thr), _n in self.thresholds.most_common(3):
            lo, hi = min(lo, thr), max(hi, thr)
        if not math.isfinite(lo):
            lo, hi = 0.0, 1.0
        if hi - lo < 1e-12:
            lo, hi = lo - 0.5, hi + 0.5
        self.edges = (lo, hi)
        self.bins = [[0, 0] for _ in range(n)]

    def bin(self, check: dict[str, Any]) -> None:
        value = check.get("value")
        if value is None or (isinstance(value, float) and math.isnan(value)) or not self.bins:
            return
        lo, hi = self.edges
        i = min(len(self.bins) - 1, max(0, int((value - lo) / (hi - lo) * len(self.bins))))
        self.bins[i][0 if check.get("passed") else 1] += 1


@dataclass
class Scan:
    """What the report knows after reading the manifest."""

    columns: set[str] = field(default_factory=set)
    videos: Step = field(default_factory=lambda: Step("input videos"))
    durations_unknown: int = 0
    input_bytes: int = 0
    probed: Step = field(default_factory=lambda: Step("probed OK"))
    shots: Step = field(default_factory=lambda: Step("shots within length rules"))
    shots_detected: int = 0
    clips: Step = field(default_factory=lambda: Step("clips cut"))
    passed: Step = field(default_factory=lambda: Step("clips kept by filters"))
    deduped: Step = field(default_factory=lambda: Step("clips kept after dedup"))
    shardable: Step = field(default_factory=lambda: Step("clips in shards"))
    rejects: Counter = field(default_factory=Counter)  # (kind, stage, reason) -> rows
    reject_seconds: defaultdict = field(default_factory=lambda: defaultdict(float))
    examples: dict[tuple[str, str, str], Sample] = field(default_factory=dict)
    kept: Sample | None = None
    metrics: dict[tuple[str, str], MetricStats] = field(default_factory=dict)
    group_sizes: Counter = field(default_factory=Counter)  # dup_group -> members
    groups_capped: bool = False
    dedup_rows: int = 0
    group_members: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    has_captions: bool = False


def _example(row: Row) -> dict[str, Any]:
    """The few fields a thumbnail card needs."""
    keep = ("kind", "video_id", "clip_id", "source_uri", "source_key", "status", "stage", "reason", "detail",
            "width", "height", "rotation", "duration_s", "num_frames", "clip_index", "start_s", "end_s", "clip_width",
            "clip_height", "clip_frames", "clip_uri", "caption", "dup_group", "duplicate_of", "similarity")
    ex = {k: row.get(k) for k in keep}
    ex["scores"] = [(c.get("stage"), c.get("metric"), c.get("value"), c.get("op"), c.get("threshold"), c.get("passed"))
                    for c in (row.get("checks") or [])]
    return ex


def _row_seconds(row: Row) -> float:
    if row.get("kind") == "clip":
        d = row.get("clip_duration_s")
        if d is None and row.get("end_s") is not None and row.get("start_s") is not None:
            d = row["end_s"] - row["start_s"]
        return float(d or 0.0)
    return float(row.get("duration_s") or 0.0)


def _batches(pf: pq.ParquetFile, wanted: list[str]) -> Iterator[list[Row]]:
    names = set(pf.schema_arrow.names)
    cols = [c for c in wanted if c in names]
    for batch in pf.iter_batches(batch_size=2048, columns=cols):
        yield batch.to_pylist()


def scan_manifest(pf: pq.ParquetFile, cfg: ReportConfig) -> Scan:
    s = Scan(columns=set(pf.schema_arrow.names))
    s.kept = Sample(cfg.kept_thumbs)
    has_dedup = "dup_group" in s.columns
    for rows in _batches(pf, COLUMNS):
        for row in rows:
            _scan_row(s, row, cfg, has_dedup)
    # pass 2: histogram bins (ranges are known now) and members of the largest groups
    for m in s.metrics.values():
        m.prepare_bins(cfg.histogram_bins)
    chosen = {g for g, n in sorted(s.group_sizes.items(), key=lambda kv: (-kv[1], _hash(kv[0])))[:cfg.dedup_groups]
              if n > 1}
    s.group_members = {g: [] for g in sorted(chosen)}
    if s.metrics or chosen:
        wanted = PASS2_COLUMNS + ([c for c in COLUMNS if c not in PASS2_COLUMNS] if chosen else [])
        for rows in _batches(pf, wanted):
            for row in rows:
                for c in row.get("checks") or []:
                    m = s.metrics.get((c.get("stage") or "?", c.get("metric") or "?"))
                    if m is not None:
                        m.bin(c)
                g = row.get("dup_group")
                if g in s.group_members:
                    s.group_members[g].append(_example(row))
        for g, members in s.group_members.items():  # kept one first, then most similar
            members.sort(key=lambda ex: (ex["status"] != OK, -(ex.get("similarity") or 0.0), ex["clip_id"] or ""))
            del members[cfg.dedup_members:]
    return s


def _scan_row(s: Scan, row: Row, cfg: ReportConfig, has_dedup: bool) -> None:
    kind, status = row.get("kind"), row.get("status")
    secs = _row_seconds(row)
    if kind == "video":
        s.videos.count += 1
        s.input_bytes += int(row.get("size_bytes") or 0)
        if row.get("duration_s") is None:
            s.durations_unknown += 1
        s.videos.seconds += secs
        if row.get("codec") is not None or row.get("fps") is not None:
            s.probed.count += 1
            s.probed.seconds += secs
        spans = row.get("spans") or []
        s.shots.count += len(spans)
        s.shots.seconds += sum(max(0.0, (sp.get("end_s") or 0.0) - (sp.get("start_s") or 0.0)) for sp in spans)
        s.shots_detected += int(row.get("num_shots") or 0)
    elif kind == "clip":
        s.clips.count += 1
        s.clips.seconds += secs
        dedup_removed = status == REJECTED and row.get("stage") == "dedup"
        if status == OK or dedup_removed:
            s.passed.count += 1
            s.passed.seconds += secs
        if dedup_removed:
            s.dedup_rows += 1
        if status == OK:
            s.deduped.count += 1
            s.deduped.seconds += secs
            if row.get("clip_uri"):
                s.shardable.count += 1
                s.shardable.seconds += secs
            assert s.kept is not None
            s.kept.offer(row.get("clip_id") or "", row, _example)
        if row.get("caption"):
            s.has_captions = True
        for c in row.get("checks") or []:
            key = (c.get("stage") or "?", c.get("metric") or "?")
            m = s.metrics.get(key)
            if m is None:
                m = s.metrics[key] = MetricStats(*key)
            m.add(c)
        if has_dedup and row.get("dup_group"):
            g = row["dup_group"]
            if g in s.group_sizes or len(s.group_sizes) < cfg.max_dedup_groups_counted:
                s.group_sizes[g] += 1
            else:
                s.groups_capped = True
    if status not in (OK, "skipped", None):
        key = (kind or "?", row.get("stage") or "?", row.get("reason") or "unknown")
        s.rejects[key] += 1
        s.reject_seconds[key] += secs
        sample = s.examples.get(key)
        if sample is None:
            sample = s.examples[key] = Sample(cfg.thumbs_per_reason)
        sample.offer(row.get("clip_id") or row.get("video_id") or "", row, _example)


# ------------------------------------------------------------------ thumbnails
@dataclass
class Thumb:
    data_uri: str | None  # a JPEG data URI, or None: a placeholder with `note`
    note: str = ""


class Thumbnailer:
    """Middle frames as small JPEGs: clips from their staged mp4, videos from the source."""

    def __init__(self, cfg: ReportConfig, max_pixels: int):
        self.cfg = cfg
        self.max_pixels = max_pixels

    def __call__(self, ex: dict[str, Any]) -> Thumb:
        reason = ex.get("reason") if ex.get("status") != OK else None
        try:
            if ex.get("kind") == "clip" and ex.get("clip_uri"):
                return self._clip(ex)
            if reason in NO_FRAME_REASONS and ex.get("kind") == "video":
                return Thumb(None, NO_FRAME_REASONS[reason])
            return self._source(ex)
        except Exception as exc:  # a thumbnail never fails the report
            log.debug("no thumbnail for %s: %s", ex.get("clip_id") or ex.get("video_id"), exc)
            return Thumb(None, f"no decodable frame ({type(exc).__name__})")

    def _size(self, w: int | None, h: int | None) -> tuple[int, int] | None:
        if not w or not h:
            return None
        tw = self.cfg.thumb_width
        return tw, max(2, int(round(tw * h / w / 2)) * 2)

    def _clip(self, ex: dict[str, Any]) -> Thumb:
        from curator.media.decode import sample_frames

        uri = ex["clip_uri"]
        src: Any = storage.local_path(uri) or storage.read_bytes(uri)
        frames, _ = sample_frames(src, 1, self._size(ex.get("clip_width"), ex.get("clip_height")),
                                  num_frames=ex.get("clip_frames") or None)
        if not len(frames):
            return Thumb(None, "no decodable frame")
        return Thumb(_jpeg(frames[0]))

    def _source(self, ex: dict[str, Any]) -> Thumb:
        uri = ex.get("source_uri")
        if not uri:
            return Thumb(None, "no source")
        if ex.get("kind") == "clip" and ex.get("start_s") is not None and ex.get("end_s") is not None:
            t = (ex["start_s"] + ex["end_s"]) / 2  # a clip whose mp4 was not staged
        else:
            t = (ex.get("duration_s") or 0.0) / 2
        local = storage.local_path(uri)
        if local is not None:
            return self._frame_at(local, t, int(ex.get("rotation") or 0))
        size = storage.stat(uri).size
        if size > self.cfg.max_source_mb * 1024 * 1024:
            return Thumb(None, f"source of {size / 2**20:.0f} MB not fetched (report.max_source_mb)")
        with storage.local_copy(uri) as path:
            return self._frame_at(path, t, int(ex.get("rotation") or 0))

    def _frame_at(self, path: str, t: float, rotation: int) -> Thumb:
        import av
        import numpy as np

        from curator.media.probe import Limits, open_options

        with av.open(path, metadata_errors="ignore", options=open_options(Limits(max_pixels=self.max_pixels))) as c:
            if not c.streams.video:
                return Thumb(None, "no video stream")
            vs = c.streams.video[0]
            w, h = vs.codec_context.width, vs.codec_context.height
            if not w or not h or w * h > self.max_pixels:
                return Thumb(None, "no usable picture size")
            if t > 0 and vs.time_base:
                try:
                    c.seek(int(t / vs.time_base) + (vs.start_time or 0), stream=vs)
                except av.error.FFmpegError:
                    c.seek(0)
            frame = None
            for i, f in enumerate(c.decode(vs)):
                frame = f
                if f.time is None or f.time >= t - 1e-3 or i >= 300:  # at most a GOP's worth
                    break
            if frame is None:
                return Thumb(None, "no decodable frame")
            rot = rotation % 360
            disp = (frame.height, frame.width) if rot in (90, 270) else (frame.width, frame.height)
            size = self._size(*disp) or disp
            coded = (size[1], size[0]) if rot in (90, 270) else size
            arr = frame.to_ndarray(format="rgb24", width=coded[0], height=coded[1], interpolation="AREA")
            k = {90: 1, 180: 2, 270: 3}.get(rot, 0)  # display matrix: counter-clockwise degrees
            return Thumb(_jpeg(np.ascontiguousarray(np.rot90(arr, k)) if k else arr))


def _jpeg(arr: Any) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=78, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


# ------------------------------------------------------------------------ SVG
PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d", "#475569",
           "#ea580c"]


def _svg(w: int, h: int, body: str, cls: str, label: str, extra: str = "") -> str:
    return (f'<svg class="{cls}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" '
            f'height="{h}" role="img" aria-label="{esc(label)}"{extra}>{body}</svg>')


def svg_funnel(steps: list[Step]) -> str:
    width, row_h, left = 860, 34, 230
    total = max((st.seconds for st in steps), default=0.0)
    by_hours = total > 0
    top = max((st.count for st in steps), default=0) or 1
    parts = []
    for i, st in enumerate(steps):
        frac = (st.seconds / total) if by_hours else st.count / top
        bw = max(2.0, frac * (width - left - 150))
        y = i * row_h + 4
        x = left + (width - left - 150 - bw) / 2
        parts.append(f'<text x="{left - 8}" y="{y + 20}" text-anchor="end" class="lbl">{esc(st.label)}</text>'
                     f'<rect x="{x:.1f}" y="{y}" width="{bw:.1f}" height="{row_h - 8}" rx="3" '
                     f'fill="{PALETTE[i % len(PALETTE)]}" opacity="0.85"><title>{esc(st.label)}: {st.count}'
                     f'</title></rect>'
                     f'<text x="{width - 145}" y="{y + 20}" class="val">{st.count:,} · {_hours(st.seconds)}</text>')
    return _svg(width, len(steps) * row_h + 8, "".join(parts), "funnel", "funnel from raw hours to shards")


def svg_bars(items: list[tuple[str, int]], cls: str, label: str, color: str = "#dc2626") -> str:
    width, row_h, left = 860, 22, 330
    top = max((n for _, n in items), default=0) or 1
    parts = []
    for i, (name, n) in enumerate(items):
        y = i * row_h + 2
        bw = max(1.0, n / top * (width - left - 70))
        parts.append(f'<text x="{left - 6}" y="{y + 15}" text-anchor="end" class="lbl">{esc(name)}</text>'
                     f'<rect x="{left}" y="{y + 3}" width="{bw:.1f}" height="{row_h - 6}" fill="{color}" '
                     f'opacity="0.8"/><text x="{left + bw + 5:.1f}" y="{y + 15}" class="val">{n:,}</text>')
    return _svg(width, max(1, len(items)) * row_h + 4, "".join(parts), cls, label)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    return [lo + (hi - lo) * i / (n - 1) for i in range(n)]


def svg_histogram(m: MetricStats) -> str:
    width, height, pl, pr, pt, pb = 420, 210, 44, 26, 26, 34
    pw, ph = width - pl - pr, height - pt - pb
    lo, hi = m.edges
    n = len(m.bins) or 1
    top = max((a + b for a, b in m.bins), default=0) or 1
    bw = pw / n
    parts = [f'<line x1="{pl}" y1="{pt + ph}" x2="{pl + pw}" y2="{pt + ph}" class="axis"/>']
    for i, (ok, bad) in enumerate(m.bins):
        x = pl + i * bw
        h_ok, h_bad = ok / top * ph, bad / top * ph
        if bad:
            parts.append(f'<rect x="{x:.1f}" y="{pt + ph - h_bad:.1f}" width="{max(bw - 1, 1):.1f}" '
                         f'height="{h_bad:.1f}" fill="#dc2626"><title>{bad} rejected</title></rect>')
        if ok:
            parts.append(f'<rect x="{x:.1f}" y="{pt + ph - h_bad - h_ok:.1f}" width="{max(bw - 1, 1):.1f}" '
                         f'height="{h_ok:.1f}" fill="#16a34a"><title>{ok} passed</title></rect>')
    for v in _ticks(lo, hi):
        x = pl + (v - lo) / (hi - lo) * pw
        parts.append(f'<text x="{x:.1f}" y="{height - 18}" text-anchor="middle" class="tick">{v:.3g}</text>')
    parts.append(f'<text x="{pl - 4}" y="{pt + 4}" text-anchor="end" class="tick">{top}</text>'
                 f'<text x="{pl - 4}" y="{pt + ph}" text-anchor="end" class="tick">0</text>')
    for (op, thr), _cnt in m.thresholds.most_common(3):
        x = pl + (thr - lo) / (hi - lo) * pw
        keep = "keep ≥" if op == ">=" else "keep ≤"
        right = x > pl + pw / 2  # label on the side with room
        parts.append(f'<line class="threshold" x1="{x:.1f}" y1="{pt - 6}" x2="{x:.1f}" y2="{pt + ph}" '
                     f'stroke="#111" stroke-width="2" stroke-dasharray="5,3"/>'
                     f'<text x="{x - 4 if right else x + 4:.1f}" y="{pt - 10}" class="tick" '
                     f'text-anchor="{"end" if right else "start"}">{keep} {_num(thr)}</text>')
    parts.append(f'<text x="{pl + pw / 2}" y="{height - 3}" text-anchor="middle" class="lbl">'
                 f'{esc(m.stage)} / {esc(m.metric)}</text>')
    return _svg(width, height, "".join(parts), "histogram", f"histogram of {m.stage}/{m.metric}",
                f' data-metric="{esc(m.stage)}/{esc(m.metric)}"')


def svg_lines(series: list[tuple[str, list[float]]], step_s: float, cls: str, label: str, unit: str) -> str:
    width, height, pl, pr, pt, pb = 860, 240, 54, 150, 14, 34
    pw, ph = width - pl - pr, height - pt - pb
    n = max((len(v) for _, v in series), default=0)
    top = max((max(v) for _, v in series if v), default=0.0) or 1.0
    parts = [f'<line x1="{pl}" y1="{pt + ph}" x2="{pl + pw}" y2="{pt + ph}" class="axis"/>'
             f'<line x1="{pl}" y1="{pt}" x2="{pl}" y2="{pt + ph}" class="axis"/>'
             f'<text x="{pl - 4}" y="{pt + 8}" text-anchor="end" class="tick">{_num(top)}</text>'
             f'<text x="{pl - 4}" y="{pt + ph}" text-anchor="end" class="tick">0</text>'
             f'<text x="{pl + pw / 2}" y="{height - 2}" text-anchor="middle" class="lbl">seconds into the run '
             f'({esc(unit)})</text>']
    for v in _ticks(0, n * step_s):
        x = pl + (v / (n * step_s) * pw if n and step_s else 0)
        parts.append(f'<text x="{x:.1f}" y="{height - 18}" text-anchor="middle" class="tick">{_num(v)}</text>')
    for i, (name, values) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        if values:
            pts = " ".join(f"{pl + (j + 0.5) / max(1, n) * pw:.1f},{pt + ph - val / top * ph:.1f}"
                           for j, val in enumerate(values))
            parts.append(f'<polyline class="series" points="{pts}" fill="none" stroke="{color}" stroke-width="2">'
                         f'<title>{esc(name)}</title></polyline>')
        parts.append(f'<rect x="{pl + pw + 12}" y="{pt + i * 18}" width="12" height="12" fill="{color}"/>'
                     f'<text x="{pl + pw + 30}" y="{pt + i * 18 + 11}" class="lbl">{esc(name)}</text>')
    return _svg(width, height, "".join(parts), cls, label)


def svg_placeholder(reason: str, note: str, width: int) -> str:
    h = int(width * 9 / 16)
    body = (f'<rect x="1" y="1" width="{width - 2}" height="{h - 2}" rx="6" fill="#f1f5f9" stroke="#94a3b8" '
            f'stroke-dasharray="6,4"/>'
            f'<line x1="{width / 2 - 16}" y1="{h / 2 - 34}" x2="{width / 2 + 16}" y2="{h / 2 - 2}" stroke="#94a3b8" '
            f'stroke-width="3"/><line x1="{width / 2 + 16}" y1="{h / 2 - 34}" x2="{width / 2 - 16}" '
            f'y2="{h / 2 - 2}" stroke="#94a3b8" stroke-width="3"/>'
            f'<text x="{width / 2}" y="{h / 2 + 22}" text-anchor="middle" class="ph">no decodable frame</text>'
            f'<text x="{width / 2}" y="{h / 2 + 40}" text-anchor="middle" class="tick">{esc(note[:40])}</text>')
    return _svg(width, h, body, "placeholder", f"no decodable frame: {reason}")


# ------------------------------------------------------------------------ HTML
CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI','DejaVu Sans',sans-serif;margin:0;color:#0f172a;background:#fff}
header{background:#0f172a;color:#f8fafc;padding:18px 28px}header h1{margin:0 0 4px;font-size:22px}
header .meta{color:#cbd5e1;font-size:13px}main{padding:8px 28px 40px;max-width:1240px}
section{margin:26px 0}h2{font-size:18px;border-bottom:2px solid #e2e8f0;padding-bottom:4px}
h3{font-size:15px;margin:16px 0 6px}table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{border:1px solid #e2e8f0;padding:3px 9px;text-align:left;vertical-align:top}th{background:#f8fafc}
td.n{text-align:right;font-variant-numeric:tabular-nums}.lbl{font-size:12px;fill:#0f172a}
.val{font-size:12px;fill:#334155;font-weight:600}.tick{font-size:10px;fill:#475569}.ph{font-size:13px;fill:#475569;font-weight:600}
.axis{stroke:#94a3b8;stroke-width:1}.hists{display:flex;flex-wrap:wrap;gap:14px}
.hist{border:1px solid #e2e8f0;border-radius:6px;padding:6px}.hist p{margin:2px 4px;font-size:12px;color:#475569}
.grid{display:flex;flex-wrap:wrap;gap:12px}figure.thumb{margin:0;width:%(tw)dpx;border:1px solid #e2e8f0;border-radius:6px;
overflow:hidden;background:#f8fafc}figure.thumb img,figure.thumb svg{display:block;width:%(tw)dpx;height:auto}
figcaption{padding:5px 7px;font-size:11px;line-height:1.35;word-break:break-word}figcaption b{font-size:11.5px}
.detail{color:#b91c1c}.caption{color:#334155;font-style:italic}.scores{color:#475569;font-family:monospace;font-size:10.5px}
.kept{border-color:#16a34a!important}.removed{border-color:#dc2626!important}.muted{color:#64748b}
.group{border:1px solid #e2e8f0;border-radius:8px;padding:8px;margin:8px 0}
.reasons{display:flex;flex-wrap:wrap;gap:4px 26px;align-items:flex-start}.reason h3{margin-top:10px}
"""


def _table(head: list[str], rows: list[list[Any]], numeric: set[int] = frozenset()) -> str:  # type: ignore[assignment]
    out = ["<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>"]
    for r in rows:
        out.append("<tr>" + "".join(f'<td class="n">{esc(c)}</td>' if i in numeric else f"<td>{esc(c)}</td>"
                                    for i, c in enumerate(r)) + "</tr>")
    out.append("</table>")
    return "".join(out)


class Renderer:
    def __init__(self, run_uri: str, scan: Scan, cfg: ReportConfig, thumbs: Thumbnailer,
                 metrics: dict[str, Any] | None, summary: dict[str, Any] | None, run_doc: dict[str, Any] | None,
                 index: dict[str, Any] | None, dedup_doc: dict[str, Any] | None):
        self.run_uri, self.s, self.cfg, self.thumbs = run_uri, scan, cfg, thumbs
        self.metrics, self.summary, self.run_doc, self.index, self.dedup_doc = metrics, summary, run_doc, index, dedup_doc

    # ------------------------------------------------------------- sections
    def page(self) -> str:
        parts = [self.header(), "<main>", self.funnel(), self.rejects(), self.scores(), self.throughput(),
                 self.dedup(), self.kept(), self.rejected(), "</main>"]
        return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>curator report: {esc(storage.display(self.run_uri))}</title>"
                f"<style>{CSS % {'tw': self.cfg.thumb_width}}</style></head><body>" + "".join(parts) + "</body></html>")

    def header(self) -> str:
        run = (self.run_doc or {}).get("_run") or {}
        summ = self.summary or {}
        bits = [f"run {esc(run.get('run_id', '?'))}", f"config {esc(run.get('config_hash', '?'))}"]
        if summ.get("elapsed_s") is not None:
            bits.append(f"{summ['elapsed_s']:.1f} s wall")
        if run.get("stages"):
            bits.append("stages: " + esc(" → ".join(run["stages"])))
        bits.append("generated " + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
        return (f"<header><h1>curator report — {esc(storage.display(self.run_uri))}</h1>"
                f"<div class=\"meta\">{' · '.join(bits)}</div></header>")

    def funnel_steps(self) -> list[Step]:
        s = self.s
        steps = [s.videos, s.probed, s.shots, s.clips, s.passed]
        if s.dedup_rows or "dup_group" in s.columns:
            steps.append(s.deduped)
        shards = Step("clips in shards", s.shardable.count, s.shardable.seconds)
        if self.index is not None:
            # "clips": distinct clips over every split and profile; older indexes: "samples"
            shards.count = int(self.index.get("clips", self.index.get("samples", 0)))
            if shards.count != s.shardable.count and s.shardable.count:
                shards.seconds = s.shardable.seconds * shards.count / s.shardable.count
                shards.note = "hours estimated: the shards do not match the manifest (re-shard?)"
        else:
            shards.count, shards.seconds, shards.note = 0, 0.0, "no shards/index.json (run.shard off?)"
        steps.append(shards)
        return steps

    def funnel(self) -> str:
        s = self.s
        steps = self.funnel_steps()
        rows = [[st.label, st.count, _hours(st.seconds), st.note] for st in steps]
        rows[2][3] = f"{s.shots_detected:,} shots detected; kept: within stages.split min/max length"
        if s.durations_unknown:
            rows[0][3] = f"duration unknown for {s.durations_unknown:,} inputs that were not probed"
        size = f"{_bytes(s.input_bytes)} of input" if s.input_bytes else ""
        return (f'<section id="funnel"><h2>Funnel: from raw hours to shards</h2>{svg_funnel(steps)}'
                f'{_table(["step", "items", "hours", "note"], rows, {1})}<p class="muted">{size}</p></section>')

    def rejects(self) -> str:
        s = self.s
        if not s.rejects:
            return '<section id="rejects"><h2>Rejects by reason</h2><p>Nothing was rejected.</p></section>'
        items = sorted(s.rejects.items(), key=lambda kv: (-kv[1], kv[0]))
        rows = [[k, st, r, n, _hours(s.reject_seconds[(k, st, r)]) if s.reject_seconds[(k, st, r)] else "–"]
                for (k, st, r), n in items]
        chart = svg_bars([(f"{k}: {st}/{r}", n) for (k, st, r), n in items], "rejects-chart", "rejects by reason")
        return (f'<section id="rejects"><h2>Rejects by reason</h2>{chart}'
                f'{_table(["kind", "stage", "reason", "rows", "hours"], rows, {3})}</section>')

    def scores(self) -> str:
        s = self.s
        if not s.metrics:
            return ('<section id="scores"><h2>Score histograms</h2><p>No filter wrote scores (`checks`) in this '
                    'run.</p></section>')
        cards = []
        for key in sorted(s.metrics):
            m = s.metrics[key]
            thr = ", ".join(f"keep {op} {_num(t)} ({n:,})" for (op, t), n in m.thresholds.most_common())
            cards.append(f'<div class="hist">{svg_histogram(m)}<p>{m.count:,} scored · {m.passed:,} passed · '
                         f'{m.failed:,} rejected' + (f" · {m.not_scored:,} not scored" if m.not_scored else "")
                         + f'</p><p>threshold: {esc(thr) or "–"}</p></div>')
        return (f'<section id="scores"><h2>Score histograms</h2><p class="muted">Green: clips that passed this '
                f'check; red: clips it rejected; dashed line: the threshold.</p><div class="hists">'
                f'{"".join(cards)}</div></section>')

    def throughput(self) -> str:
        doc = self.metrics
        if not doc or not doc.get("stages"):
            return ('<section id="throughput"><h2>Stage throughput</h2><p>No metrics.json in this run.</p>'
                    '</section>')
        step = float(doc.get("bucket_s") or 0.0)
        order = ((self.run_doc or {}).get("_run") or {}).get("stages") or []
        stages = {name: doc["stages"][name] for name in sorted(
            doc["stages"], key=lambda n: (order.index(n) if n in order else len(order), n))}
        rate = [(name, [n / step if step else 0.0 for n in st.get("finished_per_bucket") or []])
                for name, st in stages.items()]
        queue = [(name, [float(q) for q in st["queue_per_bucket"]]) for name, st in stages.items()
                 if st.get("queue_per_bucket")]
        rows = [[name, st.get("items_in"), st.get("items_out"), st.get("busy_s"), st.get("items_per_busy_s"),
                 ", ".join(f"{r}: {n}" for r, n in sorted((st.get("rejects") or {}).items()))]
                for name, st in stages.items()]
        out = [f'<section id="throughput"><h2>Stage throughput and queues</h2>',
               f'<p class="muted">Wall time {doc.get("wall_s", 0):.1f} s in buckets of {step:.2f} s.</p>',
               "<h3>Items finished per second</h3>",
               svg_lines(rate, step, "throughput-chart", "items finished per second by stage", "items/s")]
        if queue:
            out += ["<h3>Queue depth (finished by the previous stage, not yet by this one)</h3>",
                    svg_lines(queue, step, "queue-chart", "queue depth by stage", "items")]
        out.append(_table(["stage", "items in", "items out", "busy s", "items / busy s", "rejects"], rows,
                          {1, 2, 3, 4}))
        out.append("</section>")
        return "".join(out)

    def dedup(self) -> str:
        s = self.s
        if "dup_group" not in s.columns:
            return ('<section id="dedup"><h2>Duplicates</h2><p>Dedup did not run on this manifest.</p>'
                    '</section>')
        sizes = Counter(s.group_sizes.values())
        groups = sum(1 for n in s.group_sizes.values() if n > 1)
        stats = (self.dedup_doc or {}).get("stats") or {}
        lines = [f"{groups:,} groups of near-duplicates; {s.dedup_rows:,} clips removed"]
        if stats.get("threshold") is not None:
            lines.append(f"similarity threshold {_num(stats['threshold'])} ({esc(stats.get('embedding_model'))})")
        if s.groups_capped:
            lines.append(f"group sizes tallied for the first {self.cfg.max_dedup_groups_counted:,} groups only")
        chart = svg_bars([(f"groups of {k}", v) for k, v in sorted(sizes.items()) if k > 1], "dedup-sizes",
                         "duplicate group sizes", color="#7c3aed")
        out = [f'<section id="dedup"><h2>Duplicates</h2><p>{esc("; ".join(lines))}</p><h3>Group sizes</h3>{chart}']
        for g, members in s.group_members.items():
            cards = "".join(self.card(ex, "dedup", kept=ex["status"] == OK) for ex in members)
            out.append(f'<div class="group" data-group="{esc(g)}"><b>group {esc(g)}</b> · '
                       f'{s.group_sizes[g]} clips<div class="grid">{cards}</div></div>')
        out.append("</section>")
        return "".join(out)

    def kept(self) -> str:
        assert self.s.kept is not None
        items = self.s.kept.items()
        cards = "".join(self.card(ex, "kept") for ex in items) or "<p>No clip was kept.</p>"
        return (f'<section id="kept"><h2>Kept clips</h2><p class="muted">{len(items)} of '
                f'{self.s.deduped.count:,}, a deterministic sample; middle frame of each clip.</p>'
                f'<div class="grid">{cards}</div></section>')

    def rejected(self) -> str:
        s = self.s
        out = ['<section id="rejected"><h2>Rejected, by reason</h2><div class="reasons">']
        if not s.rejects:
            out.append("<p>Nothing was rejected.</p>")
        for key, n in sorted(s.rejects.items(), key=lambda kv: (-kv[1], kv[0])):
            kind, stage, reason = key
            cards = "".join(self.card(ex, f"{stage}/{reason}") for ex in s.examples[key].items())
            out.append(f'<div class="reason" data-reason="{esc(stage)}/{esc(reason)}"><h3>{esc(kind)}: '
                       f'{esc(stage)}/{esc(reason)} <span class="muted">({n:,})</span></h3>'
                       f'<div class="grid">{cards}</div></div>')
        out.append("</div></section>")
        return "".join(out)

    # ---------------------------------------------------------------- cards
    def card(self, ex: dict[str, Any], group: str, kept: bool | None = None) -> str:
        th = self.thumbs(ex)
        reason = f"{ex.get('stage')}/{ex.get('reason')}" if ex.get("status") != OK else "kept"
        if th.data_uri:
            visual = f'<img src="{th.data_uri}" alt="{esc(reason)}: {esc(ex.get("clip_id") or ex.get("video_id"))}">'
        else:
            visual = svg_placeholder(reason, th.note, self.cfg.thumb_width)
        name = ex.get("source_key") or ex.get("video_id")
        if ex.get("kind") == "clip":
            name = f"{name} #{ex.get('clip_index') if ex.get('clip_index') is not None else ex.get('clip_id')}"
            span = ex.get("start_s"), ex.get("end_s")
            if span[0] is not None and span[1] is not None:
                name += f" [{span[0]:.1f}–{span[1]:.1f} s]"
        lines = [f"<b>{esc(name)}</b>"]
        if ex.get("status") != OK and ex.get("detail"):
            lines.append(f'<span class="detail">{esc(ex["detail"])}</span>')
        elif ex.get("detail"):
            lines.append(f'<span class="muted">{esc(ex["detail"])}</span>')
        if ex.get("similarity") is not None and ex.get("dup_group"):
            role = "kept" if ex.get("status") == OK else f"duplicate of {ex.get('duplicate_of')}"
            lines.append(f"{esc(role)} · similarity {_num(ex['similarity'])}")
        if ex.get("scores"):
            lines.append('<span class="scores">' + "<br>".join(
                f"{'✓' if ok else ('✗' if ok is not None else '?')} {esc(st)}/{esc(me)} {_num(v)} "
                f"(keep {esc(op)} {_num(t)})" for st, me, v, op, t, ok in ex["scores"]) + "</span>")
        if ex.get("caption"):
            cap = ex["caption"]
            lines.append(f'<span class="caption">“{esc(cap[:400])}{"…" if len(cap) > 400 else ""}”</span>')
        cls = "thumb" + (" placeholder-card" if not th.data_uri else "")
        if kept is not None:
            cls += " kept" if kept else " removed"
        return (f'<figure class="{cls}" data-reason="{esc(group)}">{visual}'
                f'<figcaption>{"<br>".join(lines)}</figcaption></figure>')


# ------------------------------------------------------------------------- API
def _json(uri: str) -> dict[str, Any] | None:
    try:
        return json.loads(storage.read_bytes(uri))
    except storage.NotFound:
        return None
    except ValueError:
        log.warning("%s is not valid JSON; left out of the report", storage.display(uri))
        return None


def _run_doc(rundir: RunDir) -> dict[str, Any] | None:
    got = rundir.read_config()
    return None if got is None else {**got[0], "_run": got[1]}


def render(run_uri: str, cfg: ReportConfig | None = None, *, max_pixels: int = 8192 * 8192) -> str:
    """The report of the run at `run_uri`, as HTML text."""
    cfg = cfg or ReportConfig()
    rundir = RunDir.of(run_uri)
    run_uri = rundir.uri
    if not rundir.has_manifest():
        raise ReportError(f"{storage.display(run_uri)} is not a finished run: no {MANIFEST}")
    with rundir.open_manifest("report") as mf:
        scan = scan_manifest(mf.parquet, cfg)
    return Renderer(
        run_uri, scan, cfg, Thumbnailer(cfg, max_pixels),
        metrics=_json(rundir.metrics),
        summary=_json(rundir.summary),
        run_doc=_run_doc(rundir),
        index=_json(rundir.shard_index),
        dedup_doc=_json(rundir.dedup_report),
    ).page()


def write_report(run_uri: str, output: str | None = None, cfg: ReportConfig | None = None, *,
                 max_pixels: int = 8192 * 8192) -> str:
    """Write the report (default `<run>/report.html`) through curator.storage; returns its URI."""
    text = render(run_uri, cfg, max_pixels=max_pixels)
    out = storage.normalize(output) if output else RunDir.of(run_uri).report
    storage.write_bytes(out, text.encode("utf-8"))
    return out

