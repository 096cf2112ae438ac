"""A stand-in video generator for tests: a command-line script and a local HTTP service.

It renders a short clip of flat colour with temporal noise whose colour is the place the
prompt names (zoo green, museum ochre, hospital pale blue, city grey, amusement park red;
others a colour from the prompt's digest) and whose brightness says the time of day (night
dark, dusk dimmer), so a head trained on such colours could tag it. Each finished generation
is appended to a log (JSON lines: prompt, negative prompt, seed, output) *after* its output
is in place (written to a temporary name, then renamed), so the log lists exactly the outputs
produced.

    python -m curator.testing.fake_generator --prompt P --negative_prompt N --seed 7 --output out.mp4 \\
        [--log gen.log] [--sleep 0.5] [--mode ok|fail|hang|garbage] [--fail-if TEXT]
    python -m curator.testing.fake_generator --batch_input_path prompts.jsonl --video_save_folder DIR [--log ...]

Batch mode follows Cosmos's naming: line *i* of the JSONL becomes ``DIR/<i>.mp4``. Modes:
``fail`` exits 1 with a message on stderr, ``hang`` sleeps an hour, ``garbage`` writes bytes
that are not a video. ``--fail-if TEXT`` (``--hang-if``, ``--garbage-if``) does that only to
prompts containing TEXT. Two ways to get footage other than the prompt asks for:
``--copy-from PATH --copy-if TEXT`` answers prompts containing TEXT with a re-encode of PATH (a
near-copy of existing footage), ``--as-place PLACE --as-if TEXT`` renders them in PLACE's colour
(content that does not match the prompt).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable

from curator.testing.localhttp import BackgroundHTTPServer

PLACE_COLOURS: dict[str, tuple[int, int, int]] = {
    "amusement park": (220, 40, 40), "theme park": (220, 40, 40), "zoo": (40, 200, 60), "aquarium": (40, 120, 220),
    "museum": (200, 170, 90), "hospital": (170, 200, 230), "city": (128, 128, 128),
}
TIME_SCALE = {"night": 0.35, "sunset": 0.7, "dusk": 0.7}


def colour_for(prompt: str) -> tuple[int, int, int]:
    p = prompt.lower()
    rgb = next((c for word, c in PLACE_COLOURS.items() if word in p), None)
    if rgb is None:
        d = hashlib.sha256(p.encode()).digest()
        rgb = (d[0], d[1], d[2])
    scale = next((s for word, s in TIME_SCALE.items() if word in p), 1.0)
    r, g, b = rgb
    return (int(r * scale), int(g * scale), int(b * scale))


def copy_of(source: str, output: str) -> None:
    """A near-copy of `source`: re-encoded (another quality), atomically."""
    from curator.testing.synth import run_ffmpeg

    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    tmp = f"{output}.part-{os.getpid()}.mp4"
    run_ffmpeg(["-i", source, "-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", "12", "-pix_fmt", "yuv420p",
                tmp])
    os.replace(tmp, output)


def render(prompt: str, seed: int, output: str, *, seconds: float = 2.0, size: tuple[int, int] = (64, 48),
           fps: float = 10) -> None:
    """Render the prompt's clip to `output` atomically (a temporary name, then rename)."""
    from curator.testing.synth import make_colour_video

    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    tmp = f"{output}.part-{os.getpid()}.mp4"
    make_colour_video(tmp, [colour_for(prompt)], seconds_each=seconds, width=size[0], height=size[1], fps=fps,
                      seed=seed % 997)
    os.replace(tmp, output)


def append_log(path: str | None, doc: dict[str, Any]) -> None:
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(doc, sort_keys=True) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _one(prompt: str, negative: str, seed: int, output: str, args: argparse.Namespace,
         condition: str | None = None) -> int:
    mode = args.mode
    for text, forced in ((args.fail_if, "fail"), (args.hang_if, "hang"), (args.garbage_if, "garbage")):
        if text and text in prompt:
            mode = forced
    if args.sleep:
        time.sleep(args.sleep)
    if mode == "fail":
        print(f"fake generator: refusing prompt {prompt[:60]!r} (injected failure)", file=sys.stderr)
        return 1
    if mode == "hang":
        time.sleep(3600)
    if mode == "garbage":
        with open(output, "wb") as f:
            f.write(b"this is not a video\n" * 50)
        return 0
    if args.copy_if and args.copy_from and args.copy_if in prompt:
        copy_of(args.copy_from, output)
    elif args.as_if and args.as_place and args.as_if in prompt:
        times = "".join(f" {w}" for w in TIME_SCALE if w in prompt.lower())  # the asked brightness, another place
        render(args.as_place + times, seed, output, seconds=args.seconds)
    else:
        render(prompt, seed, output, seconds=args.seconds)
    append_log(args.log, {"prompt": prompt, "negative_prompt": negative, "seed": seed, "output": output,
                          "pid": os.getpid(), "condition": condition})
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="fake_generator")
    ap.add_argument("--prompt")
    ap.add_argument("--negative_prompt", default="")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--output")
    ap.add_argument("--batch_input_path")
    ap.add_argument("--video_save_folder")
    ap.add_argument("--log")
    ap.add_argument("--sleep", type=float, default=0.0)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--mode", choices=["ok", "fail", "hang", "garbage"], default="ok")
    ap.add_argument("--input_image_or_video_path", help="a conditioning clip (Video2World); must exist")
    ap.add_argument("--fail-if")
    ap.add_argument("--hang-if")
    ap.add_argument("--garbage-if")
    ap.add_argument("--copy-from", help="a video: prompts containing --copy-if get a re-encode of it")
    ap.add_argument("--copy-if")
    ap.add_argument("--as-place", help="a place: prompts containing --as-if are rendered in its colour")
    ap.add_argument("--as-if")
    args = ap.parse_args(argv)
    if args.batch_input_path:
        rc = 0
        with open(args.batch_input_path, encoding="utf-8") as f:
            lines = [json.loads(x) for x in f if x.strip()]
        for i, line in enumerate(lines):
            out = os.path.join(args.video_save_folder, f"{i}.mp4")
            rc = max(rc, _one(line["prompt"], line.get("negative_prompt", args.negative_prompt),
                              int(line.get("seed", args.seed)), out, args))
        return rc
    if not (args.prompt is not None and args.output):
        ap.error("--prompt and --output (or --batch_input_path and --video_save_folder)")
    cond = args.input_image_or_video_path
    if cond is not None and not os.path.isfile(cond):
        print(f"fake generator: conditioning clip {cond!r} not found", file=sys.stderr)
        return 2
    return _one(args.prompt, args.negative_prompt, args.seed, args.output, args, cond)


# ------------------------------------------------------------------------------ HTTP service
class FakeGeneratorServer(BackgroundHTTPServer):
    """``POST /generate`` (JSON: prompt, negative_prompt, seed, ...) -> a video. ``behaviour(doc)``
    picks the answer: ``"bytes"`` (the mp4 as video/mp4, default), ``"url"`` (JSON with a URL this
    server serves), ``"path"`` (JSON with a local path), ``"garbage"`` (non-video bytes),
    ``"error"`` (JSON error), ``"500"``, ``"hang"`` (sleep ``hang_s`` first). Every request is kept
    in ``requests``; every video made is logged to ``log`` like the script's."""

    def __init__(self, folder: str, behaviour: Callable[[dict[str, Any]], str] | None = None, *,
                 log: str | None = None, hang_s: float = 30.0):
        self.folder = folder
        self.behaviour = behaviour
        self.log = log
        self.hang_s = hang_s
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def start(self) -> "FakeGeneratorServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                server._post(self)

            def do_GET(self) -> None:  # noqa: N802
                server._get(self)

        os.makedirs(self.folder, exist_ok=True)
        self._serve(Handler, "fake-generator")
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/generate"

    def _send(self, h: BaseHTTPRequestHandler, code: int, body: bytes, ctype: str) -> None:
        try:
            h.send_response(code)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _get(self, h: BaseHTTPRequestHandler) -> None:
        name = os.path.basename(h.path)
        path = os.path.join(self.folder, name)
        if not os.path.isfile(path):
            self._send(h, 404, b"not found", "text/plain")
            return
        with open(path, "rb") as f:
            self._send(h, 200, f.read(), "video/mp4")

    def _post(self, h: BaseHTTPRequestHandler) -> None:
        doc = json.loads(h.rfile.read(int(h.headers.get("Content-Length") or 0)) or b"{}")
        with self.lock:
            self.requests.append(doc)
        action = self.behaviour(doc) if self.behaviour else "bytes"
        if action == "hang":
            time.sleep(self.hang_s)
            action = "bytes"
        if action == "500":
            self._send(h, 500, b'{"error": "injected 500"}', "application/json")
            return
        if action == "error":
            self._send(h, 200, json.dumps({"error": "model refused the prompt"}).encode(), "application/json")
            return
        if action == "garbage":
            self._send(h, 200, b"\x00garbage, not a video" * 20, "video/mp4")
            return
        name = f"{doc.get('id') or hashlib.sha256(json.dumps(doc).encode()).hexdigest()[:12]}.mp4"
        path = os.path.join(self.folder, name)
        render(str(doc.get("prompt", "")), int(doc.get("seed") or 0), path)
        append_log(self.log, {"prompt": doc.get("prompt"), "negative_prompt": doc.get("negative_prompt"),
                              "seed": doc.get("seed"), "output": path, "pid": os.getpid()})
        if action == "url":
            body = json.dumps({"url": f"http://127.0.0.1:{self.port}/videos/{name}"}).encode()
            self._send(h, 200, body, "application/json")
        elif action == "path":
            self._send(h, 200, json.dumps({"path": path}).encode(), "application/json")
        else:
            with open(path, "rb") as f:
                self._send(h, 200, f.read(), "video/mp4")


if __name__ == "__main__":
    sys.exit(main())
