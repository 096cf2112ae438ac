"""Federated dedup: two runs, one in S3 (moto) and one in Azure (Azurite), register into one
catalog; a near-duplicate pair split across the two clouds is found by catalog-level dedup
from the catalog's embeddings alone — zero bytes read from either cloud during dedup,
and `curator catalog dedup` runs without any cloud configured at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from curator import storage
from curator.testing.fixtures import make_cloud, storage_config
from curator.testing.synth import make_shots_video, run_ffmpeg

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration

RUN = ["--runner", "local", "--set", "stages.order=[embed]", "--set", "stages.split.method=scenedetect",
       "--set", "run.shard=false"]


def test_a_near_duplicate_split_across_s3_and_azure_is_found_without_reading_video(request, tmp_path):
    s3, az = make_cloud(request, "s3"), make_cloud(request, "az")
    storage.configure(storage_config(s3.emulator, az.emulator))
    try:
        media = tmp_path / "media"
        media.mkdir()
        make_shots_video(str(media / "street.mp4"), [("testsrc2", 75)], width=320, height=240)
        make_shots_video(str(media / "fractal.mp4"), [("mandelbrot", 75)], width=320, height=240)
        make_shots_video(str(media / "plate.mp4"), [("zoneplate", 75)], width=320, height=240)
        # the same footage re-encoded at low quality, held in the other cloud
        run_ffmpeg(["-i", str(media / "street.mp4"), "-c:v", "libx264", "-crf", "40", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", str(media / "street_copy.mp4")])
        for name in ("street.mp4", "fractal.mp4"):
            storage.upload(str(media / name), f"{s3.root}/raw/{name}")
        for name in ("street_copy.mp4", "plate.mp4"):
            storage.upload(str(media / name), f"{az.root}/raw/{name}")
        catalog = storage.normalize(str(tmp_path / "catalog"))
        env = {**os.environ, **s3.emulator.env(), **az.emulator.env()}
        sets = s3.set_args() + az.set_args()

        def curator(*args, env=env):
            p = subprocess.run([sys.executable, "-m", "curator", *args], cwd=ROOT, env=env, capture_output=True,
                               text=True, timeout=600)
            assert p.returncode == 0, p.stderr[-3000:]
            return p.stdout

        for cloud in (s3, az):
            curator("run", "-i", f"{cloud.root}/raw/", "-o", f"{cloud.root}/run", *RUN, "--set",
                    f"index.uri={catalog}", *sets)
            summary = json.loads(storage.read_bytes(f"{cloud.root}/run/summary.json"))
            assert summary["bytes_read"].get(cloud.name, 0) > 100_000  # the run read its videos from its cloud
            assert set(summary["bytes_read"]) <= {cloud.name, "file"}  # and nothing from the other one
        shown = json.loads(curator("catalog", "show", catalog, *sets))
        assert shown["clips"] == 4 and shown["sites"] == {s3.root: 2, az.root: 2}

        # catalog dedup with no cloud configured and no credentials in the environment
        bare = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AZURE_", "GOOGLE_"))}
        res = json.loads(curator("catalog", "dedup", catalog, "--json", env=bare))
        assert res["groups"] == 1 and res["removed"] == 1 and res["cross_site_groups"] == 1
        assert set(res["io"]["read"]) == {"file"} and res["read_outside_catalog"] == []
        # the same pass with both clouds configured reads nothing from them either
        res2 = json.loads(curator("catalog", "dedup", catalog, "--json", *sets))
        assert "s3" not in res2["io"]["read"] and "az" not in res2["io"]["read"]
        # the pair is the street clip in S3 and its copy in Azure
        from curator import index
        from curator.catalog import dedup as cdedup

        dec = cdedup.load_decisions(index.read_meta(catalog))
        group = [r for r in dec.values() if r["dup_group"]]
        assert sorted(r["site"] for r in group) == sorted([s3.root, az.root])
        assert {r["key"].split("#")[0].rsplit("/", 1)[1] for r in group} == {"street.mp4", "street_copy.mp4"}
        assert all(r["similarity"] >= 0.8 for r in group)
    finally:
        storage.configure(None)
