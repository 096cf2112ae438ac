"""The clip index: the --where predicate language, segments, incremental adds, search."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from curator import index, storage, where
from curator.config import IndexConfig
from curator.testing.manifests import planted, unit, write_run

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------ where
def _table() -> pa.Table:
    return pa.table({
        "motion_tag": ["pan_left", "static", None, "pan_left"],
        "clip_duration_s": [2.0, 5.0, 7.5, 12.0],
        "status": ["ok", "rejected", "ok", "ok"],
        "caption": ["a museum hall", "street at night", "Museum", "it's a dog"],
        "tags": [["indoor", "people"], [], None, ["outdoor"]],
        "flag": [True, False, True, None],
    })


@pytest.mark.unit
@pytest.mark.parametrize("text,expected", [
    ("motion_tag = 'pan_left'", [True, False, False, True]),
    ("motion_tag != 'pan_left'", [False, True, False, False]),  # NULL is not true
    ("motion_tag <> 'static' AND clip_duration_s > 3", [False, False, False, True]),
    ("clip_duration_s >= 5 OR status = 'rejected'", [False, True, True, True]),
    ("NOT (status = 'ok')", [False, True, False, False]),
    ("status IN ('ok', 'error')", [True, False, True, True]),
    ("motion_tag IS NULL", [False, False, True, False]),
    ("motion_tag IS NOT NULL AND clip_duration_s < 3", [True, False, False, False]),
    ("caption LIKE '%museum%'", [True, False, False, False]),
    ("caption NOT LIKE '%museum%'", [False, True, True, True]),
    ("caption = 'it''s a dog'", [False, False, False, True]),
    ("tags CONTAINS 'indoor'", [True, False, False, False]),
    ("flag = TRUE", [True, False, True, False]),
    ("no_such_column = 'x'", [False, False, False, False]),
    ("no_such_column IS NULL", [True, True, True, True]),
    ("clip_duration_s > 1e0 and clip_duration_s < 6", [True, True, False, False]),
])
def test_where_evaluates(text, expected):
    assert where.evaluate(where.parse(text), _table()).tolist() == expected


@pytest.mark.unit
@pytest.mark.parametrize("text,msg", [
    ("", "empty"),
    ("motion_tag = ", "end"),
    ("motion_tag === 'x'", "literal"),  # '==' is '=' (split rules' spelling); '===' is not
    ("__import__('os').system('true')", "unexpected character"),
    ("__import__('os')", "operator"),
    ("motion_tag = 'x'; DROP TABLE clips", "unexpected character"),
    ("(status = 'ok'", r"expected \)"),
    ("status = ok", "literal"),
    ("status = 'ok' extra", "unexpected"),
])
def test_where_rejects_bad_input(text, msg):
    with pytest.raises(where.WhereError, match=msg):
        where.evaluate(where.parse(text), _table())


@pytest.mark.unit
def test_where_type_errors_are_clear():
    with pytest.raises(where.WhereError, match="quote it"):
        where.evaluate(where.parse("status = 3"), _table())
    with pytest.raises(where.WhereError, match="CONTAINS"):
        where.evaluate(where.parse("tags = 'indoor'"), _table())
    assert where.columns(where.parse("a = 1 AND (b IS NULL OR NOT c LIKE 'x')")) == {"a", "b", "c"}


# ------------------------------------------------------------------------------ index
def indexed_run(tmp_path: Path, emb: np.ndarray, model: str = "test-model") -> tuple[list[str], str]:
    """A run's manifest with these embeddings, indexed next to it: (clip ids, index URI)."""
    out = storage.normalize(str(tmp_path / "run"))
    ids = write_run(out, "vidA", emb, model=model)
    ix = index.index_uri_for(out, IndexConfig())
    index.add_run(out, ix, IndexConfig())
    return ids, ix


@pytest.mark.unit
@pytest.mark.parametrize("ivf_min_rows", [10_000, 100])  # exact flat search / IVF ANN
def test_like_query_returns_the_planted_clip_first_and_where_filters(tmp_path, ivf_min_rows):
    out = storage.normalize(str(tmp_path / "run1"))
    emb = planted(600)
    emb[400] = unit(emb[7] + 0.05 * planted(1, seed=9)[0])  # the planted near-copy of clip 7
    ids = write_run(out, "vidA", emb)
    cfg = IndexConfig(ivf_min_rows=ivf_min_rows, nprobe=8)
    ix = index.index_uri_for(out, cfg)
    res = index.add_run(out, ix, cfg)
    assert res["added"] == 600 and len(res["segments"]) == 1
    meta = index.read_meta(ix)
    assert meta.segments[0]["ann"].startswith("ivf" if ivf_min_rows == 100 else "flat")
    hits = index.search(ix, vector=index.like_vector(meta, ids[7]), limit=5, exclude=ids[7])
    assert hits[0].row["clip_id"] == ids[400] and hits[0].score > 0.95
    assert ids[7] not in [h.row["clip_id"] for h in hits]
    assert len(hits) == 5 and all(a.score >= b.score for a, b in zip(hits, hits[1:]))
    # the filter applies inside the ANN search: only matching clips come back
    hits = index.search(ix, vector=index.like_vector(meta, ids[7]), where_text="motion_tag = 'static'", limit=5,
                        exclude=ids[7])
    assert len(hits) == 5 and all(h.row["motion_tag"] == "static" for h in hits)
    assert hits[0].row["clip_id"] == ids[400]  # 400 % 3 == 1: tagged static
    others = index.search(ix, vector=index.like_vector(meta, ids[7]), where_text="motion_tag = 'pan_left'", limit=5)
    assert len(others) == 5 and ids[400] not in [h.row["clip_id"] for h in others]
    # rows carry span, source, scores, tags, caption and the clip URI
    r = hits[0].row
    for c in ("start_s", "end_s", "source_uri", "scores", "tags", "caption", "clip_uri", "source_run"):
        assert c in r
    assert dict(r["scores"])["quality.brisque"] >= 0


@pytest.mark.unit
def test_filter_only_query_and_score_map(tmp_path):
    ids, ix = indexed_run(tmp_path, planted(30))
    hits = index.search(ix, where_text="tags CONTAINS 'odd' AND motion_tag = 'pan_left'", limit=50)
    assert [h.row["clip_id"] for h in hits] == [ids[i] for i in range(30) if i % 2 == 1 and i % 3 == 0]
    assert all(h.score is None for h in hits)


@pytest.mark.unit
def test_incremental_add_writes_only_a_new_segment(tmp_path):
    shared = storage.normalize(str(tmp_path / "shared-index"))
    cfg = IndexConfig(uri=shared)
    run1 = storage.normalize(str(tmp_path / "run1"))
    run2 = storage.normalize(str(tmp_path / "run2"))
    ids1 = write_run(run1, "vidA", planted(50, seed=1))
    emb2 = planted(40, seed=2)
    emb2[5] = unit(planted(50, seed=1)[3] + 0.05 * planted(1, seed=5)[0])
    ids2 = write_run(run2, "vidB", emb2)
    assert index.add_run(run1, shared, cfg)["added"] == 50
    seg1 = index.read_meta(shared).segments[0]
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "shared-index" / "segments").iterdir()}
    # the same run again: nothing new
    assert index.add_run(run1, shared, cfg) == {"added": 0, "skipped": 50, "segments": [], "index": shared}
    res = index.add_run(run2, shared, cfg)
    assert res["added"] == 40 and res["skipped"] == 0
    meta = index.read_meta(shared)
    assert [s["id"] for s in meta.segments][0] == seg1["id"] and len(meta.segments) == 2
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "shared-index" / "segments").iterdir()}
    assert all(after[k] == v for k, v in before.items())  # the first segment was not rewritten
    # one query spans both runs
    hits = index.search(shared, vector=index.like_vector(meta, ids1[3]), limit=3, exclude=ids1[3])
    assert hits[0].row["clip_id"] == ids2[5] and hits[0].row["source_run"] == run2
    # a run embedded with another model cannot join this index
    run3 = storage.normalize(str(tmp_path / "run3"))
    write_run(run3, "vidC", planted(3, seed=3), model="other-model")
    with pytest.raises(index.SearchError, match="other-model"):
        index.add_run(run3, shared, cfg)


@pytest.mark.unit
def test_text_search_on_perceptual_index_says_it_is_impossible(tmp_path):
    _, ix = indexed_run(tmp_path, planted(5, d=512), model="perceptual-dct-v1")
    with pytest.raises(index.SearchError, match="text search is impossible.*perceptual-dct-v1.*--like"):
        index.text_vector(index.read_meta(ix), "museum interiors", str(tmp_path / "models"))
    with pytest.raises(index.SearchError, match="no clip index"):
        index.read_meta(str(tmp_path / "nowhere"))


@pytest.mark.unit
def test_search_cli_prints_a_table_with_clip_uris(tmp_path):
    out = storage.normalize(str(tmp_path / "run"))
    emb = planted(20)
    emb[11] = unit(emb[2] + 0.05 * planted(1, seed=3)[0])
    ids = write_run(out, "vidA", emb)
    ix = str(tmp_path / "run" / "index")
    proc = subprocess.run([sys.executable, "-m", "curator", "index", str(tmp_path / "run")], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "20 clips added" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "curator", "search", ix, "--like", ids[2], "--limit", "3"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:2] == ["clip_id", "score"]
    assert lines[2].split()[0] == ids[11]
    assert f"staging/clips/vidA/{ids[11]}.mp4" in lines[2]
    proc = subprocess.run([sys.executable, "-m", "curator", "search", ix, "--where", "motion_tag = 'pan_left'",
                           "--json", "--limit", "100"], cwd=ROOT, capture_output=True, text=True)
    rows = json.loads(proc.stdout)
    assert len(rows) == 7 and {r["motion_tag"] for r in rows} == {"pan_left"}
    proc = subprocess.run([sys.executable, "-m", "curator", "search", ix, "--where", "motion_tag = pan_left"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 1 and "literal" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "curator", "search", ix, "--where", "motion_tga = 'pan_left'"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 1 and "no column 'motion_tga'" in proc.stderr and "motion_tag" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "curator", "search", ix, "museum interiors"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 1 and "test-model" in proc.stderr


@pytest.mark.unit
def test_text_search_uses_the_clip_text_tower_of_the_index_model(tmp_path):
    from curator.models import clip
    from curator.testing import tiny_models

    model_dir = str(tmp_path / "models")
    tiny_models.build_open_clip(model_dir)
    m = clip.load_name(tiny_models.TINY_CLIP_NAME, model_dir, device="cpu")
    text = m.encode_text(["museum interiors"])[0]
    emb = planted(40, d=len(text), seed=6)
    emb[17] = unit(text + 0.02 * planted(1, d=len(text), seed=8)[0])
    ids, ix = indexed_run(tmp_path, emb, model=tiny_models.TINY_CLIP_NAME)
    proc = subprocess.run([sys.executable, "-m", "curator", "search", ix, "museum interiors", "--limit", "2",
                           "--set", f"models.dir={model_dir}"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[2].split()[0] == ids[17]


@pytest.mark.unit
def test_text_search_without_the_weights_names_the_model_and_the_download(tmp_path):
    _, ix = indexed_run(tmp_path, planted(3, d=512), model="open_clip:ViT-B-32/openai")
    with pytest.raises(index.SearchError, match=r"open_clip:ViT-B-32/openai.*curator models download"):
        index.text_vector(index.read_meta(ix), "museum interiors", str(tmp_path / "empty-models"))


@pytest.mark.unit
def test_index_writes_to_dash_o_and_the_old_spelling_still_works(tmp_path):
    """`-o/--output` is where `curator index` writes (as in every command); `--index`,
    its former name, still works with a deprecation note."""
    write_run(storage.normalize(str(tmp_path / "run")), "vidA", planted(4))
    proc = subprocess.run([sys.executable, "-m", "curator", "index", str(tmp_path / "run"), "-o",
                           str(tmp_path / "ix1")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "4 clips added" in proc.stdout and (tmp_path / "ix1").is_dir() and "deprecated" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "curator", "index", str(tmp_path / "run"), "--index",
                           str(tmp_path / "ix2")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "4 clips added" in proc.stdout and (tmp_path / "ix2").is_dir()
    assert "--index is deprecated, use -o/--output" in proc.stderr
