"""An HTTP reverse proxy for tests and benchmarks: faults and slow links on demand.

    with FaultProxy(emulator.port) as proxy:
        proxy.fail(status=503, times=2, when=lambda r: r.method == "GET")   # throttle twice
        proxy.fail(drop=True, when=lambda r: "partNumber=3" in r.path)      # reset a connection
        proxy.fail(cut_after=1 << 20, when=...)                              # die mid-body
        # point the client at proxy.endpoint instead of the emulator's

It runs in threads of the calling process, keeps the client's Host header (so request
signatures stay valid) and records every request it sees (``proxy.requests``). A fault
answers a request itself — an HTTP error with a service-shaped body, a connection closed
without an answer, or a response cut after some bytes — instead of forwarding it.
``latency_s`` and ``bandwidth_mbps`` make a slow network for the transfer benchmarks.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable

from curator.testing.localhttp import BackgroundHTTPServer

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade"}


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Fault:
    when: Callable[[Seen], bool]
    times: int | None  # None: every matching request
    status: int | None = None
    body: bytes = b""
    content_type: str = "application/xml"
    drop: bool = False
    cut_after: int | None = None
    hits: int = 0


class _Link:
    """A shared token bucket: the bandwidth of the whole (simulated) link."""

    def __init__(self, mbps: float | None):
        self.rate = mbps * 1e6 / 8 if mbps else None
        self.lock = threading.Lock()
        self.next_free = time.monotonic()

    def pace(self, nbytes: int) -> None:
        if not self.rate:
            return
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next_free)
            self.next_free = start + nbytes / self.rate
            wait = self.next_free - now
        if wait > 0:
            time.sleep(wait)


@dataclass
class FaultProxy(BackgroundHTTPServer):
    upstream_port: int
    upstream_host: str = "127.0.0.1"
    latency_s: float = 0.0
    bandwidth_mbps: float | None = None
    requests: list[Seen] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._link = _Link(self.bandwidth_mbps)

    # ---------------------------------------------------------------- control
    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail(self, *, when: Callable[[Seen], bool] = lambda r: True, times: int | None = 1,
             status: int | None = None, body: bytes = b"", content_type: str = "application/xml",
             drop: bool = False, cut_after: int | None = None) -> Fault:
        """Answer the next `times` matching requests with a fault (see the module doc)."""
        if status is None and not drop and cut_after is None:
            raise ValueError("a fault needs status=, drop=True or cut_after=")
        f = Fault(when, times, status, body, content_type, drop, cut_after)
        with self._lock:
            self.faults.append(f)
        return f

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()
            self.requests.clear()

    def seen(self, method: str | None = None) -> list[Seen]:
        with self._lock:
            return [r for r in self.requests if method is None or r.method == method]

    def _fault_for(self, req: Seen) -> Fault | None:
        with self._lock:
            self.requests.append(req)
            for f in self.faults:
                if (f.times is None or f.hits < f.times) and f.when(req):
                    f.hits += 1
                    return f
        return None

    def start(self) -> "FaultProxy":
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = bytearray()
                    while True:
                        size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return bytes(out)
                        out += self.rfile.read(size)
                        self.rfile.readline()
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _handle(self) -> None:
                body = self._body()
                proxy._link.pace(len(body))
                req = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
                fault = proxy._fault_for(req)
                if proxy.latency_s:
                    time.sleep(proxy.latency_s)
                if fault is not None and (fault.drop or fault.status is not None):
                    if fault.drop:
                        self.close_connection = True
                        try:
                            self.connection.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
                        return
                    assert fault.status is not None  # drop faults returned above
                    self.send_response(fault.status)
                    self.send_header("Content-Type", fault.content_type)
                    self.send_header("Content-Length", str(len(fault.body)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(fault.body)
                    return
                self._forward(req, body, fault.cut_after if fault is not None else None)

            def _forward(self, req: Seen, body: bytes, cut_after: int | None) -> None:
                up = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=120)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                    if body or self.command in ("PUT", "POST", "PATCH"):
                        headers["Content-Length"] = str(len(body))
                    up.request(self.command, self.path, body=body or None, headers=headers)
                    resp = up.getresponse()
                    out_headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP]
                    length = resp.getheader("Content-Length")
                    no_body = self.command == "HEAD" or resp.status in (204, 304) or resp.status < 200
                    if length is None and not no_body:  # upstream chunked or close-delimited: buffer it
                        data = resp.read()
                        out_headers = [(k, v) for k, v in out_headers if k.lower() != "content-length"]
                        out_headers.append(("Content-Length", str(len(data))))
                        chunks: Any = iter([data])
                    else:
                        chunks = iter(lambda: resp.read(64 * 1024), b"")
                    self.send_response(resp.status)
                    for k, v in out_headers:
                        self.send_header(k, v)
                    self.end_headers()
                    if no_body:
                        return
                    sent = 0
                    for chunk in chunks:
                        if cut_after is not None and sent + len(chunk) > cut_after:
                            self.wfile.write(chunk[: max(0, cut_after - sent)])
                            self.wfile.flush()
                            self.close_connection = True
                            self.connection.shutdown(socket.SHUT_RDWR)
                            return
                        proxy._link.pace(len(chunk))
                        self.wfile.write(chunk)
                        sent += len(chunk)
                finally:
                    up.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _handle

        self._serve(Handler, "fault-proxy")
        return self


#: service-shaped error bodies, so each SDK parses the fault as it would the real thing
S3_SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
               b"<Message>Please reduce your request rate.</Message></Error>")
S3_DENIED = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
             b"<Message>Access Denied</Message></Error>")
AZ_BUSY = (b'<?xml version="1.0" encoding="utf-8"?><Error><Code>ServerBusy</Code>'
           b"<Message>The server is busy.</Message></Error>")
GCS_503 = b'{"error": {"code": 503, "message": "Backend Error", "errors": [{"reason": "backendError"}]}}'
GCS_403 = b'{"error": {"code": 403, "message": "Forbidden", "errors": [{"reason": "forbidden"}]}}'
