"""Model stages: throughput per stage and batch size, with tiny random-weight models.

    python benchmarks/models_bench.py [--clips 8] [--frames 64] [--device cpu]

Each row runs one model stage's real code path (decode, preprocessing, batching, the
model's forward pass, the columns) over the same coded clips (160x120, ``--frames``
frames at 25 fps) and reports clips per second after a warm-up batch:

  embed/open_clip       tiny open_clip (ViT, 32 px), 8 frames per clip, batched frames
  embed/hf-video        tiny X-CLIP (transformers XCLIPModel), its 4 frames per clip
  aesthetic             tiny open_clip + the LAION head layout, 4 frames per clip
  dover                 tiny DOVER-shaped two-view model on DOVER's real views
  caption/endpoint      the local OpenAI-compatible server (50 ms per answer), windows of 32 frames
  caption/transformers  tiny LLaVA, windows of 32 frames, generate batch 8
  caption+enhance       the endpoint captions rewritten by a tiny Llama (transformers)

What it measures and what not: the models are tiny stand-ins (no weights are downloaded), so
the figures are curator's side of each stage — decoding, view building, batching, moving
tensors — a bound on how fast the stage can feed a real model, not the real models' speed.
Rows with batch 1 against batch N show what batching buys on this machine. The CPU is
shared with other sessions: figures are lower bounds. Writes benchmarks/results/models.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))


def make_rows(n: int, frames: int) -> list[dict[str, Any]]:
    from curator.testing import coded

    rows = []
    for k in range(n):
        data = coded.coded_video([(k * 1000 + i) % 65536 for i in range(frames)], 160, 120)
        rows.append(coded.clip_row(f"v{k}-{k:05d}", data, frames, 160, 120))
    return rows


def stage_of(cls: Any, name: str, over: list[str]) -> Any:
    from curator.config import PipelineConfig
    from curator.stage import RunContext

    cfg = PipelineConfig.load(None, over)
    st = cls(getattr(cfg.stages, name), RunContext(cfg, "file:///in", "file:///out", "bench", "h"))
    missing = st.requirements()
    if missing:
        raise RuntimeError(f"{name}: {[m.describe() for m in missing]}")
    return st


def timed(st: Any, rows: list[dict[str, Any]], batch: int) -> float:
    st.process([dict(r) for r in rows[:batch]])  # warm-up: setup, first forward
    t0 = time.perf_counter()
    for i in range(0, len(rows), batch):
        out = st.process([dict(r) for r in rows[i:i + batch]])
        bad = [r for r in out if r.get("status") == "error"]
        if bad:
            raise RuntimeError(f"{st.name}: {bad[0].get('detail')}")
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(HERE / "results" / "models.json"))
    args = ap.parse_args()

    import torch

    from curator.testing import tiny_models
    from curator.testing.openai_server import FakeOpenAIServer

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    work = Path(tempfile.mkdtemp(prefix="models-bench-"))
    md = str(work / "models")
    os.environ["HF_HUB_CACHE"] = str(work / "hub")  # never a real cache
    clip_name = tiny_models.build_open_clip(md)
    xclip = tiny_models.build_xclip(md)
    vlm_name = tiny_models.build_vlm(md)
    llm = tiny_models.build_text_llm(md)
    head_dir = work / "models" / "aesthetic"
    head_dir.mkdir(parents=True)
    from stages.quality import AestheticHead

    torch.manual_seed(0)
    torch.save(AestheticHead.build(32).state_dict(), head_dir / "head.pth")
    sys.path.insert(0, str(ROOT / "tests" / "unit"))
    from test_dover import _tiny_dover_script  # the DOVER-shaped stand-in the tests use

    (work / "models" / "dover").mkdir()
    _tiny_dover_script(str(work / "models" / "dover" / "tiny.pt"))

    rows = make_rows(args.clips, args.frames)
    dev = args.device
    base = [f"models.dir={md}"]
    from stages.caption import CaptionStage
    from stages.embed import EmbedStage
    from stages.quality import AestheticStage, DoverStage

    results: list[dict[str, Any]] = []

    def bench(label: str, model: str, batch: int, make: Callable[[], Any], unit: str = "clips",
              per_clip: float = 1.0, note: str = "") -> None:
        st = make()
        secs = timed(st, rows, batch)
        n = len(rows)
        row = {"stage": label, "model": model, "batch": batch, "clips": n, "seconds": round(secs, 3),
               "clips_per_s": round(n / secs, 2), "device": dev, "note": note}
        if unit != "clips":
            row[f"{unit}_per_s"] = round(n * per_clip / secs, 2)
        results.append(row)
        print(f"{label:22s} {model:34s} batch {batch:2d}  {n / secs:8.2f} clips/s  ({secs:.2f} s)", flush=True)

    for b in (1, args.clips):
        bench("embed/open_clip", clip_name, b, lambda: stage_of(EmbedStage, "embed", base + [
            f"stages.embed.model={clip_name}", f"stages.embed.device={dev}"]))
    for b in (1, args.clips):
        bench("embed/hf-video", xclip, b, lambda: stage_of(EmbedStage, "embed", base + [
            f"stages.embed.model={xclip}", f"stages.embed.device={dev}"]))
    for b in (1, args.clips):
        bench("aesthetic", f"head over {clip_name}", b, lambda: stage_of(AestheticStage, "aesthetic", base + [
            f"stages.aesthetic.clip_model={clip_name}", "stages.aesthetic.weights=aesthetic/head.pth",
            f"stages.aesthetic.device={dev}", "stages.aesthetic.min_score=-1e9"]))
    for b in (1, 4):
        bench("dover", "tiny two-view (DOVER views)", b, lambda: stage_of(DoverStage, "dover", base + [
            "stages.dover.weights=dover/tiny.pt", f"stages.dover.device={dev}",
            f"stages.dover.forward_batch_size={b}"]))
    windows = max(1, args.frames // 32)
    with FakeOpenAIServer(latency_s=0.05) as server:
        ep = base + ["stages.caption.backend=endpoint", f"stages.caption.endpoint.url={server.url}",
                     "stages.caption.model=bench-vlm", "stages.caption.window_frames=32",
                     "stages.caption.endpoint.concurrency=16"]
        for b in (1, args.clips):
            bench("caption/endpoint", "local server, 50 ms/answer", b, lambda: stage_of(CaptionStage, "caption", ep),
                  unit="windows", per_clip=windows, note=f"{windows} windows per clip")
        for b in (1, args.clips):
            bench("caption+enhance", f"endpoint + {llm}", b, lambda: stage_of(CaptionStage, "caption", ep + [
                "stages.caption.enhance.enabled=true", "stages.caption.enhance.backend=transformers",
                f"stages.caption.enhance.model={llm}", "stages.caption.enhance.max_tokens=16",
                f"stages.caption.device={dev}"]), note="enhancer: 16 new tokens")
    for b in (1, args.clips):
        bench("caption/transformers", vlm_name, b, lambda: stage_of(CaptionStage, "caption", base + [
            f"stages.caption.model={vlm_name}", "stages.caption.window_frames=32", "stages.caption.max_tokens=16",
            "stages.caption.num_frames=4", f"stages.caption.device={dev}", "stages.caption.batch_size=8"]),
            unit="windows", per_clip=windows, note=f"{windows} windows per clip, 4 frames each, 16 new tokens")

    doc = {"benchmark": "models", "clips": args.clips, "frames": args.frames, "size": [160, 120],
           "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "torch": torch.__version__,
                       "load_1m": round(os.getloadavg()[0], 2)},
           "rows": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
