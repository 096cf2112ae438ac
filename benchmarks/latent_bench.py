"""Latent shards: encode throughput and bytes per sample, video against latents.

    python benchmarks/latent_bench.py [--footage DIR] [--passes 2] [--batch 4]

Curates real camera footage (the test media: bikes, the rotated phone clip, the VFR clip,
carphone, --repeat copies of each; with --footage also benchmarks/footage.py's 60 s 720p city
video) with the local runner, then writes the same tokenizer windows (default tokenizer profile: 24 fps, short
side 256, windows of up to 121 frames) three ways and times each shard phase:

  tokenizer         each window re-encoded as H.264 (libx264 crf 18, veryfast, 1 thread)
  latent/cv8x8x8    each window encoded by a tiny causal 8x8x8 tokenizer with 16 channels,
                    float16 — the latent shape and bytes of Cosmos CV8x8x8
  latent/dv8x16x16  a tiny 8x16x16 discrete tokenizer with 64,000 codes (uint16) — the
                    index shape and bytes of Cosmos DV8x16x16

and, on its own, the stand-in encoder's forward pass over batches of windows (no decode).

What it measures and what not: the bytes per sample are exact for the Cosmos shapes (a
latent's size depends only on its shape and dtype); the throughput is of curator's side
(decode, resample, crop, batch, encode with the stand-in, write), a bound on how fast the
pipeline feeds a real encoder, not the Cosmos network's own speed (its weights are not
downloaded here). With CUDA present the latent modes also run with the encoder on the GPU
(a "gpu" column). The CPU is shared with other sessions: figures are lower bounds.
Writes benchmarks/results/latent.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

MEDIA = ["bikes.mp4", "issue-134-rotate.mp4", "goldeneye-vfr-drop3.mp4", "carphone_pristine.mp4"]
CV, DV = "cosmos-tokenizer:CV8x8x8", "cosmos-tokenizer:DV8x16x16"


def curate(work: Path, footage: str | None, repeat: int) -> tuple[Path, list[str]]:
    from curator.config import PipelineConfig
    from curator.driver import execute
    from curator.pipeline import build
    from curator.runners.local import LocalRunner

    inp = work / "in"
    inp.mkdir()
    for i in range(repeat):  # copies: more windows per timing, the same bytes per window
        for name in MEDIA:
            shutil.copy(ROOT / "tests" / "data" / "media" / name, inp / f"r{i}-{name}")
    if footage:
        sys.path.insert(0, str(HERE))
        import footage as fset

        for p in fset.make(footage):
            if p.name == "city720.mp4":
                shutil.copy(p, inp / p.name)
    out = work / "out"
    base = ["run.runner=local", "stages.split.method=scenedetect", "stages.order=[]", "dedup.enabled=false",
            "index.enabled=false", f"models.dir={work / 'models'}"]
    cfg = PipelineConfig.load(None, base + ["shard.profile=tokenizer"], input=str(inp), output=str(out))
    execute(build(cfg), LocalRunner(), force=True)
    return out, base


def shard_pass(out: Path, base: list[str], profile: str, extra: list[str]) -> dict:
    """One shard phase from scratch (the shards folder removed first); wall time and counts."""
    from curator.config import PipelineConfig
    from curator.phases import PhaseState
    from curator.phases import shard as shard_phase
    from curator.rundir import RunDir
    from curator.runners.local import LocalRunner

    shutil.rmtree(out / "shards", ignore_errors=True)
    cfg = PipelineConfig.load(None, base + [f"shard.profile={profile}", *extra], output=str(out))
    t, cpu = time.perf_counter(), time.process_time()
    results = shard_phase.run(PhaseState(RunDir.of(str(out)), cfg, LocalRunner()))
    dt, cpu = time.perf_counter() - t, time.process_time() - cpu
    index = json.loads((out / "shards" / "pretrain" / profile / "index.json").read_text())
    assert not any(r.get("errors") for r in results), [r["errors"] for r in results if r.get("errors")]
    return {"wall_s": dt, "cpu_s": cpu, "windows": index["samples"], "windows_per_s": index["samples"] / dt,
            "index": index}


def per_sample(index: dict, member: str) -> dict:
    """Bytes per sample of one member kind, overall and per bucket."""
    total = sum((b.get("member_bytes") or {}).get(member, 0) for b in index["buckets"].values())
    n = sum(b["samples"] for b in index["buckets"].values())
    return {"mean": total / max(1, n), "samples": n,
            "buckets": {k: (b.get("member_bytes") or {}).get(member, 0) / max(1, b["samples"])
                        for k, b in sorted(index["buckets"].items())}}


def encoder_only(batch: int, frames: int, height: int, width: int, device: str, reps: int) -> dict:
    """The stand-in encoder's forward pass alone on random uint8 windows."""
    import numpy as np
    import torch

    from curator.testing import tiny_tokenizer

    enc = tiny_tokenizer.modules("continuous")[0].to(device)
    x8 = np.random.default_rng(0).integers(0, 255, (batch, frames, height, width, 3), dtype=np.uint8)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    enc = enc.to(dtype)
    best = float("inf")
    with torch.inference_mode():
        for _ in range(reps):
            t = time.perf_counter()
            x = torch.from_numpy(x8).to(device).permute(0, 4, 1, 2, 3).to(dtype).div_(127.5).sub_(1)
            enc(x)[0].cpu()
            best = min(best, time.perf_counter() - t)
    return {"batch": batch, "shape": [frames, height, width], "best_s": best, "windows_per_s": batch / best,
            "device": device, "dtype": str(dtype).removeprefix("torch.")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--footage", help="also curate benchmarks/footage.py's city720.mp4 (built into this folder, cached)")
    ap.add_argument("--passes", type=int, default=2, help="passes per mode; the best counts")
    ap.add_argument("--repeat", type=int, default=3, help="copies of the test media in the input")
    ap.add_argument("--batch", type=int, default=4, help="shard.latent.batch_size")
    ap.add_argument("--json", default=str(HERE / "results" / "latent.json"))
    args = ap.parse_args()

    from curator.media.nvcodec.api import has_cuda
    from curator.testing import tiny_tokenizer

    work = Path(tempfile.mkdtemp(prefix="curator-latent-bench-"))
    t0 = time.perf_counter()
    out, base = curate(work, args.footage, args.repeat)
    tiny_tokenizer.install(str(work / "models"), CV)
    tiny_tokenizer.install(str(work / "models"), DV)
    print(f"curated in {time.perf_counter() - t0:.0f} s ({work})", flush=True)

    gpu = has_cuda()
    lat = [f"shard.latent.batch_size={args.batch}"]
    modes = {"tokenizer": ("tokenizer", []),
             "latent/cv8x8x8": ("latent", lat + [f"shard.latent.model={CV}", "shard.latent.device=cpu"]),
             "latent/dv8x16x16": ("latent", lat + [f"shard.latent.model={DV}", "shard.latent.device=cpu"])}
    if gpu:
        modes["latent/cv8x8x8/gpu"] = ("latent", lat + [f"shard.latent.model={CV}", "shard.latent.device=cuda"])
        modes["latent/dv8x16x16/gpu"] = ("latent", lat + [f"shard.latent.model={DV}", "shard.latent.device=cuda"])
    load_before = os.getloadavg()
    best: dict[str, dict] = {}
    for p in range(args.passes):
        for name, (profile, extra) in modes.items():
            r = shard_pass(out, base, profile, extra)
            if name not in best or r["wall_s"] < best[name]["wall_s"]:
                best[name] = r
        print(f"  pass {p + 1}/{args.passes} done", flush=True)

    tok_index = best["tokenizer"]["index"]
    buckets = tok_index["buckets"]
    raw = sum(b["frames"] * b["height"] * b["width"] * 3 * b["samples"] for b in buckets.values()) / max(
        1, sum(b["samples"] for b in buckets.values()))
    sizes = {"h264_window": per_sample(tok_index, "mp4"),
             "cv8x8x8_float16": per_sample(best["latent/cv8x8x8"]["index"], "latent.npy"),
             "dv8x16x16_uint16": per_sample(best["latent/dv8x16x16"]["index"], "latent.npy"),
             "raw_rgb_uint8": {"mean": raw}}
    shapes = {k: {b: d.get("latent", {}).get("shape") for b, d in sorted(best[k]["index"]["buckets"].items())}
              for k in ("latent/cv8x8x8", "latent/dv8x16x16")}
    big = max(buckets.values(), key=lambda b: b["frames"] * b["height"] * b["width"])
    fwd = {"cpu": encoder_only(args.batch, big["frames"], big["height"], big["width"], "cpu", 3)}
    if gpu:
        fwd["cuda"] = encoder_only(args.batch, big["frames"], big["height"], big["width"], "cuda", 5)

    n = best["tokenizer"]["windows"]
    print(f"\n{n} windows in {len(buckets)} buckets (24 fps, short side 256, up to 121 frames)\n")
    print(f"{'mode':22s} {'windows/s':>10s} {'CPU s':>7s}" + ("" if gpu else "   (no CUDA here: no gpu rows)"))
    for name, r in best.items():
        print(f"{name:22s} {r['windows_per_s']:10.2f} {r['cpu_s']:7.1f}")
    for dev, r in fwd.items():
        print(f"{'encoder forward/' + dev:22s} {r['windows_per_s']:10.2f}   (stand-in only, {r['shape']}, batch {r['batch']})")
    print(f"\n{'bytes per sample':22s} {'mean':>12s} {'vs latent CV':>13s}")
    cv = sizes["cv8x8x8_float16"]["mean"]
    for name, s in sizes.items():
        print(f"{name:22s} {s['mean']:12,.0f} {s['mean'] / cv:12.2f}x")
    load = [round(x, 2) for x in load_before + os.getloadavg()]
    print(f"\nload average (1, 5, 15 min) before: {load[:3]}, after: {load[3:]} on {os.cpu_count()} CPUs")

    for r in best.values():
        r.pop("index")
    doc = {"note": "CPU shared with other sessions (see the load average): throughput figures are lower bounds. "
                   "Encoders are tiny causal stand-ins with the Cosmos shapes (curator.testing.tiny_tokenizer), so "
                   "windows/s measures curator's side (decode, resample, crop, batch, encode, write), not the Cosmos "
                   "network; bytes per latent sample are exact for the Cosmos CV8x8x8 / DV8x16x16 shapes.",
           "windows": n, "buckets": {k: {x: b[x] for x in ("width", "height", "frames", "samples")}
                                     for k, b in sorted(buckets.items())},
           "latent_shapes": shapes, "batch_size": args.batch, "passes": args.passes,
           "throughput": best, "encoder_forward": fwd, "bytes_per_sample": sizes,
           "gpu": ({k: best[k]["windows_per_s"] for k in best if k.endswith("/gpu")} if gpu
                   else None),
           "gpu_note": None if gpu else "no CUDA device on the machine that ran this",
           "footage": bool(args.footage), "repeat": args.repeat, "cpus": os.cpu_count(), "load_average_before_after": load,
           "machine": platform.machine(), "python": platform.python_version()}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(doc, indent=1))
    print(f"wrote {args.json}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
