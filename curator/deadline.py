"""Per-item time limits.

Cooperative: a stage runs each item under `deadline(seconds)`; long loops (decoding)
call `check()`, which raises ItemTimeout once the item is over its time. The item gets
the reason 'timeout' and the job goes on.

Hard: under Ray, a `Watchdog` around each batch ends the worker process if a call
overruns its limit by far (a hang inside native code never returns to `check()`); Ray
retries the task a bounded number of times, then drops the block, and the driver
records its videos as lost. The local runner has only the cooperative limit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from typing import Iterator

log = logging.getLogger(__name__)
_local = threading.local()


class ItemTimeout(Exception):
    """The current item ran past its time limit."""


@contextlib.contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    previous = getattr(_local, "until", None)
    _local.until = time.monotonic() + seconds if seconds else None
    _local.limit = seconds
    try:
        yield
    finally:
        _local.until = previous


def check() -> None:
    until = getattr(_local, "until", None)
    if until is not None and time.monotonic() > until:
        raise ItemTimeout(f"over the per-item limit of {_local.limit:g} s (run.item_timeout_s)")


class Watchdog:
    """Ends this process if the guarded block runs longer than `seconds`."""

    EXIT_CODE = 70

    def __init__(self, seconds: float, what: str):
        self.seconds = seconds
        self.what = what
        self._timer: threading.Timer | None = None

    def _fire(self) -> None:
        log.error("%s ran longer than %.0f s; ending this worker so Ray can retry it", self.what, self.seconds)
        logging.shutdown()
        os._exit(self.EXIT_CODE)

    def __enter__(self) -> "Watchdog":
        if self.seconds and self.seconds > 0:
            self._timer = threading.Timer(self.seconds, self._fire)
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
