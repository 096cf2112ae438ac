"""Ray Data streaming runner: the same stages as the local runner, as a streaming graph.

    listing parts --flat_map--> video rows --map_batches(stage)--> ... --> driver

Model-loading stages (``Stage.stateful``) run as autoscaling actor pools
(``ActorPoolStrategy(min_size, max_size)``); the others as tasks. Each stage's CPUs,
GPUs, memory and custom resources come from its config. The transcode stage fans one
video row out into its clip rows (``map_batches`` may return more rows than it got).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Any, Callable, Iterable, Iterator

import pyarrow as pa

from curator import storage
from curator.config import RunConfig
from curator.deadline import Watchdog
from curator.listing import Listing, read_part
from curator.pipeline import Pipeline, StageSpec
from curator.records import Row, to_table
from curator.stage import RunContext, Stage

log = logging.getLogger(__name__)

def _project_root() -> str:
    import curator

    return os.path.dirname(os.path.dirname(os.path.abspath(curator.__file__)))


def init_ray(cfg: RunConfig) -> None:
    """Join a cluster (`address`) or start an embedded Ray on this machine."""
    import ray

    if ray.is_initialized():
        return
    # A curation tool should not phone home unless the user says so.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Workers import the same curator as the driver (a checkout, not only an install).
    root = _project_root()
    pythonpath = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    kwargs: dict[str, Any] = dict(logging_level=logging.WARNING, log_to_driver=True)
    if cfg.address:
        ray.init(address=cfg.address, **kwargs)
    else:
        ray.init(num_cpus=cfg.num_cpus, include_dashboard=False,
                 runtime_env={"env_vars": {"PYTHONPATH": pythonpath}}, **kwargs)


# ------------------------------------------------------------------ stage adapters
class StageActor:
    """A stage inside a Ray actor: built and set up once, then called per batch."""

    def __init__(self, spec: StageSpec, ctx: RunContext, schema: pa.Schema):
        self.stage: Stage = spec.build(ctx)
        self.stage.ensure_setup()
        self.schema = schema

    def __call__(self, batch: pa.Table) -> pa.Table:
        with _watchdog(self.stage, batch.num_rows):
            return to_table(self.stage.process(batch.to_pylist()), self.schema)


_TASK_STAGES: dict[str, Stage] = {}


def stage_task(batch: pa.Table, spec: StageSpec, ctx: RunContext, schema: pa.Schema) -> pa.Table:
    """A stage as a Ray task; the stage object is cached per worker process."""
    key = f"{ctx.run_id}:{spec.name}"
    stage = _TASK_STAGES.get(key)
    if stage is None:
        stage = _TASK_STAGES[key] = spec.build(ctx)
    with _watchdog(stage, batch.num_rows):
        return to_table(stage.process(batch.to_pylist()), schema)


def _watchdog(stage: Stage, rows: int) -> Watchdog:
    """Hard limit for a batch: twice the cooperative per-item limits, plus a minute."""
    limit = stage.ctx.config.run.item_timeout_s
    return Watchdog(2 * limit * max(1, rows) + 60, f"stage {stage.name} on a batch of {rows}")


def read_listing_part(item: dict[str, Any]) -> list[Row]:
    return read_part(item["uri"])


def fit_actor_cpus(stages: list[Stage], cluster_cpus: float, embedded: bool) -> float:
    """The factor to scale actor CPU reservations by so that every actor pool at its
    minimum size plus the widest task still fits the cluster; otherwise the pools hold all
    CPUs and the task stages between them never run (the job hangs).

    On an embedded Ray the reservations are scaled down (with a warning); on a cluster,
    which may autoscale, only a warning is given."""
    pools = sum(s.resources.min_actors * s.resources.num_cpus for s in stages if s.stateful)
    widest_task = max((s.resources.num_cpus for s in stages if not s.stateful), default=0.0)
    if not pools or pools + widest_task <= cluster_cpus:
        return 1.0
    if not embedded:
        log.warning("actor pools reserve %.1f CPUs at their minimum size and tasks need %.1f more, but the "
                    "cluster has %.1f now; this runs only if the cluster scales up", pools, widest_task, cluster_cpus)
        return 1.0
    room = max(cluster_cpus - widest_task, 0.1 * cluster_cpus)
    factor = room / pools
    log.warning("actor pools would reserve %.1f of this machine's %.0f CPUs; scaling their reservations by %.2f "
                "so the task stages can run (set stages.<name>.resources to choose yourself)",
                pools, cluster_cpus, factor)
    return factor


# ----------------------------------------------------------------------- runner
class RayRunner:
    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self._actor_cpu_scale = 1.0

    def stream(self, pipeline: Pipeline, listing: Listing) -> Iterator[list[Row]]:
        import ray
        import ray.data

        init_ray(self.cfg)
        ctx = pipeline.ctx
        parts = listing.parts
        if not parts:
            return
        dctx = ray.data.DataContext.get_current()
        dctx.enable_progress_bars = sys.stderr.isatty()
        dctx.execution_options.preserve_order = False
        # a block that still fails after its retries is dropped, not fatal: the driver
        # records its videos as lost (and a rerun retries them)
        dctx.max_errored_blocks = self.cfg.max_failed_blocks
        schema = pipeline.flow_schema
        ds = ray.data.from_items([{"uri": u} for u in parts], override_num_blocks=len(parts))
        ds = ds.flat_map(read_listing_part, num_cpus=0.25)
        self._actor_cpu_scale = fit_actor_cpus([spec.build(ctx) for spec in pipeline.specs],
                                               ray.cluster_resources().get("CPU", 0.0), embedded=not self.cfg.address)
        for spec in pipeline.specs:
            ds = self._apply(ds, spec, ctx, schema)
        names = set(pipeline.schema.names)
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            yield [{k: v for k, v in r.items() if k in names} for r in batch.to_pylist()]

    def _apply(self, ds: Any, spec: StageSpec, ctx: RunContext, schema: pa.Schema) -> Any:
        import ray.data

        stage = spec.build(ctx)
        res = stage.resources
        cpus = res.num_cpus * (self._actor_cpu_scale if stage.stateful else 1.0)
        kwargs: dict[str, Any] = dict(batch_size=res.batch_size, batch_format="pyarrow",
                                      num_cpus=cpus, zero_copy_batch=True)
        if res.num_gpus:
            kwargs["num_gpus"] = res.num_gpus
        if res.memory_gb:
            kwargs["memory"] = int(res.memory_gb * 1024**3)
        if res.custom:
            kwargs["resources"] = dict(res.custom)
        # Streaming re-blocking: each task / actor call gets blocks of `batch_size` rows,
        # so videos (and, after transcode, clips) spread over the pool instead of
        # travelling in one block.
        ds = ds.repartition(target_num_rows_per_block=res.batch_size)
        retries = self.cfg.task_retries
        with warnings.catch_warnings():
            # Ray 2.60 marks retry arguments as deprecated but offers no named replacement
            warnings.simplefilter("ignore", DeprecationWarning)
            if stage.stateful:
                # bounded retries: Ray Data's default (-1) would retry a poisoned item forever
                return ds.map_batches(
                    StageActor,
                    fn_constructor_kwargs={"spec": spec, "ctx": ctx, "schema": schema},
                    compute=ray.data.ActorPoolStrategy(min_size=res.min_actors,
                                                       max_size=max(res.min_actors, res.max_actors)),
                    max_restarts=-1, max_task_retries=retries,
                    **kwargs,
                )
            return ds.map_batches(stage_task, fn_kwargs={"spec": spec, "ctx": ctx, "schema": schema},
                                  max_retries=retries, **kwargs)

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any], max_in_flight: int = 8) -> Iterator[Any]:
        """Run fn over items as Ray tasks, in order, with a bounded number in flight."""
        import ray

        init_ray(self.cfg)
        remote = ray.remote(num_cpus=0.5, max_retries=self.cfg.task_retries)(_call)
        pending: list[Any] = []
        for item in items:
            pending.append(remote.remote(fn, item))
            if len(pending) >= max_in_flight:
                yield ray.get(pending.pop(0))
        while pending:
            yield ray.get(pending.pop(0))

    def close(self) -> None:
        pass


def _call(fn: Callable[[Any], Any], item: Any) -> Any:
    return fn(item)
