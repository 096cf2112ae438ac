"""Ingest: fetch (when remote), sniff and probe each input video.

Unreadable, empty, audio-only, still-image, too-short, too-long and oversized inputs
become rows with a reason; nothing here raises past the row.

Remote inputs are read whole (``storage.read_bytes``). Fetching overlaps compute: the
local runner prefetches the next videos through :meth:`IngestStage.prefetch_uri` and
:meth:`IngestStage.done_before` (see ``storage.prefetch``), a batch of several rows is
fetched in parallel, and under Ray this stage is its own light operator (0.5 CPU), so
its downloads run while the model stages compute.
"""

from __future__ import annotations

from typing import ClassVar

import pyarrow as pa

from curator import storage
from curator.config import IngestConfig
from curator.manifest import part_uri, read_table
from curator.media.probe import Limits, ProbeError, probe
from curator.records import ERROR, REJECTED, SKIPPED, Reason, Row, stop
from curator.stage import Stage


class IngestStage(Stage):
    name = "ingest"
    kind = "video"
    columns: ClassVar[list[tuple[str, pa.DataType]]] = []
    config: IngestConfig
    #: its own Ray operator: downloads overlap the compute of the stages after it
    fusable = False

    # ------------------------------------------------------------- prefetching
    def prefetch_uri(self, row: Row) -> str | None:
        """The remote object process_row will read for this row (None: a local file)."""
        uri = row.get("source_uri")
        return uri if uri and storage.local_path(uri) is None else None

    def done_before(self, row: Row) -> bool:
        """An earlier run finished this video (resume skips it, so do not fetch it)."""
        run = self.ctx.config.run
        part = part_uri(self.ctx.output_uri, row["video_id"])
        return bool(run.resume) and storage.exists(part) and not (run.only_failed and failed_before(part))

    def process_rows(self, rows: list[Row]) -> list[list[Row]]:
        # several rows in one batch: fetch the next ones while probing this one
        return super().process_rows(storage.prefetch(rows, self.prefetch_uri, skip=self.done_before,
                                                     depth=min(len(rows) - 1, 8)))  # type: ignore[arg-type]

    def process_row(self, row: Row) -> Row:
        cfg = self.config
        uri = row["source_uri"]
        if self.done_before(row):
            row["status"] = SKIPPED
            row["stage"] = self.name
            row["reason"] = "done_before"
            return row
        try:
            info = storage.stat(uri)
        except storage.StorageError as exc:
            return stop(row, self.name, Reason.STORAGE, str(exc))
        row["size_bytes"] = info.size
        if info.size == 0:
            return stop(row, self.name, Reason.EMPTY, "zero-byte file")
        if info.size > cfg.max_size_gb * 1024**3:
            return stop(row, self.name, Reason.TOO_LARGE,
                        f"{info.size / 1024**3:.1f} GiB > stages.ingest.max_size_gb={cfg.max_size_gb}",
                        status=REJECTED)
        local = storage.local_path(uri)
        limits = Limits(cfg.max_pixels, cfg.max_duration_s, cfg.max_fps)
        try:
            if local is None:
                data = storage.read_bytes(uri)
                row["video_bytes"] = data
                vi = probe(data, limits=limits)
            else:
                vi = probe(local, limits=limits)
        except storage.StorageError as exc:
            return stop(row, self.name, Reason.STORAGE, str(exc))
        except ProbeError as exc:
            row.pop("video_bytes", None)
            guard = exc.reason in (Reason.TOO_MANY_PIXELS, Reason.TOO_LONG)
            return stop(row, self.name, exc.reason, exc.detail, status=REJECTED if guard else ERROR)
        row.update(vi.as_row())
        if vi.duration_s < cfg.min_duration_s:
            return self._reject(row, Reason.TOO_SHORT,
                                f"{vi.duration_s:.2f} s < stages.ingest.min_duration_s={cfg.min_duration_s}")
        return row

    def _reject(self, row: Row, reason: str, detail: str) -> Row:
        row.pop("video_bytes", None)
        return stop(row, self.name, reason, detail, status=REJECTED)



def failed_before(part: str) -> bool:
    """Did the finished video (its manifest part) end with an error anywhere?"""
    return ERROR in read_table(part, columns=["status"]).column("status").to_pylist()
