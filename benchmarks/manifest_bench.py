"""Run-level phases over a large synthetic manifest: peak memory per phase.

    python benchmarks/manifest_bench.py                # 1,000,000 rows
    python benchmarks/manifest_bench.py --rows 100000  # quicker

Data: a run folder whose manifest has the pipeline's full row schema (default config's
stages: every filter column, `checks`, `timings`, `finished_at`, ...), one video row per
10 clip rows, float16 `embedding`s of the default embedder's size (perceptual, 512) with
topic structure and 5 % planted near-duplicates, 1 % exact duplicates (same
`clip_sha256`), uniform quality scores. Every clip row's `clip_uri` is one tiny real mp4
(64x64, 2 s) staged in the run folder, so shards hold real video.

Phases, each in a child process whose own peak RSS (VmHWM) is reported, through the
same entry points as the CLI (`curator.phases.<name>.run` over a RunDir, local runner):

- dedup:   exact + semantic dedup, decisions written back into the manifest;
- shard:   one pass over every row (plan, tally, card); the split takes clips with
           quality_score >= 0.99 (about 1 % of the kept clips: 1M samples of even a tiny mp4
           would be gigabytes of tars on a benchmark machine; the pass over the manifest,
           which is what grows with rows, is the same);
- summary: summary.json + metrics.json (one pass);
- report:  the HTML report (one pass for scores, histograms and thumbnails).

Prints a table and writes benchmarks/results/manifest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

PHASES = ("dedup", "shard", "summary", "report")
CLIPS_PER_VIDEO = 10


def _config(out_dir: str):
    from curator.config import PipelineConfig

    cfg = PipelineConfig.load(None, ["run.runner=local", "index.enabled=false"], input=out_dir, output=out_dir)
    cfg.shard.splits["pretrain"].where = ["quality_score >= 0.99"]
    return cfg


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def generate(out_dir: str, rows: int, seed: int = 0, batch: int = 22_000) -> dict:
    """Write a run folder (config.yaml, one staged mp4, manifest.parquet) with `rows` rows."""
    from curator.media.perceptual import DIM
    from curator.pipeline import build
    from curator.rundir import RunDir
    from curator.testing.synth import make_shots_video

    os.makedirs(out_dir, exist_ok=True)
    cfg = _config(out_dir)
    pipeline = build(cfg)
    schema = pipeline.schema
    rundir = RunDir.of(out_dir)
    rundir.write_config(cfg.model_dump(mode="json"), {"config_hash": cfg.content_hash(), "run_id": "bench",
                                                      "stages": [s.name for s in pipeline.specs]})
    clip = os.path.join(out_dir, "staging", "clips", "bench", "clip.mp4")
    make_shots_video(clip, [("testsrc2", 50)], width=64, height=64, fps=25)
    clip_uri = rundir.clip("bench", "clip")
    rng = np.random.default_rng(seed)
    topics = _unit(rng.standard_normal((max(2, int(np.sqrt(rows))), DIM)).astype(np.float32))
    per = CLIPS_PER_VIDEO + 1
    n_videos = max(1, rows // per)
    t0 = time.time()
    with rundir.manifest_writer(schema) as w:
        for va in range(0, n_videos, batch // per):
            vb = min(n_videos, va + batch // per)
            m = (vb - va) * CLIPS_PER_VIDEO
            x = _unit(np.sqrt(0.5) * topics[rng.integers(0, len(topics), m)]
                      + np.sqrt(0.5) * _unit(rng.standard_normal((m, DIM)).astype(np.float32)))
            nd = m // 20  # 5 % near-duplicates of another clip in the batch
            dst = rng.choice(m, nd, replace=False)
            x[dst] = _unit(x[rng.integers(0, m, nd)] + 0.25 * _unit(rng.standard_normal((nd, DIM)).astype(np.float32)))
            emb = x.astype(np.float16)
            q = rng.uniform(0.2, 1.0, m)
            sha = [f"{rng.integers(1 << 62):016x}" for _ in range(m)]
            for i in rng.choice(m, m // 100, replace=False):  # 1 % exact duplicates
                sha[i] = sha[(i + 1) % m]
            out, k = [], 0
            for v in range(va, vb):
                vid = f"v{v:08d}"
                src = f"file:///data/raw/{vid}.mp4"
                out.append({"kind": "video", "video_id": vid, "status": "ok", "source_uri": src,
                            "num_clips": CLIPS_PER_VIDEO, "width": 1280, "height": 720, "fps": 25.0,
                            "duration_s": 60.0, "timings": [("ingest", 0.1), ("split", 2.0), ("transcode", 3.0)],
                            "finished_at": [("ingest", t0 + v), ("split", t0 + v + 2), ("transcode", t0 + v + 5)]})
                for c in range(CLIPS_PER_VIDEO):
                    out.append({"kind": "clip", "video_id": vid, "clip_id": f"{vid}-{c:03d}", "clip_index": c,
                                "status": "ok", "source_uri": src, "start_s": 6.0 * c, "end_s": 6.0 * c + 2,
                                "clip_uri": clip_uri, "clip_sha256": sha[k], "clip_width": 64, "clip_height": 64,
                                "clip_fps": 25.0, "clip_frames": 50, "clip_duration_s": 2.0,
                                "width": 1280, "height": 720,
                                "quality_score": float(q[k]), "embedding": emb[k],
                                "embedding_model": "perceptual-dct-v1",
                                "checks": [{"stage": "quality", "metric": "quality_score", "value": float(q[k]),
                                            "threshold": 0.2, "op": ">=", "passed": True}],
                                "timings": [("motion", 0.05), ("quality", 0.2), ("embed", 0.1)],
                                "finished_at": [("motion", t0 + v + 6), ("quality", t0 + v + 6.5)]})
                    k += 1
            tbl = _table(out, schema, emb)
            for s in range(0, tbl.num_rows, 4096):
                w.write_table(tbl.slice(s, 4096))
    man = os.path.join(out_dir, "manifest.parquet")
    return {"rows": pq.ParquetFile(man).metadata.num_rows, "bytes": os.path.getsize(man), "dim": DIM,
            "generate_s": round(time.time() - t0, 1)}


def _table(rows: list[dict], schema: pa.Schema, emb: np.ndarray) -> pa.Table:
    """Rows to the manifest schema; the embedding column built from the float16 array
    (to_table on 1M Python float lists would dominate the benchmark's setup time)."""
    from curator.records import to_table

    have = [r.pop("embedding", None) is not None for r in rows]
    t = to_table(rows, schema)
    dim = emb.shape[1]
    offsets = np.zeros(len(rows) + 1, np.int32)
    offsets[1:] = np.cumsum(np.where(have, dim, 0))
    valid = pa.array(have)
    col = pa.ListArray.from_arrays(pa.array(offsets), pa.array(emb.reshape(-1)), mask=pa.compute.invert(valid))
    i = schema.get_field_index("embedding")
    return t.set_column(i, schema.field(i), col.cast(schema.field(i).type))


def child(phase: str, out_dir: str) -> None:
    """Run one phase over the run in out_dir; print wall, CPU, peak RSS and manifest opens as JSON."""
    from curator.phases import PhaseState
    from curator.rundir import RunDir, count_manifest_opens
    from curator.runners.local import LocalRunner

    cfg = _config(out_dir)
    state = PhaseState(RunDir.of(out_dir), cfg, LocalRunner(), stages=[])
    with open("/proc/self/statm") as fh:  # resident pages after imports and config: the phase's baseline
        base_mb = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    t0 = time.monotonic()
    with count_manifest_opens() as opens:
        if phase == "dedup":
            from curator.phases import dedup as ph

            res = ph.run(state)
            detail = {"removed": res.stats.removed, "groups": res.stats.groups, "k": res.stats.k}
        elif phase == "shard":
            from curator.phases import shard as ph

            res = ph.run(state)
            detail = {"shards": len(res), "samples": sum(r["samples"] for r in res),
                      "bytes": sum(r["bytes"] for r in res)}
        elif phase == "summary":
            from curator.phases import summary as ph

            s = ph.run(state)
            detail = {"clips": s.clips, "kept": s.clips_kept}
        else:
            from curator.phases import report as ph

            uri = ph.run(state)
            detail = {"html_bytes": os.path.getsize(uri.removeprefix("file://"))}
    wall = time.monotonic() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    # VmHWM: this process's own peak (ru_maxrss would include the parent's RSS at fork on Linux)
    with open("/proc/self/status") as fh:
        hwm_kb = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    print(json.dumps({"phase": phase, "wall_s": round(wall, 1), "cpu_s": round(ru.ru_utime + ru.ru_stime, 1),
                      "peak_rss_mb": round(hwm_kb / 1024, 1), "baseline_rss_mb": round(base_mb, 1), "manifest_opens": len(opens), **detail}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--phases", default=",".join(PHASES))
    ap.add_argument("--keep", help="generate into this folder and keep it")
    ap.add_argument("--child", nargs=2, metavar=("PHASE", "DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    tmp = args.keep or tempfile.mkdtemp(prefix="curator-manifest-bench-")
    try:
        out_dir = os.path.join(tmp, "run")
        print(f"generating {args.rows:,} rows in {out_dir} ...", flush=True)
        data = generate(out_dir, args.rows)
        print(f"manifest: {data['rows']:,} rows, {data['bytes'] / 1e6:,.0f} MB, embeddings float16 x {data['dim']} "
              f"({data['generate_s']} s)", flush=True)
        results = []
        for phase in args.phases.split(","):
            p = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", phase, out_dir],
                               capture_output=True, text=True, cwd=ROOT)
            if p.returncode:
                sys.stderr.write(p.stderr[-4000:])
                raise SystemExit(f"phase {phase} failed")
            r = json.loads(p.stdout.strip().splitlines()[-1])
            results.append(r)
            print(f"  {phase:8s} {r['wall_s']:8.1f} s  {r['peak_rss_mb']:8.0f} MB peak RSS "
                  f"({r['baseline_rss_mb']:.0f} MB after imports)  "
                  f"{r['manifest_opens']} manifest open(s)", flush=True)
        print()
        print(f"| phase | wall s | CPU s | peak RSS MB | RSS after imports MB | manifest opens |  ({data['rows']:,} rows)")
        print("|---|---|---|---|---|---|")
        for r in results:
            print(f"| {r['phase']} | {r['wall_s']} | {r['cpu_s']} | {r['peak_rss_mb']:.0f} | {r['baseline_rss_mb']:.0f} "
                  f"| {r['manifest_opens']} |")
        doc = {"rows": data["rows"], "manifest_mb": round(data["bytes"] / 1e6, 1), "embedding_dim": data["dim"],
               "phases": results, "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                              "loadavg": os.getloadavg()[0]},
               "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        os.makedirs(os.path.join(ROOT, "benchmarks", "results"), exist_ok=True)
        path = os.path.join(ROOT, "benchmarks", "results", "manifest.json")
        with open(path, "w") as fh:
            json.dump(doc, fh, indent=1)
        print(f"wrote {path}")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
