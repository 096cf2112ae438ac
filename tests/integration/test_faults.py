"""A run through a flaky S3: a proxy in front of moto's S3 server fails about 30 % of all
requests (throttling 503s and connections dropped without an answer); the run completes
with the same manifest and shards as a run against the healthy server."""

from __future__ import annotations

import io
import json
import random
import tarfile
import threading

import pyarrow.parquet as pq
import pytest

from curator import storage
from curator.config import PipelineConfig
from curator.driver import execute
from curator.pipeline import build
from curator.records import RUN_VARYING
from curator.runners.local import LocalRunner
from curator.testing.fixtures import bucket_name
from curator.testing.proxy import S3_SLOWDOWN, FaultProxy

pytestmark = pytest.mark.integration
VIDEOS = ["bikes.mp4", "carphone_pristine.mp4", "issue-134-rotate.mp4"]


def _run(endpoint: str, raw: str, out: str) -> None:
    cfg = PipelineConfig.load(None, [
        "run.runner=local", "stages.split.method=scenedetect", f"storage.s3.endpoint_url={endpoint}",
        "storage.s3.region=us-east-1", "storage.backoff_s=0.01",
        "stages.order=[embed]",  # the storage path is what is under test; keep the clip stages light
    ], input=f"s3://{raw}/videos/", output=out)
    execute(build(cfg), LocalRunner())


def _snapshot(out: str) -> dict:
    uri_free = lambda d: {k: v for k, v in d.items() if k not in ("clip_uri", "source_uri")}  # noqa: E731
    table = pq.read_table(io.BytesIO(storage.read_bytes(f"{out}/manifest.parquet"))).drop(list(RUN_VARYING))
    shards = {}
    for info in storage.list_objects(f"{out}/shards/", suffixes=[".tar"]):
        with tarfile.open(fileobj=io.BytesIO(storage.read_bytes(info.uri))) as tar:
            shards[info.uri.split("/shards/", 1)[1]] = [
                (m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
    return {"manifest": [uri_free(r) for r in table.to_pylist()], "shards": shards}


def test_a_run_through_a_flaky_s3_gives_the_clean_result(moto_s3, media_dir, monkeypatch):
    for k, v in moto_s3.env().items():
        monkeypatch.setenv(k, v)
    raw, cur = bucket_name("raw"), bucket_name("cur")
    moto_s3.create_bucket(raw)
    moto_s3.create_bucket(cur)
    storage.configure(storage.StorageConfig.model_validate({"s3": moto_s3.storage_overrides()["s3"]}))
    for v in VIDEOS:
        storage.upload(str(media_dir / v), f"s3://{raw}/videos/{v}")

    _run(moto_s3.endpoint, raw, f"s3://{cur}/clean")
    clean = _snapshot(f"s3://{cur}/clean")
    assert clean["shards"] and len(clean["manifest"]) > len(VIDEOS)

    rng = random.Random(20)
    lock = threading.Lock()

    def coin(p: float):
        def decide(_req) -> bool:
            with lock:
                return rng.random() < p
        return decide

    with FaultProxy(moto_s3.port) as proxy:
        throttle = proxy.fail(status=503, body=S3_SLOWDOWN, times=None, when=coin(0.15))
        reset = proxy.fail(drop=True, times=None, when=coin(0.18))  # of the rest: ~15 % of all
        _run(proxy.endpoint, raw, f"s3://{cur}/flaky")
        seen = len(proxy.seen())
        failed = throttle.hits + reset.hits
    storage.configure(storage.StorageConfig.model_validate({"s3": moto_s3.storage_overrides()["s3"]}))
    assert seen > 100 and failed / seen >= 0.2, (failed, seen)
    assert throttle.hits and reset.hits
    assert _snapshot(f"s3://{cur}/flaky") == clean
    summary = json.loads(storage.read_bytes(f"s3://{cur}/flaky/summary.json"))
    assert summary["videos_lost"] == 0 and not any("storage" in k for k in summary["rejects"])
    storage.configure(None)
