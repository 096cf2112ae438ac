"""In-process, sequential runner: every stage in this process, one video at a time.

Rows cross each stage boundary through the same Arrow schema as under Ray, so the two
runners give the same rows for the same input.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Iterator

from curator.metrics import StageMetrics, where
from curator.pipeline import Pipeline
from curator.records import Row, to_table
from curator.stage import Stage


class LocalRunner:
    def __init__(self) -> None:
        self._stages: list[Stage] | None = None
        self._metrics = StageMetrics()

    def stages(self, pipeline: Pipeline) -> list[Stage]:
        if self._stages is None:
            self._stages = [spec.build(pipeline.ctx) for spec in pipeline.specs]
        return self._stages

    def stream(self, pipeline: Pipeline, inputs: Iterable[Row]) -> Iterator[list[Row]]:
        stages = self.stages(pipeline)
        self._node = where()
        flow = pipeline.flow_schema
        manifest_names = set(pipeline.schema.names)
        for video in inputs:
            rows = to_table([video], flow).to_pylist()
            for stage in stages:
                size = stage.resources.batch_size
                out: list[Row] = []
                for i in range(0, len(rows), size):
                    batch = rows[i:i + size]
                    t0 = time.perf_counter()
                    produced = stage.process(batch)
                    self._metrics.record(stage.name, self._node, len(batch), len(produced), time.perf_counter() - t0)
                    out.extend(produced)
                rows = to_table(out, flow).to_pylist()
            yield [{k: v for k, v in r.items() if k in manifest_names} for r in rows]

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        for item in items:
            yield fn(item)

    def metrics(self) -> dict[str, Any]:
        """Per-stage batches, rows and seconds, all on this process's node (see curator.metrics)."""
        return self._metrics.snapshot()

    def close(self) -> None:
        self._stages = None
