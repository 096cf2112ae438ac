"""In-process, sequential runner: every stage in this process, one video at a time.

Rows cross each stage boundary through the same Arrow schema as under Ray, so the two
runners give the same rows for the same input.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Iterator

from curator import storage
from curator.listing import Listing
from curator.pipeline import Pipeline
from curator.records import Row, to_table
from curator.runners.base import Runner
from curator.stage import Stage
from curator.tracking import StageTracker, where


class LocalRunner(Runner):
    name = "local"
    distributed = False

    def __init__(self) -> None:
        self._stages: list[Stage] | None = None
        self._tracker = StageTracker()

    def stages(self, pipeline: Pipeline) -> list[Stage]:
        if self._stages is None:
            self._stages = [spec.build(pipeline.ctx) for spec in pipeline.specs]
        return self._stages

    def prepare(self, pipeline: Pipeline) -> None:
        for stage in self.stages(pipeline):
            stage.ensure_setup()

    def stream(self, pipeline: Pipeline, listing: Listing) -> Iterator[list[Row]]:
        stages = self.stages(pipeline)
        node = where()
        flow = pipeline.flow_schema
        manifest_names = set(pipeline.schema.names)
        inputs: Iterable[Row] = listing.rows()
        first = stages[0] if stages else None
        if first is not None and hasattr(first, "prefetch_uri"):
            # download the next videos (storage.prefetch of them) while this one is processed
            first.ensure_setup()  # configures storage in this process
            inputs = storage.prefetch(inputs, first.prefetch_uri, skip=getattr(first, "done_before", None))
        for video in inputs:
            rows = to_table([video], flow).to_pylist()
            for stage in stages:
                size = stage.resources.batch_size
                out: list[Row] = []
                for i in range(0, len(rows), size):
                    batch = rows[i:i + size]
                    t0 = time.perf_counter()
                    produced = stage.process(batch)
                    self._tracker.record(stage.name, node, len(batch), len(produced), time.perf_counter() - t0)
                    out.extend(produced)
                rows = to_table(out, flow).to_pylist()
            yield [{k: v for k, v in r.items() if k in manifest_names} for r in rows]

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any], resources: Any = None) -> Iterator[Any]:
        for item in items:  # in this process, on this process's devices: `resources` has nothing to place
            yield fn(item)

    def progress(self) -> dict[str, Any]:
        """Per-stage batches, rows and seconds, all on this process's node (curator.tracking)."""
        return self._tracker.snapshot()

    def close(self) -> None:
        self._stages = None
