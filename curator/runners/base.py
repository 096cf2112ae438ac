"""The one interface every runner implements (datatrove's executor base is the model).

    runner.stream(pipeline, listing) -> Iterator[list[Row]]   the per-clip stages
    runner.map(fn, items[, resources]) -> Iterator[result]    run-level phases (shards, dedup)
    runner.progress()                -> dict                  per-stage batches/rows/nodes so far
    runner.prepare(pipeline), runner.capacity()              set up before the stream; CPUs/GPUs at once
    runner.close()
    runner.name, runner.distributed                          "local" / "ray"; whether work
                                                             leaves this process (Ray)

Callers use these and nothing else: no `getattr(runner, ...)`, no class-name checks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Iterator

if TYPE_CHECKING:
    from curator.config import Resources
    from curator.listing import Listing
    from curator.pipeline import Pipeline
    from curator.records import Row


class Runner(ABC):
    #: the `run.runner` value that selects it
    name: ClassVar[str] = ""
    #: True when stages and `map` run outside this process (Ray tasks and actors):
    #: phases then ship work as tasks and keep shared files where every node reads them
    distributed: ClassVar[bool] = False

    @abstractmethod
    def stream(self, pipeline: "Pipeline", listing: "Listing") -> Iterator[list["Row"]]:
        """Input rows through the pipeline's stages; processed rows in any order, grouped."""

    @abstractmethod
    def map(self, fn: Callable[[Any], Any], items: Iterable[Any],
            resources: "Callable[[Any], Resources | None] | None" = None) -> Iterator[Any]:
        """fn over items, results in item order (fn and items must pickle when distributed).

        `resources(item)`, called here (in the driver), says what the item's task needs
        (CPUs, GPUs, memory, custom resources) where that differs from the runner's default;
        a runner that keeps work in this process ignores it."""

    def progress(self) -> dict[str, Any]:
        """Per-stage batches, rows, seconds and nodes so far (curator.tracking's snapshot)."""
        return {"stages": {}, "nodes": {}}

    def prepare(self, pipeline: "Pipeline") -> None:
        """Start what the stream needs before its first input (local: every stage's setup();
        Ray: the cluster connection), so that a caller can time it apart (`curator plan`);
        stream() does it itself otherwise."""

    def capacity(self) -> dict[str, float]:
        """What the stages can run on at once: {"CPU": n, "GPU": m} (local: one at a time)."""
        return {"CPU": 1.0, "GPU": 0.0}

    def close(self) -> None:
        """Release what the runner holds (stages, models)."""
