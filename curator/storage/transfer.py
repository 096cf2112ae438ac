"""Decoupled transfer: fetch inputs ahead of compute, upload outputs behind it.

:func:`prefetch` wraps an iterable of work items (input rows). While the consumer works
on item *i*, background threads download the objects of items *i+1 … i+depth*; a later
``storage.read_bytes(uri)`` of one of them returns the prefetched bytes at once instead
of going to the network. Memory is bounded: at most ``depth + 1`` objects, each at most
``storage.prefetch_max_mb`` (larger ones are left to the consumer). An object the
consumer never asks for is dropped when the consumer moves past its item.

:class:`BackgroundUploader` writes objects from a bounded pool of threads, so the caller
can go on while earlier objects upload; ``flush()`` waits for everything submitted and
reports per-object failures. At most ``upload_queue_mb`` bytes wait in the queue
(``submit`` blocks beyond that), so memory stays bounded when the network is slower
than the producer.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator, TypeVar

from .base import StorageError

log = logging.getLogger("curator.storage")

T = TypeVar("T")
MiB = 1024 * 1024


# ------------------------------------------------------------------------ prefetch
class _Entry:
    __slots__ = ("future", "refs")

    def __init__(self, future: "Future[bytes | None]"):
        self.future = future
        self.refs = 1


class PrefetchCache:
    """Prefetched objects of this process, by URI (see :func:`prefetch`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def schedule(self, uri: str, fetch: Callable[[], "bytes | None"], pool: ThreadPoolExecutor) -> None:
        with self._lock:
            entry = self._entries.get(uri)
            if entry is not None:
                entry.refs += 1
                return
            self._entries[uri] = _Entry(pool.submit(fetch))

    def take(self, uri: str) -> bytes | None:
        """The prefetched bytes of `uri` (waiting if they are still on the way), or None."""
        if not self._entries:  # the common case: nothing prefetched in this process
            return None
        with self._lock:
            entry = self._entries.pop(uri, None)
        if entry is None:
            return None
        try:
            return entry.future.result()
        except Exception:  # noqa: BLE001 - the consumer reads it again and gets its own error
            return None

    def release(self, uri: str) -> None:
        with self._lock:
            entry = self._entries.get(uri)
            if entry is None:
                return
            entry.refs -= 1
            if entry.refs <= 0:
                del self._entries[uri]
                entry.future.cancel()


CACHE = PrefetchCache()

#: the `curator.storage` facade (current_config, stat, store_for, write_bytes), bound by it
#: when it is imported: this module is below the facade and does not import it back
_facade: Any = None


def bind(facade: Any) -> None:
    global _facade
    _facade = facade


def prefetch(
    items: Iterable[T],
    uri_of: Callable[[T], "str | None"],
    *,
    skip: Callable[[T], bool] | None = None,
    depth: int | None = None,
    max_mb: int | None = None,
) -> Iterator[T]:
    """Yield `items` unchanged while the objects of the next `depth` items download.

    `uri_of(item)` names the object the consumer will read for an item (None: nothing to
    fetch); it runs on the consuming thread, so keep it cheap. `skip(item)`, if given,
    runs on a background thread first and can veto the download (e.g. the item was
    finished by an earlier run). `depth` and `max_mb` default to ``storage.prefetch`` and
    ``storage.prefetch_max_mb``.
    """
    stat, store_for = _facade.stat, _facade.store_for
    cfg = _facade.current_config()
    depth = cfg.prefetch if depth is None else depth
    max_bytes = (cfg.prefetch_max_mb if max_mb is None else max_mb) * MiB
    if depth <= 0:
        yield from items
        return

    def fetch(item: T, uri: str) -> bytes | None:
        if skip is not None and skip(item):
            return None
        try:
            if stat(uri).size > max_bytes:
                return None
            data: bytes = store_for(uri).read_bytes(uri)
            _facade.stats.add_read(uri, len(data))
            return data
        except StorageError as exc:
            log.debug("prefetch of %s failed (%s); the consumer will read it", uri, exc)
            return None

    pool = ThreadPoolExecutor(max_workers=depth, thread_name_prefix="curator-prefetch")
    window: deque[tuple[T, str | None]] = deque()
    source = iter(items)

    def fill() -> None:
        while len(window) < depth + 1:
            try:
                item = next(source)
            except StopIteration:
                return
            uri = uri_of(item)
            if uri is not None:
                CACHE.schedule(uri, functools.partial(fetch, item, uri), pool)
            window.append((item, uri))

    try:
        fill()
        while window:
            item, uri = window.popleft()
            yield item
            if uri is not None:
                CACHE.release(uri)  # not taken: drop it
            fill()
    finally:
        for _, uri in window:
            if uri is not None:
                CACHE.release(uri)
        pool.shutdown(wait=False, cancel_futures=True)


# ------------------------------------------------------------------------- uploads
class BackgroundUploader:
    """Upload objects from `threads` background threads; `flush()` before relying on them.

    ``threads=0`` writes inline (same interface, no concurrency)."""

    def __init__(self, threads: int = 4, max_queue_mb: int = 256):
        self.threads = threads
        self.max_queue = max_queue_mb * MiB
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="curator-upload") if threads else None
        self._cond = threading.Condition()
        self._queued = 0
        self._pending: list[tuple[str, Future[None]]] = []
        self._inline_errors: dict[str, StorageError] = {}

    def submit(self, uri: str, data: bytes) -> None:
        """Queue one object (blocks while the queue is full)."""
        if self._pool is None:
            try:
                _facade.write_bytes(uri, data)
            except StorageError as exc:
                self._inline_errors[uri] = exc
            return
        n = len(data)
        with self._cond:
            while self._queued and self._queued + n > self.max_queue:
                self._cond.wait()
            self._queued += n
        try:
            self._pending.append((uri, self._pool.submit(self._write, uri, data, n)))
        except BaseException:
            self._done(n)
            raise

    def _done(self, n: int) -> None:
        with self._cond:
            self._queued -= n
            self._cond.notify_all()

    def _write(self, uri: str, data: bytes, n: int) -> None:
        try:
            _facade.write_bytes(uri, data)
        finally:
            self._done(n)

    def flush(self) -> dict[str, StorageError]:
        """Wait for every submitted object; {uri: error} for the ones that failed.
        Errors other than storage errors (bugs) are raised."""
        failed, self._inline_errors = self._inline_errors, {}
        pending, self._pending = self._pending, []
        first_bug: BaseException | None = None
        for uri, fut in pending:
            try:
                fut.result()
            except StorageError as exc:
                failed[uri] = exc
            except BaseException as exc:  # noqa: BLE001 - waited for the rest first, then raised
                first_bug = first_bug or exc
        if first_bug is not None:
            raise first_bug
        return failed

    def close(self) -> dict[str, StorageError]:
        failed = self.flush()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        return failed

    def __enter__(self) -> "BackgroundUploader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
