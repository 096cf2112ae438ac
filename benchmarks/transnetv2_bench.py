"""TransNetV2 on CPU: frames per CPU-second per backend, decode to 48x27, and end to end.

    python benchmarks/transnetv2_bench.py [--repeat 2] [--frames 1440] [--no-onnx] [--footage DIR]

Prints a table and writes benchmarks/results/transnetv2.json. CPU time (process_time: all
threads of this process), not wall time, because the machines this runs on are shared;
torch runs on one thread. Clips: tests/data/media/bikes.mp4 and a 60 s 1280x720 H.264 clip
made with imageio-ffmpeg's ffmpeg (goldeneye-vfr-drop3.mp4 looped, scaled, with temporal
noise), cached under ~/.cache/curator/bench.

Rows:
- decode: PyAV decode only; "to_ndarray" is today's split (threaded decode, one
  to_ndarray(48x27, AREA) per frame); "small_frames" is transnetv2.small_frames.
- model: transnetv2.predict on already-decoded frames, per CPU backend and window ("torch"
  with 100-frame windows is the wheel's float32 model as the reference runs it; "fast" is
  FastForward; window 200 is the default); "onnx" is ONNX Runtime (CPU EP, all graph
  optimisations, one thread) on a torch.onnx.export of the model, measured here only.
- cuts: on every decodable test video and the footage set (benchmarks/footage.py, made
  under the cache unless --footage names it), the default (backend "auto", default window)
  against the reference: same cut frames, frames on the other side of the threshold, and
  the largest probability difference.
- end to end: decode + model over the whole 720p clip, before (to_ndarray + torch, 100-frame
  windows) and after (small_frames + the backend "auto" picks, default window).
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402

from curator.models import transnetv2  # noqa: E402

MEDIA = ROOT / "tests" / "data" / "media"
CACHE = Path(os.environ.get("CURATOR_BENCH_CACHE", Path.home() / ".cache" / "curator" / "bench"))


def clip_720p(seconds: int) -> Path:
    import imageio_ffmpeg

    out = CACHE / f"tnet-720p-{seconds}s.mp4"
    if not out.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp.mp4")
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-stream_loop", "-1",
                        "-i", str(MEDIA / "goldeneye-vfr-drop3.mp4"), "-t", str(seconds),
                        "-vf", "scale=1280:720,noise=alls=6:allf=t", "-r", "24", "-c:v", "libx264",
                        "-preset", "veryfast", "-crf", "26", "-pix_fmt", "yuv420p", "-an", str(tmp)],
                       check=True)
        tmp.rename(out)
    return out


def cpu(fn, repeat: int) -> tuple[float, object]:
    """Least CPU seconds of `repeat` calls, and the last result."""
    best, res = float("inf"), None
    for _ in range(repeat):
        c = time.process_time()
        res = fn()
        best = min(best, time.process_time() - c)
    return best, res


def decode_rows(path: Path, repeat: int) -> list[dict]:
    from curator.media.decode import iter_frames

    def only_decode():
        return sum(1 for _ in iter_frames(str(path)))

    def to_ndarray():  # today's split: threaded decode, one conversion per frame
        return [f.to_ndarray(format="rgb24", width=48, height=27, interpolation="AREA")
                for _, _, f in iter_frames(str(path))]

    def small():
        return [a for _, _, a in transnetv2.small_frames(str(path))]

    rows = []
    for name, fn in [("decode only (threaded)", only_decode), ("to_ndarray 48x27 (before)", to_ndarray),
                     ("small_frames 48x27 (after)", small)]:
        s, res = cpu(fn, repeat)
        n = res if isinstance(res, int) else len(res)
        rows.append({"clip": path.name, "what": name, "frames": n, "cpu_s": round(s, 3),
                     "frames_per_cpu_s": round(n / s, 1)})
    return rows


def onnx_runner(model, workdir: str):
    """ONNX Runtime on an export of the wheel's model; None when onnx is not installed."""
    import torch

    try:
        import onnxruntime as ort
    except ImportError:
        return None

    class Single(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m.predict_raw(x)[0]

    path = os.path.join(workdir, "transnetv2.onnx")
    x = torch.zeros((1, transnetv2.WINDOW, 27, 48, 3), dtype=torch.uint8)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Single(model).eval(), (x,), path, input_names=["frames"], output_names=["p"],
                          opset_version=17, dynamo=False)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return lambda t: torch.from_numpy(sess.run(None, {"frames": t.numpy()})[0])


def cut_rows(model, args: argparse.Namespace) -> list[dict]:
    """The default against the reference on every decodable test video and the footage set."""
    from footage import make

    footage = Path(args.footage) if args.footage else CACHE / "footage"
    make(footage)
    videos = [p for p in sorted(MEDIA.iterdir()) if p.suffix == ".mp4"] + sorted(
        p for p in footage.iterdir() if p.suffix in (".mp4", ".webm"))
    rows = []
    import av

    for path in videos:
        try:
            frames = [a for _, _, a in transnetv2.small_frames(str(path))]
        except av.error.FFmpegError:
            continue  # the test media's broken files (not a video, a cut-off header)
        if len(frames) < 2:
            continue  # empty
        os.environ[transnetv2.BACKEND_ENV] = "torch"
        ref = transnetv2.predict(model, iter(frames), window=transnetv2.WINDOW)
        os.environ[transnetv2.BACKEND_ENV] = "auto"
        got = transnetv2.predict(model, iter(frames), window=transnetv2.DEFAULT_WINDOW)
        rows.append({"video": f"{path.parent.name}/{path.name}", "frames": len(frames),
                     "cuts": len(transnetv2.scenes(ref, 0.4)) - 1,
                     "same_cuts": transnetv2.scenes(got, 0.4) == transnetv2.scenes(ref, 0.4),
                     "flips": int(((got > 0.4) != (ref > 0.4)).sum()),
                     "max_abs_diff": round(float(np.abs(got - ref).max()), 4)})
        print(f"  cuts: {rows[-1]}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--frames", type=int, default=1440, help="frames of the 720p clip per model row (1440: all of it)")
    ap.add_argument("--seconds", type=int, default=60, help="length of the generated 720p clip")
    ap.add_argument("--no-onnx", action="store_true")
    ap.add_argument("--footage", default=None, help="folder of the footage set (made there once; default: the cache)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    clip = clip_720p(args.seconds)
    out: dict = {"machine": {"python": platform.python_version(), "torch": torch.__version__,
                             "cpus": os.cpu_count(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                             "native_bf16": transnetv2.native_bf16(), "torch_threads": 1},
                 "clip_720p": {"seconds": args.seconds, "size": "1280x720", "bytes": clip.stat().st_size}}

    out["decode"] = decode_rows(MEDIA / "bikes.mp4", args.repeat) + decode_rows(clip, args.repeat)

    frames = [a for _, a in zip(range(args.frames), (a for _, _, a in transnetv2.small_frames(str(clip))))]
    model = transnetv2.load("cpu")
    ref = None
    rows = []
    runs = [("torch", transnetv2.WINDOW), ("bf16", transnetv2.WINDOW), ("fast", transnetv2.WINDOW),
            ("fast", transnetv2.DEFAULT_WINDOW)]
    runs += [] if args.no_onnx else [("onnx", transnetv2.WINDOW)]
    tmp = tempfile.mkdtemp(prefix="tnet-onnx-")
    for name, window in runs:
        setup = time.process_time()
        if name == "onnx":
            try:
                run = onnx_runner(model, tmp)
            except Exception as exc:  # noqa: BLE001 - a measurement, not a requirement
                print(f"onnx: export failed: {exc}")
                continue
            if run is None:
                continue
            os.environ[transnetv2.BACKEND_ENV] = "torch"
            model._curator_cpu_runners["torch"] = (run, "onnx")  # predict's windowing, ORT inside
        else:
            os.environ[transnetv2.BACKEND_ENV] = name
            chosen = transnetv2.cpu_backend(model)
            if chosen != name:
                print(f"{name}: not usable here, skipped")
                continue
        transnetv2.predict(model, iter(frames[:window]), window=window)  # first call (warms up)
        setup = time.process_time() - setup
        s, pred = cpu(lambda: transnetv2.predict(model, iter(frames), window=window), args.repeat)
        if name == "onnx":
            model._curator_cpu_runners.pop("torch")  # back to the real float32 path
        if ref is None:
            ref = pred
        rows.append({"backend": name, "window": window, "frames": len(frames), "cpu_s": round(s, 3),
                     "frames_per_cpu_s": round(len(frames) / s, 1), "setup_cpu_s": round(setup, 2),
                     "max_abs_diff_vs_torch": float(np.abs(pred - ref).max()),
                     "same_cuts_as_torch": transnetv2.scenes(pred, 0.4) == transnetv2.scenes(ref, 0.4)})
    out["model"] = rows

    out["cuts"] = cut_rows(model, args)

    # end to end on the whole 720p clip
    from curator.media.decode import iter_frames

    def before():
        os.environ[transnetv2.BACKEND_ENV] = "torch"
        return transnetv2.predict(model, (f.to_ndarray(format="rgb24", width=48, height=27, interpolation="AREA")
                                          for _, _, f in iter_frames(str(clip))))

    def after():
        os.environ[transnetv2.BACKEND_ENV] = "auto"
        return transnetv2.predict(model, (a for _, _, a in transnetv2.small_frames(str(clip))),
                                  window=transnetv2.DEFAULT_WINDOW)

    after()  # choose and compile outside the timing
    e2e = []
    for name, fn in [("before: to_ndarray + torch", before), (f"after: small_frames + {transnetv2.cpu_backend(model, 'auto')}", after)]:
        s, pred = cpu(fn, 1)
        e2e.append({"what": name, "frames": len(pred), "cpu_s": round(s, 2),
                    "frames_per_cpu_s": round(len(pred) / s, 1), "cuts": [a for a, _ in transnetv2.scenes(pred, 0.4)][1:]})
    out["end_to_end"] = e2e
    os.environ.pop(transnetv2.BACKEND_ENV, None)

    print(f"\ndecode to 48x27 (frames per CPU-second; torch threads=1, cpu={out['machine']['cpu_capability']}, "
          f"native bf16={out['machine']['native_bf16']})")
    for r in out["decode"]:
        print(f"  {r['clip']:<22} {r['what']:<28} {r['frames']:>6} {r['frames_per_cpu_s']:>8.1f}")
    print(f"\nmodel ({len(frames)} frames of the 720p clip)")
    print(f"  {'backend':<10} {'window':>6} {'f/cpu-s':>8} {'setup s':>8} {'max|diff|':>10} same cuts")
    for r in rows:
        print(f"  {r['backend']:<10} {r['window']:>6} {r['frames_per_cpu_s']:>8.1f} {r['setup_cpu_s']:>8.2f} "
              f"{r['max_abs_diff_vs_torch']:>10.2g} {r['same_cuts_as_torch']}")
    print(f"\ncuts: default (auto, window {transnetv2.DEFAULT_WINDOW}) against the reference (torch, window 100)")
    print(f"  {'video':<26} {'frames':>6} {'cuts':>5} {'same':>5} {'flips':>5} {'max|diff|':>10}")
    for r in out["cuts"]:
        print(f"  {r['video']:<26} {r['frames']:>6} {r['cuts']:>5} {str(r['same_cuts']):>5} {r['flips']:>5} "
              f"{r['max_abs_diff']:>10.3g}")
    print("\nend to end (whole 720p clip)")
    for r in e2e:
        print(f"  {r['what']:<34} {r['frames']:>6} {r['frames_per_cpu_s']:>8.1f} cuts={r['cuts']}")
    res = ROOT / "benchmarks" / "results" / "transnetv2.json"
    tmpf = res.with_suffix(".json.tmp")
    tmpf.write_text(json.dumps(out, indent=2) + "\n")
    tmpf.rename(res)
    print(f"\nwrote {res.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
