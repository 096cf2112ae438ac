"""Pipeline throughput vs the floor and a naive script, on two sets of videos.

    python benchmarks/pipeline_bench.py [--sets footage,generated] [--videos 20] [--min-s 10] [--max-s 60]

Sets: `footage` (benchmarks/footage.py: real clips and 720p/1080p videos made from them,
with camera texture, motion and grain; H.264 and VP8, 10-90 s) and `generated` (N
multi-shot ffmpeg test-source videos, 320x240, 25 fps). For each set, in one run on the
same input:

  floor      one ffmpeg per video: one decode + one libx264 encode of the whole video
             (`ffmpeg -i IN -an -c:v libx264 -preset veryfast -crf 18 OUT`, all cores);
             nothing can cut a video into clips for less
  naive      one process: PySceneDetect (detect, AdaptiveDetector) then one ffmpeg call
             per clip (libx264, same crf/preset), like a shell script would
  local/*    curator's local runner (one process, sequential)
  ray/*      curator's Ray runner (embedded Ray, all cores)

as runner/detector/profile: scenedetect is the baseline's detector, transnetv2 the
default; "spine" does what the baseline does (split, transcode, shard), "full" is the
default pipeline (filters, embedding, dedup, index). Prints wall time, videos/s, the
ratio to the floor, speed relative to the naive script and per-stage time shares (from
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
sys.path.insert(0, str(HERE))

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def videos_in(inp: Path) -> list[Path]:
    return sorted(p for p in inp.iterdir() if p.suffix in (".mp4", ".webm") and p.is_file())


def floor(inp: Path, out: Path) -> int:
    """One decode + one encode of every input, with ffmpeg's own threading."""
    from curator.testing.synth import ffmpeg_exe

    out.mkdir(parents=True, exist_ok=True)
    for video in videos_in(inp):
        subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(video), "-an", "-c:v", "libx264",
                        "-preset", "veryfast", "-crf", "18", str(out / f"{video.stem}.mp4")], check=True)
    return len(videos_in(inp))


def naive(inp: Path, out: Path, min_s: float, max_s: float) -> int:
    """PySceneDetect then one ffmpeg process per clip; returns the clip count."""
    from scenedetect import AdaptiveDetector, detect

    from curator.testing.synth import ffmpeg_exe

    out.mkdir(parents=True, exist_ok=True)
    clips = 0
    for video in videos_in(inp):
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


MODES = ("floor,naive,local/scenedetect/spine,ray/scenedetect/spine,local/transnetv2/spine,"
         "ray/transnetv2/spine,ray/transnetv2/full")


def make_set(name: str, work: Path, args: argparse.Namespace) -> Path:
    if name == "footage":
        from footage import make

        cache = Path(args.cache) if args.cache else work / "footage"
        make(cache)
        return cache
    from curator.testing.synth import make_varied_set

    inp = work / name
    make_varied_set(str(inp), args.videos, min_s=args.min_s, max_s=args.max_s)
    return inp


def run_set(name: str, inp: Path, work: Path, modes: list[str]) -> dict:
    from curator.media.probe import probe

    vids = videos_in(inp)
    infos = [probe(str(p)) for p in vids]
    total_video_s = sum(i.duration_s for i in infos)
    print(f"\n[{name}] {len(vids)} videos, {total_video_s:.0f} s of video, "
          f"{min(i.height for i in infos)}-{max(i.height for i in infos)} px high ({inp})", flush=True)
    results: dict[str, dict] = {}
    for mode in modes:
        t = time.perf_counter()
        if mode in ("floor", "naive"):
            fn = floor if mode == "floor" else (lambda i, o: naive(i, o, 2.0, 60.0))
            clips = fn(inp, work / f"{name}-{mode}")
            results[mode] = {"wall_s": time.perf_counter() - t, "clips": clips, "shares": {}}
        else:
            runner, method, profile = mode.split("/")
            results[mode] = curated(inp, work / f"{name}-{mode.replace('/', '-')}", runner, method, profile)
        r = results[mode]
        r["videos_per_s"] = len(vids) / r["wall_s"]
        print(f"  {mode:28s} {r['wall_s']:8.1f} s  {r['videos_per_s']:.3f} videos/s  {r['clips']} clips", flush=True)
    base = results.get("naive", {}).get("wall_s")
    fl = results.get("floor", {}).get("wall_s")
    print()
    print(f"{'mode':28s} {'wall s':>8s} {'videos/s':>9s} {'x floor':>8s} {'vs naive':>9s} {'clips':>6s}  stage time shares")
    for mode, r in results.items():
        r["x_floor"] = r["wall_s"] / fl if fl else None
        r["speed_vs_naive"] = base / r["wall_s"] if base else None
        shares = ", ".join(f"{k} {v:.0%}" for k, v in r["shares"].items())
        xf = f"{r['x_floor']:8.2f}" if fl else f"{'':8s}"
        vn = f"{r['speed_vs_naive']:9.2f}" if base else f"{'':9s}"
        print(f"{mode:28s} {r['wall_s']:8.1f} {r['videos_per_s']:9.3f} {xf} {vn} {r['clips']:6d}  {shares}")
    return {"videos": len(vids), "video_seconds": round(total_video_s, 1), "results": results}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", default="footage,generated")
    ap.add_argument("--videos", type=int, default=20, help="size of the generated set")
    ap.add_argument("--min-s", type=float, default=10)
    ap.add_argument("--max-s", type=float, default=60)
    ap.add_argument("--modes", default=MODES)
    ap.add_argument("--cache", default=None, help="folder for the footage set (made once, reused)")
    ap.add_argument("--json", default=str(HERE / "results" / "pipeline.json"))
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="curator-bench-"))
    doc: dict = {"cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
                 "sets": {}}
    for name in args.sets.split(","):
        t0 = time.perf_counter()
        inp = make_set(name, work, args)
        print(f"[{name}] ready in {time.perf_counter() - t0:.0f} s")
        doc["sets"][name] = run_set(name, inp, work, args.modes.split(","))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(doc, indent=1))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
