"""A labelled clip set with known truth for the filters (tests and benchmarks).

Built with the ffmpeg that imageio-ffmpeg ships, from the real test clips (bikes,
carphone, goldeneye) and ffmpeg sources; small (160x120, 2.4 s at 25 fps) so that ~80
clips are made in well under a minute:

- motion: ``static`` (a real frame held still, with and without sensor noise), ``moving``
  (real footage and moving ffmpeg sources), ``shaky`` (a per-frame random crop offset);
- camera: pans, tilts and zooms made with a crop window moving over a still of known
  direction (``camera`` is the tag the motion filter must give, in its convention: a crop
  window moving right over the scene is the camera panning right);
- text: ``drawtext`` on known frame ranges (``text_frames`` = [first, last) frames);
- quality: blur, noise and compression ladders of the same clip (``ladder``, ``level``:
  a higher level is a worse clip).

``make_filter_set(folder)`` writes the clips and a ``labels.json`` and returns the labels;
a second call with the same folder reuses what is there.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from curator.testing.synth import run_ffmpeg

W, H, FPS, FRAMES = 160, 120, 25, 60
VERSION = 3
ROOT = Path(__file__).resolve().parents[2]
MEDIA = ROOT / "tests" / "data" / "media"
FONT = ROOT / "tests" / "data" / "fonts" / "allerta_medium.otf"
SYSTEM_FONTS = ["/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                "/usr/share/fonts/TTF/DejaVuSans.ttf", "/Library/Fonts/Arial.ttf"]


@dataclass
class Labelled:
    name: str
    path: str
    motion: str | None = None  # "static" | "moving" | "shaky"
    camera: str | None = None  # expected camera tag
    text: bool | None = None  # burned-in text on most frames
    text_frames: tuple[int, int] | None = None
    ladder: str | None = None
    level: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def find_font() -> str:
    """The OFL font shipped in tests/data/fonts, else a common system font."""
    for p in [str(FONT), *SYSTEM_FONTS]:
        if os.path.isfile(p):
            return p
    raise FileNotFoundError("no font for drawtext: expected tests/data/fonts/allerta_medium.otf")


def _esc(path: str) -> str:
    return path.replace("\\", "\\\\").replace(":", "\\:").replace("'", "\\'")


def _enc(crf: int = 18) -> list[str]:
    return ["-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf), "-pix_fmt", "yuv420p",
            "-r", str(FPS), "-frames:v", str(FRAMES), "-an"]


def _still_input(png: str) -> list[str]:
    return ["-loop", "1", "-framerate", str(FPS), "-i", png]


def _video_input(src: str, start_s: float) -> list[str]:
    return ["-ss", f"{start_s:.3f}", "-i", src]


FIT = f"scale={W}:{H}:force_original_aspect_ratio=increase,crop={W}:{H}"


def make_filter_set(folder: str | os.PathLike[str], font: str | None = None) -> list[Labelled]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    labels_path = folder / "labels.json"
    if labels_path.exists():
        doc = json.loads(labels_path.read_text())
        if doc.get("version") == VERSION and all(Path(c["path"]).exists() for c in doc["clips"]):
            return [Labelled(**{**c, "text_frames": tuple(c["text_frames"]) if c.get("text_frames") else None})
                    for c in doc["clips"]]
    font = _esc(font or find_font())
    bikes = str(MEDIA / "bikes.mp4")
    gold = str(MEDIA / "goldeneye-vfr-drop3.mp4")
    car = str(MEDIA / "carphone_pristine.mp4")

    # stills: real frames without scene text
    stills = {"street": (bikes, 8.4), "fence": (bikes, 6.0), "corner": (bikes, 9.2), "people": (gold, 9.3),
              "topdown": (bikes, 0.6), "car": (car, 1.0)}
    for name, (src, t) in stills.items():
        png = folder / f"still_{name}.png"
        if not png.exists():
            run_ffmpeg(["-ss", f"{t}", "-i", src, "-frames:v", "1", str(png)])
    still = {k: str(folder / f"still_{k}.png") for k in stills}

    clips: list[Labelled] = []

    def make(name: str, inputs: list[str], vf: str, crf: int = 18, **truth: Any) -> None:
        path = folder / f"{name}.mp4"
        if not path.exists():
            run_ffmpeg([*inputs, "-vf", vf + ",format=yuv420p", *_enc(crf), str(path)])
        clips.append(Labelled(name=name, path=str(path), **truth))

    # ---- static: a real frame held still; some with temporal sensor noise or softer encode
    for i, k in enumerate(["street", "fence", "corner", "people", "topdown", "car"]):
        make(f"static_{k}", _still_input(still[k]), FIT, motion="static", camera="static", text=False)
        noise = 2 + 2 * (i % 3)
        make(f"static_{k}_noisy", _still_input(still[k]), f"{FIT},noise=alls={noise}:allf=t", crf=23,
             motion="static", camera="static", text=False)

    # ---- moving: real footage and moving ffmpeg sources
    for k, (src, t) in {"bikes_a": (bikes, 0.0), "bikes_b": (bikes, 1.3), "bikes_c": (bikes, 3.2),
                        "bikes_d": (bikes, 5.6), "bikes_e": (bikes, 7.6), "carphone": (car, 0.5),
                        "carphone_late": (car, 1.5)}.items():
        make(f"moving_{k}", _video_input(src, t), FIT, motion="moving", text=False)
    for k, src in {"mandelbrot": "mandelbrot=size=320x240:rate=25:start_scale=2:end_scale=0.3",
                   "life": "life=size=160x120:rate=25:mold=10:ratio=0.3:seed=3",
                   "cellauto": "cellauto=size=160x120:rate=25:rule=110:scroll=1:seed=5"}.items():
        make(f"moving_{k}", ["-f", "lavfi", "-i", src], FIT, motion="moving", text=False)

    # ---- shaky: a random crop offset every frame (hand-held jitter), on stills and footage
    jitter = "crop=iw-{a2}:ih-{a2}:x='{a}+{a}*(2*random(1)-1)':y='{a}+{a}*(2*random(2)-1)'"
    for k in ["street", "fence", "people", "corner"]:
        make(f"shaky_{k}", _still_input(still[k]), "scale=200:150," + jitter.format(a=8, a2=16) + f",scale={W}:{H}",
             motion="shaky", text=False)
    for k, (src, t) in {"bikes": (bikes, 6.0), "carphone": (car, 0.2)}.items():
        make(f"shaky_{k}", _video_input(src, t), "scale=200:150," + jitter.format(a=8, a2=16) + f",scale={W}:{H}",
             motion="shaky", text=False)

    # ---- camera moves: a crop window moving over a still (content moves the other way)
    speed = 70  # source px / s at 480x360 -> ~23 output px / s
    moves = {
        "pan_right": f"crop=320:240:x='20+{speed}*t':y=60",
        "pan_left": f"crop=320:240:x='200-{speed}*t':y=60",
        "tilt_down": f"crop=320:240:x=80:y='10+{speed * 0.8}*t'",
        "tilt_up": f"crop=320:240:x=80:y='130-{speed * 0.8}*t'",
    }
    for tag, crop in moves.items():
        for k in ["street", "people"]:
            make(f"camera_{tag}_{k}", _still_input(still[k]), f"scale=480:360,{crop},scale={W}:{H}",
                 motion="moving", camera=tag, text=False)
    zooms = {"zoom_in": "1+0.006*on", "zoom_out": "1.4-0.006*on"}
    for tag, z in zooms.items():
        for k in ["street", "people"]:
            make(f"camera_{tag}_{k}", _still_input(still[k]),
                 f"scale=1280:960,zoompan=z='{z}':x='iw/2-(iw/zoom/2)':y='ih/2-(ih/zoom/2)':d=1:s={W}x{H}:fps={FPS}",
                 motion="moving", camera=tag, text=False)

    # ---- text: burned-in text on known frame ranges
    texts = [
        ("sub_static", _still_input(still["street"]), "Meet me at noon", 0, FRAMES, "bottom"),
        ("sub_moving", _video_input(bikes, 1.3), "Where are you going", 0, FRAMES, "bottom"),
        ("title_moving", _video_input(bikes, 7.6), "CHAPTER ONE", 0, FRAMES, "centre"),
        ("sub_people", _still_input(still["people"]), "I know what you did", 0, FRAMES, "bottom"),
        ("sub_carphone", _video_input(car, 0.5), "Call me back later", 5, FRAMES, "bottom"),
        ("title_fence", _still_input(still["fence"]), "BREAKING NEWS 24", 0, 50, "top"),
        ("sub_half", _video_input(bikes, 3.2), "Later that day", 0, 36, "bottom"),
        ("sub_pan", _still_input(still["people"]), "Two hours earlier", 10, FRAMES, "bottom"),
        ("sub_topdown", _still_input(still["topdown"]), "Score 3 - 1", 0, FRAMES, "top"),
        ("sub_corner", _video_input(bikes, 5.6), "Wait for it", 0, FRAMES, "centre"),
        # brief text: present, but on a small part of the clip
        ("brief_start", _video_input(bikes, 0.0), "Hello there", 0, 12, "bottom"),
        ("brief_end", _still_input(still["corner"]), "The end", 48, FRAMES, "centre"),
    ]
    ypos = {"bottom": "h-th-10", "centre": "(h-th)/2", "top": "10"}
    for name, inputs, text, a, b, where in texts:
        draw = (f"drawtext=fontfile='{font}':text='{text}':fontsize=15:fontcolor=white:borderw=1:"
                f"bordercolor=black:x=(w-tw)/2:y={ypos[where]}:enable='between(n,{a},{b - 1})'")
        vf = f"scale=480:360,crop=320:240:x='20+40*t':y=60,scale={W}:{H}" if name == "sub_pan" else FIT
        brief = name.startswith("brief")
        make(f"text_{name}", inputs, f"{vf},{draw}", text=None if brief else True, text_frames=(a, b))

    # ---- quality ladders: the same clip, worse and worse (level 0 = the clean clip)
    for src_name, inputs in {"carphone": _video_input(car, 0.0), "bikes": _video_input(bikes, 7.6)}.items():
        for lvl, sigma in enumerate([0, 1.0, 2.0, 3.5]):
            vf = FIT + (f",gblur=sigma={sigma}" if sigma else "")
            make(f"q_{src_name}_blur{lvl}", inputs, vf, ladder=f"{src_name}_blur", level=lvl)
        for lvl, n in enumerate([0, 8, 18, 35]):
            vf = FIT + (f",noise=alls={n}:allf=t" if n else "")
            make(f"q_{src_name}_noise{lvl}", inputs, vf, ladder=f"{src_name}_noise", level=lvl)
        for lvl, crf in enumerate([18, 32, 40, 48]):
            make(f"q_{src_name}_crf{lvl}", inputs, FIT, crf=crf, ladder=f"{src_name}_compression", level=lvl)

    doc = {"version": VERSION, "clips": [asdict(c) for c in clips]}
    labels_path.write_text(json.dumps(doc, indent=1))
    return clips


def clip_row(c: Labelled) -> dict[str, Any]:
    """A pipeline clip row for a labelled clip (what transcode would hand a filter)."""
    data = Path(c.path).read_bytes()
    return {"kind": "clip", "video_id": c.name, "clip_id": c.name, "status": "ok", "clip_index": 0,
            "clip_width": W, "clip_height": H, "clip_fps": float(FPS), "clip_frames": FRAMES,
            "clip_duration_s": FRAMES / FPS, "mp4": data, "clip_bytes": len(data)}


# ------------------------------------------------------------------ scoring a filter on the set
OPPOSITE = {"pan_left": "pan_right", "pan_right": "pan_left", "tilt_up": "tilt_down", "tilt_down": "tilt_up",
            "zoom_in": "zoom_out", "zoom_out": "zoom_in"}


def precision_recall(truth: dict[str, bool], predicted: dict[str, bool]) -> tuple[float, float]:
    """Precision and recall of `predicted` against `truth` (same keys); 1.0 when undefined."""
    tp = sum(1 for k, t in truth.items() if t and predicted[k])
    fp = sum(1 for k, t in truth.items() if not t and predicted[k])
    fn = sum(1 for k, t in truth.items() if t and not predicted[k])
    return (tp / (tp + fp) if tp + fp else 1.0), (tp / (tp + fn) if tp + fn else 1.0)


def motion_accuracy(clips: list[Labelled], rows: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Static / shaky precision and recall, kept share of moving clips, tag-direction accuracy."""
    clips = [c for c in clips if c.motion or c.camera]
    out: dict[str, float] = {}
    for reason in ("static", "shaky"):
        truth = {c.name: c.motion == reason for c in clips}
        pred = {c.name: rows[c.name].get("reason") == reason for c in clips}
        out[f"{reason}_precision"], out[f"{reason}_recall"] = precision_recall(truth, pred)
    moving = [c for c in clips if c.motion == "moving"]
    out["moving_kept"] = sum(rows[c.name].get("status") == "ok" for c in moving) / max(1, len(moving))
    moves = [c for c in clips if c.camera and c.camera != "static"]
    out["tag_direction_accuracy"] = len([
        c for c in moves if c.camera in (rows[c.name].get("camera_motion") or [])
        and OPPOSITE[str(c.camera)] not in (rows[c.name].get("camera_motion") or [])]) / max(1, len(moves))
    still = [c for c in clips if c.camera == "static"]
    out["static_tag_accuracy"] = sum(rows[c.name].get("camera_motion") == ["static"] for c in still) / max(1, len(still))
    return out


def text_accuracy(clips: list[Labelled], rows: dict[str, dict[str, Any]]) -> dict[str, float]:
    judged = [c for c in clips if c.text is not None]
    truth = {c.name: bool(c.text) for c in judged}
    pred = {c.name: rows[c.name].get("reason") == "text_overlay" for c in judged}
    p, r = precision_recall(truth, pred)
    return {"text_precision": p, "text_recall": r}


def ladders(clips: list[Labelled], rows: dict[str, dict[str, Any]], metric: str = "quality_score") -> dict[str, list[float]]:
    """Ladder name -> scores by level (level 0 first)."""
    out: dict[str, list[tuple[int, float]]] = {}
    for c in clips:
        if c.ladder:
            out.setdefault(c.ladder, []).append((c.level or 0, rows[c.name][metric]))
    return {k: [s for _, s in sorted(v)] for k, v in out.items()}
