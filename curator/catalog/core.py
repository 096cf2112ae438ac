"""The catalog's commit protocol, tombstones and sources ledger.

``<catalog>/index.json`` is the catalog's only mutable object. Everything it lists —
segments (``segments/<id>.parquet`` + ``.faiss``), tombstones (``tombstones/<id>.parquet``),
ledger parts (``sources/<id>.parquet``), dedup state (``dedup/…``) — is written first,
under a fresh unique name, and never changed afterwards. A writer then *commits*: it reads
index.json with its version (ETag / generation / mtime+hash), builds the next document
and writes it with :func:`curator.storage.put_if` against that version. If another writer
committed in between, the store refuses (412) and the writer reads again and re-applies
its change to the newer document: nobody's commit is lost, however many write at once
(optimistic concurrency; the loop is :func:`commit`).

Every commit increments ``seq``; an entry records the ``seq`` it was committed at. That
orders tombstones against segments: a tombstone for source URI ``u`` committed at seq
``t`` hides the rows of ``u`` in segments committed before ``t`` and none after, so "redo a
changed source" is one commit holding both the tombstone and the new clips.

A commit carries an id; the last ids are kept in index.json, so a writer whose
conditional write went through but whose answer was lost (a retried request then fails
its precondition on its own write) sees its id on the next read and stops.
"""

from __future__ import annotations

import copy
import datetime as _dt
import io
import json
import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curator import storage

log = logging.getLogger("curator.catalog")

INDEX_JSON = "index.json"
#: index.json format written; 1 (a single-writer index of earlier versions) is read too
FORMAT = 2
READ_FORMATS = (1, 2)
#: commit ids remembered in index.json (a writer finds its own commit after a lost answer)
KEEP_COMMITS = 256

TOMBSTONE_SCHEMA = pa.schema([("source_uri", pa.string()), ("seq", pa.int64()), ("reason", pa.string())])
SOURCE_SCHEMA = pa.schema([("source_uri", pa.string()), ("size", pa.int64()), ("mtime", pa.float64()),
                           ("etag", pa.string()), ("status", pa.string()), ("video_id", pa.string()),
                           ("run", pa.string()), ("seq", pa.int64())])
#: ledger statuses: curated (by a run, with or without clips), deleted (gone from the input)
CURATED, DELETED = "curated", "deleted"


class CatalogError(RuntimeError):
    """The catalog cannot do this; the message says why."""


class Rebase(Exception):
    """Raised by a commit's `apply` when the newer document conflicts with work already
    written (e.g. another writer registered the same clips): redo that work, then commit."""

    def __init__(self, detail: Any):
        super().__init__(str(detail))
        self.detail = detail


def new_id() -> str:
    """A unique, time-ordered file id."""
    now = _dt.datetime.now(_dt.timezone.utc)
    return f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}"


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def empty_doc() -> dict[str, Any]:
    return {"format": FORMAT, "embedding_model": None, "dim": None, "seq": 0, "segments": [], "tombstones": [],
            "sources": [], "commits": []}


def upgrade(doc: dict[str, Any]) -> dict[str, Any]:
    """A format-1 document as format 2 (every segment at seq 0)."""
    base = empty_doc()
    base.update(doc)
    for seg in base["segments"]:
        seg.setdefault("seq", 0)
    return base


@dataclass
class Snapshot:
    """index.json as read: the document and its store version (None: no index.json yet)."""

    uri: str
    doc: dict[str, Any]
    version: str | None
    _tombstones: dict[str, int] | None = field(default=None, repr=False)

    def path(self, *parts: str) -> str:
        return storage.join(self.uri, *parts)

    def tombstones(self) -> dict[str, int]:
        """source URI -> the latest seq at which it was tombstoned."""
        if self._tombstones is None:
            self._tombstones = load_tombstones(self.uri, self.doc)
        return self._tombstones


def read(uri: str) -> Snapshot:
    uri = storage.normalize(uri).rstrip("/")
    try:
        data, version = storage.read_versioned(storage.join(uri, INDEX_JSON))
    except storage.NotFound:
        return Snapshot(uri, empty_doc(), None)
    doc = json.loads(data)
    if doc.get("format") not in READ_FORMATS:
        raise CatalogError(f"{storage.display(uri)}: index format {doc.get('format')} is not one of {READ_FORMATS} "
                           "(a newer curator wrote it?)")
    return Snapshot(uri, upgrade(doc), version)


@dataclass
class CommitResult:
    doc: dict[str, Any]
    seq: int  # the seq this commit got (that of an earlier, identical commit when already applied)
    attempts: int  # conditional writes tried (1 = no conflict)
    applied: bool  # False when nothing was to be done or the commit was already there


def commit(uri: str, apply: Callable[[dict[str, Any], int], dict[str, Any] | None], commit_id: str | None = None,
           *, attempts: int = 200, on_rebase: Callable[[Rebase], None] | None = None,
           max_wait_s: float = 2.0) -> CommitResult:
    """Apply `apply(doc, seq) -> new doc | None` to the current index.json and write it back
    only if nobody committed meanwhile; on a conflict read again and re-apply (with jittered
    backoff). `seq` is the number this commit will get. `apply` returns None when there is
    nothing to do, and may raise :class:`Rebase`, which `on_rebase` handles before the
    next attempt."""
    uri = storage.normalize(uri).rstrip("/")
    commit_id = commit_id or new_id()
    target = storage.join(uri, INDEX_JSON)
    tries = 0
    for attempt in range(attempts):
        snap = read(uri)
        if commit_id in snap.doc.get("commits", []):
            return CommitResult(snap.doc, _seq_of(snap.doc, commit_id), tries, False)
        seq = int(snap.doc.get("seq") or 0) + 1
        try:
            new = apply(copy.deepcopy(snap.doc), seq)
        except Rebase as exc:
            if on_rebase is None:
                raise
            on_rebase(exc)
            continue
        if new is None:
            return CommitResult(snap.doc, int(snap.doc.get("seq") or 0), tries, False)
        new["format"] = FORMAT
        new["seq"] = seq
        new["commits"] = (list(new.get("commits") or []) + [commit_id])[-KEEP_COMMITS:]
        new.setdefault("commit_seqs", {})
        new["commit_seqs"] = {k: v for k, v in new["commit_seqs"].items() if k in new["commits"]}
        new["commit_seqs"][commit_id] = seq
        new["updated"] = now_iso()
        tries += 1
        try:
            storage.put_if(target, json.dumps(new, indent=1).encode(), snap.version)
            if tries > 1:
                log.info("catalog %s: committed seq %d after %d conflicts", storage.display(uri), seq, tries - 1)
            return CommitResult(new, seq, tries, True)
        except storage.PreconditionFailed:
            time.sleep(min(max_wait_s, 0.02 * (1.5 ** min(attempt, 12))) * (0.5 + random.random()))
    raise CatalogError(f"could not commit to {storage.display(uri)} after {attempts} attempts: "
                       "other writers kept committing first")


def _seq_of(doc: dict[str, Any], commit_id: str) -> int:
    return int((doc.get("commit_seqs") or {}).get(commit_id, doc.get("seq") or 0))


# ---------------------------------------------------------------------- small tables
def write_table(uri: str, table: pa.Table) -> None:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    storage.write_bytes(uri, buf.getvalue())


def read_table(uri: str, columns: list[str] | None = None) -> pa.Table:
    return pq.read_table(io.BytesIO(storage.read_bytes(uri)), columns=columns)


def _entry_table(uri: str, entry: dict[str, Any], kind: str, schema: pa.Schema) -> pa.Table:
    t = read_table(storage.join(uri, kind, f"{entry['id']}.parquet"))
    for f in schema:
        if f.name not in t.column_names:
            t = t.append_column(f.name, pa.nulls(t.num_rows, f.type))
    t = t.select(schema.names).cast(schema)
    seq = t.column("seq").fill_null(int(entry.get("seq") or 0))
    return t.set_column(t.schema.get_field_index("seq"), "seq", seq)


# ------------------------------------------------------------------------ tombstones
def tombstone_table(source_uris: list[str], reason: str) -> pa.Table:
    n = len(source_uris)
    return pa.table({"source_uri": pa.array(source_uris, pa.string()), "seq": pa.nulls(n, pa.int64()),
                     "reason": pa.array([reason] * n, pa.string())}, schema=TOMBSTONE_SCHEMA)


def load_tombstones(uri: str, doc: dict[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for entry in doc.get("tombstones") or []:
        t = _entry_table(uri, entry, "tombstones", TOMBSTONE_SCHEMA)
        for u, s in zip(t.column("source_uri").to_pylist(), t.column("seq").to_pylist()):
            if u is not None and s > out.get(u, -1):
                out[u] = int(s)
    return out


def visible(seg: dict[str, Any], source_uris: pa.Array | pa.ChunkedArray | None, tombs: dict[str, int]) -> np.ndarray:
    """Rows of a segment that no later tombstone hides (bool mask)."""
    n = len(source_uris) if source_uris is not None else int(seg.get("rows") or 0)
    if not tombs or source_uris is None:
        return np.ones(n, bool)
    seq = int(seg.get("seq") or 0)
    hidden = [tombs.get(u, -1) > seq for u in source_uris.to_pylist()]
    return ~np.asarray(hidden, bool) if n else np.ones(0, bool)


# ---------------------------------------------------------------------- sources ledger
def sources_table(records: list[dict[str, Any]]) -> pa.Table:
    cols = {f.name: [r.get(f.name) for r in records] for f in SOURCE_SCHEMA if f.name != "seq"}
    cols["seq"] = [None] * len(records)
    return pa.table(cols, schema=SOURCE_SCHEMA)


def load_sources(uri: str, doc: dict[str, Any], prefix: str | None = None) -> dict[str, dict[str, Any]]:
    """The ledger: source URI -> its latest record (status, size, mtime, etag, video_id, run, seq),
    optionally only sources under `prefix`."""
    out: dict[str, dict[str, Any]] = {}
    for entry in doc.get("sources") or []:
        t = _entry_table(uri, entry, "sources", SOURCE_SCHEMA)
        for r in t.to_pylist():
            u = r["source_uri"]
            if u is None or (prefix and not u.startswith(prefix)):
                continue
            if u not in out or r["seq"] >= out[u]["seq"]:
                out[u] = r
    return out
