"""Embedding and captioning throughput on this machine (CPU), without any download.

    python benchmarks/embed_caption_bench.py [--clips 24] [--requests 64]

* embed: clips/s of the embed stage (decode 8 uniformly spaced frames + image tower +
  pooling) for the built-in perceptual embedding, a tiny random-weight open_clip model
  and the ViT-B-32 architecture with random weights (pretrained=None) — the same compute
  as the real ViT-B-32, which is what throughput depends on.
* caption: the endpoint backend against the local OpenAI-compatible test server with a
  fixed 50 ms latency per request, at concurrency 1, 4 and 16: clips/s of the whole stage
  (frames sampled and JPEG-encoded for real) and requests/s of the backend alone on
  frames sampled beforehand, next to the ideal concurrency / latency.

Prints a table and writes benchmarks/results/embed_caption.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from curator.config import PipelineConfig  # noqa: E402
from curator.stage import RunContext  # noqa: E402
from curator.testing import tiny_models  # noqa: E402
from curator.testing.coded import clip_row, coded_video  # noqa: E402
from curator.testing.openai_server import FakeOpenAIServer  # noqa: E402


def clip_rows(n: int, frames: int = 100, size: tuple[int, int] = (320, 240)) -> list[dict]:
    base = coded_video(list(range(frames)), size[0], size[1])
    return [clip_row(f"bench-{i:05d}", base, frames, size[0], size[1]) for i in range(n)]


def stage_for(cls, over: list[str]):
    cfg = PipelineConfig.load(overrides=over)
    ctx = RunContext(config=cfg, input_uri="file:///in", output_uri="file:///out", run_id="bench", config_hash="b")
    name = cls.name
    return cls(getattr(cfg.stages, name), ctx)


def bench_embed(model_dir: str, model: str, n: int, batch: int) -> dict:
    from stages.embed import EmbedStage

    stage = stage_for(EmbedStage, [f"models.dir={model_dir}", f"stages.embed.model={model}",
                                   "stages.embed.device=cpu"])
    t0 = time.perf_counter()
    stage.ensure_setup()
    load_s = time.perf_counter() - t0
    stage.process(clip_rows(2))  # warm-up
    rows = clip_rows(n)
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        out = stage.process([dict(r) for r in rows[i:i + batch]])
        assert all(r["status"] == "ok" and r["embedding"] for r in out)
    el = time.perf_counter() - t0
    return {"model": model, "clips": n, "batch": batch, "seconds": round(el, 3),
            "clips_per_s": round(n / el, 2), "load_s": round(load_s, 2)}


def bench_caption(concurrency: int, n: int, latency_s: float) -> dict:
    """Two figures: the whole stage (sample 8 frames of each clip, JPEG, requests) and the
    endpoint backend alone on frames sampled beforehand (what concurrency buys)."""
    from curator.models import vlm
    from stages.caption import CaptionStage

    with FakeOpenAIServer(latency_s=latency_s, decode_images=False) as server:
        stage = stage_for(CaptionStage, ["stages.caption.backend=endpoint", f"stages.caption.endpoint.url={server.url}",
                                         f"stages.caption.endpoint.concurrency={concurrency}",
                                         "stages.caption.model=bench"])
        stage.ensure_setup()
        rows = clip_rows(n)
        t0 = time.perf_counter()
        out = stage.process(rows)  # one batch: the stage fans it out over `concurrency` requests
        stage_s = time.perf_counter() - t0
        assert all(r["caption"] for r in out)
        from curator.media.decode import sample_frames

        frames, idx = sample_frames(rows[0]["mp4"], 8, vlm.frame_size(stage.config, 320, 240), num_frames=100)
        jobs = [vlm.CaptionJob(f"j{i}", frames, idx) for i in range(n)]
        t0 = time.perf_counter()
        res = stage.backend.caption(jobs)
        backend_s = time.perf_counter() - t0
        assert all(r.ok for r in res)
        peak = server.max_in_flight
    return {"concurrency": concurrency, "requests": n, "latency_s": latency_s,
            "stage_seconds": round(stage_s, 3), "stage_clips_per_s": round(n / stage_s, 2),
            "backend_seconds": round(backend_s, 3), "backend_requests_per_s": round(n / backend_s, 2),
            "ideal_requests_per_s": round(concurrency / latency_s, 1), "peak_in_flight": peak}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=24, help="clips per embedding run")
    ap.add_argument("--requests", type=int, default=64, help="clips per caption run")
    ap.add_argument("--latency", type=float, default=0.05, help="server latency per request (s)")
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "embed_caption.json"))
    args = ap.parse_args()
    import torch

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    results: dict = {"machine": {"cpus": os.cpu_count(), "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
                                 "python": platform.python_version(),
                                 "torch": torch.__version__, "torch_threads": torch.get_num_threads()},
                     "embed": [], "caption": []}
    with tempfile.TemporaryDirectory() as d:
        tiny = tiny_models.build_open_clip(d)
        vitb = tiny_models.build_open_clip(d, arch="ViT-B-32")
        for model in ("perceptual", tiny, vitb):
            results["embed"].append(bench_embed(d, model, args.clips, 8))
    for c in (1, 4, 16):
        results["caption"].append(bench_caption(c, args.requests, args.latency))

    print(f"embedding, CPU ({os.cpu_count()} cores), clips of 100 frames at 320x240, 8 frames each, batch 8")
    print(f"  {'model':34s} {'clips/s':>8s} {'s':>7s} {'load s':>7s}")
    for r in results["embed"]:
        print(f"  {r['model']:34s} {r['clips_per_s']:8.2f} {r['seconds']:7.2f} {r['load_s']:7.2f}")
    print(f"captions, endpoint backend vs local server ({args.latency * 1000:.0f} ms per request), "
          f"{args.requests} clips, frames 448x336 JPEG")
    print(f"  {'concurrency':>11s} {'stage clips/s':>14s} {'backend req/s':>14s} {'ideal req/s':>12s} "
          f"{'peak in flight':>15s}")
    for r in results["caption"]:
        print(f"  {r['concurrency']:11d} {r['stage_clips_per_s']:14.2f} {r['backend_requests_per_s']:14.2f} "
              f"{r['ideal_requests_per_s']:12.1f} {r['peak_in_flight']:15d}")
    results["machine"]["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    print(f"load average (1 min) at start / end: {results['machine']['load_avg_1m_at_start']} / "
          f"{results['machine']['load_avg_1m_at_end']} on {os.cpu_count()} cores (a shared machine slows every figure)")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(results, fh, indent=1)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
