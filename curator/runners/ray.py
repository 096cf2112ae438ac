"""Ray Data streaming runner: the same stages as the local runner, as a streaming graph.

    listing parts --flat_map--> video rows --map_batches(stage)--> ... --> driver

Model-loading stages (``Stage.stateful``) run as autoscaling actor pools
(``ActorPoolStrategy(min_size, max_size)``); the others as tasks. Each stage's CPUs,
GPUs, memory and custom resources come from its config (:func:`ray_remote_args`), so a
stage that asks for ``custom: {nvenc: 1}`` runs only on nodes that advertise ``nvenc``.
The transcode stage fans one video row out into its clip rows (``map_batches`` may
return more rows than it got). Every stage call reports its batch, rows and node to a
small tracker actor (:mod:`curator.tracking`), which the driver snapshots.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from typing import Any, Callable, Iterable, Iterator

import pyarrow as pa

from curator import storage
from curator.config import Resources, RunConfig
from curator.deadline import Watchdog
from curator.listing import Listing, read_part
from curator.pipeline import Pipeline, PipelineError, StageGroup, StageSpec, group_stages
from curator.records import Row, to_table
from curator.runners import capacity
from curator.runners.base import Runner
from curator.runners.capacity import RAY_DATA_TASK_CPUS
from curator.stage import RunContext, Stage
from curator.storage.config import StorageConfig
from curator.tracking import StageTracker, where

log = logging.getLogger(__name__)

def _project_root() -> str:
    import curator

    return os.path.dirname(os.path.dirname(os.path.abspath(curator.__file__)))


#: whether this process started the Ray it is connected to (an embedded Ray), not joined a cluster
_STARTED_HERE = False


def init_ray(cfg: RunConfig) -> None:
    """Join a cluster (`address`) or start an embedded Ray on this machine."""
    import ray

    global _STARTED_HERE
    if ray.is_initialized():
        return
    # A curation tool should not phone home unless the user says so.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Workers import the same curator as the driver (a checkout, not only an install).
    root = _project_root()
    pythonpath = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    kwargs: dict[str, Any] = dict(logging_level=logging.WARNING, log_to_driver=True)
    # ray.init replaces the SIGTERM handler with a plain exit; keep the caller's (the CLI's
    # turns SIGTERM into a clean stop: progress.json says `stopped`, exit status 143)
    previous = _sigterm_handler()
    address = cluster_address(cfg)
    if address:
        ray.init(address=address, **kwargs)
        _STARTED_HERE = False
    else:
        # an http(s) RAY_ADDRESS is for job submission (checked in cluster_address): an
        # embedded Ray must not read it
        saved = os.environ.pop("RAY_ADDRESS", None)
        try:
            ray.init(num_cpus=cfg.num_cpus, include_dashboard=False,
                     runtime_env={"env_vars": {"PYTHONPATH": pythonpath}}, **kwargs)
            _STARTED_HERE = True
        finally:
            if saved is not None:
                os.environ["RAY_ADDRESS"] = saved
    if callable(previous):
        import signal

        signal.signal(signal.SIGTERM, previous)


def started_here() -> bool:
    """Whether this process's ray.init started the Ray it is connected to (an embedded Ray,
    however it was initialised), rather than joined a cluster."""
    try:
        from ray._private import worker

        node = getattr(worker, "_global_node", None)
        if node is not None and hasattr(node, "ray_init_cluster"):
            return bool(node.ray_init_cluster)
    except ImportError:  # pragma: no cover - private module moved: what init_ray recorded
        pass
    return _STARTED_HERE


def cluster_address(cfg: RunConfig) -> str | None:
    """The Ray cluster `curator run` joins: `run.address`, else a GCS address in RAY_ADDRESS,
    else None (an embedded Ray). An http(s) address is the Jobs API's (`curator submit`
    reads it): from RAY_ADDRESS it is ignored with a note; as `--address` it is an error."""
    if cfg.address:
        if cfg.address.startswith(("http://", "https://")):
            raise PipelineError(f"--address {cfg.address} is a Ray dashboard / job-submission address: use "
                                f"`curator submit --address {cfg.address} ...` to run on that cluster, or give "
                                "`curator run --address` the cluster's GCS address (HOST:6379, or auto on a node)")
        return cfg.address
    env = os.environ.get("RAY_ADDRESS", "").strip()
    if env.startswith(("http://", "https://")):
        log.warning("RAY_ADDRESS=%s is a job-submission address (`curator submit` uses it); `curator run` "
                    "ignores it and starts an embedded Ray (pass --address HOST:6379 to join a cluster)", env)
        return None
    return env or None


def _sigterm_handler() -> Any:
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.getsignal(signal.SIGTERM)


def ray_remote_args(res: Resources) -> dict[str, Any]:
    """A stage's resources as Ray scheduling arguments (CPUs, GPUs, memory, custom)."""
    args: dict[str, Any] = {"num_cpus": res.num_cpus}
    if res.num_gpus:
        args["num_gpus"] = res.num_gpus
    if res.memory_gb:
        args["memory"] = int(res.memory_gb * 1024**3)
    custom = {k: v for k, v in res.custom.items() if v}
    if custom:
        args["resources"] = custom
    return args


def map_task_options(res: Resources) -> dict[str, Any]:
    """Ray options of a `map` task with its own resources. A task that holds GPUs keeps its
    worker process (max_calls=0; Ray's default for GPU tasks is 1, a new process per task),
    so a model it loaded (e.g. the latent profile's encoder) serves the next task too."""
    opts = ray_remote_args(res)
    if res.num_gpus:
        opts["max_calls"] = 0
    return opts


# ------------------------------------------------------------------ stage adapters
def _run_and_report(stages: list[Stage], batch: pa.Table, schema: pa.Schema, tracker: Any) -> pa.Table:
    """Each stage of a group in turn on the batch (rows through the Arrow schema between
    stages, as the local runner does), then one progress report per stage."""
    rows = batch.to_pylist()
    records = []
    for i, stage in enumerate(stages):
        t0 = time.perf_counter()
        with _watchdog(stage, len(rows)):
            out = stage.process(rows)
        records.append((stage.name, len(rows), len(out), time.perf_counter() - t0))
        rows = out if i == len(stages) - 1 else to_table(out, schema).to_pylist()
    if tracker is not None:
        try:  # waited for, so the driver's final snapshot has every batch; never fails the batch
            import ray

            ray.get([tracker.record.remote(name, _node(), n_in, n_out, busy) for name, n_in, n_out, busy in records],
                    timeout=30)
        except Exception as exc:
            log.warning("stages %s: could not report progress: %s", "+".join(r[0] for r in records), exc)
    return to_table(rows, schema)


_NODE: dict[str, Any] = {}


def _node() -> dict[str, Any]:
    if not _NODE:
        _NODE.update(where())
    return _NODE


class StageActor:
    """A group of stages inside a Ray actor: built and set up once, then called per batch."""

    def __init__(self, specs: list[StageSpec], ctx: RunContext, schema: pa.Schema, tracker: Any = None):
        self.stages: list[Stage] = [spec.build(ctx) for spec in specs]
        for stage in self.stages:
            stage.ensure_setup()
        self.schema = schema
        self.tracker = tracker

    def __call__(self, batch: pa.Table) -> pa.Table:
        return _run_and_report(self.stages, batch, self.schema, self.tracker)


_TASK_STAGES: dict[str, list[Stage]] = {}


def stage_task(batch: pa.Table, specs: list[StageSpec], ctx: RunContext, schema: pa.Schema,
               tracker: Any = None) -> pa.Table:
    """A group of stages as a Ray task; the stage objects are cached per worker process."""
    key = f"{ctx.run_id}:" + "+".join(spec.name for spec in specs)
    stages = _TASK_STAGES.get(key)
    if stages is None:
        stages = _TASK_STAGES[key] = [spec.build(ctx) for spec in specs]
    return _run_and_report(stages, batch, schema, tracker)


def _watchdog(stage: Stage, rows: int) -> Watchdog:
    """Hard limit for a batch: twice the cooperative per-item limits, plus a minute."""
    limit = stage.ctx.config.run.item_timeout_s
    return Watchdog(2 * limit * max(1, rows) + 60, f"stage {stage.name} on a batch of {rows}")


def read_listing_part(item: dict[str, Any], storage_cfg: StorageConfig | None = None) -> list[Row]:
    # a worker process: the run's storage settings (endpoints) are not there unless passed;
    # the process-level default is the only way the storage backends there get them
    storage.configure(storage_cfg)
    return read_part(item["uri"])


def fit_actor_cpus(stages: list[StageGroup] | list[Stage], cluster_cpus: float, fixed_size: bool) -> float:
    """The factor to scale actor CPU reservations by so that every actor pool at its
    minimum size plus the widest task still fits the cluster; otherwise the pools hold all
    CPUs and the task stages between them never run (the job hangs).

    The widest task is at least one CPU: Ray Data's own operators between the stages (the
    streaming repartitions) run as 1-CPU tasks, and with less than a CPU left they never
    start. On a cluster that cannot grow (an embedded Ray, a fixed-size cluster) the
    reservations are scaled down (with a warning); on one that may scale up, only a
    warning is given (see curator.runners.capacity)."""
    pools = sum(s.resources.min_actors * s.resources.num_cpus for s in stages if s.stateful)
    widest_task = max([s.resources.num_cpus for s in stages if not s.stateful] + [RAY_DATA_TASK_CPUS])
    if not pools or pools + widest_task <= cluster_cpus:
        return 1.0
    if not fixed_size:
        log.warning("actor pools reserve %.1f CPUs at their minimum size and tasks need %.1f more, but the "
                    "cluster has %.1f now; this runs only if the cluster scales up", pools, widest_task, cluster_cpus)
        return 1.0
    room = max(cluster_cpus - widest_task, 0.1 * cluster_cpus)
    factor = room / pools
    log.warning("actor pools would reserve %.1f of the cluster's %.0f CPUs; scaling their reservations by %.2f "
                "so the task stages can run (set stages.<name>.resources to choose yourself)",
                pools, cluster_cpus, factor)
    return factor


def check_capacity(groups: list[StageGroup], cfg: RunConfig) -> float:
    """Before anything is scheduled: the actor-CPU scale for this cluster, or a
    PipelineError with a table when the stages need what the cluster cannot give
    (curator.runners.capacity); on a cluster that may grow, that table is a warning."""
    cap = capacity.cluster_capacity(embedded=started_here())
    scale = fit_actor_cpus(groups, cap.total.get("CPU", 0.0), fixed_size=not cap.scales)
    problems = capacity.shortfalls(groups, cap, scale)
    if not problems:
        return scale
    table = capacity.format_table(problems, cap)
    if cap.scales or cfg.wait_for_resources:
        log.warning("the stages need more than the cluster has now; this runs only once nodes are added:\n%s", table)
        return scale
    raise PipelineError("the stages need more than this cluster has, and it cannot grow, so the run would wait "
                        f"forever:\n{table}\nlower those settings, run on a cluster that has the resources, or set "
                        "run.wait_for_resources=true if nodes will join")


# ----------------------------------------------------------------------- runner
class RayRunner(Runner):
    name = "ray"
    distributed = True

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self._actor_cpu_scale = 1.0
        self._tracker: Any = None  # the tracker actor of the current stream
        self._node_info: dict[str, dict[str, Any]] = {}

    def stream(self, pipeline: Pipeline, listing: Listing) -> Iterator[list[Row]]:
        import ray
        import ray.data

        init_ray(self.cfg)
        ctx = pipeline.ctx
        parts = listing.parts
        if not parts:
            return
        # zero CPUs: it must fit on any node, even one whose CPUs the stages hold
        self._tracker = ray.remote(num_cpus=0, max_restarts=0)(StageTracker).remote()
        dctx = ray.data.DataContext.get_current()
        dctx.enable_progress_bars = sys.stderr.isatty()
        dctx.execution_options.preserve_order = False
        # a block that still fails after its retries is dropped, not fatal: the driver
        # records its videos as lost (and a rerun retries them)
        dctx.max_errored_blocks = self.cfg.max_failed_blocks
        schema = pipeline.flow_schema
        ds: Any = ray.data.from_items([{"uri": u} for u in parts], override_num_blocks=len(parts))
        ds = ds.flat_map(read_listing_part, fn_kwargs={"storage_cfg": ctx.config.storage}, num_cpus=0.25)
        groups = group_stages(pipeline.specs, ctx, fuse=self.cfg.fuse_stages)
        self._actor_cpu_scale = check_capacity(groups, self.cfg)
        for group in groups:
            ds = self._apply(ds, group, ctx, schema)
        names = set(pipeline.schema.names)
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            yield [{k: v for k, v in r.items() if k in names} for r in batch.to_pylist()]

    def _apply(self, ds: Any, stage: StageGroup, ctx: RunContext, schema: pa.Schema) -> Any:
        import ray.data

        res = stage.resources
        kwargs: dict[str, Any] = dict(batch_size=res.batch_size, batch_format="pyarrow", zero_copy_batch=True,
                                      **ray_remote_args(res))
        kwargs["num_cpus"] = res.num_cpus * (self._actor_cpu_scale if stage.stateful else 1.0)
        stage_args = {"specs": stage.specs, "ctx": ctx, "schema": schema, "tracker": self._tracker}
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
                    fn_constructor_kwargs=stage_args,
                    compute=ray.data.ActorPoolStrategy(min_size=res.min_actors,
                                                       max_size=max(res.min_actors, res.max_actors)),
                    max_restarts=-1, max_task_retries=retries,
                    **kwargs,
                )
            return ds.map_batches(stage_task, fn_kwargs=stage_args, max_retries=retries, **kwargs)

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any],
            resources: Callable[[Any], Resources | None] | None = None, max_in_flight: int = 8) -> Iterator[Any]:
        """Run fn over items as Ray tasks, in order, with a bounded number in flight; an item
        for which `resources` gives Resources runs with those (see :func:`map_task_options`)."""
        import ray

        init_ray(self.cfg)
        remote = ray.remote(num_cpus=0.5, max_retries=self.cfg.task_retries)(_call)
        pending: list[Any] = []
        for item in items:
            res = resources(item) if resources is not None else None
            task = remote.options(**map_task_options(res)) if res is not None else remote
            pending.append(task.remote(fn, item))
            if len(pending) >= max_in_flight:
                yield ray.get(pending.pop(0))
        while pending:
            yield ray.get(pending.pop(0))

    def progress(self) -> dict[str, Any]:
        """Per-stage batches, rows, seconds and the nodes they ran on, with each node's
        advertised resources (see curator.tracking); empty before the stream starts."""
        if self._tracker is None:
            return {"stages": {}, "nodes": {}}
        import ray

        snap = ray.get(self._tracker.snapshot.remote(), timeout=60)
        missing = set(snap["nodes"]) - set(self._node_info)
        if missing:
            for n in ray.nodes():
                if n.get("NodeID") in missing:
                    self._node_info[n["NodeID"]] = {"resources": dict(n.get("Resources") or {}),
                                                    "labels": dict(n.get("Labels") or {})}
        for node_id, info in snap["nodes"].items():
            info.update(self._node_info.get(node_id, {}))
        return snap

    def prepare(self, pipeline: Pipeline) -> None:
        init_ray(self.cfg)

    def capacity(self) -> dict[str, float]:
        import ray

        init_ray(self.cfg)
        res = ray.cluster_resources()
        return {"CPU": float(res.get("CPU", 0.0)), "GPU": float(res.get("GPU", 0.0))}

    def close(self) -> None:
        pass


def _call(fn: Callable[[Any], Any], item: Any) -> Any:
    return fn(item)
