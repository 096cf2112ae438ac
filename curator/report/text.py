"""The report's names, the manifest columns it reads, and text helpers (redaction, escaping, numbers)."""

from __future__ import annotations

import hashlib
import html
import logging
import math
import re
from typing import Any

from curator.pipeline import PipelineError
from curator.records import Reason
from curator.rundir import REPORT, SHARD_INDEX, SHARDS

log = logging.getLogger("curator.report")

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
