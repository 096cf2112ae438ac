"""The staging manifest: one Parquet part per finished input video, merged into one file.

Layout under the output URI::

    staging/videos/<video_id>.parquet   rows of one video (video row, then its clips);
                                        written atomically — its existence marks the
                                        video as done (resume skips it)
    staging/clips/<video_id>/<clip_id>.mp4
    manifest.parquet                    all parts, sorted by video_id then clip_index

Every row keeps its status / stage / reason, so the manifest explains where every input
and every clip went.
"""

from __future__ import annotations

import io
import logging
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from curator import storage
from curator.records import Row, to_table
from curator.rundir import MANIFEST as MANIFEST_NAME
from curator.rundir import RunDir

log = logging.getLogger(__name__)

__all__ = ["MANIFEST_NAME", "consolidate", "part_uri", "read_manifest", "write_part"]


def part_uri(output_uri: str, video_id: str) -> str:
    return RunDir(output_uri).part(video_id)


def parts_prefix(output_uri: str) -> str:
    return RunDir(output_uri).parts_prefix


def manifest_uri(output_uri: str) -> str:
    return RunDir(output_uri).manifest


def sort_key(row: Row) -> tuple:
    return (row["video_id"], 0 if row["kind"] == "video" else 1, row.get("clip_index") or 0)


def table_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    # no statistics-dependent timestamps: same rows -> same bytes
    pq.write_table(table, buf, compression="zstd", write_statistics=True)
    return buf.getvalue()


def write_part(output_uri: str, video_id: str, rows: list[Row], schema: pa.Schema) -> str:
    rows = sorted(rows, key=sort_key)
    uri = part_uri(output_uri, video_id)
    storage.write_bytes(uri, table_bytes(to_table(rows, schema)))
    return uri


def read_table(uri: str, columns: list[str] | None = None) -> pa.Table:
    data = storage.read_bytes(uri)
    return pq.read_table(io.BytesIO(data), columns=columns)


def iter_parts(output_uri: str) -> Iterator[str]:
    for info in storage.list_objects(parts_prefix(output_uri), suffixes=[".parquet"]):
        yield info.uri


def consolidate(output_uri: str, schema: pa.Schema, batch_rows: int = 4096) -> str:
    """Merge every part into manifest.parquet in (video_id, clip) order.

    Memory: one part (one video) and one output batch at a time.
    """
    rundir = RunDir(output_uri)
    with rundir.manifest_writer(schema) as writer:
        batch: list[Row] = []
        for row in _merge_parts(output_uri, schema):
            batch.append(row)
            if len(batch) >= batch_rows:
                writer.write_table(to_table(batch, schema))
                batch = []
        if batch:
            writer.write_table(to_table(batch, schema))
    return rundir.manifest


def _merge_parts(output_uri: str, schema: pa.Schema) -> Iterator[Row]:
    # Parts are named <video_id>.parquet and listed in key order; rows inside a part were
    # sorted when it was written. Concatenating them in listing order is deterministic and
    # holds one part in memory at a time.
    for uri in iter_parts(output_uri):
        yield from _part_rows(uri, schema)


def _part_rows(uri: str, schema: pa.Schema) -> Iterator[Row]:
    table = read_table(uri)
    # parts written by an older schema: add missing columns as nulls, drop unknown ones
    cols = []
    for f in schema:
        if f.name in table.column_names:
            cols.append(table.column(f.name).cast(f.type))
        else:
            cols.append(pa.nulls(table.num_rows, f.type))
    table = pa.Table.from_arrays(cols, schema=schema)
    yield from table.to_pylist()


def read_manifest(output_uri: str, columns: list[str] | None = None) -> pa.Table:
    """The whole manifest (of `columns`) as one table: for tools over small runs (e.g.
    training the video-type head). Phases stream it with `RunDir.open_manifest` instead."""
    uri = output_uri.rstrip("/")
    if uri.endswith(".parquet"):
        uri = uri.rsplit("/", 1)[0]
    with RunDir.of(uri).open_manifest("read_manifest") as mf:
        return mf.parquet.read(columns=columns)
