"""What the three cloud backends share: retries, resumable downloads, upload dispatch.

A cloud backend implements a handful of requests (``_list_page``, ``_head``, ``_get``,
``_open``, ``_put``, ``_upload_parts``, ``_delete``) and this class turns them into the
:class:`~curator.storage.base.Store` interface:

- every request runs under the :class:`~curator.storage.retry.RetryPolicy`;
- a missing object is told apart from a missing bucket with one extra request, only on
  the error path;
- downloads stream one GET into the file and, when the connection drops, resume from the
  byte they reached (pinned to the object version they started on, so an overwrite in
  between fails instead of mixing two versions);
- writes below ``multipart_threshold`` are one atomic request; larger ones go through the
  backend's multipart / resumable / block upload, which publishes nothing until it
  completes.
"""

from __future__ import annotations

import functools
import os
import threading
from abc import abstractmethod
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, BinaryIO, Callable, Iterable, Iterator, TypeVar

from .base import BucketNotFound, NotFound, ObjectInfo, PreconditionFailed, StorageError, Store
from .retry import RetryPolicy, make_error, quiet_sdk_loggers
from .uri import split

T = TypeVar("T")

#: one listing page: (key, size, mtime, etag) items and the token of the next page (None: last)
Page = tuple[list[tuple[str, int, "float | None", "str | None"]], "str | None"]


class Source:
    """Bytes to upload, read by offset from any thread (a file or a bytes object)."""

    def __init__(self, size: int):
        self.size = size

    def read(self, offset: int, length: int) -> bytes:
        raise NotImplementedError

    def parts(self, chunk: int) -> list[tuple[int, int, int]]:
        """(part number from 1, offset, length) covering the source."""
        out, off, n = [], 0, 1
        while off < self.size:
            length = min(chunk, self.size - off)
            out.append((n, off, length))
            off += length
            n += 1
        return out


class BytesSource(Source):
    def __init__(self, data: bytes | bytearray | memoryview):
        self.view = memoryview(data).cast("B")
        super().__init__(self.view.nbytes)

    def read(self, offset: int, length: int) -> bytes:
        return bytes(self.view[offset:offset + length])


class FileSource(Source):
    def __init__(self, path: str):
        self.fd = os.open(path, os.O_RDONLY)
        super().__init__(os.fstat(self.fd).st_size)

    def read(self, offset: int, length: int) -> bytes:
        return os.pread(self.fd, length, offset)

    def close(self) -> None:
        os.close(self.fd)


def run_parts(fn: Callable[[int, int, int], T], parts: Iterable[tuple[int, int, int]], concurrency: int) -> list[T]:
    """Run `fn(number, offset, length)` over parts with at most `concurrency` in flight
    (so at most that many part buffers in memory); results in part order. The first
    failure cancels what has not started and is raised."""
    results: dict[int, T] = {}
    parts = list(parts)
    if concurrency <= 1 or len(parts) <= 1:
        return [fn(*p) for p in parts]
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="curator-part") as pool:
        pending: dict[Future[T], int] = {}
        it = iter(parts)
        try:
            for p in it:
                pending[pool.submit(fn, *p)] = p[0]
                if len(pending) >= concurrency:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for f in done:
                        results[pending.pop(f)] = f.result()
            for f in list(pending):
                results[pending.pop(f)] = f.result()
        except BaseException:
            for f in pending:
                f.cancel()
            raise
    return [results[n] for n, _, _ in parts]


class RemoteStore(Store):
    remote = True

    def __init__(self, config: Any = None):
        super().__init__(config)
        self.retry = RetryPolicy.from_config(self.config)
        self._client: Any = None
        self._client_lock = threading.Lock()

    # ------------------------------------------------------------------ plumbing
    @property
    def client(self) -> Any:
        """The SDK client, made on first use (importing the SDK only then)."""
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    quiet_sdk_loggers()
                    self._client = self._make_client()
        return self._client

    @abstractmethod
    def _make_client(self) -> Any: ...

    @abstractmethod
    def _translate(self, exc: BaseException, op: str, uri: str) -> StorageError:
        """Map an SDK exception to a curator error (TransientError for retryable ones)."""

    def _call(self, fn: Callable[[], T], op: str, uri: str, kind: str | None = None) -> T:
        if kind:
            self.count(kind)
        return self.retry.call(fn, op=op, uri=uri, translate=self._translate)

    def _missing(self, uri: str, op: str) -> StorageError:
        """The error for a 404 on an object: its bucket missing, or just the object."""
        try:
            exists = self._call(lambda: self._bucket_exists(uri), "check the bucket of", uri, "head")
        except StorageError:
            exists = True  # cannot tell: report the object
        return make_error(NotFound if exists else BucketNotFound, uri, op)

    @abstractmethod
    def _bucket_exists(self, uri: str) -> bool: ...

    # ------------------------------------------------------------------- listing
    def _iter_objects(self, prefix_uri: str, page_size: int) -> Iterator[ObjectInfo]:
        """Page after page, each page one retried request; one page in memory."""
        scheme, bucket, prefix = split(prefix_uri)
        token: str | None = None
        while True:
            items, token = self._call(functools.partial(self._list_page, bucket, prefix, page_size, token),
                                      "list", prefix_uri, "list")
            for key, size, mtime, etag in items:
                if not key.endswith("/"):  # a "folder" marker, not an object
                    yield ObjectInfo(f"{scheme}://{bucket}/{key}", size, mtime, etag)
            if not token:
                return
            del items

    @abstractmethod
    def _list_page(self, bucket: str, prefix: str, page_size: int, token: str | None) -> Page:
        """One page of keys under `prefix` from `token` (None: the first page)."""

    # ------------------------------------------------------------------ metadata
    def stat(self, uri: str) -> ObjectInfo:
        try:
            info = self._call(lambda: self._head(uri), "stat", uri, "head")
        except NotFound as exc:
            if isinstance(exc, BucketNotFound):
                raise
            raise self._missing(uri, "stat") from None
        return info

    @abstractmethod
    def _head(self, uri: str) -> ObjectInfo:
        """Metadata of one object; raise the SDK's 404 when it is missing."""

    # --------------------------------------------------------------------- reads
    def read_range(self, uri: str, start: int, end: int | None) -> bytes:
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"bad byte range [{start}, {end}) for {uri}")
        if end is not None and end == start:
            self.stat(uri)  # an empty range of a missing object is still an error
            return b""
        try:
            return self._call(lambda: self._get(uri, start, end), "read", uri, "get")
        except NotFound as exc:
            if isinstance(exc, BucketNotFound):
                raise
            raise self._missing(uri, "read") from None

    @abstractmethod
    def _get(self, uri: str, start: int, end: int | None) -> bytes:
        """Bytes [start, end) (end None: to the end); b'' when start is past the end."""

    def _download_to(self, uri: str, fh: BinaryIO) -> None:
        """One streamed GET into `fh`; after a dropped connection, resume where it stopped."""
        state: dict[str, Any] = {"pos": 0, "version": None}

        def attempt() -> None:
            chunks, version = self._open(uri, state["pos"], state["version"])
            state["version"] = version
            for chunk in chunks:
                fh.write(chunk)
                state["pos"] += len(chunk)

        try:
            self._call(attempt, "download", uri, "get")
        except NotFound as exc:
            if isinstance(exc, BucketNotFound):
                raise
            raise self._missing(uri, "download") from None

    @abstractmethod
    def _open(self, uri: str, start: int, version: Any) -> tuple[Iterator[bytes], Any]:
        """A stream of the object's bytes from `start`, and the version it reads (an ETag or
        generation). With `version` set, fail (precondition) if the object changed."""

    # -------------------------------------------------------------------- writes
    def write_bytes(self, uri: str, data: bytes) -> None:
        self._write(uri, BytesSource(data))

    def upload(self, local_path: str, uri: str) -> None:
        src = FileSource(local_path)
        try:
            self._write(uri, src)
        finally:
            src.close()

    def _write(self, uri: str, src: Source) -> None:
        try:
            if src.size >= self.multipart_threshold:
                self._upload_parts(uri, src)
            else:
                data = src.read(0, src.size)
                self._call(lambda: self._put(uri, data), "write", uri, "put")
        except NotFound as exc:
            if isinstance(exc, BucketNotFound):
                raise
            raise self._missing(uri, "write") from None

    @abstractmethod
    def _put(self, uri: str, data: bytes) -> None:
        """One atomic request writing the whole object."""

    @abstractmethod
    def _upload_parts(self, uri: str, src: Source) -> None:
        """Multipart / resumable / block upload; nothing visible unless it completes."""

    # ------------------------------------------------------- conditional writes
    def read_versioned(self, uri: str) -> tuple[bytes, str]:
        try:
            return self._call(lambda: self._get_versioned(uri), "read", uri, "get")
        except NotFound as exc:
            if isinstance(exc, BucketNotFound):
                raise
            raise self._missing(uri, "read") from None

    def put_if(self, uri: str, data: bytes, version: str | None) -> str:
        """One request with the store's own precondition (S3 If-None-Match / If-Match,
        GCS ifGenerationMatch, Azure If-None-Match / If-Match on the ETag): the service
        checks and writes atomically."""
        try:
            return self._call(lambda: self._put_if(uri, bytes(data), version), "write (conditionally)", uri, "put")
        except NotFound as exc:
            if isinstance(exc, BucketNotFound):
                raise
            missing = self._missing(uri, "write")
            if isinstance(missing, BucketNotFound):
                raise missing from None
            # If-Match on an object that was deleted meanwhile
            raise PreconditionFailed(f"conditional write of {uri} refused: the object is gone") from None

    @abstractmethod
    def _get_versioned(self, uri: str) -> tuple[bytes, str]:
        """The object's bytes and its version (ETag / generation), never a newer version
        than the bytes."""

    @abstractmethod
    def _put_if(self, uri: str, data: bytes, version: str | None) -> str:
        """One conditional write (create only when `version` is None); the new version."""

    # -------------------------------------------------------------------- delete
    def delete(self, uri: str) -> None:
        self._call(lambda: self._delete(uri), "delete", uri, "delete")

    @abstractmethod
    def _delete(self, uri: str) -> None:
        """Delete one object; a missing object is not an error (a missing bucket is)."""
