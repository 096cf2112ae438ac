"""The input listing, written in parts under the output's work area.

The driver lists the input lazily (page by page) and writes the rows in parts of
`run.listing_part_size`; runners read the parts (Ray workers read them directly), so no
process holds the whole listing. The parts also give the driver the exact number of
inputs (for progress and ETA) and let it account for videos a crashed worker lost.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from curator import storage
from curator.records import PROVENANCE, Row, new_video_row
from curator.rundir import RunDir


class InputNotFound(Exception):
    pass


def list_inputs(input_uri: str, extensions: list[str], page_size: int | None = None) -> Iterator[Row]:
    """Input rows, lazily, in key order. A single object is an input of its own."""
    uri = storage.normalize(input_uri)
    single = storage.local_path(uri)
    if single is not None and os.path.isfile(single):
        yield new_video_row(uri, os.path.basename(single))
        return
    prefix = uri if uri.endswith("/") else uri + "/"
    found = False
    for info in storage.list_objects(prefix, suffixes=extensions, page_size=page_size):
        found = True
        yield new_video_row(info.uri, storage.relative(prefix, info.uri))
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
