"""Transcode and shot-detection throughput on one GPU: the Cosmos paper's Table 2, here.

    python benchmarks/gpu_bench.py [--videos 16] [--seconds 20] [--height 1080]   # make bench-gpu

Generates its own input with ffmpeg (imageio-ffmpeg): H.264 videos with gradients, a
blurred game-of-life texture that moves, and a little temporal noise. Each video is cut
into 5 s clips (the transcode stage's job after the split), and every row transcodes all
clips of all videos with crf 18 / preset veryfast (libx264) or 10 Mbit/s (NVENC):

  libx264             PyAV decode + libx264, one process per core (curator's CPU path)
  nvdec+libx264       NVDEC decode + GPU resize, libx264 on every core (A100/H100/H200)
  nvenc               NVDEC + NVENC, frames never leave the GPU (skipped where there is
                      no NVENC, with the probe's reason)

and TransNetV2 frames/s (decode to 48x27 + model) on the GPU (NVDEC frames) and on the
CPU. Prints a table and writes benchmarks/results/gpu.json. Without CUDA it measures the
CPU rows only, says so, and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

CLIP_S = 5


def make_input(folder: Path, n: int, seconds: float, height: int, fps: int = 25) -> list[str]:
    """n videos, made in parallel (one ffmpeg per core)."""
    from concurrent.futures import ThreadPoolExecutor

    from curator.testing.synth import run_ffmpeg

    width = (height * 16 // 9) // 2 * 2

    def one(i: int) -> str:
        path = folder / f"v{i:03d}.mp4"
        graph = (f"gradients=s={width}x{height}:r={fps}:speed=0.015:seed={i}[g];"
                 f"life=s={width // 8}x{height // 8}:r={fps}:ratio=0.3:seed={i}:mold=10:life_color=#c08040:"
                 f"death_color=#203050:mold_color=#607020,scale={width}:{height}:flags=bicubic,gblur=sigma=3[c];"
                 "[g][c]blend=all_mode=softlight,noise=c0s=4:c0f=t,format=yuv420p")
        run_ffmpeg(["-filter_complex", graph, "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast",
                    "-crf", "20", "-g", str(2 * fps), "-threads", "1", str(path)])
        return str(path)

    with ThreadPoolExecutor(os.cpu_count() or 1) as ex:
        return list(ex.map(one, range(n)))


def spans_of(path: str) -> list:
    from curator.media.encode import Span
    from curator.media.probe import probe

    info = probe(path)
    per = int(round(CLIP_S * info.fps))
    n = info.num_frames
    return [Span(s, min(n, s + per), s / info.fps, min(n, s + per) / info.fps) for s in range(0, n, per)]


# ---------------------------------------------------------------- worker side
def _warm(mode: str) -> None:
    import torch

    torch.set_num_threads(1)
    if mode != "cpu":
        from curator.media import nvcodec

        nvcodec.probe()
    time.sleep(0.5)  # keeps this worker busy so the others get a warm-up task too


def _job(args: tuple[str, str]) -> tuple[int, int]:
    """Transcode one video's clips; returns (clips ok, clips failed)."""
    path, mode = args
    from curator.media import encode, nvcodec

    spans = spans_of(path)
    if mode == "cpu":
        clips = encode.transcode_spans(path, spans, crf=18, preset="veryfast")
    else:
        clips = nvcodec.transcode_spans(path, spans, encoder=mode, crf=18, preset="veryfast", bitrate_mbps=10.0)
    ok = sum(c.error is None for c in clips)
    return ok, len(clips) - ok


def transcode_row(videos: list[str], mode: str, workers: int) -> dict:
    import multiprocessing as mp

    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as ex:
        list(ex.map(_warm, [mode] * workers))  # CUDA contexts and codec probes before the clock
        t0 = time.perf_counter()
        results = list(ex.map(_job, [(v, mode) for v in videos]))
        dt = time.perf_counter() - t0
    ok, failed = sum(r[0] for r in results), sum(r[1] for r in results)
    return {"videos": len(videos), "clips": ok, "failed": failed, "seconds": round(dt, 3),
            "videos_per_s": round(len(videos) / dt, 4), "workers": workers}


# ------------------------------------------------------------------ TransNetV2
def transnet_row(video: str, device: str, max_frames: int) -> dict:
    import itertools

    import torch

    from curator.models import transnetv2

    model = transnetv2.load(device)
    if device == "cuda":
        from curator.media import nvcodec

        frames = (f for _, _, f in nvcodec.iter_model_frames(video, transnetv2.SIZE))
    else:
        from curator.media.decode import iter_frames

        frames = (f.to_ndarray(format="rgb24", width=transnetv2.SIZE[0], height=transnetv2.SIZE[1],
                               interpolation="AREA") for _, _, f in iter_frames(video))
    frames = itertools.islice(frames, max_frames)
    t0 = time.perf_counter()
    n = len(transnetv2.predict(model, frames))
    if device == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return {"device": device, "frames": n, "seconds": round(dt, 3), "frames_per_s": round(n / dt, 1)}


# ---------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each generated video")
    ap.add_argument("--height", type=int, default=1080, help="1080 or 720 (16:9)")
    ap.add_argument("--nvenc-workers", type=int, default=4, help="processes feeding NVENC")
    ap.add_argument("--transnet-frames", type=int, default=2000, help="frames per TransNetV2 row at most")
    ap.add_argument("--out", default=str(HERE / "results" / "gpu.json"))
    args = ap.parse_args()

    import torch

    from curator.media import nvcodec

    cores = os.cpu_count() or 1
    caps = nvcodec.probe()
    gpu_name = torch.cuda.get_device_name(0) if caps.cuda else None
    rows: dict[str, dict] = {}
    transnet: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="curator-gpu-bench-") as tmp:
        t0 = time.perf_counter()
        videos = make_input(Path(tmp), args.videos, args.seconds, args.height)
        print(f"input: {args.videos} videos x {args.seconds:g} s at {args.height}p "
              f"({time.perf_counter() - t0:.1f} s to generate); {cores} cores; GPU: {gpu_name or 'none'}")
        rows["libx264"] = transcode_row(videos, "cpu", cores)
        if caps.nvdec:
            rows["nvdec+libx264"] = transcode_row(videos, "nvdec", cores)
        else:
            rows["nvdec+libx264"] = {"skipped": caps.reason}
        if caps.nvdec and caps.nvenc:
            rows["nvenc"] = transcode_row(videos, "nvenc", args.nvenc_workers)
        else:
            rows["nvenc"] = {"skipped": caps.reason or "no NVENC"}
        if caps.cuda and caps.nvdec:
            transnet.append(transnet_row(videos[0], "cuda", args.transnet_frames))
        torch.set_num_threads(cores)
        transnet.append(transnet_row(videos[0], "cpu", args.transnet_frames))

    base = rows["libx264"]["videos_per_s"]
    print(f"\n{'transcode':<16}{'videos/s':>10}{'x libx264':>11}{'clips':>7}{'failed':>8}{'seconds':>9}")
    for name, r in rows.items():
        if "skipped" in r:
            print(f"{name:<16}{'skipped: ' + r['skipped']}")
            continue
        r["x_libx264"] = round(r["videos_per_s"] / base, 2) if base else None
        print(f"{name:<16}{r['videos_per_s']:>10.4f}{r['x_libx264']:>11.2f}{r['clips']:>7}{r['failed']:>8}"
              f"{r['seconds']:>9.1f}")
    print(f"\n{'TransNetV2':<16}{'frames/s':>10}{'frames':>8}")
    for r in transnet:
        print(f"{r['device']:<16}{r['frames_per_s']:>10.1f}{r['frames']:>8}")
    if not caps.cuda:
        print("\nno CUDA: measured CPU rows only")
    elif caps.reason:
        print(f"\nGPU probe: {caps.reason}")

    result = {
        "machine": {"cpu_cores": cores, "gpu": gpu_name, "platform": platform.platform(),
                    "probe": {"cuda": caps.cuda, "nvdec": caps.nvdec, "nvenc": caps.nvenc, "reason": caps.reason}},
        "input": {"videos": args.videos, "seconds": args.seconds, "height": args.height, "clip_s": CLIP_S},
        "transcode": rows, "transnetv2": transnet,
        "reference": "Cosmos paper Table 2 (videos/s): libx264 on H100 CPU cores 0.0574, h264_nvenc on L40S "
                     "0.0674, batched 0.1026, PyNvVideoCodec + ffmpeg 0.3702",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
