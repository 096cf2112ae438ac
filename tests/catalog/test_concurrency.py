"""Concurrent writers on one catalog in each emulated cloud (S3 on moto, GCS, Azurite): writer
processes released at the same moment register their runs, round after round, and the
catalog keeps every clip of every writer. With the compare-and-swap replaced by a plain
overwrite (the negative control), the same race loses clips."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from curator import index, storage
from curator.testing.manifests import planted, write_run

ROOT = Path(__file__).resolve().parents[2]
CLIPS = 12


class Writers:
    """One writer process per column of `runs` ([round][writer]); `round(r)` releases them
    together on round r and returns their JSON results."""

    def __init__(self, cloud, catalog: str, runs: list[list[str]], tmp_path: Path, *extra: str):
        self.go = tmp_path / f"go-{os.urandom(4).hex()}"
        env = {**os.environ, **cloud.emulator.env(), "PYTHONPATH": str(ROOT)}
        self.procs = [subprocess.Popen([sys.executable, "-m", "curator.testing.catalog_writer", catalog,
                                        *[rnd[w] for rnd in runs], "--start-file", str(self.go),
                                        "--storage", cloud.config_json(), *extra],
                                       cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                      for w in range(len(runs[0]))]

    def _line(self, p: subprocess.Popen) -> str:
        assert p.stdout is not None
        line = p.stdout.readline().strip()
        if not line:
            p.wait(timeout=60)
            raise AssertionError(p.stderr.read()[-3000:] if p.stderr else "writer died")
        return line

    def round(self, r: int) -> list[dict]:
        for p in self.procs:  # every writer imported, connected and waiting
            assert self._line(p) == "ready"
        Path(f"{self.go}.{r}").touch()
        return [json.loads(self._line(p)) for p in self.procs]

    def close(self) -> None:
        for p in self.procs:
            _, stderr = p.communicate(timeout=120)
            assert p.returncode == 0, stderr[-3000:]


def _runs(root: str, tag: str, writers: int) -> list[str]:
    runs = []
    for w in range(writers):
        out = storage.join(root, f"runs/{tag}-w{w}")
        write_run(out, f"{tag}w{w}", planted(CLIPS, seed=hash((tag, w)) % 1000))
        runs.append(out)
    return runs


def test_writers_racing_on_one_catalog_keep_every_clip(cloud, tmp_path):
    catalog = storage.join(cloud.root, "catalog")
    writers, rounds = 3, 3
    runs = [_runs(cloud.root, f"r{r}", writers) for r in range(rounds)]
    race = Writers(cloud, catalog, runs, tmp_path, "--hold", "0.5")
    attempts: list[int] = []
    for r in range(rounds):
        results = race.round(r)
        assert all(res["added"] == CLIPS for res in results)
        attempts += [res["attempts"] for res in results]
        meta = index.read_meta(catalog)
        keys = index._keys_of(meta, meta.segments)
        assert len(keys) == len(set(keys)) == (r + 1) * writers * CLIPS  # nobody's clips lost, none twice
        assert meta.doc["seq"] == (r + 1) * writers and len(meta.segments) == (r + 1) * writers
    race.close()
    # the writers really raced (each holds 0.5 s between reading and writing index.json, so
    # writers released together read the same version): commits were refused and redone
    assert sum(a - 1 for a in attempts) >= rounds, attempts
    # one search spans every writer's run
    hits = index.search(catalog, where_text="clip_id LIKE 'r2w1-%'", limit=100)
    assert len(hits) == CLIPS


def test_without_compare_and_swap_the_same_race_loses_clips(request, tmp_path):
    """The negative control, on S3: blind overwrites of index.json drop other writers' segments."""
    from curator.testing.fixtures import make_cloud

    cloud = make_cloud(request, "s3")
    storage.configure(cloud.config())
    try:
        catalog = storage.join(cloud.root, "catalog")
        runs = [_runs(cloud.root, f"u{r}", 3) for r in range(2)]
        race = Writers(cloud, catalog, runs, tmp_path, "--unconditional", "--hold", "0.5")
        for r in range(2):
            race.round(r)
        race.close()
        meta = index.read_meta(catalog)
        lost = 2 * 3 * CLIPS - len(index._keys_of(meta, meta.segments))
        assert lost >= 2 * CLIPS  # overwritten writers' clips are gone (all three read one version: 4 x 12)
    finally:
        storage.configure(None)


pytestmark = pytest.mark.integration


def test_two_curator_runs_at_once_into_one_catalog_in_s3(request, tmp_path):
    """The whole path: two `curator run` processes started together, each registering its
    clips into one catalog in the S3 emulator at the end of its run."""
    from curator.testing.fixtures import make_cloud
    from curator.testing.synth import make_shots_video

    cloud = make_cloud(request, "s3")
    storage.configure(cloud.config())
    try:
        catalog = storage.join(cloud.root, "catalog")
        procs = []
        for name, src in (("one", "testsrc2"), ("two", "mandelbrot")):
            folder = tmp_path / name
            folder.mkdir()
            make_shots_video(str(folder / f"{name}.mp4"), [(src, 60), ("zoneplate", 60)], width=192, height=108)
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "curator", "run", "-i", str(folder), "-o", f"{cloud.root}/runs/{name}",
                 "--runner", "local", "--set", "stages.order=[embed]", "--set", "stages.split.method=scenedetect",
                 "--set", "run.shard=false", "--set", f"index.uri={catalog}", *cloud.set_args()],
                cwd=ROOT, env={**os.environ, **cloud.emulator.env()}, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True))
        for p in procs:
            _, err = p.communicate(timeout=600)
            assert p.returncode == 0, err[-3000:]
        meta = index.read_meta(catalog)
        runs = {s["source_run"] for s in meta.segments}
        assert runs == {f"{cloud.root}/runs/one", f"{cloud.root}/runs/two"} and meta.doc["seq"] == 2
        keys = index._keys_of(meta, meta.segments)
        assert len(keys) == len(set(keys)) == 4  # two shots from each run
    finally:
        storage.configure(None)
