"""One run's output folder: every name a run writes, its config, and the manifest.

A :class:`RunDir` is the URI of a run's output together with the storage options it is
read and written with (datatrove's ``DataFolder`` is the model): the run-level phases
(`curator.phases`), the driver and the CLI pass it around instead of spelling file names
and configuring storage themselves.

Layout under ``rundir.uri``::

    config.yaml                        resolved config + `_run` record (hash, stages, run id)
    staging/videos/<video_id>.parquet  one manifest part per finished video (completion marker)
    staging/clips/<video_id>/<clip_id>.mp4
    manifest.parquet                   all parts, sorted; rewritten in place by later phases
    dedup.json   metrics.json   summary.json   progress.json   report.html
    logs/<run_id>.log                  a Ray run's log: Ray's own output and curator's log lines
    shards/<split>/<profile>/...       tars + per-shard indexes; shards/index.json, README.md
    index/                             the default clip index (index.uri overrides it)
    _work/                             transient: listing parts, dedup spill

The manifest has **one way in**: :meth:`RunDir.open_manifest` gives a Parquet file read
in record batches with column selection (a local file, or a temp copy of a remote one,
never the whole file in memory), and :meth:`RunDir.manifest_writer` rewrites it
atomically. Every open is counted (:func:`count_manifest_opens`), so tests can hold each
phase to one read.
"""

from __future__ import annotations

import contextlib
import json
import threading
from dataclasses import dataclass
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from curator import storage
from curator.storage import StorageConfig

MANIFEST = "manifest.parquet"
CONFIG = "config.yaml"
SUMMARY = "summary.json"
METRICS = "metrics.json"
PROGRESS = "progress.json"
DEDUP_REPORT = "dedup.json"
REPORT = "report.html"
STAGING = "staging"
SHARDS = "shards"
SHARD_INDEX = "index.json"
SHARD_CARD = "README.md"
INDEX = "index"
LOGS = "logs"
WORK = "_work"


class NoRun(Exception):
    """The folder holds no finished run (no config.yaml, or no manifest)."""


# ---------------------------------------------------------------- manifest opens
_opens_lock = threading.Lock()
_counters: list[list[str]] = []


@contextlib.contextmanager
def count_manifest_opens() -> Iterator[list[str]]:
    """`with count_manifest_opens() as opens:` the purpose of every manifest open in this
    process while the block runs, in order (tests and benchmarks)."""
    opens: list[str] = []
    with _opens_lock:
        _counters.append(opens)
    try:
        yield opens
    finally:
        with _opens_lock:
            _counters.remove(opens)


def _record_open(purpose: str) -> None:
    with _opens_lock:
        for c in _counters:
            c.append(purpose)


class ManifestFile:
    """An open manifest: schema, and rows streamed in record batches with column selection."""

    def __init__(self, path: str):
        # pre_buffer=False: pyarrow's default pre-buffers every row group it will read, i.e.
        # the whole file (measured: RSS grew with the manifest); without it, one row group at a time
        self.parquet = pq.ParquetFile(path, pre_buffer=False)

    @property
    def schema(self) -> pa.Schema:
        return self.parquet.schema_arrow

    @property
    def names(self) -> list[str]:
        return self.parquet.schema_arrow.names

    @property
    def num_rows(self) -> int:
        return self.parquet.metadata.num_rows

    def batches(self, columns: list[str] | None = None, batch_rows: int = 4096) -> Iterator[pa.RecordBatch]:
        """Record batches of `columns` (those the manifest has; all when None)."""
        if columns is not None:
            have = set(self.names)
            columns = [c for c in columns if c in have]
        yield from self.parquet.iter_batches(batch_size=batch_rows, columns=columns)

    def rows(self, columns: list[str] | None = None, batch_rows: int = 4096) -> Iterator[dict[str, Any]]:
        """Rows as dicts, in manifest order, one batch in memory at a time."""
        for batch in self.batches(columns, batch_rows):
            yield from batch.to_pylist()

    def close(self) -> None:
        self.parquet.close()


# ------------------------------------------------------------------------ RunDir
@dataclass(frozen=True)
class RunDir:
    """A run's output folder and the storage options to reach it (picklable: workers get it)."""

    uri: str
    storage_options: StorageConfig | None = None

    @classmethod
    def of(cls, uri: str | "RunDir", storage_options: StorageConfig | None = None) -> "RunDir":
        if isinstance(uri, RunDir):
            return uri if storage_options is None else cls(uri.uri, storage_options)
        return cls(storage.normalize(uri), storage_options)

    @classmethod
    def activated(cls, uri: str | "RunDir", storage_options: StorageConfig | None) -> "RunDir":
        """A driver's run folder: its options made the process's first, then the URI
        normalized under them (an abfs:// URI is checked against the configured account)."""
        if storage_options is not None:
            storage.configure(storage_options)
        return cls.of(uri.uri if isinstance(uri, RunDir) else uri, storage_options)

    def activate(self) -> "RunDir":
        """Make this run's storage options the process's (the storage backends are built
        per process from one config; a worker calls this with the RunDir it was handed)."""
        if self.storage_options is not None:
            storage.configure(self.storage_options)
        return self

    # -------------------------------------------------------------- names
    def path(self, *parts: str) -> str:
        return storage.join(self.uri, *parts)

    @property
    def manifest(self) -> str:
        return self.path(MANIFEST)

    @property
    def config(self) -> str:
        return self.path(CONFIG)

    @property
    def summary(self) -> str:
        return self.path(SUMMARY)

    @property
    def metrics(self) -> str:
        return self.path(METRICS)

    @property
    def progress(self) -> str:
        return self.path(PROGRESS)

    @property
    def dedup_report(self) -> str:
        return self.path(DEDUP_REPORT)

    @property
    def report(self) -> str:
        return self.path(REPORT)

    @property
    def staging(self) -> str:
        return self.path(STAGING)

    @property
    def parts_prefix(self) -> str:
        return self.path(STAGING, "videos") + "/"

    def part(self, video_id: str) -> str:
        return self.path(STAGING, "videos", f"{video_id}.parquet")

    def clip(self, video_id: str, clip_id: str) -> str:
        return self.path(STAGING, "clips", video_id, f"{clip_id}.mp4")

    def shards(self, *parts: str) -> str:
        return self.path(SHARDS, *parts)

    @property
    def shard_index(self) -> str:
        return self.shards(SHARD_INDEX)

    @property
    def shard_card(self) -> str:
        return self.shards(SHARD_CARD)

    def split_index(self, split: str, profile: str) -> str:
        return self.shards(split, profile, SHARD_INDEX)

    @property
    def default_index(self) -> str:
        return self.path(INDEX)

    def log(self, run_id: str) -> str:
        """The log file of one run (`curator run` on Ray: Ray's own output; curator.runlog)."""
        return self.path(LOGS, f"{run_id}.log")

    def work(self, *parts: str) -> str:
        return self.path(WORK, *parts)

    def clear(self) -> None:
        """--force: remove what an earlier run wrote here (staging, shards, run files)."""
        for sub in (STAGING, SHARDS):
            for info in storage.list_objects(self.path(sub) + "/"):
                storage.delete(info.uri)
        for name in (MANIFEST, SUMMARY, CONFIG, METRICS):
            storage.delete(self.path(name))

    # -------------------------------------------------------------- config
    def read_config(self) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(config document, its `_run` record) as recorded by the run; None if absent."""
        import yaml

        try:
            doc = yaml.safe_load(storage.read_bytes(self.config)) or {}
        except storage.NotFound:
            return None
        run = doc.pop("_run", None) or {}
        return doc, run

    def run_info(self) -> dict[str, Any]:
        got = self.read_config()
        return got[1] if got else {}

    def write_config(self, doc: dict[str, Any], run: dict[str, Any]) -> None:
        import yaml

        storage.write_bytes(self.config, yaml.safe_dump({**doc, "_run": run}, sort_keys=False).encode())

    # -------------------------------------------------------------- json files
    def read_json(self, uri: str) -> dict[str, Any] | None:
        try:
            return json.loads(storage.read_bytes(uri))
        except storage.NotFound:
            return None

    def write_summary(self, doc: dict[str, Any]) -> None:
        storage.write_bytes(self.summary, json.dumps(doc, indent=1, sort_keys=True).encode())

    def read_summary(self) -> dict[str, Any] | None:
        return self.read_json(self.summary)

    def write_metrics(self, doc: dict[str, Any]) -> None:
        storage.write_bytes(self.metrics, json.dumps(doc, indent=1, sort_keys=True).encode())

    def read_metrics(self) -> dict[str, Any] | None:
        return self.read_json(self.metrics)

    # -------------------------------------------------------------- manifest
    def has_manifest(self) -> bool:
        return storage.exists(self.manifest)

    @contextlib.contextmanager
    def open_manifest(self, purpose: str = "") -> Iterator[ManifestFile]:
        """`with rundir.open_manifest("shard") as mf:` the consolidated manifest, streamed
        (`mf.batches(columns)`, `mf.rows(columns)`); a remote one through a temp file."""
        _record_open(purpose)
        with storage.local_copy(self.manifest) as path:
            mf = ManifestFile(path)
            try:
                yield mf
            finally:
                mf.close()

    @contextlib.contextmanager
    def manifest_writer(self, schema: pa.Schema) -> Iterator[pq.ParquetWriter]:
        """Rewrite the manifest atomically (temp name, then rename / commit): readers of
        the old file (an open :class:`ManifestFile`) keep reading it until they close."""
        with storage.open_write(self.manifest) as fh:
            writer = pq.ParquetWriter(fh, schema, compression="zstd")
            try:
                yield writer
            finally:
                writer.close()
