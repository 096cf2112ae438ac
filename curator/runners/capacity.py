"""Can this cluster run this pipeline? Checked before anything is scheduled.

Ray Data waits, without end, for resources a cluster does not have: a stage asking for a
GPU on a CPU machine, or actor pools whose minimum sizes hold more CPUs than exist, sit
there until the cluster scales up — which a fixed-size cluster never does. So before a
run starts, the driver compares what each stage group needs (per task or actor, and all
actor pools at their minimum size together) with what the cluster has:

* the cluster's resources now (``ray.cluster_resources()``, ``ray.nodes()``), and
* whether it can grow: an embedded Ray cannot; a joined cluster can when an autoscaler
  runs with node types to add. Autoscaler v2 (KubeRay, recent ``ray up``) publishes its
  node groups and their maximum counts, so the check uses those limits; autoscaler v1
  reports its node types in the ``__autoscaling_status`` key, where a cluster started by
  hand (``ray start``) shows only read-only ``node_<id>`` types: it cannot grow. Nothing
  published: no autoscaler, a fixed size.

On a cluster that cannot grow, actor pools' CPU reservations are scaled down to fit (as
on an embedded Ray, :func:`curator.runners.ray.fit_actor_cpus`); anything else that does
not fit (GPUs, memory, custom resources, a task wider than every node) fails the run at
once with a table of the stage groups, what they need, what the cluster has and the
``--set`` keys that lower it. On a cluster that may grow without a known limit, the
same table is a warning. ``run.wait_for_resources=true`` turns the failure into that
warning (nodes that will be added by hand).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

from curator.pipeline import StageGroup

log = logging.getLogger(__name__)

GB = 1024**3

#: CPUs of the tasks Ray Data runs for its own operators (repartitions) between the stages
RAY_DATA_TASK_CPUS = 1.0

#: Ray's resource name -> the Resources field that asks for it
FIELD = {"CPU": "num_cpus", "GPU": "num_gpus", "memory": "memory_gb"}


@dataclass
class Capacity:
    """What a Ray cluster has, and what it may grow to."""

    total: dict[str, float]
    nodes: list[dict[str, float]]  # resources of each alive node
    scales: bool  # nodes can be added (by an autoscaler)
    what: str  # for people: "embedded Ray", "fixed-size cluster (no autoscaler)", ...
    max_total: dict[str, float] | None = None  # the autoscaler's limit, when it publishes one
    node_types: list[dict[str, float]] = field(default_factory=list)  # shapes it can add

    def shapes(self) -> list[dict[str, float]]:
        """Every node shape a task or actor could land on: the nodes now, and those the
        autoscaler can add."""
        return self.nodes + self.node_types

    def limit(self, resource: str) -> float:
        """The most of a resource the cluster can have (now, or at its autoscaling limit)."""
        if self.max_total is not None:
            return max(self.total.get(resource, 0.0), float(self.max_total.get(resource, 0.0)))
        return self.total.get(resource, 0.0)

    def describe(self) -> str:
        bits = [f"{_fmt('CPU', self.total.get('CPU', 0.0))} CPUs", f"{_fmt('GPU', self.total.get('GPU', 0.0))} GPUs"]
        if self.total.get("memory"):
            bits.append(f"{self.total['memory'] / GB:.1f} GB memory")
        n = len(self.nodes)
        return f"{self.what}: {n} node{'s' if n != 1 else ''}, " + ", ".join(bits)


@dataclass
class Shortfall:
    group: str  # stage group ("split+transcode+staging")
    resource: str  # CPU, GPU, memory, or a custom resource
    need: float
    have: float
    scope: str  # "per task" / "per actor" / "pools at minimum size"
    keys: list[str]  # --set KEY=VALUE that lower the need ("..." where no one value fits)


def _fmt(resource: str, value: float) -> str:
    if resource == "memory":
        return f"{value / GB:.1f} GB"
    return f"{value:g}"


def demand(group: StageGroup, cpu_scale: float = 1.0) -> dict[str, float]:
    """What one task or actor of the group asks Ray for (Ray's resource names; memory in bytes)."""
    res = group.resources
    need: dict[str, float] = {"CPU": res.num_cpus * (cpu_scale if group.stateful else 1.0)}
    if res.num_gpus:
        need["GPU"] = res.num_gpus
    if res.memory_gb:
        need["memory"] = res.memory_gb * GB
    for k, v in res.custom.items():
        if v:
            need[k] = v
    return need


def _keys(group: StageGroup, resource: str) -> list[str]:
    """The --set keys of the group's stages that ask for `resource`."""
    keys = []
    for spec, stage in zip(group.specs, group.stages):
        r = stage.resources
        if resource in FIELD:
            value = getattr(r, FIELD[resource])
            if value:
                keys.append(f"stages.{spec.name}.resources.{FIELD[resource]}")
        elif r.custom.get(resource):
            keys.append(f"stages.{spec.name}.resources.custom.{resource}")
    return keys


def shortfalls(groups: Sequence[StageGroup], cap: Capacity, cpu_scale: float = 1.0) -> list[Shortfall]:
    """Everything the groups need that the cluster cannot give (now, or at its known limit).

    Per task / actor: some node shape must hold all of its ask. All actor pools at their
    minimum size, plus the widest task, must fit the cluster's total of each resource
    (CPUs too: on a fixed-size cluster the caller has already scaled the pools' CPU
    asks down, so what is left here cannot be scaled)."""
    out: list[Shortfall] = []
    shapes = cap.shapes()
    for g in groups:
        need = demand(g, cpu_scale)
        scope = "per actor" if g.stateful else "per task"
        if not any(all(shape.get(r, 0.0) + 1e-9 >= v for r, v in need.items()) for shape in shapes):
            for r, v in need.items():
                best = max((shape.get(r, 0.0) for shape in shapes), default=0.0)
                if best + 1e-9 < v:
                    suggest = _fmt(r, best).removesuffix(" GB") if r != "memory" or best else "null"
                    out.append(Shortfall(g.name, r, v, best, scope, [f"{k}={suggest}" for k in _keys(g, r)]))
            if not any(s.group == g.name for s in out):  # each fits somewhere, never all on one node
                r = max(need, key=lambda k: need[k] / max(1e-9, max(s.get(k, 0.0) for s in shapes)))
                out.append(Shortfall(g.name, r, need[r], 0.0, scope + " (with the rest of its ask on one node)",
                                     [f"{k}=..." for k in _keys(g, r)]))
    pools = [g for g in groups if g.stateful]
    tasks = [g for g in groups if not g.stateful]
    resources = sorted({r for g in groups for r in demand(g, cpu_scale)})
    per_worker = {p.resource for p in out}
    for r in resources:
        if r in per_worker:  # already named above, with the keys that fix both
            continue
        held = sum(g.resources.min_actors * demand(g, cpu_scale).get(r, 0.0) for g in pools)
        widest = max((demand(g, cpu_scale).get(r, 0.0) for g in tasks), default=0.0)
        if r == "CPU":
            widest = max(widest, RAY_DATA_TASK_CPUS)
        have = cap.limit(r)
        if held and held + widest > have + 1e-9:
            keys = [f"{k}=..." for g in pools if demand(g, cpu_scale).get(r) for k in _keys(g, r)]
            keys += [f"stages.{spec.name}.resources.min_actors=1" for g in pools if demand(g, cpu_scale).get(r)
                     for spec, st in zip(g.specs, g.stages) if st.stateful and st.resources.min_actors > 1]
            names = "+".join(g.name for g in pools if demand(g, cpu_scale).get(r))
            scope = "pools at minimum size" + (f" + a {_fmt(r, widest)} task" if widest else "")
            out.append(Shortfall(names, r, held + widest, have, scope, keys))
    return out


def format_table(problems: Sequence[Shortfall], cap: Capacity) -> str:
    head = ("stage group", "resource", "needs", "cluster has", "for", "lower with --set")
    rows = [(p.group, p.resource, _fmt(p.resource, p.need), _fmt(p.resource, p.have), p.scope,
             ", ".join(p.keys) or "-") for p in problems]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    lines = ["  " + "  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip()]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return f"{cap.describe()}\n" + "\n".join(lines)


# ------------------------------------------------------------------- Ray side
def readonly_types(status: dict[str, Any]) -> bool | None:
    """From autoscaler v1's status document: True when every node type it knows is a
    read-only ``node_<id>`` type (a cluster started by hand: it cannot add nodes), False
    when it has real node types, None when it has not reported yet."""
    report = status.get("autoscaler_report")
    if not isinstance(report, dict):
        return None
    types: set[str] = set()
    for key in ("active_nodes", "idle_nodes", "pending_launches"):
        value = report.get(key)
        if isinstance(value, dict):
            types.update(str(t) for t in value)
    if not types:
        return None
    return all(t.startswith("node_") for t in types)


def cluster_capacity(embedded: bool) -> Capacity:
    """This Ray's resources and whether it can grow (ray.init must have run)."""
    import ray

    total = {k: float(v) for k, v in ray.cluster_resources().items()}
    nodes = [{k: float(v) for k, v in (n.get("Resources") or {}).items()} for n in ray.nodes() if n.get("Alive")]
    if embedded:
        return Capacity(total, nodes, scales=False, what="embedded Ray on this machine")
    try:
        from ray._private import state

        config = state.state.get_cluster_config()
        groups = list(config.node_group_configs) if config is not None else []
        if groups:  # autoscaler v2 publishes its node groups and their limits
            types = [{k: float(v) for k, v in g.resources.items()} for g in groups if g.max_count != 0]
            limit = state.state.get_max_resources_from_cluster_config() or {}
            max_total = {k: float(v) for k, v in limit.items()}
            grows = any(max_total.get(k, 0.0) > total.get(k, 0.0) for k in max_total)
            return Capacity(total, nodes, scales=grows, max_total=max_total, node_types=types,
                            what="autoscaling cluster" if grows else "cluster at its autoscaling limit")
        from ray._private import ray_constants
        from ray.experimental.internal_kv import _internal_kv_get

        raw = _internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS)
    except Exception as exc:  # private API moved: assume it may grow (the old behaviour: wait)
        log.debug("autoscaler state unreadable: %s", exc)
        return Capacity(total, nodes, scales=True, what="cluster (autoscaler state unknown)")
    if not raw:
        return Capacity(total, nodes, scales=False, what="fixed-size cluster (no autoscaler)")
    try:
        readonly = readonly_types(json.loads(raw))
    except ValueError:
        readonly = None
    if readonly:
        return Capacity(total, nodes, scales=False, what="fixed-size cluster (started by hand, no node types)")
    if readonly is None:
        return Capacity(total, nodes, scales=True, what="cluster (autoscaler has not reported yet)")
    return Capacity(total, nodes, scales=True, what="autoscaling cluster (limits unknown)")
