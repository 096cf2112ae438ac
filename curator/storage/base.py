"""The storage interface every backend implements.

A backend serves one URI scheme. URIs are always absolute (`file:///abs/path`,
`s3://bucket/key`, `gs://bucket/key`, `az://container/key`, `mem://bucket/key`).
Callers normally use the module-level helpers in :mod:`curator.storage`, which pick the
backend from the URI; stages never import a cloud SDK.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Iterator, Sequence

if TYPE_CHECKING:
    from .config import StorageConfig

MiB = 1024 * 1024


class StorageError(Exception):
    """Base class: one line, no credentials, names the URI."""


class NotFound(StorageError):
    """The object (or its bucket / container) does not exist."""


class BucketNotFound(NotFound):
    """The bucket or container does not exist."""


class AccessDenied(StorageError):
    """Credentials were rejected or lack permission."""


class TransientError(StorageError):
    """Throttling, 5xx or a dropped connection: worth retrying."""


class PreconditionFailed(StorageError):
    """A conditional write (:meth:`Store.put_if`) found the object created or changed by
    someone else since the version it was given (or present, when creating only)."""


@dataclass(frozen=True)
class ObjectInfo:
    uri: str
    size: int
    mtime: float | None = None  # seconds since the epoch, when the backend knows it
    etag: str | None = None


def _matches(key: str, suffixes: Sequence[str] | None) -> bool:
    if not suffixes:
        return True
    low = key.lower()
    return any(low.endswith(s.lower()) for s in suffixes)


class Store(ABC):
    """One backend. Instances are cheap to build (SDK clients are made on first use),
    thread-safe, and rebuilt from the :class:`StorageConfig` in every process."""

    scheme: str = ""
    #: objects at least this large are written with the backend's multipart / resumable /
    #: block upload instead of one request.
    multipart_threshold: int = 64 * MiB
    multipart_chunk: int = 16 * MiB
    #: listing, reads and writes go through requests (pages, parts) that `counters` counts
    remote: bool = False

    def __init__(self, config: "StorageConfig | None" = None):
        from .config import StorageConfig

        self.config = config or StorageConfig()
        self.multipart_threshold = self.config.multipart_threshold_mb * MiB
        self.multipart_chunk = self.config.multipart_chunk_mb * MiB
        #: requests by kind ("list", "get", "put", "part", "commit", …), for tests and benchmarks
        self.counters: Counter[str] = Counter()
        self._counter_lock = threading.Lock()

    def count(self, kind: str, n: int = 1) -> None:
        with self._counter_lock:
            self.counters[kind] += n

    # -- listing -----------------------------------------------------------------------
    @abstractmethod
    def _iter_objects(self, prefix_uri: str, page_size: int) -> Iterator[ObjectInfo]:
        """Yield every object whose URI starts with `prefix_uri`, page by page, in key order."""

    def list(
        self,
        prefix_uri: str,
        suffixes: Sequence[str] | None = None,
        page_size: int = 1000,
    ) -> Iterator[ObjectInfo]:
        """A lazy, paginated listing: memory is one page, never the whole listing."""
        for info in self._iter_objects(prefix_uri, page_size):
            if _matches(info.uri, suffixes):
                yield info

    # -- metadata ----------------------------------------------------------------------
    @abstractmethod
    def stat(self, uri: str) -> ObjectInfo:
        """Size and mtime of one object; raises NotFound."""

    def exists(self, uri: str) -> bool:
        try:
            self.stat(uri)
            return True
        except NotFound:
            return False

    # -- reads -------------------------------------------------------------------------
    @abstractmethod
    def read_range(self, uri: str, start: int, end: int | None) -> bytes:
        """Bytes [start, end) of an object (end=None: to the end)."""

    def read_bytes(self, uri: str) -> bytes:
        return self.read_range(uri, 0, None)

    def download(self, uri: str, local_path: str) -> None:
        """Stream an object to a local file (atomically: temp name, then rename)."""
        parent = os.path.dirname(os.path.abspath(local_path))
        os.makedirs(parent, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".part-", dir=parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                self._download_to(uri, fh)
            os.replace(tmp, local_path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def _download_to(self, uri: str, fh: BinaryIO) -> None:
        size = self.stat(uri).size
        pos = 0
        chunk = self.multipart_chunk
        while pos < size:
            data = self.read_range(uri, pos, min(size, pos + chunk))
            if not data:
                break
            fh.write(data)
            pos += len(data)

    # -- writes ------------------------------------------------------------------------
    @abstractmethod
    def write_bytes(self, uri: str, data: bytes) -> None:
        """Write a whole object atomically: readers see the old object or the new one."""

    def upload(self, local_path: str, uri: str) -> None:
        """Upload a local file atomically; large files use multipart / resumable uploads."""
        with open(local_path, "rb") as fh:
            self.write_bytes(uri, fh.read())

    @contextlib.contextmanager
    def open_write(self, uri: str) -> Iterator[BinaryIO]:
        """A writable file; the object appears under `uri` only if the block exits cleanly."""
        fd, tmp = tempfile.mkstemp(prefix="curator-upload-")
        try:
            with os.fdopen(fd, "w+b") as fh:
                yield fh
            self.upload(tmp, uri)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    # -- conditional writes --------------------------------------------------------------
    def read_versioned(self, uri: str) -> tuple[bytes, str]:
        """The whole object and its version (S3 ETag, GCS generation, Azure ETag; local
        files: mtime and content hash). The version is never newer than the bytes: a
        :meth:`put_if` with it fails rather than overwrite a change the bytes do not show."""
        raise StorageError(f"{self.scheme}:// has no conditional writes")

    def put_if(self, uri: str, data: bytes, version: str | None) -> str:
        """Compare-and-swap: write the whole object only if it is still at `version`
        (`None`: only if it does not exist), atomically with the check; return the new
        version. Raises :class:`PreconditionFailed` when the condition does not hold.

        Retries: a request retried after a lost answer can find its own first attempt
        applied and fail; callers that must know check what they read next (the catalog's
        commit loop does)."""
        raise StorageError(f"{self.scheme}:// has no conditional writes")

    # -- delete ------------------------------------------------------------------------
    @abstractmethod
    def delete(self, uri: str) -> None:
        """Delete one object; deleting a missing object is not an error."""


@contextlib.contextmanager
def local_copy(store: Store, uri: str, local_path: str | None) -> Iterator[str]:
    """Yield a local path holding the object; a temp copy unless the object is local."""
    if local_path is not None:
        yield local_path
        return
    tmpdir = tempfile.mkdtemp(prefix="curator-dl-")
    try:
        suffix = os.path.splitext(uri)[1][:16]
        dst = os.path.join(tmpdir, "object" + suffix)
        store.download(uri, dst)
        yield dst
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
