"""RunDir: the names of a run's files, its config, and the one way to open the manifest."""

from __future__ import annotations

import pyarrow as pa
import pytest

from curator import storage
from curator.rundir import RunDir, count_manifest_opens
from curator.runners.base import Runner

pytestmark = pytest.mark.unit


def test_names(tmp_path):
    r = RunDir.of(str(tmp_path))
    assert r.uri == storage.normalize(str(tmp_path))
    assert r.manifest.endswith("/manifest.parquet") and r.config.endswith("/config.yaml")
    assert r.part("v1").endswith("/staging/videos/v1.parquet")
    assert r.clip("v1", "c1").endswith("/staging/clips/v1/c1.mp4")
    assert r.split_index("pretrain", "wfm").endswith("/shards/pretrain/wfm/index.json")
    assert r.work("x").endswith("/_work/x") and r.default_index.endswith("/index")


def test_config_round_trip_and_absent(tmp_path):
    r = RunDir.of(str(tmp_path))
    assert r.read_config() is None and r.run_info() == {}
    r.write_config({"a": 1}, {"config_hash": "h"})
    assert r.read_config() == ({"a": 1}, {"config_hash": "h"})
    assert r.run_info() == {"config_hash": "h"}


@pytest.mark.parametrize("base", ["file", "mem"])
def test_manifest_streams_in_batches_with_columns_and_is_counted(tmp_path, base):
    if base == "mem":
        from curator.storage import memory

        memory.create_bucket("runs")
    uri = str(tmp_path) if base == "file" else f"mem://runs/{tmp_path.name}"
    r = RunDir.of(uri)
    schema = pa.schema([("kind", pa.string()), ("n", pa.int64()), ("emb", pa.list_(pa.float16()))])
    with r.manifest_writer(schema) as w:
        for i in range(3):
            w.write_table(pa.table({"kind": ["clip"] * 10, "n": list(range(i * 10, i * 10 + 10)),
                                    "emb": [None] * 10}, schema=schema))
    with count_manifest_opens() as opens:
        with r.open_manifest("test") as mf:
            assert mf.num_rows == 30 and mf.names == ["kind", "n", "emb"]
            batches = list(mf.batches(["n", "missing"], batch_rows=7))
            assert all(b.schema.names == ["n"] and b.num_rows <= 7 for b in batches)
            assert [row["n"] for row in mf.rows(["n"])] == list(range(30))
    assert opens == ["test"]


def test_rewriting_while_reading_is_atomic(tmp_path):
    r = RunDir.of(str(tmp_path))
    schema = pa.schema([("n", pa.int64())])
    with r.manifest_writer(schema) as w:
        w.write_table(pa.table({"n": [1, 2, 3]}, schema=schema))
    with r.open_manifest() as mf:
        with r.manifest_writer(schema) as w:
            for b in mf.batches():
                w.write_table(pa.table({"n": [x * 10 for x in b.column(0).to_pylist()]}, schema=schema))
    with r.open_manifest() as mf:
        assert [row["n"] for row in mf.rows()] == [10, 20, 30]


def test_both_runners_implement_the_protocol():
    from curator.runners.local import LocalRunner
    from curator.runners.ray import RayRunner

    assert issubclass(LocalRunner, Runner) and issubclass(RayRunner, Runner)
    assert (LocalRunner.name, LocalRunner.distributed) == ("local", False)
    assert (RayRunner.name, RayRunner.distributed) == ("ray", True)
    local = LocalRunner()
    assert list(local.map(lambda x: x + 1, [1, 2])) == [2, 3]
    assert "stages" in local.progress()
