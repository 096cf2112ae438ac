"""Conditional writes (`storage.put_if`: create-if-absent, replace-if-version-matches) and the
per-scheme byte counters, on every backend: file, mem, S3 (moto), GCS (emulator), Azure
(Azurite)."""

from __future__ import annotations

import json
import threading

import pytest

from curator import storage


def test_create_only_if_absent(backend):
    uri = backend.uri("cas/new.json")
    v1 = storage.put_if(uri, b"first", None)
    assert v1
    with pytest.raises(storage.PreconditionFailed):
        storage.put_if(uri, b"second", None)
    data, v = storage.read_versioned(uri)
    assert data == b"first" and v == v1


def test_replace_only_at_the_version_read(backend):
    uri = backend.uri("cas/doc.json")
    storage.write_bytes(uri, b"v0")
    data, v0 = storage.read_versioned(uri)
    assert data == b"v0"
    v1 = storage.put_if(uri, b"v1", v0)
    assert v1 != v0
    with pytest.raises(storage.PreconditionFailed):  # a writer still holding v0 loses
        storage.put_if(uri, b"stale", v0)
    assert storage.read_versioned(uri) == (b"v1", v1)
    storage.write_bytes(uri, b"v2")  # an unconditional write also moves the version on
    with pytest.raises(storage.PreconditionFailed):
        storage.put_if(uri, b"stale", v1)
    storage.delete(uri)
    with pytest.raises(storage.PreconditionFailed):  # replacing an object that is gone
        storage.put_if(uri, b"stale", v1)
    with pytest.raises(storage.NotFound):
        storage.read_versioned(uri)
    assert storage.put_if(uri, b"again", None)


def test_no_lost_update_under_concurrent_compare_and_swap(backend):
    """Threads increment one counter object with read_versioned + put_if loops: every
    increment survives."""
    uri = backend.uri("cas/counter.json")
    storage.put_if(uri, json.dumps({"n": 0, "by": []}).encode(), None)
    threads, each = 4, 4 if backend.name == "gs" else 6
    conflicts = [0] * threads

    def work(t: int) -> None:
        for i in range(each):
            while True:
                data, v = storage.read_versioned(uri)
                doc = json.loads(data)
                doc["n"] += 1
                doc["by"].append(f"{t}-{i}")
                try:
                    storage.put_if(uri, json.dumps(doc).encode(), v)
                    break
                except storage.PreconditionFailed:
                    conflicts[t] += 1

    ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    doc = json.loads(storage.read_bytes(uri))
    assert doc["n"] == threads * each
    assert sorted(doc["by"]) == sorted(f"{t}-{i}" for t in range(threads) for i in range(each))


def test_lock_files_are_not_listed(backend):
    storage.put_if(backend.uri("cas/a.json"), b"{}", None)
    assert [storage.relative(backend.root, i.uri) for i in storage.list_objects(backend.uri("cas/"))] == ["cas/a.json"]


def test_byte_counters_per_scheme(backend):
    scheme = backend.root.split("://")[0]
    before = storage.stats.snapshot()
    storage.write_bytes(backend.uri("io/a.bin"), b"x" * 1000)
    with storage.stats.recording() as seen:
        assert storage.read_range(backend.uri("io/a.bin"), 10, 110) == b"x" * 100
        assert len(storage.read_bytes(backend.uri("io/a.bin"))) == 1000
    with storage.local_copy(backend.uri("io/a.bin")):
        pass
    d = storage.stats.delta(before)
    assert d["read"] == {scheme: 2100} and d["written"] == {scheme: 1000}
    assert seen == {storage.normalize(backend.uri("io/a.bin"))}
