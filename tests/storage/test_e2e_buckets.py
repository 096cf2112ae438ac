"""End to end through buckets: `curator run` from an S3 bucket (moto) to a GCS bucket
(gcp-storage-emulator), and from an Azure container (Azurite) to a local folder, gives the
same shards and manifest rows as the run over the same videos in a local folder.

Endpoints go through the config (`--set storage.s3.endpoint_url=…`), credentials through
environment variables, as in a deployment. The runs use the fixed-stride splitter to stay
quick; the storage path is the same whatever the splitter."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curator import storage
from curator.testing.fixtures import bucket_name, storage_config

ROOT = Path(__file__).resolve().parents[2]
VIDEOS = ["carphone_pristine.mp4", "bikes.mp4"]
COMMON = ["--set", "stages.split.method=fixed", "--set", "stages.split.stride_s=3"]
SECRET = "PLANTEDawsSecretE2E0123456789"
URI_FIELDS = {"source_uri", "clip_uri", "timings"}


def curator_run(inp: str, out: str, env: dict[str, str], *extra: str, runner: str = "local") -> str:
    cmd = [sys.executable, "-m", "curator", "run", "--input", inp, "--output", out, "--runner", runner,
           *COMMON, *extra]
    full_env = {**os.environ, **env, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled",
                "RAY_USAGE_STATS_ENABLED": "0"}
    res = subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-4000:]
    return res.stdout + res.stderr


def snapshot(out: str) -> dict:
    """What a run produced, minus where it came from: shard names, each sample's key, json
    (without URIs) and mp4 digest, and the manifest rows (without URIs and timings)."""
    shards = {}
    prefix = storage.join(out, "shards") + "/"
    for info in storage.list_objects(prefix, suffixes=[".tar"]):
        samples = []
        with tarfile.open(fileobj=io.BytesIO(storage.read_bytes(info.uri))) as tar:
            for m in tar.getmembers():
                data = tar.extractfile(m).read()
                if m.name.endswith(".json"):
                    samples.append((m.name, {k: v for k, v in json.loads(data).items() if k not in URI_FIELDS}))
                else:
                    samples.append((m.name, hashlib.sha256(data).hexdigest()))
        shards[storage.relative(prefix, info.uri)] = samples
    table = pq.read_table(io.BytesIO(storage.read_bytes(storage.join(out, "manifest.parquet"))))
    rows = [{k: v for k, v in r.items() if k not in URI_FIELDS} for r in table.to_pylist()]
    return {"shards": shards, "manifest": rows}


def _no_secret_in(out: str, *secrets: str) -> None:
    for info in storage.list_objects(storage.normalize(out).rstrip("/") + "/"):
        if info.uri.endswith((".json", ".yaml", ".parquet")):
            data = storage.read_bytes(info.uri)
            for s in secrets:
                assert s.encode() not in data, (s, info.uri)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, media_dir):
    src = tmp_path_factory.mktemp("videos")
    for v in VIDEOS:
        (src / v).write_bytes((media_dir / v).read_bytes())
    out = tmp_path_factory.mktemp("out") / "local"
    curator_run(str(src), str(out), {})
    snap = snapshot(storage.normalize(str(out)))
    assert snap["shards"] and len(snap["manifest"]) > len(VIDEOS)  # videos and their clips
    return src, snap


def _upload_inputs(src: Path, root: str) -> None:
    for v in VIDEOS:
        storage.upload(str(src / v), root + "videos/" + v)


@pytest.mark.integration
def test_s3_to_gcs_gives_the_local_result(local_run, moto_s3, gcs_emulator):
    src, expected = local_run
    raw, curated = bucket_name("raw"), bucket_name("cur")
    moto_s3.create_bucket(raw)
    gcs_emulator.create_bucket(curated)
    storage.configure(storage_config(moto_s3, gcs_emulator))
    _upload_inputs(src, f"s3://{raw}/")
    env = {**moto_s3.env(), **gcs_emulator.env(), "AWS_SECRET_ACCESS_KEY": SECRET}
    sets = [a for o in moto_s3.cli_overrides() + gcs_emulator.cli_overrides() for a in ("--set", o)]
    log = curator_run(f"s3://{raw}/videos/", f"gs://{curated}/run1", env, *sets)
    out = f"gs://{curated}/run1"
    assert snapshot(out) == expected
    _no_secret_in(out, SECRET)
    assert SECRET not in log
    assert storage.read_bytes(f"{out}/config.yaml").count(b"endpoint") >= 2  # endpoints recorded, not keys
    storage.configure(None)


@pytest.mark.integration
def test_azure_to_local_gives_the_local_result(local_run, azurite, tmp_path):
    src, expected = local_run
    container = bucket_name("raw")
    azurite.create_bucket(container)
    storage.configure(storage_config())  # the connection string comes from the environment
    _upload_inputs(src, f"az://{container}/")
    out = tmp_path / "from-azure"
    log = curator_run(f"az://{container}/videos/", str(out), azurite.env())
    assert snapshot(storage.normalize(str(out))) == expected
    _no_secret_in(str(out), azurite.key)
    assert azurite.key not in log
    storage.configure(None)


@pytest.mark.integration
@pytest.mark.slow
def test_s3_to_gcs_on_ray_gives_the_local_result(local_run, moto_s3, gcs_emulator):
    src, expected = local_run
    raw, curated = bucket_name("raw"), bucket_name("cur")
    moto_s3.create_bucket(raw)
    gcs_emulator.create_bucket(curated)
    storage.configure(storage_config(moto_s3, gcs_emulator))
    _upload_inputs(src, f"s3://{raw}/")
    env = {**moto_s3.env(), **gcs_emulator.env()}
    sets = [a for o in moto_s3.cli_overrides() + gcs_emulator.cli_overrides() for a in ("--set", o)]
    curator_run(f"s3://{raw}/videos/", f"gs://{curated}/ray", env, *sets, "--set", "run.num_cpus=2", runner="ray")
    assert snapshot(f"gs://{curated}/ray") == expected
    storage.configure(None)
