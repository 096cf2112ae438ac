"""What the stages need against what a Ray cluster has: the check before a run starts."""

from __future__ import annotations

import pytest

from curator.config import PipelineConfig
from curator.pipeline import STAGES, StageSpec, group_stages
from curator.runners.capacity import GB, Capacity, format_table, readonly_types, shortfalls
from curator.stage import RunContext

pytestmark = pytest.mark.unit


def groups_for(*overrides: str):
    cfg = PipelineConfig.load(None, ["stages.order=[]", *overrides], input="/in", output="/out")
    ctx = RunContext(cfg, "file:///in", "file:///out", "test", "h")
    names = ["ingest", "split", "transcode", *cfg.stages.order, "staging"]
    return group_stages([StageSpec(n, STAGES[n], getattr(cfg.stages, n)) for n in names], ctx)


def fixed(cpus: float, gpus: float = 0.0, **extra: float) -> Capacity:
    node = {"CPU": cpus, "memory": 16.0 * GB, **({"GPU": gpus} if gpus else {}), **extra}
    return Capacity(dict(node), [dict(node)], scales=False, what="fixed-size cluster (no autoscaler)")


def test_the_default_cpu_pipeline_fits_two_cpus():
    assert shortfalls(groups_for(), fixed(2)) == []


def test_a_gpu_on_a_cpu_cluster_is_named_with_the_key_that_lowers_it():
    problems = shortfalls(groups_for("stages.split.resources.num_gpus=1"), fixed(2))
    assert [(p.group, p.resource, p.need, p.have) for p in problems] == [("split", "GPU", 1.0, 0.0)]
    assert problems[0].keys == ["stages.split.resources.num_gpus=0"]
    table = format_table(problems, fixed(2))
    assert "fixed-size cluster (no autoscaler): 1 node, 2 CPUs, 0 GPUs" in table
    assert "stages.split.resources.num_gpus=0" in table and "per actor" in table
    # one GPU exists: fits
    assert shortfalls(groups_for("stages.split.resources.num_gpus=1"), fixed(2, gpus=1)) == []


def test_pools_at_minimum_size_must_fit_together():
    over = ("stages.split.resources.num_gpus=1", "stages.split.resources.min_actors=3",
            "stages.split.resources.max_actors=3")
    [p] = shortfalls(groups_for(*over), fixed(8, gpus=2))
    assert (p.resource, p.need, p.have, p.scope) == ("GPU", 3.0, 2.0, "pools at minimum size")
    assert "stages.split.resources.min_actors=1" in p.keys


def test_a_task_wider_than_every_node_and_custom_resources():
    problems = shortfalls(groups_for("stages.transcode.resources.num_cpus=4"), fixed(2))
    assert [(p.group, p.resource, p.need, p.have, p.scope) for p in problems] == [
        ("split+transcode+staging", "CPU", 4.0, 2.0, "per actor")]
    problems = shortfalls(groups_for("stages.transcode.encoder=gpu"), fixed(4, gpus=1))
    assert [(p.group, p.resource) for p in problems] == [("transcode", "nvenc")]
    assert problems[0].keys == ["stages.transcode.resources.custom.nvenc=0"]
    assert shortfalls(groups_for("stages.transcode.encoder=gpu"), fixed(4, gpus=1, nvenc=1)) == []


def test_memory_asks_are_compared_in_bytes():
    [p] = shortfalls(groups_for("stages.ingest.resources.memory_gb=64"), fixed(2))
    assert (p.group, p.resource, p.need) == ("ingest", "memory", 64 * GB)
    assert "64.0 GB" in format_table([p], fixed(2)) and p.keys == ["stages.ingest.resources.memory_gb=16.0"]


def test_node_types_an_autoscaler_can_add_count():
    cap = fixed(2)
    cap.scales, cap.node_types, cap.max_total = True, [{"CPU": 8.0, "GPU": 1.0}], {"CPU": 34.0, "GPU": 4.0}
    assert shortfalls(groups_for("stages.split.resources.num_gpus=1"), cap) == []
    [p] = shortfalls(groups_for("stages.split.resources.num_gpus=2"), cap)
    assert (p.resource, p.have) == ("GPU", 1.0)  # the largest node it can add has one


def test_autoscaler_v1_status_tells_a_hand_started_cluster_from_one_with_node_types():
    hand = {"autoscaler_report": {"active_nodes": {"node_f95e4f52796368aaf6f7302d3f126cb2d6a": 1}}}
    assert readonly_types(hand) is True
    real = {"autoscaler_report": {"active_nodes": {"ray.head.default": 1}, "pending_launches": {"gpu_workers": 2}}}
    assert readonly_types(real) is False
    assert readonly_types({"load_metrics_report": {}}) is None  # not reported yet
