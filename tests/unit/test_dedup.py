"""Dedup engine: blockwise in-cluster search vs brute force, border probing, exact groups,
the kept clip of a group, and the manifest write-back."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from curator import dedup, manifest, storage
from curator.config import DedupConfig
from curator.records import schema_for

pytestmark = pytest.mark.unit


# ----------------------------------------------------------------------------- data
def clustered(n: int, d: int = 512, topics: int = 50, dup_frac: float = 0.1, noise: float = 0.25,
              seed: int = 0) -> tuple[np.ndarray, set[tuple[int, int]]]:
    """Random embeddings with topic structure (as real embeddings have) and planted
    near-duplicates (cosine ≈ 0.97 to their source). Returns float16 vectors and the planted pairs."""
    rng = np.random.default_rng(seed)
    c = dedup.normalize_rows(rng.standard_normal((topics, d)))
    t = rng.integers(0, topics, n)
    u = dedup.normalize_rows(rng.standard_normal((n, d)))
    x = dedup.normalize_rows(np.sqrt(0.5) * c[t] + np.sqrt(0.5) * u)
    m = int(n * dup_frac)
    src = rng.choice(n, m, replace=False)
    dst = rng.choice(np.setdiff1d(np.arange(n), src), m, replace=False)
    x[dst] = dedup.normalize_rows(x[src] + noise * dedup.normalize_rows(rng.standard_normal((m, d))))
    planted = {(min(a, b), max(a, b)) for a, b in zip(src.tolist(), dst.tolist())}
    return x.astype(np.float16), planted


def isotropic(n: int, d: int = 512, dups: int = 500, seed: int = 1) -> np.ndarray:
    """No structure at all: the worst case for any partition."""
    rng = np.random.default_rng(seed)
    x = dedup.normalize_rows(rng.standard_normal((n, d)))
    x[n - dups:] = dedup.normalize_rows(x[:dups] + 0.25 * dedup.normalize_rows(rng.standard_normal((dups, d))))
    return x.astype(np.float16)


def brute_force(x: np.ndarray, t: float) -> set[tuple[int, int]]:
    xf = x.astype(np.float32)
    out: set[tuple[int, int]] = set()
    for a in range(0, len(xf), 1024):
        s = xf[a:a + 1024] @ xf.T
        i, j = np.nonzero(s >= t)
        keep = j > i + a
        out.update(zip((i[keep] + a).tolist(), j[keep].tolist()))
    return out


def semantic_pairs(x: np.ndarray, **cfg_kw) -> tuple[set[tuple[int, int]], dedup.DedupStats]:
    cfg = DedupConfig(**{"threshold": 0.9, **cfg_kw})
    spill = dedup.SpillDir(None)
    try:
        parts = dedup.EmbeddingParts(spill, x.shape[1], 1500, cfg.sample_size, cfg.seed)
        parts.add(np.arange(len(x)), x)
        parts.flush()
        stats = dedup.DedupStats()
        res = dedup.semantic_edges(parts, None, cfg, stats, collect_pairs=True)
    finally:
        spill.cleanup()
    return {(int(a), int(b)) for a, b, _ in res.pairs}, stats


# --------------------------------------------------------------------- blockwise vs brute
def test_blockwise_equals_brute_force_on_5000_clustered_embeddings():
    x, planted = clustered(5000)
    truth = brute_force(x, 0.9)
    assert planted <= truth  # every planted pair is above the threshold
    got, stats = semantic_pairs(x, max_probes=32)
    assert stats.k > 1 and stats.capped == 0
    assert got == truth
    # the border probing did work: some clips were compared outside their own cluster
    assert stats.visits > 0
    # and it is far cheaper than all pairs
    assert stats.comparisons < 0.25 * len(x) ** 2


def test_own_cluster_only_can_miss_pairs_at_borders():
    x, _ = clustered(5000)
    truth = brute_force(x, 0.9)
    got, stats = semantic_pairs(x, max_probes=1)
    assert got <= truth
    assert stats.visits == 0
    # the documented trade-off: without probing, pairs split by a border are lost
    assert len(got) < len(truth)


def test_one_cluster_blocks_and_panels_equal_brute_force(monkeypatch):
    # k = 1: the whole set is one cluster; small panels and an odd block size exercise
    # every edge case of the blocked loop (panel borders, partial blocks)
    monkeypatch.setattr(dedup.pairs, "PANEL_ROWS", 700)
    x = isotropic(2000, dups=300)
    truth = brute_force(x, 0.9)
    got, stats = semantic_pairs(x, k=1, block_size=97)
    assert stats.k == 1
    assert got == truth and len(truth) >= 300


def test_isotropic_data_is_capped_and_reported_and_exact_with_enough_probes():
    x = isotropic(3000)
    truth = brute_force(x, 0.9)
    got_capped, st = semantic_pairs(x, max_probes=2)
    assert st.capped > 0  # the stats say recall is not guaranteed here
    got, st_all = semantic_pairs(x, max_probes=10_000)
    assert st_all.capped == 0
    assert got == truth
    assert got_capped <= truth


def test_assigner_bound_never_skips_a_cell_holding_a_duplicate():
    rng = np.random.default_rng(3)
    x, _ = clustered(3000, seed=4)
    xf = dedup.normalize_rows(x)
    cents = dedup.train_kmeans(xf[rng.choice(len(x), 1000, replace=False)], 30, seed=0, method="faiss")
    a = dedup.Assigner(cents, 0.9, max_probes=1000)
    owner, vr, vc, capped = a.assign(xf)
    assert capped == 0
    visits = set(zip(vr.tolist(), vc.tolist()))
    s = xf @ xf.T
    i, j = np.nonzero(np.triu(s >= 0.9, 1))
    for p, q in zip(i.tolist(), j.tolist()):
        if owner[p] != owner[q]:
            assert (p, int(owner[q])) in visits or (q, int(owner[p])) in visits


@pytest.mark.parametrize("method", ["faiss", "sklearn"])
def test_kmeans_backends_give_unit_centroids(method):
    x, _ = clustered(2000, topics=10)
    c = dedup.train_kmeans(x.astype(np.float32), 10, method=method, seed=0)
    assert c.shape == (10, 512)
    assert np.allclose(np.linalg.norm(c, axis=1), 1, atol=1e-4)


@pytest.mark.gpu
def test_cuml_kmeans_on_gpu():
    x, _ = clustered(5000, topics=20)
    c = dedup.train_kmeans(x.astype(np.float32), 20, method="cuml", device="cuda", seed=0)
    assert c.shape == (20, 512)
    got, stats = semantic_pairs(x, method="cuml", device="cuda", max_probes=8)
    assert got == brute_force(x, 0.9) and stats.method == "cuml"


def test_backend_resolution_without_gpu():
    assert dedup.resolve_backend("auto", "cpu") == ("faiss", "cpu")
    assert dedup.resolve_backend("sklearn", "auto") == ("sklearn", "cpu")
    try:
        import torch

        cuda = torch.cuda.is_available()
    except Exception:
        cuda = False
    if not cuda:
        with pytest.raises(dedup.DedupError, match="CUDA"):
            dedup.resolve_backend("cuml", "auto")


def test_reservoir_sample_is_uniform_over_the_stream():
    spill = dedup.SpillDir(None)
    try:
        parts = dedup.EmbeddingParts(spill, 1, 10_000, 1000, seed=0)
        for a in range(0, 20_000, 512):
            idx = np.arange(a, min(a + 512, 20_000))
            parts.add(idx, idx[:, None].astype(np.float32) / 20_000)
        s = parts.training_sample()[:, 0]
        assert len(s) == 1000
        # first and second half of the stream equally represented (binomial, sd ≈ 16)
        assert 420 < int((s < 0.5).sum()) < 580
    finally:
        spill.cleanup()


# ------------------------------------------------------------------------ run level
def _manifest(out: str, rows: list[dict], with_embedding: bool = True) -> None:
    extra = [("embedding", pa.list_(pa.float16())), ("embedding_model", pa.string()),
             ("quality_score", pa.float64())] if with_embedding else [("quality_score", pa.float64())]
    schema = schema_for(extra)
    full = []
    for r in rows:
        base = {"kind": "clip", "video_id": r["clip_id"].rsplit("-", 1)[0], "status": "ok", "clip_index": 0}
        base.update(r)
        if "embedding" in base and base["embedding"] is not None:
            base["embedding"] = [float(v) for v in base["embedding"]]
        full.append(base)
    full.insert(0, {"kind": "video", "video_id": "v", "status": "ok"})
    from curator.records import to_table

    storage.write_bytes(manifest.manifest_uri(out), manifest.table_bytes(to_table(full, schema)))


def _vec(seed: int, base: np.ndarray | None = None, noise: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal(64) if base is None else base + noise * rng.standard_normal(64)
    return (v / np.linalg.norm(v)).astype(np.float16)


def test_run_marks_duplicates_and_keeps_highest_resolution_then_longest_then_quality(tmp_path):
    out = storage.normalize(str(tmp_path / "run"))
    a = _vec(1)
    b = _vec(2)
    c = _vec(3)
    rows = [
        # group A: a 1280x720 clip wins over 640x360 and a better-quality 640x360
        {"clip_id": "a-00000", "clip_width": 640, "clip_height": 360, "clip_duration_s": 5.0,
         "embedding": a, "quality_score": 9.0},
        {"clip_id": "a-00001", "clip_width": 1280, "clip_height": 720, "clip_duration_s": 5.0,
         "embedding": _vec(11, a, 0.02), "quality_score": 1.0},
        {"clip_id": "a-00002", "clip_width": 640, "clip_height": 360, "clip_duration_s": 5.0,
         "embedding": _vec(12, a, 0.02), "quality_score": 2.0},
        # group B: same resolution; the longer one wins
        {"clip_id": "b-00000", "clip_width": 640, "clip_height": 360, "clip_duration_s": 4.0, "embedding": b},
        {"clip_id": "b-00001", "clip_width": 640, "clip_height": 360, "clip_duration_s": 6.0,
         "embedding": _vec(21, b, 0.02)},
        # group C: same resolution and length; quality decides
        {"clip_id": "c-00000", "clip_width": 320, "clip_height": 240, "clip_duration_s": 3.0, "embedding": c,
         "quality_score": 1.0},
        {"clip_id": "c-00001", "clip_width": 320, "clip_height": 240, "clip_duration_s": 3.0,
         "embedding": _vec(31, c, 0.02), "quality_score": 5.0},
        # exact duplicates (same bytes): tie on everything, the smaller clip id wins
        {"clip_id": "e-00001", "clip_width": 320, "clip_height": 240, "clip_duration_s": 3.0,
         "clip_sha256": "ab" * 32, "embedding": _vec(40)},
        {"clip_id": "e-00000", "clip_width": 320, "clip_height": 240, "clip_duration_s": 3.0,
         "clip_sha256": "ab" * 32, "embedding": _vec(40)},
        # unrelated, and one already rejected by a filter (not a candidate)
        {"clip_id": "u-00000", "clip_width": 320, "clip_height": 240, "clip_duration_s": 3.0, "embedding": _vec(50)},
        {"clip_id": "r-00000", "clip_width": 1920, "clip_height": 1080, "clip_duration_s": 3.0,
         "embedding": _vec(12, a, 0.02), "status": "rejected", "stage": "motion", "reason": "static"},
    ]
    for r in rows:
        r["embedding_model"] = "test-model"
    _manifest(out, rows)
    cfg = DedupConfig(threshold=0.95, quality_column="quality_score", k=2)
    res = dedup.dedup_run(out, cfg)
    t = {r["clip_id"]: r for r in manifest.read_manifest(out).to_pylist() if r["kind"] == "clip"}
    kept_of = {"a": "a-00001", "b": "b-00001", "c": "c-00001", "e": "e-00000"}
    for cid, r in t.items():
        g = cid[0]
        if g in kept_of:
            assert r["dup_group"] == kept_of[g], cid
            if cid == kept_of[g]:
                assert r["status"] == "ok" and r["duplicate_of"] is None
            else:
                assert (r["status"], r["stage"], r["reason"]) == ("rejected", "dedup", "duplicate")
                assert r["duplicate_of"] == kept_of[g]
                assert r["similarity"] >= 0.95
    assert t["u-00000"]["dup_group"] is None and t["u-00000"]["status"] == "ok"
    assert t["r-00000"]["reason"] == "static" and t["r-00000"]["dup_group"] is None
    assert t["e-00001"]["similarity"] == pytest.approx(1.0)
    assert res.stats.removed == 5 and res.stats.groups == 4
    assert storage.exists(res.report_uri)

    # rerun with another threshold: earlier decisions are re-evaluated, not stacked
    dedup.dedup_run(out, DedupConfig(threshold=0.9999, quality_column="quality_score", k=2))
    t2 = {r["clip_id"]: r for r in manifest.read_manifest(out).to_pylist() if r["kind"] == "clip"}
    assert t2["a-00000"]["status"] == "ok" and t2["a-00000"]["dup_group"] is None
    assert t2["e-00001"]["status"] == "rejected"  # exact duplicates stay duplicates
    assert t2["r-00000"]["reason"] == "static"


def test_run_refuses_mixed_models_and_missing_manifest(tmp_path):
    out = storage.normalize(str(tmp_path / "run"))
    with pytest.raises(dedup.DedupError, match="no manifest"):
        dedup.dedup_run(out, DedupConfig())
    rows = [{"clip_id": "a-00000", "embedding": _vec(1), "embedding_model": "m1"},
            {"clip_id": "a-00001", "embedding": _vec(2), "embedding_model": "m2"}]
    _manifest(out, rows)
    with pytest.raises(dedup.DedupError, match="several models"):
        dedup.dedup_run(out, DedupConfig())
    with pytest.raises(dedup.DedupError, match="quality_column"):
        dedup.dedup_run(out, DedupConfig(quality_column="nope"))


def test_threshold_defaults_by_model():
    assert dedup.threshold_for(DedupConfig(), "perceptual-dct-v1") == 0.8
    assert dedup.threshold_for(DedupConfig(), "ViT-B-32/openai") == 0.9
    assert dedup.threshold_for(DedupConfig(threshold=0.7), "perceptual-dct-v1") == 0.7


def test_run_without_clips_or_embeddings_is_a_no_op(tmp_path):
    out = storage.normalize(str(tmp_path / "run"))
    from curator.records import to_table

    rows = [{"kind": "video", "video_id": "v", "status": "error", "reason": "unreadable"}]
    storage.write_bytes(manifest.manifest_uri(out), manifest.table_bytes(to_table(rows, schema_for())))
    res = dedup.dedup_run(out, DedupConfig())
    assert res.stats.candidates == 0 and res.stats.removed == 0
    t = manifest.read_manifest(out)
    assert t.num_rows == 1 and "dup_group" in t.column_names and t.column("reason")[0].as_py() == "unreadable"
