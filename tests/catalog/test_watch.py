"""`curator watch --once` on an S3 prefix (moto): the first cycle curates what is there; after
new objects land, one changes and one is deleted, the next cycle curates only the new and
the changed ones, replaces the changed source's clips and hides the deleted one's; a cycle
with nothing new runs nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curator import index, storage
from curator.catalog import core
from curator.testing.fixtures import make_cloud
from curator.testing.synth import make_shots_video

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def test_watch_once_curates_new_redoes_changed_and_hides_deleted(request, tmp_path):
    s3 = make_cloud(request, "s3")
    storage.configure(s3.config())
    try:
        media = tmp_path / "media"
        media.mkdir()
        for name, src, frames in [("a", "testsrc2", 60), ("b", "mandelbrot", 60), ("c", "zoneplate", 60),
                                  ("a2", "gradients", 70)]:
            make_shots_video(str(media / f"{name}.mp4"), [(src, frames)], width=192, height=108, fps=25)
        raw = f"{s3.root}/raw/"
        storage.upload(str(media / "a.mp4"), raw + "a.mp4")
        storage.upload(str(media / "b.mp4"), raw + "sub/b.mp4")
        out = storage.normalize(str(tmp_path / "out"))
        catalog = storage.join(out, "catalog")
        env = {**os.environ, **s3.emulator.env()}

        def watch() -> dict:
            p = subprocess.run([sys.executable, "-m", "curator", "watch", raw, "--output", out, "--once", "--json",
                                "--runner", "local", "--set", "stages.order=[embed]", "--set",
                                "stages.split.method=scenedetect", "--set", "run.shard=false",
                                # two clips give one centroid: any new footage "drifts"; keep the centroids
                                "--set", "catalog.recluster_drift=2", *s3.set_args()],
                               cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
            assert p.returncode == 0, p.stderr[-3000:]
            return json.loads(p.stdout.strip().splitlines()[-1])

        def run_videos(run: str) -> set[str]:
            rows = pq.read_table(storage.local_path(storage.join(run, "manifest.parquet"))).to_pylist()
            return {r["source_uri"] for r in rows if r["kind"] == "video"}

        def visible() -> dict[str, str]:
            hits = index.search(catalog, where_text="clip_id IS NOT NULL", limit=1000)
            return {h.row["source_uri"]: h.row["source_run"] for h in hits}

        first = watch()
        assert first["new"] == [raw + "a.mp4", raw + "sub/b.mp4"] and first["changed"] == first["deleted"] == []
        assert run_videos(first["run"]) == {raw + "a.mp4", raw + "sub/b.mp4"}
        assert first["added"] == 2 and first["dedup"]["mode"] == "full"
        assert set(visible()) == {raw + "a.mp4", raw + "sub/b.mp4"}

        # new files land, a.mp4 is overwritten with other footage, b.mp4 is deleted
        storage.upload(str(media / "c.mp4"), raw + "c.mp4")
        storage.upload(str(media / "a2.mp4"), raw + "a.mp4")
        storage.delete(raw + "sub/b.mp4")
        second = watch()
        assert second["new"] == [raw + "c.mp4"] and second["changed"] == [raw + "a.mp4"]
        assert second["deleted"] == [raw + "sub/b.mp4"] and second["unchanged"] == 0
        assert run_videos(second["run"]) == {raw + "a.mp4", raw + "c.mp4"}  # only these were curated
        shown = visible()
        assert shown == {raw + "a.mp4": second["run"], raw + "c.mp4": second["run"]}  # a's clips are the redo's
        assert second["dedup"]["mode"] == "incremental" and second["dedup"]["clips"] == 2, {k: v for k, v in second["dedup"].items() if k != "stats"}
        ledger = core.load_sources(catalog, core.read(catalog).doc)
        assert {u: r["status"] for u, r in ledger.items()} == {raw + "a.mp4": "curated", raw + "c.mp4": "curated",
                                                               raw + "sub/b.mp4": "deleted"}
        assert ledger[raw + "a.mp4"]["size"] == os.path.getsize(media / "a2.mp4")

        third = watch()  # nothing new: no run
        assert third["run"] is None and third["unchanged"] == 2 and not (third["new"] or third["changed"])
        assert len(storage.local_path(storage.join(out, "runs")) and os.listdir(storage.local_path(
            storage.join(out, "runs")))) == 2
    finally:
        storage.configure(None)
