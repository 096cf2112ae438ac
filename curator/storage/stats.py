"""Bytes read and written through :mod:`curator.storage`, per URI scheme, in this process.

Every read of object bytes (``read_bytes``, ``read_range``, ``read_versioned``, ``download``,
``local_copy``, prefetches) and every write (``write_bytes``, ``open_write``, ``upload``,
``put_if``) adds its size to a per-scheme counter (``file``, ``mem``, ``s3``, ``gs``, ``az``).
A run reports them per stage and per phase in ``metrics.json`` (``io``), and the catalog's
federated dedup reports what it read, so "only embeddings and metadata move between
clouds, never video bytes" can be checked rather than trusted (docs/catalog.md).

``recording()`` additionally collects the URIs read while it is active (tests check that a
site-bound loader rank opens only its own site's objects).
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from typing import Iterator

_lock = threading.Lock()
_read: Counter[str] = Counter()
_written: Counter[str] = Counter()
_recorders: list[set[str]] = []


def _scheme(uri: str) -> str:
    return uri.split("://", 1)[0] if "://" in uri else "file"


def add_read(uri: str, n: int) -> None:
    with _lock:
        _read[_scheme(uri)] += int(n)
        for rec in _recorders:
            rec.add(uri)


def add_written(uri: str, n: int) -> None:
    with _lock:
        _written[_scheme(uri)] += int(n)


def snapshot() -> dict[str, dict[str, int]]:
    """{"read": {scheme: bytes}, "written": {scheme: bytes}} since the process started."""
    with _lock:
        return {"read": dict(_read), "written": dict(_written)}


def delta(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]] | None = None
          ) -> dict[str, dict[str, int]]:
    """What was read and written between two snapshots (schemes with 0 left out)."""
    after = after if after is not None else snapshot()
    out: dict[str, dict[str, int]] = {}
    for kind in ("read", "written"):
        d = {s: n - before.get(kind, {}).get(s, 0) for s, n in after.get(kind, {}).items()}
        out[kind] = {s: n for s, n in sorted(d.items()) if n}
    return out


def merge(into: dict[str, dict[str, int]], more: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Add the counts of `more` to `into` (in place) and return it."""
    for kind in ("read", "written"):
        dst = into.setdefault(kind, {})
        for s, n in (more.get(kind) or {}).items():
            dst[s] = dst.get(s, 0) + int(n)
    return into


@contextlib.contextmanager
def recording() -> Iterator[set[str]]:
    """`with recording() as uris:` the set of URIs read in this process meanwhile."""
    rec: set[str] = set()
    with _lock:
        _recorders.append(rec)
    try:
        yield rec
    finally:
        with _lock:
            _recorders.remove(rec)
