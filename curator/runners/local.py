"""In-process, sequential runner: every stage in this process, one video at a time.

Rows cross each stage boundary through the same Arrow schema as under Ray, so the two
runners give the same rows for the same input.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

from curator.listing import Listing
from curator.pipeline import Pipeline
from curator.records import Row, to_table
from curator.stage import Stage


class LocalRunner:
    def __init__(self) -> None:
        self._stages: list[Stage] | None = None

    def stages(self, pipeline: Pipeline) -> list[Stage]:
        if self._stages is None:
            self._stages = [spec.build(pipeline.ctx) for spec in pipeline.specs]
        return self._stages

    def stream(self, pipeline: Pipeline, listing: Listing) -> Iterator[list[Row]]:
        stages = self.stages(pipeline)
        flow = pipeline.flow_schema
        manifest_names = set(pipeline.schema.names)
        for video in listing.rows():
            rows = to_table([video], flow).to_pylist()
            for stage in stages:
                size = stage.resources.batch_size
                out: list[Row] = []
                for i in range(0, len(rows), size):
                    out.extend(stage.process(rows[i:i + size]))
                rows = to_table(out, flow).to_pylist()
            yield [{k: v for k, v in r.items() if k in manifest_names} for r in rows]

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        for item in items:
            yield fn(item)

    def close(self) -> None:
        self._stages = None
