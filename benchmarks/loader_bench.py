"""Loader throughput vs plain PyAV decoding of the same clips, in one run.

    python benchmarks/loader_bench.py [--videos 6] [--passes 3] [--workers 0,2]

Generates multi-shot videos (ffmpeg test sources, 640x360, 25 fps), curates them with
the local runner into tokenizer shards (default tokenizer profile: 24 fps, short side
256, windows of up to 121 frames), then measures on the same windows:

  pyav            each window's mp4 from a local file, decoded with PyAV (threads AUTO)
                  to RGB frames stacked in one uint8 array: the baseline
  loader          ShardDataset over the shards (ranged reads from the tars, index
                  lookups, json, tensor [T, C, H, W] uint8), one process
  loader/batched  the same with a shuffle buffer of 16 and bucket batches of 4
  loader/float    normalised float32 tensors
  loader/wN       through Loader(num_workers=N)

Each mode runs --passes times (modes interleaved); the best pass counts. Prints clips/s
and the ratio to the baseline (target >= 0.8) and the load average (on a shared machine
the ratio is the figure to read); writes benchmarks/results/loader.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def make_shards(work: Path, videos: int) -> Path:
    from curator.config import PipelineConfig
    from curator.driver import execute
    from curator.pipeline import build
    from curator.runners.local import LocalRunner
    from curator.testing.synth import make_varied_set

    inp = work / "in"
    make_varied_set(str(inp), videos, min_s=10, max_s=20, width=640, height=360)
    out = work / "out"
    # the spine only: the default filters and dedup would reject most synthetic patterns
    cfg = PipelineConfig.load(None, ["run.runner=local", "stages.split.method=scenedetect", "shard.profile=tokenizer",
                                     "stages.order=[]", "dedup.enabled=false", "index.enabled=false"],
                              input=str(inp), output=str(out))
    execute(build(cfg), LocalRunner(), force=True)
    return out


def extract(out: Path, dest: Path) -> list[Path]:
    """The windows' mp4s as local files, in index order (the baseline's input)."""
    dest.mkdir(parents=True, exist_ok=True)
    files = []
    for tar_path in sorted((out / "shards" / "pretrain" / "tokenizer").rglob("*.tar")):
        with tarfile.open(tar_path) as tar:
            for m in tar.getmembers():
                if m.name.endswith(".mp4"):
                    p = dest / m.name
                    p.write_bytes(tar.extractfile(m).read())
                    files.append(p)
    return files


def pyav_pass(files: list[Path]) -> tuple[int, int]:
    import av
    import numpy as np

    frames = 0
    for path in files:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            arr = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(s)])
        frames += arr.shape[0]
    return len(files), frames


def loader_pass(out: Path, workers: int = 0, **kw) -> tuple[int, int]:
    from curator.loader import Loader, ShardDataset

    ds = ShardDataset(str(out), split="pretrain", profile="tokenizer", **kw)
    clips = frames = 0
    for item in Loader(ds, num_workers=workers):
        v = item["video"]
        if v.dim() == 5:
            clips += v.shape[0]
            frames += v.shape[0] * v.shape[1]
        else:
            clips += 1
            frames += v.shape[0]
    return clips, frames


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=6)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--workers", default="2", help="comma-separated DataLoader worker counts to add")
    ap.add_argument("--json", default=str(HERE / "results" / "loader.json"))
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="curator-loader-bench-"))
    t0 = time.perf_counter()
    out = make_shards(work, args.videos)
    files = extract(out, work / "windows")
    index = json.loads((out / "shards" / "pretrain" / "tokenizer" / "index.json").read_text())
    print(f"{len(files)} tokenizer windows in {len(index['shards'])} shards, {len(index['buckets'])} buckets "
          f"({index['bytes'] / 1e6:.1f} MB), made in {time.perf_counter() - t0:.0f} s ({work})")

    modes = {
        "pyav": lambda: pyav_pass(files),
        "loader": lambda: loader_pass(out),
        "loader/batched": lambda: loader_pass(out, batch_size=4, shuffle_buffer=16, seed=0),
        "loader/float": lambda: loader_pass(out, decode="float"),
    }
    for w in [int(x) for x in args.workers.split(",") if x.strip()]:
        if w > 0:
            modes[f"loader/w{w}"] = (lambda w=w: loader_pass(out, workers=w))
    best: dict[str, dict] = {}
    load_before = os.getloadavg()
    for p in range(args.passes):
        for name, fn in modes.items():
            t, cpu = time.perf_counter(), time.process_time()
            clips, frames = fn()
            dt, cpu = time.perf_counter() - t, time.process_time() - cpu
            assert clips == len(files), (name, clips, len(files))
            r = best.get(name)
            if r is None or dt < r["wall_s"]:
                best[name] = {"wall_s": dt, "cpu_s_this_process": cpu, "clips": clips, "frames": frames}
        print(f"  pass {p + 1}/{args.passes} done", flush=True)

    base = best["pyav"]["wall_s"]
    print()
    print(f"{'mode':16s} {'clips/s':>8s} {'frames/s':>9s} {'vs pyav':>8s}")
    for name, r in best.items():
        r["clips_per_s"] = r["clips"] / r["wall_s"]
        r["frames_per_s"] = r["frames"] / r["wall_s"]
        r["ratio_vs_pyav"] = base / r["wall_s"]
        print(f"{name:16s} {r['clips_per_s']:8.2f} {r['frames_per_s']:9.0f} {r['ratio_vs_pyav']:8.2f}")
    load = [round(x, 2) for x in load_before + os.getloadavg()]
    print(f"load average (1, 5, 15 min) before: {load[:3]}, after: {load[3:]} on {os.cpu_count()} CPUs")
    doc = {"windows": len(files), "shards": len(index["shards"]), "buckets": index["buckets"],
           "passes": args.passes, "cpus": os.cpu_count(), "load_average_before_after": load,
           "machine": platform.machine(),
           "python": platform.python_version(), "target_ratio": 0.8, "results": best}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(doc, indent=1))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
