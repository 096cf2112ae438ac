"""An in-memory backend (`mem://bucket/key`) for unit tests, per process."""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Iterator

from .base import BucketNotFound, NotFound, ObjectInfo, PreconditionFailed, Store
from .uri import split

_LOCK = threading.Lock()
_BUCKETS: dict[str, dict[str, tuple[bytes, float]]] = {}


def create_bucket(name: str) -> None:
    with _LOCK:
        _BUCKETS.setdefault(name, {})


def reset() -> None:
    with _LOCK:
        _BUCKETS.clear()


class MemoryStore(Store):
    scheme = "mem"

    def _bucket(self, bucket: str, uri: str) -> dict[str, tuple[bytes, float]]:
        try:
            return _BUCKETS[bucket]
        except KeyError:
            raise BucketNotFound(f"no such bucket: mem://{bucket} (for {uri})") from None

    def _iter_objects(self, prefix_uri: str, page_size: int) -> Iterator[ObjectInfo]:
        _, bucket, prefix = split(prefix_uri)
        objs = self._bucket(bucket, prefix_uri)
        with _LOCK:
            keys = sorted(k for k in objs if k.startswith(prefix))
        for k in keys:
            item = objs.get(k)
            if item is not None:
                yield ObjectInfo(f"mem://{bucket}/{k}", len(item[0]), item[1])

    def stat(self, uri: str) -> ObjectInfo:
        _, bucket, key = split(uri)
        item = self._bucket(bucket, uri).get(key)
        if item is None:
            raise NotFound(f"no such object: {uri}")
        return ObjectInfo(uri, len(item[0]), item[1])

    def read_range(self, uri: str, start: int, end: int | None) -> bytes:
        _, bucket, key = split(uri)
        item = self._bucket(bucket, uri).get(key)
        if item is None:
            raise NotFound(f"no such object: {uri}")
        return item[0][start:end]

    def write_bytes(self, uri: str, data: bytes) -> None:
        _, bucket, key = split(uri)
        objs = self._bucket(bucket, uri)
        with _LOCK:
            objs[key] = (bytes(data), time.time())

    def delete(self, uri: str) -> None:
        _, bucket, key = split(uri)
        with _LOCK:
            self._bucket(bucket, uri).pop(key, None)

    def read_versioned(self, uri: str) -> tuple[bytes, str]:
        _, bucket, key = split(uri)
        item = self._bucket(bucket, uri).get(key)
        if item is None:
            raise NotFound(f"no such object: {uri}")
        return item[0], _version(item)

    def put_if(self, uri: str, data: bytes, version: str | None) -> str:
        _, bucket, key = split(uri)
        objs = self._bucket(bucket, uri)
        with _LOCK:
            item = objs.get(key)
            current = None if item is None else _version(item)
            if current != version:
                raise PreconditionFailed(f"conditional write of {uri} refused: the object "
                                         + ("exists" if version is None else "changed or is gone"))
            new = (bytes(data), time.time())
            objs[key] = new
            return _version(new)


def _version(item: tuple[bytes, float]) -> str:
    return f"{item[1]!r}-{hashlib.sha256(item[0]).hexdigest()[:16]}"
