"""The run log: where Ray's own output goes while `curator run` runs on Ray.

On a healthy Ray run, Ray prints plenty that is not for the person at the console: the
token-auth notice of `ray.init`, the core worker's note about actor constructor
arguments in the object store (every Ray Data actor pool with restarts gets it: Ray Data
passes its DataContext and the map function to each actor as object refs), the Ray Data
execution plan, progress-bar notices, and every line the workers print (forwarded to the
driver by ``ray.init(log_to_driver=True)``). :func:`ray_output_to_log` sends all of that
to the run's log file and keeps the console for curator's own progress and summary.

It works on file descriptors, not on loggers, because most of that output does not go
through Python logging: the core worker is C++ writing to fd 2, the forwarded worker
lines are written to ``sys.stdout`` / ``sys.stderr`` by Ray's log monitor thread, and the
autoscaler's events to ``sys.stdout``. While the block runs:

* fds 1 and 2 of this process point at the log file (so do ``sys.stdout``/``sys.stderr``,
  which write to them);
* curator's console handler and its progress line write to a copy of the original
  stderr (:attr:`RunLog.console`), and curator's log records also go to the file;
* on the way out Ray is shut down (its last words land in the file too) and the fds are
  restored, so an error message printed afterwards reaches the console.

The file is ``<output>/logs/<run_id>.log``; an output that is not a local folder gets the
file in the local temp directory while the run lasts, uploaded to that name at the end.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from typing import Iterator, TextIO

from curator import storage
from curator.rundir import RunDir

log = logging.getLogger("curator")

FORMAT = "[curator] %(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass
class RunLog:
    path: str  # the local file being written
    uri: str  # where it stays: the same file, or its upload target under a remote output
    console: TextIO  # the original stderr, for curator's own lines

    def where(self) -> str:
        """Where the file is, for people (the local path, and the upload target if remote)."""
        if storage.local_path(self.uri):
            return self.path
        return f"{self.path} (uploaded to {storage.display(self.uri)} at the end)"


def log_paths(rundir: RunDir, run_id: str) -> tuple[str, str]:
    """(local file, its URI): the run folder's logs/<run_id>.log, or a temp file uploaded there."""
    uri = rundir.log(run_id)
    local = storage.local_path(uri)
    if local is None:
        local = os.path.join(tempfile.gettempdir(), "curator-logs", f"{run_id}.log")
    return local, uri


def _console_handlers() -> list[logging.StreamHandler]:
    """The root logger's handlers that write to this process's stderr (the CLI's)."""
    out = []
    for h in logging.getLogger().handlers:
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
            stream = getattr(h, "stream", None)
            try:
                if stream is not None and stream.fileno() == 2:
                    out.append(h)
            except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
                continue
    return out


def _shutdown_ray() -> None:
    try:
        import ray
    except ImportError:  # pragma: no cover - ray is a main dependency
        return
    if ray.is_initialized():
        try:
            ray.shutdown()
        except Exception as exc:  # the run is over; a shutdown hiccup is not its failure
            log.debug("ray.shutdown: %s", exc)


@contextlib.contextmanager
def ray_output_to_log(rundir: RunDir, run_id: str) -> Iterator[RunLog]:
    """Send this process's fds 1 and 2 (Ray's output) to the run log for the block; the
    yielded :class:`RunLog` has the console stream for curator's own lines."""
    path, uri = log_paths(rundir, run_id)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    for s in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            s.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    console = os.fdopen(os.dup(saved[2]), "w", buffering=1, encoding="utf-8", errors="replace")
    file_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    file_handler = logging.FileHandler(path, encoding="utf-8")
    file_handler.setFormatter(logging.Formatter(FORMAT))
    handlers = _console_handlers()
    root = logging.getLogger()
    try:
        os.dup2(file_fd, 1)
        os.dup2(file_fd, 2)
        for h in handlers:
            h.setStream(console)
        root.addHandler(file_handler)
        yield RunLog(path, uri, console)
    finally:
        _shutdown_ray()  # while its output still goes to the file
        for s in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                s.flush()
        root.removeHandler(file_handler)
        file_handler.close()
        for h in handlers:
            h.setStream(sys.stderr)
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        os.close(file_fd)
        console.close()
        if not storage.local_path(uri):
            try:
                storage.upload(path, uri)
            except Exception as exc:
                print(f"[curator] could not upload the run log {path} to {storage.display(uri)}: {exc}",
                      file=sys.stderr)
