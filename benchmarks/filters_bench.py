"""Filter benchmark: clips/s per filter on CPU, each filter's share of pipeline time, and
the accuracy table on the labelled clip set (curator/testing/synth_filters.py).

    python benchmarks/filters_bench.py [--repeat 1] [--pipeline-videos 12]

Prints tables and writes benchmarks/results/filters.json. The clips are 160x120, 2.4 s
at 25 fps (60 frames); per-clip costs grow with resolution for quality (up to
``max_side``) and text (up to ``det_limit_side``), and with frame count for motion
vectors (every frame is decoded).
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from curator.config import MotionConfig, PipelineConfig, QualityConfig, TextOverlayConfig  # noqa: E402
from curator.stage import RunContext  # noqa: E402
from curator.testing.synth_filters import (  # noqa: E402
    FPS,
    FRAMES,
    H,
    W,
    clip_row,
    ladders,
    make_filter_set,
    motion_accuracy,
    text_accuracy,
)


def ctx(cfg: PipelineConfig | None = None) -> RunContext:
    return RunContext(cfg or PipelineConfig(), "file:///in", "file:///out", "bench", "hash")


def time_stage(stage, clips, repeat: int) -> tuple[float, dict[str, dict]]:
    """Seconds per clip (best of `repeat`) of stage.process over the clips, batch by batch."""
    stage.ensure_setup()
    best = float("inf")
    out: dict[str, dict] = {}
    bs = stage.resources.batch_size
    for _ in range(repeat):
        rows = [clip_row(c) for c in clips]
        t0 = time.perf_counter()
        done = []
        for i in range(0, len(rows), bs):
            done.extend(stage.process(rows[i:i + bs]))
        best = min(best, (time.perf_counter() - t0) / len(rows))
        out = {r["clip_id"]: r for r in done}
    return best, out


def pipeline_shares(clips, n_videos: int, tmp: Path) -> dict[str, float]:
    """Run the real pipeline (local runner) over labelled clips as input videos; the share of
    summed stage time per stage, from the manifest's `timings`."""
    import pyarrow.parquet as pq

    from curator import pipeline
    from curator.driver import execute
    from curator.runners.local import LocalRunner

    inp = tmp / "in"
    inp.mkdir()
    for c in clips[:n_videos]:
        shutil.copy(c.path, inp / f"{c.name}.mp4")
    cfg = PipelineConfig.load(None, ["run.runner=local", "stages.split.method=fixed", "stages.split.stride_s=10",
                                     "stages.order=[motion,quality,text_overlay,embed]",
                                     "stages.quality.score_rejected=true", "stages.text_overlay.score_rejected=true"],
                              input=str(inp), output=str(tmp / "out"))
    t0 = time.perf_counter()
    execute(pipeline.build(cfg), LocalRunner())
    wall = time.perf_counter() - t0
    totals: dict[str, float] = {}
    for r in pq.read_table(tmp / "out" / "manifest.parquet", columns=["timings"]).to_pylist():
        for k, v in dict(r["timings"] or []).items():
            totals[k] = totals.get(k, 0.0) + v
    s = sum(totals.values()) or 1.0
    shares = {k: round(v / s, 4) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}
    shares["_wall_s"] = round(wall, 2)
    shares["_stage_s"] = round(s, 2)
    return shares


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=1, help="timing repeats (best is kept)")
    ap.add_argument("--pipeline-videos", type=int, default=12, help="videos for the pipeline-share run")
    ap.add_argument("--set-dir", help="cache folder for the labelled set (default: a temp folder)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "filters.json"))
    args = ap.parse_args()

    from stages.motion import MotionStage
    from stages.quality import QualityStage
    from stages.text_overlay import TextOverlayStage

    tmp = Path(tempfile.mkdtemp(prefix="filters_bench_"))
    try:
        t0 = time.perf_counter()
        clips = make_filter_set(args.set_dir or tmp / "set")
        gen_s = time.perf_counter() - t0
        motion_clips = [c for c in clips if c.motion or c.camera]
        text_clips = [c for c in clips if c.text is not None or c.text_frames]
        q_clips = [c for c in clips if c.ladder]

        speed: dict[str, dict] = {}
        accuracy: dict[str, dict] = {}
        for method in ("mv", "flow"):
            st = MotionStage(MotionConfig(method=method), ctx())
            s, rows = time_stage(st, motion_clips, args.repeat)
            speed[f"motion ({method})"] = {"s_per_clip": s, "clips": len(motion_clips)}
            accuracy[f"motion ({method})"] = motion_accuracy(motion_clips, rows)
        st = QualityStage(QualityConfig(), ctx())
        s, rows = time_stage(st, q_clips, args.repeat)
        speed["quality"] = {"s_per_clip": s, "clips": len(q_clips)}
        lad = ladders(q_clips, rows)
        accuracy["quality"] = {"ladders_monotone": sum(all(a > b for a, b in zip(v, v[1:])) for v in lad.values()),
                               "ladders": len(lad),
                               **{f"ladder {k}": [round(x, 3) for x in v] for k, v in lad.items()}}
        st.ensure_setup()
        media = ROOT / "tests" / "data" / "media"
        for name in ("carphone_pristine", "carphone_distorted"):
            m = st.measure({"mp4": (media / f"{name}.mp4").read_bytes(), "clip_frames": 120})
            accuracy["quality"][name] = round(m["quality_score"], 3)
        st = TextOverlayStage(TextOverlayConfig(), ctx())
        s, rows = time_stage(st, text_clips + motion_clips, args.repeat)
        speed["text_overlay"] = {"s_per_clip": s, "clips": len(text_clips) + len(motion_clips)}
        accuracy["text_overlay"] = text_accuracy(text_clips + motion_clips, rows)

        for v in speed.values():
            v["clips_per_s"] = round(1.0 / v["s_per_clip"], 2)
            v["s_per_clip"] = round(v["s_per_clip"], 4)
        shares = pipeline_shares(clips[::5], args.pipeline_videos, tmp)  # a mix: static, moving, text, ladders
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"labelled set: {len(clips)} clips of {W}x{H}, {FRAMES} frames at {FPS} fps (made in {gen_s:.1f} s)\n")
    print(f"{'filter':18s} {'clips/s':>9s} {'s/clip':>8s} {'clips':>6s}")
    for k, v in speed.items():
        print(f"{k:18s} {v['clips_per_s']:9.2f} {v['s_per_clip']:8.4f} {v['clips']:6d}")
    print(f"\npipeline share of stage time ({args.pipeline_videos} videos, local runner, "
          f"{shares['_wall_s']} s wall):")
    for k, v in shares.items():
        if not k.startswith("_"):
            print(f"  {k:14s} {100 * v:5.1f} %")
    print("\naccuracy on the labelled set:")
    for k, v in accuracy.items():
        for m, x in v.items():
            print(f"  {k:16s} {m:28s} {x if not isinstance(x, float) else round(x, 3)}")
    result = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                          "load_avg_1m_at_end": round(os.getloadavg()[0], 2)},
              "set": {"clips": len(clips), "width": W, "height": H, "frames": FRAMES, "fps": FPS,
                      "generate_s": round(gen_s, 2)},
              "speed": speed, "pipeline_share": shares, "accuracy": accuracy}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    tmp_out = args.out + ".tmp"
    with open(tmp_out, "w") as fh:
        json.dump(result, fh, indent=1)
    os.replace(tmp_out, args.out)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
