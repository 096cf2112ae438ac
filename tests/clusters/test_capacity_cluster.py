"""A run joining a real fixed-size cluster (`ray start`, no autoscaler node types) whose
stages need what it has not: it fails at start-up, it does not wait."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from curator.testing.raycluster import LocalRayCluster, cluster_env
from curator.testing.synth import make_shots_video

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_a_hand_started_cluster_is_fixed_size_and_fails_fast(tmp_path):
    src = tmp_path / "in"
    make_shots_video(str(src / "a.mp4"), [("testsrc2", 30)], width=160, height=120, fps=25)
    with LocalRayCluster(num_cpus=2) as cluster:
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "curator", "run", "-i", str(src), "-o", str(tmp_path / "out"),
                               "--address", cluster.address, "--set", "stages.order=[]",
                               "--set", "stages.split.resources.num_gpus=1"],
                              cwd=ROOT, env=cluster_env(), capture_output=True, text=True, timeout=300)
        elapsed = time.monotonic() - t0
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert elapsed < 60, elapsed
    assert "fixed-size cluster (started by hand, no node types): 1 node, 2 CPUs, 0 GPUs" in proc.stderr
    assert "stages.split.resources.num_gpus=0" in proc.stderr and "Traceback" not in proc.stderr
