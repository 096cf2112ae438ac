"""Runners turn a stream of input rows into a stream of processed rows.

    runner.stream(pipeline, inputs) -> Iterator[list[Row]]   the streaming stages
    runner.map(fn, items)           -> Iterator[result]      run-level phases (shards, dedup)
    runner.progress(), runner.close(), runner.name, runner.distributed

Both implement :class:`curator.runners.base.Runner`.

`local` runs everything in this process, one video at a time (tests, debugging);
`ray` runs the same stages as a Ray Data streaming graph (one machine or a cluster).
"""

from __future__ import annotations

from curator.config import PipelineConfig
from curator.runners.base import Runner

__all__ = ["Runner", "make_runner"]


def make_runner(config: PipelineConfig) -> Runner:
    if config.run.runner == "local":
        from curator.runners.local import LocalRunner

        return LocalRunner()
    from curator.runners.ray import RayRunner

    return RayRunner(config.run)
