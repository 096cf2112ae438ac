"""Run-level phases over a real (local-runner) run: order, and one manifest read each."""

from __future__ import annotations

import shutil
from collections import Counter

import pytest

from curator import phases
from curator.config import PipelineConfig
from curator.driver import RUN_PHASES, execute
from curator.pipeline import build
from curator.rundir import RunDir, count_manifest_opens
from curator.runners.local import LocalRunner

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A default-config run (filters, dedup with a percentile rule, index, shards) of two
    real videos through the local runner, counting every manifest open."""
    from tests.conftest import MEDIA

    inp = tmp_path_factory.mktemp("in")
    shutil.copy(MEDIA / "bikes.mp4", inp / "a.mp4")
    shutil.copy(MEDIA / "bikes.mp4", inp / "b.mp4")  # an exact duplicate for dedup
    out = tmp_path_factory.mktemp("out") / "run"
    cfg = PipelineConfig.load(None, ["run.runner=local", "stages.split.method=fixed",
                                     "stages.quality.drop_bottom_percent=10"],
                              input=str(inp), output=str(out))
    assert cfg.dedup.enabled and cfg.index.enabled and cfg.run.shard
    with count_manifest_opens() as opens:
        summary = execute(build(cfg), LocalRunner())
    return out, summary, list(opens)


def test_each_phase_opens_the_manifest_at_most_once(small_run):
    out, summary, opens = small_run
    assert summary.clips > 0 and summary.shards > 0
    by_phase = Counter(opens)
    assert all(n == 1 for n in by_phase.values()), by_phase
    # refilter (percentile rule: 2 passes + the rewrite over one open), dedup, index, shard, summary+metrics
    assert sorted(by_phase) == sorted(["refilter", "dedup", "index", "shard", "summary"]), by_phase
    assert len(opens) == 5


def test_run_phases_declare_a_valid_order():
    mods = phases.build(RUN_PHASES, available=["parts"])
    assert [m.NAME for m in mods] == list(RUN_PHASES)
    for m in mods:
        assert callable(m.run) and m.REQUIRES is not None and m.POPULATES


def test_the_builder_refuses_a_phase_before_what_it_requires():
    with pytest.raises(phases.PhaseError, match="requires manifest"):
        phases.build(["shard", "consolidate"], available=["parts"])
    with pytest.raises(phases.PhaseError, match="unknown phase"):
        phases.build(["nope"])


def test_cli_phases_over_the_run_read_it_once_each(small_run, tmp_path):
    from curator.cli import main

    out = tmp_path / "run"
    shutil.copytree(small_run[0], out)
    for argv, names in ([["shard", str(out)], ["shard"]], [["dedup", str(out)], ["dedup"]],
                        [["refilter", str(out), "--no-shard"], ["refilter", "summary"]],  # + summary.json
                        [["report", str(out)], ["report"]]):
        with count_manifest_opens() as opens:
            assert main(argv) == 0
        assert opens == names, (argv, opens)
    assert RunDir.of(out).read_summary()["clips"] == small_run[1].clips
