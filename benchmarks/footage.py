"""A realistic-footage benchmark set: real clips plus long 720p/1080p videos made from them.

Flat ffmpeg test patterns decode and encode far faster than camera footage, so speed
measured on them flatters whatever does extra work per frame. This set is made of the
real videos in the test media (natural texture, fast motion, cuts, a rotated phone
video, a variable-frame-rate file) and of longer videos built from them: each shot is a
real clip, looped, upscaled to 720p or 1080p, panned across and given temporal film
grain, so every frame has camera texture, motion and noise. One video is VP8 (WebM).

    python benchmarks/footage.py OUT_DIR        # writes the set (cached: reruns reuse it)

Videos (name, size, codec, length):
  bikes.mp4              640x272   h264  10 s   real, 6 shots
  rotate.mp4             544x1280  h264  10 s   real, rotation side data
  vfr.mp4               1280x544   h264  10 s   real, variable frame rate
  city720.mp4           1280x720   h264  60 s   4 shots of 15 s
  pan1080.mp4           1920x1080  h264  30 s   2 shots of 15 s
  long720.webm          1280x720   vp8   90 s   3 shots, one of 60 s
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MEDIA = ROOT / "tests" / "data" / "media"

#: (shot source, seconds, horizontal pan speed, mirror) per shot
SHOTS = {
    "city720.mp4": ((1280, 720), "h264", [("bikes.mp4", 15, 0.35, False), ("goldeneye-vfr-drop3.mp4", 15, 0.2, False),
                                          ("bikes.mp4", 15, 0.5, True), ("issue-134-rotate.mp4", 15, 0.25, False)]),
    "pan1080.mp4": ((1920, 1080), "h264", [("goldeneye-vfr-drop3.mp4", 15, 0.3, True), ("bikes.mp4", 15, 0.4, False)]),
    "long720.webm": ((1280, 720), "vp8", [("issue-134-rotate.mp4", 20, 0.3, True), ("bikes.mp4", 60, 0.15, False),
                                          ("goldeneye-vfr-drop3.mp4", 10, 0.4, False)]),
}
REAL = {"bikes.mp4": "bikes.mp4", "rotate.mp4": "issue-134-rotate.mp4", "vfr.mp4": "goldeneye-vfr-drop3.mp4"}
VERSION = "1"  # bump when the recipe changes: the cache is keyed on it


def ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _shot(src: Path, seconds: float, size: tuple[int, int], speed: float, mirror: bool, out: Path) -> None:
    """One shot: the source looped to `seconds`, cut from a moving window over an upscaled
    copy (a pan), with temporal grain; lossless intermediate so the final encode is the
    only lossy step."""
    w, h = size
    pan = f"(iw-{w})/2*(1+sin(t*{speed}))"
    cover = f"max({w * 1.25}/iw\\,{h * 1.25}/ih)"  # upscale so a 1.25x window covers the frame
    vf = (f"scale='trunc({cover}*iw/2)*2':-2:flags=bicubic,"
          + ("hflip," if mirror else "")
          + f"crop={w}:{h}:x='{pan}':y='(ih-{h})/2',fps=25,noise=alls=10:allf=t+u,format=yuv420p")
    subprocess.run([ffmpeg(), "-v", "error", "-y", "-stream_loop", "-1", "-i", str(src), "-t", str(seconds),
                    "-an", "-vf", vf, "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", str(out)], check=True)


def make(out_dir: str | Path) -> list[Path]:
    out = Path(out_dir)
    stamp = out / f".footage-v{VERSION}"
    names = sorted(list(REAL) + list(SHOTS))
    if stamp.exists() and all((out / n).exists() for n in names):
        return [out / n for n in names]
    out.mkdir(parents=True, exist_ok=True)
    for name, src in REAL.items():
        shutil.copyfile(MEDIA / src, out / name)
    tmp = out / "_parts"
    tmp.mkdir(exist_ok=True)
    for name, (size, codec, shots) in SHOTS.items():
        parts = []
        for i, (src, secs, speed, mirror) in enumerate(shots):
            part = tmp / f"{Path(name).stem}-{i}.mkv"
            _shot(MEDIA / src, secs, size, speed, mirror, part)
            parts.append(part)
        listing = tmp / f"{Path(name).stem}.txt"
        listing.write_text("".join(f"file '{p.name}'\n" for p in parts))
        enc = (["-c:v", "libx264", "-preset", "medium", "-crf", "21", "-pix_fmt", "yuv420p"] if codec == "h264"
               else ["-c:v", "libvpx", "-b:v", "4M", "-deadline", "realtime", "-cpu-used", "8"])
        subprocess.run([ffmpeg(), "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing), *enc,
                        str(out / name)], check=True)
    shutil.rmtree(tmp)
    stamp.write_text(VERSION)
    return [out / n for n in names]


if __name__ == "__main__":
    for p in make(sys.argv[1] if len(sys.argv) > 1 else "/tmp/curator-footage"):
        print(p)
