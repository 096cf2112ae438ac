"""What every run-level phase shares: the state it runs over, and the order check.

A phase is a module with ``NAME``, ``REQUIRES`` and ``POPULATES`` (names of what a run
folder holds: ``parts``, ``manifest``, ``decisions``, ``dedup``, ``index``, ``shards``,
``summary``, ``metrics``) and one entry point ``run(state) -> result`` over a
:class:`PhaseState`. :func:`check_order` refuses a list of phases in which one requires
something no earlier phase populates (cosmos-curate's `requires` / `populates`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from curator.pipeline import PipelineError
from curator.rundir import RunDir

if TYPE_CHECKING:
    import pyarrow as pa

    from curator.config import PipelineConfig, Resources
    from curator.runners.base import Runner


class PhaseError(PipelineError):
    """A phase cannot run (bad config for this run, missing input, wrong order)."""


@dataclass
class PhaseState:
    """What a phase runs over: the run folder, the config, the runner (its parallel map),
    and what earlier phases of this invocation returned (`results[name]`)."""

    rundir: RunDir
    config: "PipelineConfig"
    runner: "Runner | None" = None
    stages: list[str] = field(default_factory=list)  # the run's stage names, in order
    schema: "pa.Schema | None" = None  # the manifest schema (consolidate)
    on_shard: Callable[[], None] | None = None
    started: float = field(default_factory=time.monotonic)  # monotonic start of the run (summary)
    counts: dict[str, int] = field(default_factory=dict)  # videos_resumed, videos_lost (summary)
    placement: Callable[[dict[str, Any]], dict[str, Any]] | None = None  # adds nodes to metrics.json
    stream_s: float | None = None  # wall seconds of the per-video stream (summary: metrics.json)
    results: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # wall seconds of each phase run so far

    def __post_init__(self) -> None:
        if self.rundir.storage_options is None:  # the run folder carries the config's storage options
            self.rundir = RunDir.of(self.rundir, self.config.storage)

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any],
            resources: "Callable[[Any], Resources | None] | None" = None) -> Iterable[Any]:
        """The runner's parallel map (`resources(item)`: what an item's task needs, see
        Runner.map), or a plain map without a runner."""
        return self.runner.map(fn, items, resources=resources) if self.runner is not None else map(fn, items)


def check_order(phases: Sequence[ModuleType], available: Iterable[str] = ()) -> None:
    """Raise PhaseError when a phase requires what neither `available` nor an earlier
    phase in `phases` populates."""
    have = set(available)
    for ph in phases:
        missing = [r for r in ph.REQUIRES if r not in have]
        if missing:
            raise PhaseError(f"phase {ph.NAME!r} requires {', '.join(missing)}, which no earlier phase populates "
                             f"(order: {', '.join(p.NAME for p in phases)}; available before: "
                             f"{', '.join(sorted(set(available))) or 'nothing'})")
        have.update(ph.POPULATES)


def run_phases(phases: Sequence[ModuleType], state: PhaseState, available: Iterable[str] = (),
               on_phase: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Check the order, then run each phase over `state`; returns `state.results`."""
    check_order(phases, available)
    for ph in phases:
        if on_phase:
            on_phase(ph.NAME)
        t0 = time.monotonic()
        state.results[ph.NAME] = ph.run(state)
        state.seconds[ph.NAME] = round(time.monotonic() - t0, 3)
    return state.results
