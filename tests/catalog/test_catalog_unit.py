"""The catalog on local storage: commits, tombstones, the ledger, compaction and vacuum,
catalog dedup, and `curator catalog` on the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from curator import index, storage
from curator.catalog import compact, core
from curator.catalog import dedup as cdedup
from curator.config import DedupConfig, IndexConfig
from curator.testing.manifests import planted, unit, write_run

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.unit


def _uri(tmp_path: Path, name: str) -> str:
    return storage.normalize(str(tmp_path / name))


def _visible_ids(catalog: str) -> list[str]:
    return sorted(h.row["clip_id"] for h in index.search(catalog, where_text="clip_id IS NOT NULL", limit=10_000))


def test_commit_is_applied_once_and_seq_orders_commits(tmp_path):
    cat = _uri(tmp_path, "cat")
    calls = []

    def add(doc, seq):
        calls.append(seq)
        doc.setdefault("notes", []).append(seq)
        return doc

    r1 = core.commit(cat, add, "c-1")
    assert r1.applied and r1.seq == 1 and r1.attempts == 1
    r2 = core.commit(cat, add, "c-1")  # the same commit again (a retry after a lost answer): not applied twice
    assert not r2.applied and r2.seq == 1
    assert core.commit(cat, add, "c-2").seq == 2
    doc = core.read(cat).doc
    assert doc["notes"] == [1, 2] and doc["seq"] == 2 and doc["format"] == core.FORMAT
    assert core.commit(cat, lambda d, s: None).applied is False  # nothing to do: no commit


def test_threads_racing_on_a_local_catalog_keep_every_clip(tmp_path):
    cat = _uri(tmp_path, "cat")
    runs = []
    for w in range(4):
        out = _uri(tmp_path, f"run{w}")
        write_run(out, f"vid{w}", planted(15, seed=w))
        runs.append(out)
    results = []
    barrier = threading.Barrier(len(runs))

    def reg(run):
        barrier.wait()
        results.append(index.add_run(run, cat, IndexConfig()))

    ts = [threading.Thread(target=reg, args=(r,)) for r in runs]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert sorted(r["added"] for r in results) == [15] * 4
    assert len(_visible_ids(cat)) == 60 and core.read(cat).doc["seq"] == 4


def test_the_same_run_registered_twice_at_once_is_indexed_once(tmp_path):
    cat = _uri(tmp_path, "cat")
    out = _uri(tmp_path, "run")
    write_run(out, "vid", planted(20))
    results = []
    barrier = threading.Barrier(2)

    def reg():
        barrier.wait()
        results.append(index.add_run(out, cat, IndexConfig()))

    ts = [threading.Thread(target=reg) for _ in range(2)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert sorted(r["added"] for r in results) == [0, 20] or sum(r["added"] for r in results) == 20
    ids = _visible_ids(cat)
    assert len(ids) == len(set(ids)) == 20


def test_tombstones_hide_older_rows_and_a_changed_source_is_replaced(tmp_path):
    cat = _uri(tmp_path, "cat")
    run1, run2 = _uri(tmp_path, "run1"), _uri(tmp_path, "run2")
    emb = planted(10, seed=1)
    ids = write_run(run1, "vidA", emb)
    index.add_run(run1, cat, IndexConfig())
    src = "s3://raw/vidA.mp4"  # write_run's source URI
    # the source changed: the redo has the same clip ids (same key) and new content
    new_emb = planted(6, seed=2)
    write_run(run2, "vidA", new_emb)
    res = index.add_run(run2, cat, IndexConfig(), replace_sources=[src])
    assert res["added"] == 6 and res["skipped"] == 0
    meta = index.read_meta(cat)
    assert meta.tombstones == {src: 2}
    assert _visible_ids(cat) == sorted(ids[:6])
    # the hidden rows are not found by example either: the visible vidA-00000 is the new one
    assert np.allclose(index.like_vector(meta, ids[0]), new_emb[0], atol=1e-2)
    hits = index.search(cat, vector=emb[8], limit=20)
    assert ids[8] not in [h.row["clip_id"] for h in hits]


def test_compact_merges_applies_tombstones_and_vacuums(tmp_path):
    cat = _uri(tmp_path, "cat")
    ids = []
    for i in range(4):
        out = _uri(tmp_path, f"run{i}")
        ids += write_run(out, f"vid{i}", planted(8, seed=10 + i))
        index.add_run(out, cat, IndexConfig(), sources=[{"source_uri": f"s3://raw/vid{i}.mp4", "size": 1,
                                                         "status": core.CURATED, "video_id": f"vid{i}"}])
    # vid1's source is deleted: a tombstone alone
    core.write_table(storage.join(cat, "tombstones", "t1.parquet"), core.tombstone_table(["s3://raw/vid1.mp4"], "deleted"))
    core.commit(cat, lambda d, s: {**d, "tombstones": d["tombstones"] + [{"id": "t1", "rows": 1, "seq": s}]})
    before = _visible_ids(cat)
    assert len(before) == 24
    # an orphan left by a writer that crashed before committing
    storage.write_bytes(storage.join(cat, "segments", "orphan.parquet"), b"x")
    res = compact.compact(cat, target_rows=100, vacuum_after_s=0)
    assert res["segments_before"] == 4 and res["segments_after"] == 1 and res["merged"] == 4
    assert res["vacuumed"] == 4 * 2 + 4 + 1 + 1  # 4 segments (parquet + faiss), 4 ledger parts, the tombstone, the orphan
    meta = index.read_meta(cat)
    assert meta.segments[0]["rows"] == 24 and meta.tombstones == {}  # applied, then dropped
    assert _visible_ids(cat) == before
    ledger = core.load_sources(cat, meta.doc)
    assert sorted(ledger) == [f"s3://raw/vid{i}.mp4" for i in range(4)] and len(meta.doc["sources"]) == 1
    left = sorted(os.listdir(tmp_path / "cat" / "segments"))
    assert [n for n in left if not n.startswith(".")] == sorted(f"{meta.segments[0]['id']}.{e}"
                                                                 for e in ("faiss", "parquet"))
    # search still finds by example across the merged rows
    hits = index.search(cat, vector=index.like_vector(meta, ids[3]), limit=1)
    assert hits[0].row["clip_id"] == ids[3]


def test_catalog_dedup_finds_pairs_across_runs_and_then_incrementally(tmp_path):
    cat = _uri(tmp_path, "cat")
    base = planted(200, seed=3)
    a = _uri(tmp_path, "runA")
    ids_a = write_run(a, "vidA", base[:100])
    b = _uri(tmp_path, "runB")
    emb_b = base[100:].copy()
    emb_b[7] = unit(base[42] + 0.03 * planted(1, seed=8)[0])  # run B's clip 7 nearly copies run A's clip 42
    ids_b = write_run(b, "vidB", emb_b)
    index.add_run(a, cat, IndexConfig())
    index.add_run(b, cat, IndexConfig())
    cfg = DedupConfig(threshold=0.95)
    res = cdedup.full(cat, cfg)
    assert res["groups"] == 1 and res["removed"] == 1
    dec = cdedup.load_decisions(index.read_meta(cat))
    dup = [r for r in dec.values() if r["duplicate_of"]]
    assert {dup[0]["clip_id"], dup[0]["duplicate_of"].rsplit("#", 1)[1]} == {ids_a[42], ids_b[7]}
    assert res["read_outside_catalog"] == []
    # a new run lands: its near-copy of run A's clip 5 is found through the centroids
    c = _uri(tmp_path, "runC")
    emb_c = planted(10, seed=99)
    emb_c[2] = unit(base[5] + 0.03 * planted(1, seed=11)[0])
    ids_c = write_run(c, "vidC", emb_c)
    seg = index.add_run(c, cat, IndexConfig())["segments"]
    inc = cdedup.incremental(cat, seg, cfg, recluster_drift=1.0)
    assert inc["mode"] == "incremental" and inc["clips"] == 10 and inc["groups"] == 1
    dec = cdedup.load_decisions(index.read_meta(cat))
    grouped = {r["clip_id"] for r in dec.values() if r["dup_group"] and r["dup_group"] == dec[r["dup_group"]]["key"]
               and r["dup_group"].endswith(ids_a[5])}
    assert grouped == {ids_a[5], ids_c[2]}
    assert index.read_meta(cat).doc["dedup"]["incremental"] == 1
    # clips far from every centroid: re-clustered instead
    d = _uri(tmp_path, "runD")
    write_run(d, "vidD", planted(10, seed=500))
    seg = index.add_run(d, cat, IndexConfig())["segments"]
    assert cdedup.incremental(cat, seg, cfg, recluster_drift=-1.0)["mode"] == "full"


def test_catalog_cli_show_compact_dedup(tmp_path):
    cat = _uri(tmp_path, "cat")
    for i in range(2):
        out = _uri(tmp_path, f"run{i}")
        write_run(out, f"vid{i}", planted(5, seed=i))
        index.add_run(out, cat, IndexConfig())

    def cli(*a):
        p = subprocess.run([sys.executable, "-m", "curator", "catalog", *a], cwd=ROOT, capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        return p.stdout

    shown = json.loads(cli("show", cat))
    assert shown["segments"] == 2 and shown["clips"] == 10 and shown["seq"] == 2
    assert shown["sites"] == {"file://": 10}
    assert json.loads(cli("compact", cat, "--set", "catalog.vacuum_after_s=0"))["segments_after"] == 1
    out = cli("dedup", cat)
    assert "10 clips" in out and "outside the catalog: 0 objects" in out
    p = subprocess.run([sys.executable, "-m", "curator", "catalog", "show", _uri(tmp_path, "nothing")], cwd=ROOT,
                       capture_output=True, text=True)
    assert p.returncode == 1 and "no clip index" in p.stderr
