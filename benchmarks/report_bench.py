"""`curator report` cost against manifest size: time and peak memory stay bounded.

    python benchmarks/report_bench.py [--rows 20000 200000 1000000]

For each size, a synthetic manifest is written (in batches, by a separate process): one
video row per 8 clip rows, every clip with two filter checks, a caption, ~30 % in
duplicate groups of 2-4, 12 reject reasons. The report is then rendered in a fresh
process that records wall time and peak RSS (ru_maxrss). Thumbnails point at missing
files (placeholders), so the figures are the cost of the manifest passes and the page.
Prints a table; writes benchmarks/results/report.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

MAKE = r"""
import random, sys
import pyarrow as pa, pyarrow.parquet as pq
from curator.records import schema_for
extra = [("caption", pa.string()), ("dup_group", pa.string()), ("duplicate_of", pa.string()),
         ("similarity", pa.float32()), ("num_shots", pa.int32())]
schema = schema_for(extra)
path, rows = sys.argv[1], int(sys.argv[2])
rng = random.Random(0)
reasons = ["static", "shaky", "low_quality", "text_overlay", "too_dark", "flat"]
vreasons = ["empty_file", "not_a_video", "audio_only", "unreadable", "too_short", "no_shots_long_enough"]
writer = pq.ParquetWriter(path, schema, compression="zstd")
batch, n, v = [], 0, 0
while n < rows:
    vid = f"video-{v:08d}"; v += 1
    bad = rng.random() < 0.1
    batch.append({"kind": "video", "video_id": vid, "source_key": vid + ".mp4", "source_uri": "file:///nonexistent/" + vid,
                  "status": "error" if bad else "ok", "stage": "ingest" if bad else None,
                  "reason": rng.choice(vreasons) if bad else None, "detail": "synthetic" if bad else None,
                  "duration_s": 60.0, "codec": "h264", "fps": 25.0, "num_shots": 8, "num_clips": 0 if bad else 8})
    n += 1
    for i in range(0 if bad else 8):
        q, m = rng.random(), rng.random()
        status, stage, reason = "ok", None, None
        if q < 0.3:
            status, stage, reason = "rejected", "quality", rng.choice(reasons)
        group = f"{vid}-00000" if i < 3 and rng.random() < 0.3 else None
        if group and i > 0 and status == "ok":
            status, stage, reason = "rejected", "dedup", "duplicate"
        batch.append({"kind": "clip", "video_id": vid, "clip_id": f"{vid}-{i:05d}", "source_key": vid + ".mp4",
                      "source_uri": "file:///nonexistent/" + vid, "status": status, "stage": stage, "reason": reason,
                      "detail": "synthetic" if reason else None, "clip_index": i, "start_s": 7.5 * i,
                      "end_s": 7.5 * i + 7.5, "clip_duration_s": 7.5, "clip_width": 640, "clip_height": 360,
                      "clip_frames": 187, "clip_uri": None,
                      "checks": [{"stage": "quality", "metric": "quality_score", "value": q, "threshold": 0.3,
                                  "op": ">=", "passed": q >= 0.3},
                                 {"stage": "motion", "metric": "motion_score", "value": m, "threshold": 0.05,
                                  "op": ">=", "passed": m >= 0.05}],
                      "caption": "A synthetic caption of a clip that does not exist. " * 4,
                      "dup_group": group, "duplicate_of": group if group and i > 0 else None,
                      "similarity": 0.95 if group else None})
        n += 1
    if len(batch) >= 20000:
        writer.write_table(pa.Table.from_pylist(batch, schema=schema)); batch = []
if batch:
    writer.write_table(pa.Table.from_pylist(batch, schema=schema))
writer.close()
"""

MEASURE = r"""
import json, resource, sys, time
from curator.report import write_report
t = time.perf_counter()
out = write_report(sys.argv[1], sys.argv[2])
print(json.dumps({"s": time.perf_counter() - t,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[20_000, 200_000, 1_000_000])
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    results = []
    with tempfile.TemporaryDirectory(prefix="curator-report-bench-") as tmp:
        for rows in args.rows:
            run = Path(tmp) / f"run{rows}"
            run.mkdir()
            subprocess.run([sys.executable, "-c", MAKE, str(run / "manifest.parquet"), str(rows)], env=env, check=True)
            size_mb = (run / "manifest.parquet").stat().st_size / 2**20
            proc = subprocess.run([sys.executable, "-c", MEASURE, str(run), str(run / "report.html")], env=env,
                                  check=True, capture_output=True, text=True)
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            res.update(rows=rows, manifest_mb=round(size_mb, 1),
                       report_kb=round((run / "report.html").stat().st_size / 1024, 1),
                       rows_per_s=round(rows / res["s"]))
            res["s"], res["peak_rss_mb"] = round(res["s"], 2), round(res["peak_rss_mb"], 1)
            results.append(res)
            print(f"{rows:>10,} rows  manifest {res['manifest_mb']:6.1f} MB  report {res['s']:7.2f} s "
                  f"({res['rows_per_s']:>7,} rows/s)  peak RSS {res['peak_rss_mb']:7.1f} MB  "
                  f"html {res['report_kb']:7.1f} kB", flush=True)
    doc = {"benchmark": "report", "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
           "results": results}
    out = HERE / "results" / "report.json"
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"written: {out.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
