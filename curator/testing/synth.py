"""Synthetic videos with exact ground truth, made with the ffmpeg that imageio-ffmpeg ships.

Used by the tests, the benchmarks and `samples/make_samples.py`:

    make_shots_video("cuts.mp4", [("testsrc2", 60), ("mandelbrot", 75)], fps=25)
    # -> a hard cut at frame 60 (the first frame of the second shot)
"""

from __future__ import annotations

import os
import subprocess
from typing import Sequence

#: moving ffmpeg sources that look nothing alike (so every join is a hard cut)
SOURCES = ["testsrc2", "mandelbrot", "gradients", "sierpinski", "life", "cellauto", "zoneplate", "rgbtestsrc",
           "smptehdbars", "colorspectrum"]

_SOURCE_ARGS = {
    "gradients": "speed=0.02:c0=0x3080c0:c1=0xe05030",  # fixed colours: the default picks them at random
    "sierpinski": "type=carpet:jump=30",
    "life": "mold=10:ratio=0.3:death_color=#C83232:life_color=#00ff00",
    "cellauto": "rule=110:scroll=1",
    "zoneplate": "ku=512:kv=100:kt2=0:ky2=256:kx2=556:kt=11",
    "mandelbrot": "start_scale=2:end_scale=0.3",
}
_STATIC = {"rgbtestsrc", "smptehdbars", "colorspectrum"}


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def run_ffmpeg(args: Sequence[str], timeout: float = 600) -> None:
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args]
    proc = subprocess.run(cmd, capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[-2000:]}")


def _source(name: str, width: int, height: int, fps: float, frames: int, seed: int) -> str:
    args = [f"size={width}x{height}", f"rate={fps}"]
    extra = _SOURCE_ARGS.get(name)
    if extra:
        args.append(extra)
    if name in ("life", "cellauto", "gradients", "sierpinski"):
        args.append(f"seed={seed}")  # their default seed is the clock: the same call, another video
    src = f"{name}=" + ":".join(args)
    chain = [src, f"trim=end_frame={frames}", "setpts=PTS-STARTPTS", "format=yuv420p"]
    if name in _STATIC:
        # static patterns get a slow pan so no shot is a still image
        chain.insert(1, "scroll=h=0.004:v=0.002")
    return ",".join(chain)


def make_shots_video(path: str, shots: Sequence[tuple[str, int]], *, width: int = 320, height: int = 240,
                     fps: float = 25, crf: int = 23, vf: str | None = None, audio: bool = False,
                     codec_args: Sequence[str] = ("-c:v", "libx264", "-preset", "veryfast")) -> list[int]:
    """Concatenate shots (source name, frame count); return the cut frames (first frame of
    each new shot)."""
    parts = []
    for i, (name, n) in enumerate(shots):
        parts.append(f"{_source(name, width, height, fps, n, seed=1000 + i)}[v{i}]")
    joined = "".join(f"[v{i}]" for i in range(len(shots)))
    graph = ";".join(parts) + f";{joined}concat=n={len(shots)}:v=1:a=0[cat]"
    out_label = "[cat]"
    if vf:
        graph += f";[cat]{vf}[out]"
        out_label = "[out]"
    total = sum(n for _, n in shots)
    args = ["-filter_complex", graph, "-map", out_label]
    if audio:
        args = ["-f", "lavfi", "-i", f"sine=frequency=440:duration={total / fps}"] + args + ["-map", "0:a"]
    args += [*codec_args, "-crf", str(crf), "-pix_fmt", "yuv420p", "-r", str(fps), "-frames:v", str(total)]
    if audio:
        args += ["-c:a", "aac", "-shortest"]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    run_ffmpeg(args + [path])
    cuts, acc = [], 0
    for _, n in shots[:-1]:
        acc += n
        cuts.append(acc)
    return cuts


def make_colour_video(path: str, colours: Sequence[tuple[int, int, int]], *, seconds_each: float = 2.0,
                      width: int = 64, height: int = 48, fps: float = 10, noise: int = 12, seed: int = 0) -> None:
    """Segments of flat colour (RGB, one per segment, `seconds_each` long) with temporal noise, joined
    without a transition: with a fixed-stride split of `seconds_each`, clip i is colour i. Labelled
    sets whose colours stand for labels (place-tag tests) are made of them."""
    n = int(round(seconds_each * fps))
    parts = []
    for i, (r, g, b) in enumerate(colours):
        parts.append(f"color=c=0x{r:02x}{g:02x}{b:02x}:s={width}x{height}:r={fps},trim=end_frame={n},"
                     f"setpts=PTS-STARTPTS,format=yuv420p,noise=alls={noise}:allf=t+u:all_seed={seed + i}[v{i}]")
    joined = "".join(f"[v{i}]" for i in range(len(colours)))
    graph = ";".join(parts) + f";{joined}concat=n={len(colours)}:v=1:a=0[cat]"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    run_ffmpeg(["-filter_complex", graph, "-map", "[cat]", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18",
                "-pix_fmt", "yuv420p", "-r", str(fps), "-frames:v", str(n * len(colours)), path])


def make_audio_only(path: str, seconds: float = 3.0) -> None:
    run_ffmpeg(["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-c:a", "aac", path])


def make_varied_set(folder: str, count: int, *, min_s: float = 10, max_s: float = 60, fps: float = 25,
                    width: int = 320, height: int = 240, seed: int = 0) -> list[tuple[str, list[int]]]:
    """`count` multi-shot videos of min_s..max_s seconds; returns (path, cuts) pairs."""
    import random

    rng = random.Random(seed)
    out = []
    for i in range(count):
        total_s = rng.uniform(min_s, max_s)
        shots: list[tuple[str, int]] = []
        remaining = int(total_s * fps)
        while remaining > 0:
            n = min(remaining, int(rng.uniform(3, 15) * fps))
            if remaining - n < 2 * fps:  # no tiny last shot
                n = remaining
            name = rng.choice([s for s in SOURCES if not shots or s != shots[-1][0]])
            shots.append((name, n))
            remaining -= n
        path = os.path.join(folder, f"synthetic_{i:03d}.mp4")
        out.append((path, make_shots_video(path, shots, width=width, height=height, fps=fps)))
    return out
