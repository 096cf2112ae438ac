"""Dedup at scale on synthetic embeddings with planted duplicates.

    python benchmarks/dedup_bench.py                 # 1,000,000 and 20,000 embeddings
    python benchmarks/dedup_bench.py --sizes 20000   # quick

Data: 512-d unit vectors with topic structure, as real clip embeddings have (each vector
is half a random topic direction out of sqrt(n) topics, half its own random direction:
cosine ≈ 0.5 inside a topic, ≈ 0 across), and 10 % planted near-duplicates (a noisy copy
of another vector: cosine ≈ 0.97). They are written as a run manifest (list<float16>
`embedding` column, as the embed stage writes it) and deduplicated through the same
entry point as `curator dedup` (threshold 0.9, default k, sample, probes and blocks), in a
child process whose peak RSS is measured. Recall: planted pairs that end up in one group.
Extra pairs: pairs in a group that are not planted (none exist above the threshold in
this data; brute force on the 20,000 set checks that).

At 20,000 the same data also goes through a naive all-pairs search (blocked matrix
products over every pair + connected components) for the time ratio.

Prints a table and writes benchmarks/results/dedup.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

DIM = 512
DUP_FRAC = 0.10
NOISE = 0.25


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def generate(out_dir: str, n: int, seed: int = 0, batch: int = 50_000) -> np.ndarray:
    """Write <out_dir>/manifest.parquet; return the planted pairs [m, 2] (row numbers = clip numbers)."""
    from curator.records import schema_for

    rng = np.random.default_rng(seed)
    topics = _unit(rng.standard_normal((max(2, int(np.sqrt(n))), DIM)).astype(np.float32))
    schema = schema_for([("embedding", pa.list_(pa.float16())), ("embedding_model", pa.string())])
    planted = []
    os.makedirs(out_dir, exist_ok=True)
    with pq.ParquetWriter(os.path.join(out_dir, "manifest.parquet"), schema, compression="zstd") as w:
        for a in range(0, n, batch):
            b = min(n, a + batch)
            m = b - a
            t = rng.integers(0, len(topics), m)
            x = _unit(np.sqrt(0.5) * topics[t] + np.sqrt(0.5) * _unit(rng.standard_normal((m, DIM)).astype(np.float32)))
            nd = int(m * DUP_FRAC)
            dst = rng.choice(m, nd, replace=False)
            others = np.setdiff1d(np.arange(m), dst)
            src = rng.choice(others, nd, replace=True)
            x[dst] = _unit(x[src] + NOISE * _unit(rng.standard_normal((nd, DIM)).astype(np.float32)))
            planted.append(np.stack([a + src, a + dst], axis=1))
            flat = pa.array(x.astype(np.float16).reshape(-1))
            emb = pa.ListArray.from_arrays(pa.array(np.arange(0, m * DIM + 1, DIM, dtype=np.int32)), flat)
            ids = pa.array([f"c{i:08d}" for i in range(a, b)])
            cols = {"kind": pa.array(["clip"] * m), "video_id": pa.array([f"v{i // 10:07d}" for i in range(a, b)]),
                    "clip_id": ids, "status": pa.array(["ok"] * m), "clip_width": pa.array(np.full(m, 640, np.int32)),
                    "clip_height": pa.array(np.full(m, 360, np.int32)),
                    "clip_duration_s": pa.array(np.full(m, 5.0)), "embedding": emb,
                    "embedding_model": pa.array(["synthetic-512"] * m)}
            arrays = [cols[f.name] if f.name in cols else pa.nulls(m, f.type) for f in schema]
            tbl = pa.Table.from_arrays(arrays, schema=schema)
            for s in range(0, m, 4096):
                w.write_table(tbl.slice(s, 4096))
    return np.concatenate(planted)


def child(out_dir: str) -> None:
    """Run dedup on the manifest in out_dir; print stats and peak RSS as JSON."""
    from dataclasses import asdict

    from curator import dedup
    from curator.config import DedupConfig

    t0 = time.monotonic()
    res = dedup.dedup_run(out_dir, DedupConfig(threshold=0.9))
    wall = time.monotonic() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "peak_rss_bytes": ru.ru_maxrss * 1024,
                      "loadavg_end": os.getloadavg()[0], "stats": asdict(res.stats)}))


def groups_of(out_dir: str) -> np.ndarray:
    """Per clip number: an int label of its dup group (-1 = none)."""
    pf = pq.ParquetFile(os.path.join(out_dir, "manifest.parquet"))
    labels = []
    for b in pf.iter_batches(columns=["dup_group"], batch_size=65536):
        g = b.column(0).to_pylist()
        labels.append(np.array([int(x[1:]) if x else -1 for x in g], np.int64))
    return np.concatenate(labels)


def score(labels: np.ndarray, planted: np.ndarray) -> dict:
    """Recall of planted pairs (both ends in one group) and the pairs the groups imply that
    no chain of planted pairs explains (extra pairs = false positives)."""
    hit = (labels[planted[:, 0]] >= 0) & (labels[planted[:, 0]] == labels[planted[:, 1]])
    inside = labels >= 0
    g = labels[inside]
    truth = _components(len(labels), planted)[inside]
    _, sizes = np.unique(g, return_counts=True)
    group_pairs = int((sizes * (sizes - 1) // 2).sum())
    _, both = np.unique(np.stack([g, truth], axis=1), axis=0, return_counts=True)
    true_pairs = int((both * (both - 1) // 2).sum())
    return {"planted_pairs": int(len(planted)), "found": int(hit.sum()), "recall": float(hit.mean()),
            "group_pairs": group_pairs, "extra_pairs": group_pairs - true_pairs}


def _components(n: int, pairs: np.ndarray) -> np.ndarray:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    g = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(g, directed=False)[1]


def naive_all_pairs(out_dir: str, threshold: float = 0.9, block: int = 2048) -> tuple[float, set]:
    """Every pair, blocked; returns (seconds, pairs)."""
    pf = pq.ParquetFile(os.path.join(out_dir, "manifest.parquet"))
    vals = []
    for b in pf.iter_batches(columns=["embedding"], batch_size=65536):
        col = b.column(0)
        vals.append(col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), DIM))
    x = np.concatenate(vals).astype(np.float32)
    t0 = time.monotonic()
    pairs = set()
    for a in range(0, len(x), block):
        s = x[a:a + block] @ x.T
        i, j = np.nonzero(s >= threshold)
        keep = j > i + a
        pairs.update(zip((i[keep] + a).tolist(), j[keep].tolist()))
    if pairs:
        _components(len(x), np.array(sorted(pairs)))
    return time.monotonic() - t0, pairs


def run_size(n: int, tmp: str, compare_naive: bool) -> dict:
    d = os.path.join(tmp, f"n{n}")
    t0 = time.monotonic()
    planted = generate(d, n)
    gen_s = time.monotonic() - t0
    load0 = os.getloadavg()[0]
    proc = subprocess.run(["nice", "-n", "10", sys.executable, __file__, "--child", d], capture_output=True,
                          text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"dedup child failed:\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    labels = groups_of(d)
    # the machine is shared: CPU seconds (user + sys) say what the run cost, wall time what it took
    row = {"n": n, "generate_s": round(gen_s, 1), "wall_s": round(res["wall_s"], 1),
           "cpu_s": round(res["cpu_s"], 1), "loadavg_start": round(load0, 1), "loadavg_end": round(res["loadavg_end"], 1),
           "peak_rss_gb": round(res["peak_rss_bytes"] / 1024**3, 3), **score(labels, planted),
           "k": res["stats"]["k"], "capped": res["stats"]["capped"], "visits": res["stats"]["visits"],
           "comparisons": res["stats"]["comparisons"], "timings": res["stats"]["timings"]}
    if compare_naive:
        naive_s, pairs = naive_all_pairs(d)
        found_all = sum(1 for a, b in pairs if labels[a] >= 0 and labels[a] == labels[b])
        row.update(naive_s=round(naive_s, 2), naive_pairs=len(pairs),
                   naive_pairs_found_by_dedup=found_all,
                   semantic_s=round(res["stats"]["timings"].get("kmeans_s", 0) + res["stats"]["timings"].get("assign_s", 0)
                                    + res["stats"]["timings"].get("pairs_s", 0), 2))
        row["time_ratio_naive_over_semantic"] = round(row["naive_s"] / max(1e-9, row["semantic_s"]), 2)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--sizes", default="20000,1000000")
    ap.add_argument("--tmp", default=None, help="scratch folder (needs ~3 GB per million)")
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="dedup-bench-", dir=args.tmp) as tmp:
        for n in sizes:
            rows.append(run_size(n, tmp, compare_naive=n <= 50_000))
            print(f"done n={n}", file=sys.stderr, flush=True)
    hdr = f"{'n':>9} {'wall s':>8} {'cpu s':>7} {'load':>5} {'peak RSS GB':>11} {'recall':>7} {'extra':>6} {'k':>5} {'capped':>7} {'naive s':>8} {'ratio':>6}"
    print(hdr)
    for r in rows:
        print(f"{r['n']:>9} {r['wall_s']:>8} {r['cpu_s']:>7} {r['loadavg_end']:>5} {r['peak_rss_gb']:>11} {r['recall']:>7.4f} "
              f"{str(r['extra_pairs']):>6} {r['k']:>5} {r['capped']:>7} {str(r.get('naive_s', '-')):>8} "
              f"{str(r.get('time_ratio_naive_over_semantic', '-')):>6}")
    out = os.path.join(ROOT, "benchmarks", "results", "dedup.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    doc = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
           "targets": {"wall_s_1m": 600, "peak_rss_gb_1m": 4.0, "recall": 0.95}, "results": rows}
    with open(out, "w") as fh:
        json.dump(doc, fh, indent=1)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
