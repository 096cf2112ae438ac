"""gcp-storage-emulator with GCS's generation preconditions on uploads and downloads.

    python -m curator.testing.gcs_server --port 9023

The emulator package answers the JSON API but ignores ``ifGenerationMatch``: an upload
with ``ifGenerationMatch=0`` overwrites an existing object, one with ``=N`` overwrites any
generation. Real GCS refuses both with ``412 conditionNotMet``, and curator's conditional
writes (``storage.put_if``: the catalog's commits) rely on that. This module runs the same
emulator in memory, with its upload handler (media and multipart uploads: what one-request
writes use) and its media download handler wrapped to check ``ifGenerationMatch`` against
the stored object's generation first, exactly as GCS documents it (0 = must not exist).

The emulator serves one request at a time (a single-threaded HTTP/1.0 server), so the
check and the write of one request cannot interleave with another request — the
atomicity GCS gives. Everything else goes to the emulator unchanged. Resumable uploads'
preconditions (sent when the upload starts) are not emulated; curator's conditional
writes are single requests.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from http import HTTPStatus
from typing import Any


def _current_generation(storage: Any, bucket: str, name: str) -> str:
    from gcp_storage_emulator.exceptions import NotFound

    try:
        return str(storage.get_file_obj(bucket, name).get("generation") or "0")
    except NotFound:
        return "0"


def _refuse(response: Any) -> None:
    response.status = HTTPStatus.PRECONDITION_FAILED
    response.json({"error": {"code": 412, "message": "At least one of the pre-conditions you specified did not hold.",
                             "errors": [{"reason": "conditionNotMet", "domain": "global",
                                         "message": "Precondition Failed"}]}})


def install() -> None:
    """Wrap the emulator's upload and download handlers (module attributes and the routing
    table) with the precondition check."""
    from gcp_storage_emulator import server
    from gcp_storage_emulator.handlers import objects

    orig_insert, orig_download = objects.insert, objects.download

    def insert(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> Any:
        want = request.query.get("ifGenerationMatch")
        kind = (request.query.get("uploadType") or [""])[0]
        if want and kind in ("media", "multipart"):
            data = request.data  # read the body first: the answer must not cut the upload off
            name = None
            if "name" in request.query:
                name = request.query["name"][0]
            elif kind == "multipart" and isinstance(data, dict):
                name = (data.get("meta") or {}).get("name")
            if name is not None and _current_generation(storage, request.params["bucket_name"], name) != want[0]:
                return _refuse(response)
        return orig_insert(request, response, storage, *args, **kwargs)

    def download(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> Any:
        want = request.query.get("ifGenerationMatch")
        bucket, name = request.params["bucket_name"], request.params["object_id"]
        current = _current_generation(storage, bucket, name)
        if want and current != want[0]:
            return _refuse(response)
        out = orig_download(request, response, storage, *args, **kwargs)
        if current != "0" and response.status in (HTTPStatus.OK, HTTPStatus.PARTIAL_CONTENT):
            response["x-goog-generation"] = current
        return out

    objects.insert, objects.download = insert, download
    swap = {orig_insert: insert, orig_download: download}
    server.HANDLERS = tuple((rx, {m: swap.get(h, h) for m, h in handlers.items()})
                            for rx, handlers in server.HANDLERS)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-H", "--host", default="127.0.0.1")
    ap.add_argument("-p", "--port", type=int, required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL)
    install()
    from gcp_storage_emulator.server import create_server

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    srv = create_server(args.host, args.port, in_memory=True)
    srv.run()


if __name__ == "__main__":
    main()
