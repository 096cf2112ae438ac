"""A local OpenAI-compatible chat-completions server for tests and benchmarks.

It listens on 127.0.0.1 (a free port), accepts ``POST /v1/chat/completions`` with
``image_url`` data-URL parts, decodes every image, reads the code each coded frame
carries (:mod:`curator.testing.coded`), records what it saw, and answers with a caption
that says so::

    codes=1792,1801,... size=64x48 n=8 sha=3f2a9c01

A ``behaviour(request, attempt)`` hook picks the answer per request: ``"ok"``, ``"500"``,
``"429"``, ``"400"``, ``"hang"`` (sleep ``hang_s`` before answering: the client times
out), ``"malformed"`` (a 200 whose body is not JSON) or ``"no_choices"`` (JSON without
choices). ``attempt`` counts earlier requests with the same images (1 = first). A fixed
``latency_s`` is added to every answer (benchmarks), and a random ``jitter_s`` (uniform in
[0, jitter_s), seeded) so that concurrent answers arrive out of order. A ``video_url`` part
with a ``data:video/jpeg;base64,<frame>,<frame>,...`` URL (vLLM serve's form of a video given
as JPEG frames) is read frame by frame like images; ``formats`` then says ``video/jpeg``
once per frame and ``videos`` counts the video parts. An ``answer(request)`` hook, when given,
writes the text of the "ok" answers instead (e.g. JSON tags chosen by the frames' codes).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable

import numpy as np

from curator.testing.coded import read_code
from curator.testing.localhttp import BackgroundHTTPServer


@dataclass
class SeenRequest:
    model: str
    prompt: str
    codes: list[int]
    sizes: list[tuple[int, int]]  # (width, height) of each image
    formats: list[str]
    digest: str  # sha256 of the image bytes, in order
    attempt: int
    max_tokens: Any = None
    temperature: Any = None
    top_p: Any = None
    authorization: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    videos: int = 0


Behaviour = Callable[[SeenRequest], str]


def caption_for(req: SeenRequest) -> str:
    w, h = req.sizes[0] if req.sizes else (0, 0)
    return (f"codes={','.join(str(c) for c in req.codes)} size={w}x{h} n={len(req.codes)} "
            f"sha={req.digest[:8]}")


def parse_caption(text: str) -> dict[str, Any]:
    """The fields of a caption this server wrote."""
    out: dict[str, Any] = {}
    for part in text.split():
        k, _, v = part.partition("=")
        out[k] = v
    out["codes"] = [int(c) for c in out.get("codes", "").split(",") if c]
    w, _, h = out.get("size", "0x0").partition("x")
    out["size"] = (int(w), int(h))
    out["n"] = int(out.get("n", 0))
    return out


EMBED_DIM = 16


def text_embedding(text: str) -> list[float]:
    """The vector the server's /embeddings gives a text: a fixed function of its bytes."""
    raw = hashlib.sha256(text.encode()).digest()
    return [(b - 127.5) / 127.5 for b in raw[:EMBED_DIM]]


def image_embedding(code: int) -> list[float]:
    """The vector it gives an image carrying `code`: the code's 16 bits as +-1."""
    return [1.0 if code >> (EMBED_DIM - 1 - k) & 1 else -1.0 for k in range(EMBED_DIM)]


class FakeOpenAIServer(BackgroundHTTPServer):
    def __init__(self, behaviour: Behaviour | None = None, *, latency_s: float = 0.0, hang_s: float = 5.0,
                 decode_images: bool = True, answer: Callable[[SeenRequest], str] | None = None,
                 jitter_s: float = 0.0, seed: int = 0):
        import random

        self.jitter_s = jitter_s
        self._rng = random.Random(seed)
        self.behaviour = behaviour
        self.answer = answer
        self.latency_s = latency_s
        self.hang_s = hang_s
        self.decode_images = decode_images
        self.requests: list[SeenRequest] = []
        self.lock = threading.Lock()
        self._attempts: dict[str, int] = {}
        self.in_flight = 0
        self.max_in_flight = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "FakeOpenAIServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt: str, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802
                server._handle(self)

        self._serve(Handler, "fake-openai")
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # ------------------------------------------------------------------ handling
    def _parse(self, doc: dict[str, Any], auth: str | None) -> SeenRequest:
        from PIL import Image

        codes, sizes, formats = [], [], []
        videos = 0
        prompt = ""
        h = hashlib.sha256()
        for msg in doc.get("messages", []):
            content = msg.get("content")
            if isinstance(content, str):
                prompt = content
                continue
            for part in content or []:
                if part.get("type") == "text":
                    prompt = part.get("text", "")
                elif part.get("type") == "image_url":
                    url = part["image_url"]["url"]
                    head, _, b64 = url.partition(",")
                    raw = base64.b64decode(b64)
                    h.update(raw)
                    formats.append(head.split(";")[0].removeprefix("data:"))
                    if self.decode_images:
                        img = Image.open(io.BytesIO(raw)).convert("RGB")
                        sizes.append(img.size)
                        codes.append(read_code(np.asarray(img)))
                elif part.get("type") == "video_url":
                    head, _, data = part["video_url"]["url"].partition(",")
                    if head != "data:video/jpeg;base64":
                        raise ValueError(f"unsupported video URL {head[:40]!r}")
                    videos += 1
                    for b64 in data.split(","):
                        raw = base64.b64decode(b64)
                        h.update(raw)
                        formats.append("video/jpeg")
                        if self.decode_images:
                            img = Image.open(io.BytesIO(raw)).convert("RGB")
                            sizes.append(img.size)
                            codes.append(read_code(np.asarray(img)))
        digest = h.hexdigest()
        with self.lock:
            attempt = self._attempts.get(digest, 0) + 1
            self._attempts[digest] = attempt
        known = {"model", "messages", "max_tokens", "temperature", "top_p"}
        return SeenRequest(model=doc.get("model", ""), prompt=prompt, codes=codes, sizes=sizes, formats=formats,
                           digest=digest, attempt=attempt, max_tokens=doc.get("max_tokens"),
                           temperature=doc.get("temperature"), top_p=doc.get("top_p"), authorization=auth,
                           extra={k: v for k, v in doc.items() if k not in known}, videos=videos)

    def _embeddings(self, h: BaseHTTPRequestHandler) -> tuple[int, bytes]:
        """``POST /v1/embeddings``: ``input`` texts (the OpenAI form) or one ``messages`` turn with
        an image (vLLM's multimodal form): :func:`text_embedding` / :func:`image_embedding`."""
        length = int(h.headers.get("Content-Length") or 0)
        try:
            doc = json.loads(h.rfile.read(length))
            if "messages" in doc:
                req = self._parse(doc, h.headers.get("Authorization"))
                if len(req.codes) != 1:
                    raise ValueError(f"one image per request, got {len(req.codes)}")
                vecs = [image_embedding(req.codes[0])]
            else:
                inp = doc["input"]
                texts = [inp] if isinstance(inp, str) else list(inp)
                req = SeenRequest(model=doc.get("model", ""), prompt="\n".join(texts), codes=[], sizes=[], formats=[],
                                  digest="", attempt=1, authorization=h.headers.get("Authorization"))
                vecs = [text_embedding(t) for t in texts]
        except Exception as exc:
            return 400, json.dumps({"error": {"message": f"bad request: {exc}"}}).encode()
        with self.lock:
            self.requests.append(req)
        if self.jitter_s:
            with self.lock:
                delay = self._rng.random() * self.jitter_s
            time.sleep(delay)
        body = {"object": "list", "model": doc.get("model", ""),
                "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vecs)],
                "usage": {"prompt_tokens": 0, "total_tokens": 0}}
        return 200, json.dumps(body).encode()

    def _reply(self, h: BaseHTTPRequestHandler, code: int, body: bytes) -> None:
        try:
            h.send_response(code)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(body)))
            if code == 429:
                h.send_header("Retry-After", "0")
            h.end_headers()
            h.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            pass

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            code, body = self._respond(h)
        finally:  # counted out before the answer leaves, so the client's next request cannot overlap it
            with self.lock:
                self.in_flight -= 1
        self._reply(h, code, body)

    def _respond(self, h: BaseHTTPRequestHandler) -> tuple[int, bytes]:
        if h.path.rstrip("/").endswith("/embeddings"):
            return self._embeddings(h)
        if not h.path.rstrip("/").endswith("/chat/completions"):
            return 404, b'{"error": {"message": "not found"}}'
        length = int(h.headers.get("Content-Length") or 0)
        try:
            doc = json.loads(h.rfile.read(length))
            req = self._parse(doc, h.headers.get("Authorization"))
        except Exception as exc:
            return 400, json.dumps({"error": {"message": f"bad request: {exc}"}}).encode()
        with self.lock:
            self.requests.append(req)
        action = self.behaviour(req) if self.behaviour else "ok"
        if self.latency_s:
            time.sleep(self.latency_s)
        if self.jitter_s:
            with self.lock:
                delay = self._rng.random() * self.jitter_s
            time.sleep(delay)
        if action == "hang":
            time.sleep(self.hang_s)
            action = "ok"
        if action in ("500", "429", "400", "503"):
            return int(action), json.dumps({"error": {"message": f"injected {action}"}}).encode()
        if action == "malformed":
            return 200, b'{"choices": [ {"message": '
        if action == "no_choices":
            return 200, b'{"object": "chat.completion", "choices": []}'
        text = self.answer(req) if self.answer else caption_for(req)
        body = {
            "id": f"chatcmpl-{req.digest[:12]}",
            "object": "chat.completion",
            "created": 0,
            "model": req.model,
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 0, "completion_tokens": len(text.split()), "total_tokens": 0},
        }
        return 200, json.dumps(body).encode()
