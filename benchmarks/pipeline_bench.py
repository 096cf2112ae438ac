"""Pipeline throughput vs a naive sequential baseline, on a generated set.

    python benchmarks/pipeline_bench.py [--videos 20] [--min-s 10] [--max-s 60]

Generates N multi-shot videos (ffmpeg test sources, 320x240, 25 fps), then measures in
one run, on the same input:

  naive      one process: PySceneDetect (detect, AdaptiveDetector) then one ffmpeg call
             per clip (libx264, same crf/preset), like a shell script would
  local/*    curator's local runner (one process, sequential)
  ray/*      curator's Ray runner (embedded Ray, all cores)

as runner/detector/profile: scenedetect is the baseline's detector, transnetv2 the
default; "spine" does what the baseline does (split, transcode, shard), "full" is the
default pipeline (filters, embedding, dedup, index). Prints videos/s, the ratio to the baseline and per-stage time shares (from
the manifest's per-stage timings); writes benchmarks/results/pipeline.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def naive(inp: Path, out: Path, min_s: float, max_s: float) -> int:
    """PySceneDetect then one ffmpeg process per clip; returns the clip count."""
    from scenedetect import AdaptiveDetector, detect

    from curator.testing.synth import ffmpeg_exe

    out.mkdir(parents=True, exist_ok=True)
    clips = 0
    for video in sorted(inp.glob("*.mp4")):
        scenes = [(a.seconds, b.seconds) for a, b in detect(str(video), AdaptiveDetector())]
        if not scenes:  # no cut found: the whole video is one shot
            from curator.media.probe import probe

            scenes = [(0.0, probe(str(video)).duration_s)]
        for i, (start, end) in enumerate(scenes):
            if end - start < min_s:
                continue
            end = min(end, start + max_s)
            subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-ss", f"{start:.3f}", "-to", f"{end:.3f}",
                            "-i", str(video), "-an", "-c:v", "libx264", "-crf", "18", "-preset", "veryfast",
                            "-pix_fmt", "yuv420p", str(out / f"{video.stem}-{i:04d}.mp4")], check=True)
            clips += 1
    return clips


#: "spine": what the naive baseline does too (split + transcode + shards); "full": the
#: default pipeline (filters, embedding, dedup, index; stages without weights are skipped)
PROFILES = {
    "spine": ["stages.order=[]", "dedup.enabled=false", "index.enabled=false"],
    "full": [],
}


def curated(inp: Path, out: Path, runner: str, method: str, profile: str) -> dict:
    from curator.config import PipelineConfig
    from curator.driver import execute
    from curator.pipeline import build
    from curator.runners import make_runner

    cfg = PipelineConfig.load(None, [f"run.runner={runner}", f"stages.split.method={method}", *PROFILES[profile]],
                              input=str(inp), output=str(out))
    t0 = time.perf_counter()
    summary = execute(build(cfg), make_runner(cfg), force=True)
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "clips": summary.clips_kept, "clips_cut": summary.clips, "rejects": summary.rejects,
            "shares": stage_shares(out)}


def stage_shares(out: Path) -> dict[str, float]:
    import pyarrow.parquet as pq

    totals: dict[str, float] = {}
    for row in pq.read_table(out / "manifest.parquet", columns=["timings"]).to_pylist():
        for k, v in row["timings"] or []:
            totals[k] = totals.get(k, 0.0) + v
    s = sum(totals.values()) or 1.0
    return {k: round(v / s, 3) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=20)
    ap.add_argument("--min-s", type=float, default=10)
    ap.add_argument("--max-s", type=float, default=60)
    ap.add_argument("--modes", default="naive,local/scenedetect/spine,ray/scenedetect/spine,"
                                       "ray/transnetv2/spine,ray/transnetv2/full")
    ap.add_argument("--json", default=str(HERE / "results" / "pipeline.json"))
    args = ap.parse_args()

    from curator.testing.synth import make_varied_set

    work = Path(tempfile.mkdtemp(prefix="curator-bench-"))
    inp = work / "in"
    t0 = time.perf_counter()
    made = make_varied_set(str(inp), args.videos, min_s=args.min_s, max_s=args.max_s)
    gen_s = time.perf_counter() - t0
    total_video_s = 0.0
    from curator.media.probe import probe

    for path, _ in made:
        total_video_s += probe(path).duration_s
    print(f"generated {len(made)} videos, {total_video_s:.0f} s of video, in {gen_s:.0f} s ({work})")

    results: dict[str, dict] = {}
    for mode in args.modes.split(","):
        t = time.perf_counter()
        if mode == "naive":
            clips = naive(inp, work / "naive", 2.0, 60.0)
            results[mode] = {"wall_s": time.perf_counter() - t, "clips": clips, "shares": {}}
        else:
            runner, method, profile = mode.split("/")
            results[mode] = curated(inp, work / mode.replace("/", "-"), runner, method, profile)
        r = results[mode]
        r["videos_per_s"] = len(made) / r["wall_s"]
        print(f"  {mode:28s} {r['wall_s']:8.1f} s  {r['videos_per_s']:.3f} videos/s  {r['clips']} clips", flush=True)

    base = results.get("naive", {}).get("videos_per_s")
    print()
    print(f"{'mode':28s} {'videos/s':>9s} {'vs naive':>9s} {'clips':>6s}  stage time shares")
    for mode, r in results.items():
        ratio = r["videos_per_s"] / base if base else float("nan")
        r["ratio_vs_naive"] = ratio
        shares = ", ".join(f"{k} {v:.0%}" for k, v in r["shares"].items())
        print(f"{mode:28s} {r['videos_per_s']:9.3f} {ratio:9.2f} {r['clips']:6d}  {shares}")
    doc = {"videos": len(made), "video_seconds": round(total_video_s, 1), "cpus": os.cpu_count(),
           "machine": platform.machine(), "python": platform.python_version(), "results": results}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(doc, indent=1))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
