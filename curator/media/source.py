"""Where a stage gets a source video from."""

from __future__ import annotations

from curator import storage
from curator.records import Row


def source_of(row: Row) -> str | bytes:
    """What decoders should open: the bytes ingest fetched (remote inputs) or the local path."""
    data = row.get("video_bytes")
    if data is not None:
        return data
    path = storage.local_path(row["source_uri"])
    if path is not None:
        return path
    return storage.read_bytes(row["source_uri"])


def clip_source_of(row: Row) -> str | bytes:
    """What decoders should open for a clip: its encoded bytes (before staging) or the staged file."""
    data = row.get("mp4")
    if data is not None:
        return data
    uri = row.get("clip_uri")
    if not uri:
        raise ValueError("clip has neither bytes nor a staged file")
    path = storage.local_path(uri)
    return path if path is not None else storage.read_bytes(uri)
