"""What flows through the pipeline: one row type for videos and clips.

Rows are plain dicts (Arrow-friendly). A row has `kind` "video" or "clip". Every row
that stops somewhere says where and why (`status`, `stage`, `reason`, `detail`); rows
that stop keep flowing, untouched by later stages, so the manifest holds every input
video and every clip, kept or not.

The Arrow schema below is the contract of the manifest. Stages that add columns
declare them (``Stage.columns``); :func:`schema_for` merges them.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Any, Iterable

import pyarrow as pa

Row = dict[str, Any]

# status values
OK = "ok"
REJECTED = "rejected"  # a decision (filter, too short, duplicate)
ERROR = "error"  # something could not be read or computed
SKIPPED = "skipped"  # finished by an earlier run (resume); its manifest part already exists


class Reason:
    """Machine-readable reasons. The human text goes in `detail`."""

    EMPTY = "empty_file"
    UNREADABLE = "unreadable"
    NOT_VIDEO = "not_a_video"
    AUDIO_ONLY = "audio_only"
    NO_FRAMES = "no_decodable_frames"
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    TOO_LARGE = "too_large"
    TOO_MANY_PIXELS = "too_many_pixels"
    BAD_HEADER = "bad_header"
    NO_SHOTS = "no_shots_long_enough"
    SPLIT_FAILED = "split_failed"
    TRANSCODE_FAILED = "transcode_failed"
    TIMEOUT = "timeout"
    STAGE_FAILED = "stage_failed"
    STORAGE = "storage_error"
    LOST = "lost"  # no worker returned the video (crash, kill, timeout)


SPAN = pa.struct([
    ("start_frame", pa.int64()),
    ("end_frame", pa.int64()),  # exclusive
    ("start_s", pa.float64()),
    ("end_s", pa.float64()),
])

#: one detected shot on a video row (split's `shots` column): where it is and what became of it
SHOT = pa.struct([
    ("start_frame", pa.int64()),
    ("end_frame", pa.int64()),  # exclusive
    ("start_s", pa.float64()),
    ("end_s", pa.float64()),
    ("fate", pa.string()),  # kept | too_short | cut (into `clips` pieces) | empty (no decoded frame)
    ("clips", pa.int32()),  # clips made from it: 1 kept, N cut, 0 dropped
    ("first_clip", pa.int32()),  # clip_index of its first clip (null when none)
])

CHECK = pa.struct([
    ("stage", pa.string()),
    ("metric", pa.string()),
    ("value", pa.float64()),
    ("threshold", pa.float64()),
    ("op", pa.string()),  # ">=" keep when value >= threshold, "<=" keep when value <= threshold
    ("passed", pa.bool_()),
])

#: Columns every run has. Stages add theirs via `Stage.columns`.
BASE_FIELDS: list[tuple[str, pa.DataType]] = [
    ("kind", pa.string()),
    ("video_id", pa.string()),
    ("clip_id", pa.string()),
    ("source_uri", pa.string()),
    ("source_key", pa.string()),
    ("status", pa.string()),
    ("stage", pa.string()),
    ("reason", pa.string()),
    ("detail", pa.string()),
    # probe (video rows; copied onto clip rows)
    ("size_bytes", pa.int64()),
    ("container", pa.string()),
    ("codec", pa.string()),
    ("pix_fmt", pa.string()),
    ("width", pa.int32()),  # displayed (after rotation)
    ("height", pa.int32()),
    ("rotation", pa.int32()),
    ("fps", pa.float64()),
    ("duration_s", pa.float64()),
    ("num_frames", pa.int64()),
    ("has_audio", pa.bool_()),
    ("vfr", pa.bool_()),
    # split (video rows)
    ("spans", pa.list_(SPAN)),
    ("split_method", pa.string()),
    ("num_clips", pa.int32()),
    # clips
    ("clip_index", pa.int32()),
    ("start_frame", pa.int64()),
    ("end_frame", pa.int64()),
    ("start_s", pa.float64()),
    ("end_s", pa.float64()),
    ("clip_width", pa.int32()),
    ("clip_height", pa.int32()),
    ("clip_fps", pa.float64()),
    ("clip_frames", pa.int64()),
    ("clip_duration_s", pa.float64()),
    ("clip_bytes", pa.int64()),
    ("clip_sha256", pa.string()),
    ("clip_uri", pa.string()),
    ("encoder", pa.string()),
    ("checks", pa.list_(CHECK)),
    # provenance (video rows, copied onto clip rows): real footage or generated (curator generate)
    ("origin", pa.string()),  # "real" | "generated"
    ("generator", pa.string()),  # "command" | "endpoint" (generated only)
    ("gen_model", pa.string()),
    ("prompt", pa.string()),
    ("seed", pa.int64()),
    ("target_cell", pa.string()),  # JSON mapping column -> value of the coverage cell it was made for
    ("condition_clip", pa.string()),  # clip_uri of the footage a Video2World generation was conditioned on
    ("timings", pa.map_(pa.string(), pa.float64())),  # busy seconds per stage
    ("finished_at", pa.map_(pa.string(), pa.float64())),  # wall-clock time each stage finished the row
]

#: the provenance columns: on every video row (real footage: origin "real" only), copied onto its clips
PROVENANCE = ("origin", "generator", "gen_model", "prompt", "seed", "target_cell", "condition_clip")
REAL, GENERATED = "real", "generated"

#: columns that differ between two runs over the same input (everything else is equal)
RUN_VARYING = ("timings", "finished_at")

#: the transient column in which split hands the clips it encoded in its pass to transcode
ENCODED_SPANS = "encoded_spans"

#: Columns that travel between stages but never reach the manifest (bytes).
TRANSIENT_FIELDS: list[tuple[str, pa.DataType]] = [
    ("mp4", pa.large_binary()),  # the encoded clip, until staging writes it
    ("video_bytes", pa.large_binary()),  # a remote source, fetched once by ingest
    # clips that split encoded in its decode pass (CPU transcoding), for transcode to use
    (ENCODED_SPANS, pa.list_(pa.struct([
        ("start_frame", pa.int64()), ("end_frame", pa.int64()), ("mp4", pa.large_binary()),
        ("width", pa.int32()), ("height", pa.int32()), ("fps", pa.float64()), ("frames", pa.int64()),
        ("sha256", pa.string()), ("error", pa.string()),
    ]))),
]

BASE_SCHEMA = pa.schema(BASE_FIELDS)


def schema_for(extra: Iterable[tuple[str, pa.DataType]] = (), transient: bool = False) -> pa.Schema:
    fields = list(BASE_FIELDS)
    names = {n for n, _ in fields}
    for name, typ in extra:
        if name in names:
            continue
        fields.append((name, typ))
        names.add(name)
    if transient:
        fields += TRANSIENT_FIELDS
    return pa.schema(fields)


def to_table(rows: list[Row], schema: pa.Schema) -> pa.Table:
    """Rows -> Arrow with a fixed schema (missing keys become nulls; unknown keys are an error)."""
    names = set(schema.names)
    for r in rows:
        extra = set(r) - names
        if extra:
            raise KeyError(f"row has columns not in the schema: {sorted(extra)}")
    return pa.Table.from_pylist(rows, schema=schema)


def from_table(table: pa.Table) -> list[Row]:
    return table.to_pylist()


# ------------------------------------------------------------------------------- ids
_SAFE = re.compile(r"[^A-Za-z0-9_-]+")  # no dots: webdataset splits keys at the first dot


def safe_name(text: str, max_len: int = 80) -> str:
    """A key fragment safe on every store, filesystem and tar reader: [A-Za-z0-9_-] only."""
    norm = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    norm = _SAFE.sub("_", norm).strip("_-")
    return (norm or "x")[:max_len]


def video_id_for(source_key: str) -> str:
    """Deterministic, collision-resistant id from the input's key below the input root."""
    digest = hashlib.sha256(source_key.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    stem = source_key.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return f"{safe_name(stem, 48)}-{digest}"


def clip_id_for(video_id: str, index: int) -> str:
    return f"{video_id}-{index:05d}"


def new_video_row(source_uri: str, source_key: str) -> Row:
    return {
        "kind": "video",
        "video_id": video_id_for(source_key),
        "source_uri": source_uri,
        "source_key": source_key,
        "status": OK,
        "origin": REAL,
    }


def stop(row: Row, stage: str, reason: str, detail: str, status: str = ERROR) -> Row:
    """Mark a row as stopped here. Later stages pass it through unchanged."""
    row["status"] = status
    row["stage"] = stage
    row["reason"] = reason
    row["detail"] = detail[:1000]
    return row


def add_timing(row: Row, stage: str, seconds: float, finished_at: float | None = None) -> None:
    t = dict(row.get("timings") or {})
    t[stage] = round(t.get(stage, 0.0) + seconds, 6)
    row["timings"] = t
    if finished_at is not None:
        f = dict(row.get("finished_at") or {})
        f[stage] = round(finished_at, 3)
        row["finished_at"] = f


def is_active(row: Row, kind: str | None = None) -> bool:
    return row.get("status") == OK and (kind is None or row.get("kind") == kind)
