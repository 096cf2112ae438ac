"""Google Cloud Storage through google-cloud-storage (JSON API).

Credentials: Application Default Credentials (``GOOGLE_APPLICATION_CREDENTIALS``,
``gcloud auth application-default login``, the metadata server on GCE/GKE). An emulator
is reached with ``storage.gcs.endpoint`` or ``STORAGE_EMULATOR_HOST``; a plain ``http://``
endpoint is spoken to anonymously unless ``storage.gcs.anonymous=false``.

Writes below the multipart threshold are one JSON-API upload (atomic). Larger ones are a
*resumable* upload in ``storage.multipart_chunk_mb`` chunks: the object appears only when
the last chunk is accepted, and a chunk that fails is resumed from the last byte the
service acknowledged. (The XML multipart API that ``transfer_manager`` uses is avoided:
emulators do not implement it, and it needs HMAC-style XML endpoints.)
"""

from __future__ import annotations

import io
import os
from typing import Any, Iterator
from urllib.parse import quote

from .base import AccessDenied, BucketNotFound, ObjectInfo, StorageError, TransientError
from .remote import Page, RemoteStore, Source
from .retry import classify_http, exc_name, is_connection_error, make_error
from .uri import split

#: streamed downloads write (and can resume) in pieces of this size
READ_CHUNK = 1024 * 1024
DEFAULT_ENDPOINT = "https://storage.googleapis.com"
SCOPES = ("https://www.googleapis.com/auth/devstorage.read_write",)


class _SourceStream(io.RawIOBase):
    """A seekable read-only file over a :class:`Source` (what the resumable uploader reads)."""

    def __init__(self, src: Source):
        self.src, self.pos = src, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.src.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def read(self, n: int = -1) -> bytes:
        n = self.src.size - self.pos if n is None or n < 0 else min(n, self.src.size - self.pos)
        data = self.src.read(self.pos, n) if n > 0 else b""
        self.pos += len(data)
        return data


class GCSStore(RemoteStore):
    scheme = "gs"

    def _endpoint(self) -> str:
        cfg = self.config.gcs
        env = os.environ.get("STORAGE_EMULATOR_HOST")
        if cfg.endpoint:
            return cfg.endpoint
        if env:
            return env.rstrip("/") if "://" in env else "http://" + env.rstrip("/")
        return DEFAULT_ENDPOINT

    def _make_client(self) -> Any:
        import google.auth
        from google.auth.credentials import AnonymousCredentials
        from google.auth.transport.requests import AuthorizedSession
        from google.cloud import storage as gcs
        from requests.adapters import HTTPAdapter

        cfg = self.config.gcs
        endpoint = self._endpoint()
        anonymous = cfg.anonymous if cfg.anonymous is not None else endpoint.startswith("http://")
        project = cfg.project or os.environ.get("GOOGLE_CLOUD_PROJECT")
        if anonymous:
            creds: Any = AnonymousCredentials()
        else:
            creds, adc_project = google.auth.default(scopes=SCOPES)
            project = project or adc_project
        session = AuthorizedSession(creds)
        pool = max(10, 2 * self.config.concurrency + 4)
        adapter = HTTPAdapter(pool_connections=pool, pool_maxsize=pool, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self._session = session
        self._api = endpoint
        options = {"api_endpoint": endpoint} if endpoint != DEFAULT_ENDPOINT else None
        return gcs.Client(project=project or "<none>", credentials=creds, client_options=options, _http=session)

    @property
    def _timeout(self) -> float:
        return self.config.timeout_s

    # ------------------------------------------------------------------ errors
    def _translate(self, exc: BaseException, op: str, uri: str) -> StorageError:
        from google.api_core import exceptions as gexc
        from google.auth import exceptions as aexc

        status: int | None = None
        if isinstance(exc, gexc.GoogleAPICallError):
            status = exc.code
        else:
            resp = getattr(exc, "response", None)  # resumable-media's InvalidResponse
            status = getattr(resp, "status_code", None)
        if status is not None:
            return classify_http(status, str(status), uri, op)
        if isinstance(exc, aexc.DefaultCredentialsError):
            return AccessDenied(f"no Google credentials for {split(uri)[0]}://{split(uri)[1]}: run "
                                "`gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS")
        if isinstance(exc, aexc.RefreshError):
            return make_error(AccessDenied, uri, op, "credentials could not be refreshed")
        if isinstance(exc, aexc.TransportError) or is_connection_error(exc):
            return make_error(TransientError, uri, op, exc_name(exc))
        if type(exc).__name__ == "DataCorruption":
            return make_error(TransientError, uri, op, "checksum mismatch")
        return make_error(StorageError, uri, op, exc_name(exc))

    # ----------------------------------------------------------------- listing
    def _list_page(self, bucket: str, prefix: str, page_size: int, token: str | None) -> Page:
        from google.api_core import exceptions as gexc

        it = self.client.list_blobs(bucket, prefix=prefix or None, page_size=page_size, page_token=token,
                                    retry=None, timeout=self._timeout)
        try:
            page = next(it.pages)
        except StopIteration:
            return [], None
        except gexc.NotFound:  # a listing's only 404: the bucket
            raise make_error(BucketNotFound, f"gs://{bucket}/{prefix}", "list") from None
        items = [(b.name, int(b.size or 0), b.updated.timestamp() if b.updated else None, b.etag) for b in page]
        return items, it.next_page_token

    # ---------------------------------------------------------------- metadata
    def _bucket_exists(self, uri: str) -> bool:
        return self.client.bucket(split(uri)[1]).exists(retry=None, timeout=self._timeout)

    def _head(self, uri: str) -> ObjectInfo:
        from google.api_core import exceptions as gexc

        _, bucket, key = split(uri)
        blob = self.client.bucket(bucket).get_blob(key, retry=None, timeout=self._timeout)
        if blob is None:
            raise gexc.NotFound(f"{uri}")
        return ObjectInfo(uri, int(blob.size or 0), blob.updated.timestamp() if blob.updated else None, blob.etag)

    # ------------------------------------------------------------------- reads
    def _get(self, uri: str, start: int, end: int | None) -> bytes:
        from google.api_core import exceptions as gexc

        _, bucket, key = split(uri)
        blob = self.client.bucket(bucket).blob(key)
        kw: dict[str, Any] = {"retry": None, "timeout": self._timeout}
        if start or end is not None:
            kw.update(start=start, end=None if end is None else end - 1)
        try:
            return blob.download_as_bytes(**kw)
        except gexc.RequestRangeNotSatisfiable:
            return b""

    def _media_url(self, bucket: str, key: str) -> str:
        self.client  # noqa: B018 - makes the session and the endpoint
        return f"{self._api}/download/storage/v1/b/{quote(bucket, safe='')}/o/{quote(key, safe='')}?alt=media"

    def _open(self, uri: str, start: int, version: Any) -> tuple[Iterator[bytes], Any]:
        from google.api_core import exceptions as gexc

        _, bucket, key = split(uri)
        url = self._media_url(bucket, key)
        if version:
            url += f"&generation={version}"  # read the version the download started on
        headers = {"Range": f"bytes={start}-"} if start else {}
        resp = self._session.get(url, headers=headers, stream=True, timeout=self._timeout)
        if resp.status_code == 416:
            resp.close()
            return iter(()), version
        if resp.status_code >= 400:
            resp.close()
            raise gexc.from_http_response(resp)

        def chunks() -> Iterator[bytes]:
            with resp:
                yield from resp.iter_content(READ_CHUNK)

        return chunks(), version or resp.headers.get("x-goog-generation")

    # ------------------------------------------------------------------ writes
    def _put(self, uri: str, data: bytes) -> None:
        _, bucket, key = split(uri)
        self.client.bucket(bucket).blob(key).upload_from_string(data, content_type="application/octet-stream",
                                                                 retry=None, timeout=self._timeout)

    def _upload_parts(self, uri: str, src: Source) -> None:
        from google.resumable_media import common
        from google.resumable_media.requests import ResumableUpload

        _, bucket, key = split(uri)
        self.client  # noqa: B018 - makes the session and the endpoint
        url = f"{self._api}/upload/storage/v1/b/{quote(bucket, safe='')}/o?uploadType=resumable"
        upload = ResumableUpload(url, self.multipart_chunk)
        upload._retry_strategy = common.RetryStrategy(max_retries=0)  # curator's RetryPolicy retries
        stream = _SourceStream(src)

        def initiate() -> None:
            stream.seek(0)
            upload.initiate(self._session, stream, {"name": key}, "application/octet-stream",
                            total_bytes=src.size, timeout=self._timeout)

        self._call(initiate, "start a resumable upload of", uri, "start")
        state = {"clean": True}

        def chunk() -> None:
            if not state["clean"]:
                # The last attempt failed somewhere (an error answer, or a connection that
                # died before the answer): ask the service how far it got, go on from there.
                if not upload.invalid:
                    upload._make_invalid()
                upload.recover(self._session)
                state["clean"] = True
                if upload.finished:
                    return
            state["clean"] = False
            upload.transmit_next_chunk(self._session, timeout=self._timeout)
            state["clean"] = True

        while not upload.finished:
            self._call(chunk, "upload a chunk of", uri, "part")

    # ------------------------------------------------------- conditional writes
    def _get_versioned(self, uri: str) -> tuple[bytes, str]:
        from google.api_core import exceptions as gexc

        _, bucket, key = split(uri)
        # The generation first, then the bytes of exactly that generation (ifGenerationMatch:
        # 412 if it moved on meanwhile, then both again): never a version newer than the bytes.
        for _ in range(20):
            blob = self.client.bucket(bucket).get_blob(key, retry=None, timeout=self._timeout)
            if blob is None:
                raise gexc.NotFound(f"{uri}")
            gen = int(blob.generation)
            try:
                data = blob.download_as_bytes(if_generation_match=gen, retry=None, timeout=self._timeout)
            except gexc.PreconditionFailed:
                continue
            return data, str(gen)
        raise make_error(TransientError, uri, "read", "changed while read, 20 times")

    def _put_if(self, uri: str, data: bytes, version: str | None) -> str:
        # GCS preconditions: ifGenerationMatch=0 creates only; =N replaces only generation N.
        _, bucket, key = split(uri)
        blob = self.client.bucket(bucket).blob(key)
        blob.upload_from_string(data, content_type="application/octet-stream",
                                if_generation_match=0 if version is None else int(version),
                                retry=None, timeout=self._timeout)
        return str(blob.generation)

    # ------------------------------------------------------------------ delete
    def _delete(self, uri: str) -> None:
        from google.api_core import exceptions as gexc

        _, bucket, key = split(uri)
        try:
            self.client.bucket(bucket).blob(key).delete(retry=None, timeout=self._timeout)
        except gexc.NotFound:
            if not self._bucket_exists(uri):
                raise make_error(BucketNotFound, uri, "delete") from None
