"""Decoupled transfer: prefetching inputs ahead of compute, uploading outputs behind it."""

from __future__ import annotations

import threading
import time

import pytest

from curator import storage
from curator.storage import memory
from curator.storage.memory import MemoryStore
from curator.storage.transfer import CACHE
from curator.testing.fixtures import bucket_name


class SlowStore(MemoryStore):
    """mem:// with a slow network: every read and write takes `delay` seconds, and the
    number of transfers in flight is recorded."""

    scheme = "slow"
    delay = 0.05
    lock = threading.Lock()
    active = 0
    max_active = 0
    reads: list[str] = []

    def _enter(self) -> None:
        with SlowStore.lock:
            SlowStore.active += 1
            SlowStore.max_active = max(SlowStore.max_active, SlowStore.active)

    def _leave(self) -> None:
        with SlowStore.lock:
            SlowStore.active -= 1

    def read_range(self, uri, start, end):
        self._enter()
        try:
            time.sleep(self.delay)
            SlowStore.reads.append(uri)
            return super().read_range(uri.replace("slow://", "mem://"), start, end)
        finally:
            self._leave()

    def stat(self, uri):
        return super().stat(uri.replace("slow://", "mem://"))

    def write_bytes(self, uri, data):
        self._enter()
        try:
            time.sleep(self.delay)
            super().write_bytes(uri.replace("slow://", "mem://"), data)
        finally:
            self._leave()


@pytest.fixture
def slow(monkeypatch):
    monkeypatch.setitem(storage.BACKENDS, "slow", f"{__name__}:SlowStore")
    SlowStore.active = SlowStore.max_active = 0
    SlowStore.reads = []
    bucket = bucket_name()
    memory.create_bucket(bucket)
    storage.configure(storage.StorageConfig(prefetch=2, upload_threads=3))
    storage.reset_stores()
    yield bucket
    storage.configure(None)
    storage.reset_stores()


@pytest.mark.unit
def test_prefetch_downloads_ahead_while_the_consumer_works(slow):
    uris = [f"slow://{slow}/v{i}.mp4" for i in range(6)]
    for i, u in enumerate(uris):
        storage.write_bytes(u, bytes([i]) * 100)
    SlowStore.reads.clear()
    got = []
    ready_on_arrival = []
    for uri in storage.prefetch(uris, lambda u: u, depth=2):
        time.sleep(0.2)  # "compute" on the previous item: the next ones download meanwhile
        entry = CACHE._entries.get(uri)
        ready_on_arrival.append(entry is not None and entry.future.done())
        assert len(CACHE) <= 3  # bounded: this item and two ahead
        got.append(storage.read_bytes(uri))
    assert got == [bytes([i]) * 100 for i in range(6)]
    assert all(ready_on_arrival)
    assert sorted(SlowStore.reads) == sorted(uris)  # each object fetched once, by the prefetcher
    assert len(CACHE) == 0


@pytest.mark.unit
def test_prefetch_skips_vetoed_items_and_drops_untaken_ones(slow):
    uris = [f"slow://{slow}/v{i}.mp4" for i in range(5)]
    for u in uris:
        storage.write_bytes(u, b"x")
    SlowStore.reads.clear()
    for uri in storage.prefetch(uris, lambda u: u, skip=lambda u: u.endswith("v1.mp4"), depth=3):
        if uri.endswith("v3.mp4"):
            continue  # the consumer never reads it: dropped when it moves on
        if not uri.endswith("v1.mp4"):
            storage.read_bytes(uri)
    assert f"slow://{slow}/v1.mp4" not in SlowStore.reads
    assert len(CACHE) == 0
    # depth 0: plain passthrough, nothing fetched ahead
    SlowStore.reads.clear()
    assert list(storage.prefetch(uris, lambda u: u, depth=0)) == uris and SlowStore.reads == []


@pytest.mark.unit
def test_prefetch_falls_back_when_the_background_read_fails(slow):
    missing = f"slow://{slow}/missing.mp4"
    for uri in storage.prefetch([missing], lambda u: u, depth=1):
        with pytest.raises(storage.NotFound):
            storage.read_bytes(uri)  # the consumer's own read gives the real error


@pytest.mark.unit
def test_background_uploader_bounds_threads_and_queue(slow):
    up = storage.BackgroundUploader(threads=3, max_queue_mb=1)
    data = b"y" * (300 * 1024)
    t0 = time.monotonic()
    for i in range(12):
        up.submit(f"slow://{slow}/clip{i}.mp4", data)
        assert up._queued <= 1024 * 1024  # never more than max_queue_mb waiting
    submitted = time.monotonic() - t0
    assert up.flush() == {}
    assert SlowStore.max_active == 3
    assert all(storage.read_bytes(f"mem://{slow}/clip{i}.mp4") == data for i in range(12))
    assert submitted < 12 * SlowStore.delay  # submit returned before the uploads were done
    up.close()


@pytest.mark.unit
def test_background_uploader_reports_failures_per_object(slow):
    with storage.BackgroundUploader(threads=2) as up:
        up.submit(f"mem://{slow}/ok.mp4", b"fine")
        up.submit(f"mem://nobucket-{bucket_name()}/bad.mp4", b"lost")
        failed = up.flush()
    assert list(failed) == [next(k for k in failed)] and "bad.mp4" in next(iter(failed))
    assert isinstance(next(iter(failed.values())), storage.BucketNotFound)
    assert storage.read_bytes(f"mem://{slow}/ok.mp4") == b"fine"
    inline = storage.BackgroundUploader(threads=0)
    inline.submit(f"mem://nobucket-{bucket_name()}/bad.mp4", b"lost")
    assert len(inline.flush()) == 1


@pytest.mark.unit
def test_staging_stage_uploads_in_background_and_marks_failures(slow):
    from curator.config import PipelineConfig
    from curator.pipeline import build
    from stages.staging import StagingStage, clip_uri

    cfg = PipelineConfig.load(overrides=[f"input=mem://{slow}/in/", f"output=slow://{slow}/out",
                                         "storage.upload_threads=4"])
    ctx = build(cfg).ctx
    stage = StagingStage(cfg.stages.staging, ctx)
    rows = [{"kind": "clip", "status": "ok", "video_id": "v", "clip_id": f"v-{i:05d}", "mp4": b"m" * 10}
            for i in range(8)]
    out = stage.process(rows)
    assert SlowStore.max_active > 1  # clips of the batch went up together
    for r in out:
        assert "mp4" not in r and r["clip_uri"] == clip_uri(ctx.output_uri, "v", r["clip_id"])
        assert storage.read_bytes(r["clip_uri"].replace("slow://", "mem://")) == b"m" * 10
    bad = build(PipelineConfig.load(overrides=[f"input=mem://{slow}/in/",
                                               f"output=mem://nobucket-{bucket_name()}/out"])).ctx
    stage = StagingStage(cfg.stages.staging, bad)
    out = stage.process([{"kind": "clip", "status": "ok", "video_id": "v", "clip_id": "v-00000", "mp4": b"m"}])
    assert out[0]["status"] == "error" and out[0]["reason"] == "storage_error" and "clip_uri" not in out[0]
