"""The input listing, written in parts under the output's work area.

The driver lists the input lazily (page by page) and writes the rows in parts of
`run.listing_part_size`; runners read the parts (Ray workers read them directly), so no
process holds the whole listing. The parts also give the driver the exact number of
inputs (for progress and ETA) and let it account for videos a crashed worker lost.

Inputs come from a folder or bucket prefix (`input`) or from an input list (`input_list`:
text, CSV or Parquet; extra columns pass through to the manifest), then trial runs keep
a deterministic part of them (`run.sample`, `run.limit`): :func:`inputs_for`.
"""

from __future__ import annotations

import csv
import hashlib
import heapq
import json
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from curator import storage
from curator.records import PROVENANCE, Row, new_video_row
from curator.rundir import RunDir

#: the column of an input list (CSV, Parquet) that holds the input URIs
URI_COLUMN = "uri"


class InputNotFound(Exception):
    pass


class InputListError(InputNotFound):
    """An input list that cannot be used (missing, no `uri` column, a bad row)."""


def list_inputs(input_uri: str, extensions: list[str], page_size: int | None = None) -> Iterator[Row]:
    """Input rows, lazily, in key order. A single object is an input of its own.
    Rows carry the listed `size_bytes` (ingest records the size it finds)."""
    uri = storage.normalize(input_uri)
    single = storage.local_path(uri)
    if single is not None and os.path.isfile(single):
        yield {**new_video_row(uri, os.path.basename(single)), "size_bytes": os.path.getsize(single)}
        return
    prefix = uri if uri.endswith("/") else uri + "/"
    found = False
    for info in storage.list_objects(prefix, suffixes=extensions, page_size=page_size):
        found = True
        yield {**new_video_row(info.uri, storage.relative(prefix, info.uri)), "size_bytes": info.size}
    if not found and single is not None and not os.path.isdir(single):
        raise InputNotFound(f"input not found: {storage.display(uri)}")


def load_provenance(uri: str) -> dict[str, dict[str, object]]:
    """Per-input provenance (`run.provenance`): a JSONL file, one object per input with its
    `source_key` (the key below the input root, as in the manifest) and provenance columns
    (:data:`curator.records.PROVENANCE`). `curator generate` writes one for its footage."""
    out: dict[str, dict[str, object]] = {}
    for n, line in enumerate(storage.read_bytes(storage.normalize(uri)).decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        doc = json.loads(line)
        key = doc.pop("source_key", None)
        unknown = set(doc) - set(PROVENANCE)
        if not isinstance(key, str) or unknown:
            raise ValueError(f"{storage.display(uri)} line {n}: needs source_key and only the columns "
                             f"{', '.join(PROVENANCE)}" + (f" (unknown: {sorted(unknown)})" if unknown else ""))
        out[key] = doc
    return out


def with_provenance(rows: Iterable[Row], provenance: dict[str, dict[str, object]]) -> Iterator[Row]:
    """Input rows with their provenance columns set (inputs not named keep origin 'real')."""
    for row in rows:
        extra = provenance.get(row["source_key"])
        if extra:
            row.update(extra)
        yield row


# ------------------------------------------------------------------ input lists
def _list_format(uri: str) -> str:
    name = uri.lower().split("?", 1)[0]
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith(".csv"):
        return "csv"
    return "text"


def _open_list(list_uri: str) -> Any:
    """`with _open_list(uri) as path:` a local file of the list (a temp copy if remote)."""
    return storage.local_copy(storage.normalize(list_uri))


def input_list_columns(list_uri: str) -> list[str]:
    """The extra columns of an input list (besides `uri`), in file order; [] for a text list.
    Raises InputListError when the file is missing or has no `uri` column."""
    fmt = _list_format(list_uri)
    uri = storage.normalize(list_uri)
    if not storage.exists(uri):
        raise InputListError(f"input list not found: {storage.display(uri)}")
    if fmt == "text":
        return []
    with _open_list(uri) as path:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            try:
                names = pq.ParquetFile(path).schema_arrow.names
            except Exception as exc:
                raise InputListError(f"input list {storage.display(uri)} is not a Parquet file: {exc}") from None
        else:
            with open(path, newline="", encoding="utf-8-sig") as fh:
                names = next(csv.reader(fh), [])
    names = [n.strip() for n in names]
    if URI_COLUMN not in names:
        raise InputListError(f"input list {storage.display(uri)} has no {URI_COLUMN!r} column "
                             f"(columns: {', '.join(names) or 'none'}); name the column of input URIs {URI_COLUMN!r}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputListError(f"input list {storage.display(uri)} names a column twice: {', '.join(dupes)}")
    return [n for n in names if n != URI_COLUMN]


def _list_records(list_uri: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line or row number, record with `uri` and the extra columns), streamed."""
    fmt = _list_format(list_uri)
    with _open_list(list_uri) as path:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            n = 0
            for batch in pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=4096):
                for rec in batch.to_pylist():
                    n += 1
                    yield n, rec
        elif fmt == "csv":
            with open(path, newline="", encoding="utf-8-sig") as fh:
                reader = csv.DictReader(fh)
                reader.fieldnames = [n.strip() for n in reader.fieldnames or []]
                for rec in reader:
                    yield reader.line_num, rec
        else:
            with open(path, encoding="utf-8-sig") as fh:
                for n, line in enumerate(fh, 1):
                    text = line.strip()
                    if text and not text.startswith("#"):
                        yield n, {URI_COLUMN: text}


def _resolve(entry: str, list_uri: str) -> str:
    """An entry of the list as a URI: with a scheme as it is; a relative path below the list's folder."""
    if "://" in entry or os.path.isabs(entry):
        return storage.normalize(entry)
    base = storage.normalize(list_uri).rsplit("/", 1)[0]
    return storage.join(base, entry)


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value != value:  # NaN from a Parquet float column
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else str(value)


def read_input_list(list_uri: str, input_uri: str | None = None) -> Iterator[Row]:
    """Input rows from an input list, in file order: `uri` plus every other column as a
    string. A video's key is its path below `input_uri` when it lies there (so its id is the
    one a run over that folder gives), else its whole URI."""
    extra = input_list_columns(list_uri)
    prefix = None
    if input_uri:
        prefix = storage.normalize(input_uri).rstrip("/") + "/"
    shown = storage.display(storage.normalize(list_uri))
    for n, rec in _list_records(list_uri):
        entry = _as_text(rec.get(URI_COLUMN))
        if not entry or not entry.strip():
            raise InputListError(f"input list {shown}, row {n}: empty {URI_COLUMN!r}")
        uri = _resolve(entry.strip(), list_uri)
        key = storage.relative(prefix, uri) if prefix and uri.startswith(prefix) else storage.display(uri)
        row = new_video_row(uri, key)
        for col in extra:
            row[col] = _as_text(rec.get(col))
        yield row


# ------------------------------------------------------------------ selection
def sample_key(source_key: str, seed: int) -> float:
    """A uniform number in [0, 1) from an input's key and a seed: the order of `run.sample`
    and of `curator plan`'s sample (same seed, same videos, on every machine)."""
    digest = hashlib.sha256(f"{seed}\0{source_key}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def select_inputs(rows: Iterable[Row], limit: int | None = None, sample: float | None = None,
                  seed: int = 0) -> Iterator[Row]:
    """Trial runs: the rows whose sample key is below `sample` (a fraction; a larger one
    keeps a superset), then the first `limit` of them, in listing order; lazily."""
    kept = 0
    for row in rows:
        if limit is not None and kept >= limit:
            return
        if sample is not None and sample < 1 and sample_key(row["source_key"], seed) >= sample:
            continue
        kept += 1
        yield row


def lowest_keys(rows: Iterable[Row], k: int, seed: int = 0) -> list[Row]:
    """The `k` rows with the lowest sample keys (a uniform random sample, the same on every
    call), in that order; memory: k rows."""
    heap: list[tuple[float, int, Row]] = []
    for i, row in enumerate(rows):
        item = (-sample_key(row["source_key"], seed), i, row)
        if len(heap) < k:
            heapq.heappush(heap, item)
        elif item > heap[0]:
            heapq.heapreplace(heap, item)
    return [r for _, _, r in sorted(heap, key=lambda t: (-t[0], t[1]))]


def inputs_for(config: Any) -> Iterator[Row]:
    """The input rows of a run: its input list or its input folder, then `run.sample` and
    `run.limit`. Raises InputNotFound (InputListError) with the reason."""
    if config.input_list:
        rows: Iterable[Row] = read_input_list(config.input_list, config.input)
    elif config.input:
        rows = list_inputs(config.input, config.stages.ingest.extensions, config.storage.list_page_size)
    else:
        raise InputNotFound("no input: pass --input URI (a folder or bucket prefix of videos) or --input-list FILE")
    run = config.run
    return select_inputs(rows, run.limit, run.sample, run.sample_seed)


def work_uri(output_uri: str, *parts: str) -> str:
    return RunDir(output_uri).work(*parts)


@dataclass
class Listing:
    parts: list[str] = field(default_factory=list)
    count: int = 0

    def rows(self) -> Iterator[Row]:
        for uri in self.parts:
            yield from read_part(uri)


def write_listing(output_uri: str, run_id: str, inputs: Iterable[Row], part_size: int) -> Listing:
    listing = Listing()
    buf: list[str] = []

    def flush() -> None:
        uri = work_uri(output_uri, run_id, "listing", f"part-{len(listing.parts):06d}.jsonl")
        storage.write_bytes(uri, ("\n".join(buf) + "\n").encode())
        listing.parts.append(uri)
        buf.clear()

    for row in inputs:
        buf.append(json.dumps(row))
        listing.count += 1
        if len(buf) >= part_size:
            flush()
    if buf:
        flush()
    return listing


def read_part(uri: str) -> list[Row]:
    return [json.loads(line) for line in storage.read_bytes(uri).decode().splitlines() if line]


def clear_work(output_uri: str) -> None:
    """Remove the work area (listing parts) of this and earlier, interrupted runs."""
    for info in storage.list_objects(work_uri(output_uri) + "/"):
        storage.delete(info.uri)
