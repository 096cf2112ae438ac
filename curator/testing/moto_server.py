"""moto's S3 server (as `python -m moto.server` runs it) plus one test-set-up endpoint.

    python -m curator.testing.moto_server --port 5000

``POST /_curator/seed?bucket=B&prefix=P&count=N&size=S&suffix=X`` creates N objects
``P000000X … P{N-1}X`` of S zero bytes directly in moto's backend. Through the S3 API moto
takes ~5 ms per PUT on a small machine, so a 20,000-object bucket would take minutes;
seeding takes well under a second. Everything else (listing, reads, writes) goes
through moto's real S3 API unchanged.

Conditional writes (``If-Match`` / ``If-None-Match`` on PUT, POST and DELETE) run one at
a time. moto checks the condition and then stores the object with no lock around the two
steps, so on its threaded server two conditional PUTs racing on one key could both pass
their check (rare under the GIL — 6 threads x 25 compare-and-swaps lost nothing here —
but possible), a lost update S3 itself never allows. Serialising them gives the emulator
S3's guarantee outright; unconditional requests stay concurrent.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any
from urllib.parse import parse_qs


def _seed(query: str) -> bytes:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    q = {k: v[0] for k, v in parse_qs(query).items()}
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    bucket, prefix = q["bucket"], q.get("prefix", "")
    count, size, suffix = int(q.get("count", "0")), int(q.get("size", "0")), q.get("suffix", "")
    body = b"\0" * size
    for i in range(count):
        backend.put_object(bucket, f"{prefix}{i:06d}{suffix}", body)
    return str(count).encode()


def main(argv: list[str] | None = None) -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import run_simple

    ap = argparse.ArgumentParser()
    ap.add_argument("-H", "--host", default="127.0.0.1")
    ap.add_argument("-p", "--port", type=int, required=True)
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    moto_app = DomainDispatcherApplication(create_backend_app)
    conditional = threading.Lock()

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") == "/_curator/seed" and environ.get("REQUEST_METHOD") == "POST":
            try:
                body, status = _seed(environ.get("QUERY_STRING", "")), "200 OK"
            except Exception as exc:  # a test set-up error: say what went wrong
                body, status = f"{type(exc).__name__}: {exc}".encode(), "400 Bad Request"
            start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
            return [body]
        if environ.get("REQUEST_METHOD") in ("PUT", "POST", "DELETE") and (
                "HTTP_IF_MATCH" in environ or "HTTP_IF_NONE_MATCH" in environ):
            with conditional:  # check and write as one step, as S3 does
                return list(moto_app(environ, start_response))
        return moto_app(environ, start_response)

    run_simple(args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
