"""One URI interface over local files, S3, GCS and Azure Blob.

    from curator import storage
    for info in storage.list_objects("s3://raw/videos/", suffixes=[".mp4"]):
        data = storage.read_bytes(info.uri)

Backends are chosen by scheme and built lazily from the active :class:`StorageConfig`
(see :func:`configure`); cloud SDKs are imported only when their scheme is used.
Cloud requests are retried with backoff (:mod:`curator.storage.retry`); transfers can
overlap compute (:func:`prefetch`, :class:`BackgroundUploader`). See docs/storage.md.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import threading
from typing import BinaryIO, Iterator, Sequence

from . import stats
from . import transfer as _transfer
from .base import (
    AccessDenied,
    BucketNotFound,
    NotFound,
    ObjectInfo,
    PreconditionFailed,
    StorageError,
    Store,
    TransientError,
)
from .base import local_copy as _local_copy
from .config import StorageConfig
from .transfer import CACHE as _PREFETCHED
from .transfer import BackgroundUploader, prefetch
from .uri import display, join, local_path, relative, split
from .uri import normalize as _normalize

__all__ = [
    "AccessDenied", "BucketNotFound", "NotFound", "ObjectInfo", "StorageError", "Store",
    "TransientError", "StorageConfig", "configure", "store_for", "list_objects", "stat",
    "exists", "read_bytes", "read_range", "write_bytes", "open_write", "upload", "download",
    "delete", "local_copy", "join", "normalize", "relative", "split", "local_path", "display",
    "prefetch", "BackgroundUploader", "current_config", "reset_stores", "PreconditionFailed", "read_versioned",
    "put_if", "stats",
]

#: scheme -> "module:Class", imported on first use
BACKENDS = {
    "file": "curator.storage.local:LocalStore",
    "mem": "curator.storage.memory:MemoryStore",
    "s3": "curator.storage.s3:S3Store",
    "gs": "curator.storage.gcs:GCSStore",
    "az": "curator.storage.azure:AzureStore",
}

_lock = threading.Lock()
_config = StorageConfig()
_stores: dict[str, Store] = {}


def configure(config: StorageConfig | None) -> None:
    """Set the storage config for this process (drivers and workers both call this)."""
    global _config
    with _lock:
        new = config or StorageConfig()
        if new != _config:
            _config = new
            _stores.clear()


def current_config() -> StorageConfig:
    return _config


def reset_stores() -> None:
    """Drop the cached backends, so the next call builds them again (e.g. after the
    credentials in the environment changed)."""
    with _lock:
        _stores.clear()


def normalize(uri_or_path: str) -> str:
    """A canonical URI (see :func:`curator.storage.uri.normalize`).

    ``abfs[s]://container@ACCOUNT.dfs.core.windows.net/key`` becomes ``az://container/key``;
    the account it names must be the configured one (a blob of another account would
    otherwise be read from the configured account without a word)."""
    s = str(uri_or_path)
    if s[:7].lower().startswith(("abfs://", "abfss:/")):
        _check_abfs_account(s)
    return _normalize(s)


def _check_abfs_account(uri: str) -> None:
    rest = uri.split("://", 1)[1]
    authority = rest.split("/", 1)[0]
    if "@" not in authority:
        return
    named = authority.split("@", 1)[1].split(".", 1)[0]
    configured = store_for("az://").account_name()  # type: ignore[attr-defined]
    if configured is None:
        raise StorageError(f"{display(uri)} names Azure account {named!r}, but no account is configured: "
                           f"set storage.azure.account_url=https://{named}.blob.core.windows.net "
                           f"or ${_config.azure.connection_string_env}")
    if configured.lower() != named.lower():
        raise StorageError(f"{display(uri)} names Azure account {named!r}, but storage.azure is configured "
                           f"for account {configured!r}")


def store_for(uri: str) -> Store:
    scheme = split(uri)[0]
    with _lock:
        store = _stores.get(scheme)
        if store is None:
            target = BACKENDS.get(scheme)
            if target is None:
                raise StorageError(f"unsupported URI scheme {scheme!r} in {display(uri)}; "
                                   f"use one of {', '.join(sorted(BACKENDS))}")
            mod, _, cls = target.partition(":")
            try:
                klass = getattr(importlib.import_module(mod), cls)
            except ImportError as exc:
                raise StorageError(f"the {scheme}:// backend needs a package that is not installed: {exc}") from None
            store = klass(_config) if _takes_config(klass) else klass()
            _stores[scheme] = store
        return store


def _takes_config(klass: type) -> bool:
    import inspect

    try:
        return len(inspect.signature(klass).parameters) >= 1
    except (TypeError, ValueError):
        return False


def list_objects(prefix: str, suffixes: Sequence[str] | None = None, page_size: int | None = None) -> Iterator[ObjectInfo]:
    prefix = normalize(prefix)
    return store_for(prefix).list(prefix, suffixes, page_size or _config.list_page_size)


def stat(uri: str) -> ObjectInfo:
    uri = normalize(uri)
    return store_for(uri).stat(uri)


def exists(uri: str) -> bool:
    uri = normalize(uri)
    return store_for(uri).exists(uri)


def read_bytes(uri: str) -> bytes:
    uri = normalize(uri)
    data = _PREFETCHED.take(uri)  # counted when it was fetched
    if data is not None:
        return data
    data = store_for(uri).read_bytes(uri)
    stats.add_read(uri, len(data))
    return data


def read_range(uri: str, start: int, end: int | None = None) -> bytes:
    uri = normalize(uri)
    data = store_for(uri).read_range(uri, start, end)
    stats.add_read(uri, len(data))
    return data


def write_bytes(uri: str, data: bytes) -> None:
    uri = normalize(uri)
    store_for(uri).write_bytes(uri, data)
    stats.add_written(uri, len(data))


@contextlib.contextmanager
def open_write(uri: str) -> Iterator[BinaryIO]:
    uri = normalize(uri)
    with store_for(uri).open_write(uri) as fh:
        yield fh
        size = fh.tell()
    stats.add_written(uri, size)


def upload(local: str, uri: str) -> None:
    uri = normalize(uri)
    store_for(uri).upload(local, uri)
    stats.add_written(uri, os.path.getsize(local))


def download(uri: str, local: str) -> None:
    uri = normalize(uri)
    store_for(uri).download(uri, local)
    stats.add_read(uri, os.path.getsize(local))


def read_versioned(uri: str) -> tuple[bytes, str]:
    """`(bytes, version)` of an object, for a later :func:`put_if` (raises NotFound)."""
    uri = normalize(uri)
    data, version = store_for(uri).read_versioned(uri)
    stats.add_read(uri, len(data))
    return data, version


def put_if(uri: str, data: bytes, version: str | None) -> str:
    """Compare-and-swap write: replace the object only if it is still at `version` (from
    :func:`read_versioned` or an earlier put_if), or create it only if it does not exist
    (`version=None`); returns the new version. Raises :class:`PreconditionFailed` when
    another writer got there first. Each store checks and writes atomically: S3
    If-None-Match / If-Match, GCS ifGenerationMatch, Azure ETag conditions, a lock file
    and an atomic rename for local files (docs/storage.md, "Conditional writes")."""
    uri = normalize(uri)
    version = store_for(uri).put_if(uri, data, version)
    stats.add_written(uri, len(data))
    return version


def delete(uri: str) -> None:
    uri = normalize(uri)
    store_for(uri).delete(uri)


def local_copy(uri: str) -> contextlib.AbstractContextManager[str]:
    """`with local_copy(uri) as path:` a local file for decoders (a temp copy if remote)."""
    uri = normalize(uri)
    return _counted_copy(uri)


@contextlib.contextmanager
def _counted_copy(uri: str) -> Iterator[str]:
    with _local_copy(store_for(uri), uri, local_path(uri)) as path:
        with contextlib.suppress(OSError):
            stats.add_read(uri, os.path.getsize(path))  # a local file: what the caller will read
        yield path


_transfer.bind(sys.modules[__name__])
