"""`curator plan`'s estimate against the run it plans, on the realistic-footage set.

    python benchmarks/plan_bench.py [--set footage|generated] [--cache DIR] [--runner local|ray]
                                    [--sample-videos K] [--set-key KEY=VALUE ...]

Runs `curator plan -i SET --json` and then `curator run -i SET -o OUT` with the same config
and runner, both through the real binary, and compares the estimate with what the run
measured: wall time (process start to exit), stage busy CPU-hours, clips. Sets:
`footage` (benchmarks/footage.py: 6 videos, 210 s of real and 720p/1080p camera-like
footage, H.264 and VP8) and `generated` (8 synthetic multi-shot videos of 3 to 17 s).
The default config is the CPU spine with the two cheapest filters (PySceneDetect split,
motion, quality), so the whole benchmark takes a few minutes on 2 cores. Prints a table
and writes benchmarks/results/plan.json, with the machine's load average before and after:
on a shared machine both the trial and the run are slowed by whatever else runs, so a
ratio far from 1 there says more about the neighbours than about the model.
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
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

DEFAULT_KEYS = ["stages.split.method=scenedetect", "stages.order=[motion,quality]"]


def make_set(name: str, work: Path, cache: str | None) -> Path:
    if name == "footage":
        from footage import make

        folder = Path(cache) if cache else work / "footage"
        make(folder)
        return folder
    from curator.testing.synth import SOURCES, make_shots_video

    folder = work / "generated"
    for i, seconds in enumerate([3, 5, 7, 9, 11, 13, 15, 17]):
        frames, shots, j = seconds * 25, [], 0
        while frames > 0:
            n = frames if frames < 125 else 75
            shots.append((SOURCES[(i + j) % 7], n))
            frames -= n
            j += 1
        make_shots_video(str(folder / f"v{i}.mp4"), shots, width=320, height=240)
    return folder


def curator(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "curator", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        sys.exit(f"curator {' '.join(args[:1])} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc, wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", dest="which", default="footage", choices=["footage", "generated"])
    ap.add_argument("--cache", default=None, help="folder of the footage set (made once, reused)")
    ap.add_argument("--runner", default="local", choices=["local", "ray"])
    ap.add_argument("--sample-videos", type=int, default=2)
    ap.add_argument("--set-key", action="append", default=None, metavar="KEY=VALUE",
                    help=f"config overrides (default: {' '.join(DEFAULT_KEYS)})")
    ap.add_argument("--json", default=str(HERE / "results" / "plan.json"))
    args = ap.parse_args()

    keys = args.set_key if args.set_key is not None else DEFAULT_KEYS
    config = ["--runner", args.runner, *[a for k in keys for a in ("--set", k)]]
    work = Path(tempfile.mkdtemp(prefix="curator-plan-bench-"))
    inp = make_set(args.which, work, args.cache)
    load_before = os.getloadavg()

    plan_json = work / "plan.json"
    proc, plan_wall = curator("plan", "-i", str(inp), *config, "--sample-videos", str(args.sample_videos),
                              "--json", str(plan_json))
    print(proc.stdout)
    plan = json.loads(plan_json.read_text())
    out = work / "out"
    _, run_wall = curator("run", "-i", str(inp), "-o", str(out), *config)
    load_after = os.getloadavg()
    metrics = json.loads((out / "metrics.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    cpus = {s["name"]: s["num_cpus"] for s in plan["stages"] if s["runs"]}
    run_cpu_h = (sum(v["busy_s"] * cpus.get(k, 1.0) for k, v in metrics["stages"].items())
                 + sum((metrics.get("phases_s") or {}).values())) / 3600
    est = plan["estimate"]
    rows = [
        ("wall s", est["wall_s"], run_wall),
        ("stream s", est["parts"]["stream_s"], metrics["stream_s"]),
        ("phases s", est["parts"]["phases_s"], sum((metrics.get("phases_s") or {}).values())),
        ("CPU-h (busy x CPUs)", est["cpu_hours"], run_cpu_h),
        ("clips", est["clips"], summary["clips"]),
        ("clips kept", est["clips_kept"], summary["clips_kept"]),
    ]
    print(f"{'':22s} {'plan':>10s} {'run':>10s} {'plan/run':>9s}")
    for name, a, b in rows:
        print(f"{name:22s} {a:10.4g} {b:10.4g} {a / b if b else float('nan'):9.2f}")
    print(f"`curator plan` itself took {plan_wall:.1f} s; load average before {load_before[0]:.1f}, "
          f"after {load_after[0]:.1f} on {os.cpu_count()} CPUs")
    doc = {
        "set": args.which, "videos": plan["inputs"]["videos"], "video_seconds": round(plan["inputs"]["duration_s"], 1),
        "runner": args.runner, "config": keys, "sample_videos": args.sample_videos,
        "cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
        "plan_wall_s": round(plan_wall, 2), "estimate": est, "trial": plan["trial"],
        "run": {"wall_s": round(run_wall, 2), "metrics_wall_s": metrics["wall_s"], "stream_s": metrics["stream_s"],
                "phases_s": metrics.get("phases_s"), "cpu_hours": round(run_cpu_h, 5), "clips": summary["clips"],
                "clips_kept": summary["clips_kept"]},
        "ratio_wall": round(est["wall_s"] / run_wall, 3),
        "load_avg_before": [round(x, 2) for x in load_before], "load_avg_after": [round(x, 2) for x in load_after],
        "note": "plan, then the run, one after the other on a 2-core machine shared with other engineers' tests "
                "and benchmarks (see the load averages): both wall figures are noisy and the ratio moves with "
                "the neighbours' load",
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(doc, indent=1))
    print(f"wall: estimate {est['wall_s']:.1f} s, run {run_wall:.1f} s, ratio {doc['ratio_wall']:.2f}")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
