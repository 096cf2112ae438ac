"""Local filesystem backend (`file://` and plain paths)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import tempfile
from typing import BinaryIO, Iterator

from .base import AccessDenied, NotFound, ObjectInfo, PreconditionFailed, StorageError, Store
from .uri import display, local_path, normalize

#: our own in-flight temp files and lock files, never listed
LOCK_PREFIX = ".curator-lock-"
HIDDEN = (".part-", ".curator-tmp-", LOCK_PREFIX)


def _version(st: os.stat_result, data: bytes) -> str:
    """A local file's version: its mtime and a hash of its bytes."""
    return f"{st.st_mtime_ns:x}-{hashlib.sha256(data).hexdigest()[:16]}"


def _path(uri: str) -> str:
    p = local_path(uri)
    if p is None:
        raise ValueError(f"not a file URI: {uri}")
    return p


def _errors(uri: str, exc: OSError) -> StorageError:
    where = display(uri)
    if isinstance(exc, FileNotFoundError) or exc.errno == errno.ENOENT:
        return NotFound(f"no such object: {where}")
    if isinstance(exc, PermissionError):
        return AccessDenied(f"access denied: cannot access {where}")
    return StorageError(f"{where}: {exc.strerror or exc}")


class LocalStore(Store):
    scheme = "file"

    def _iter_objects(self, prefix_uri: str, page_size: int) -> Iterator[ObjectInfo]:
        prefix = _path(prefix_uri)
        # As in object stores, a prefix is a key prefix: "dir/" lists inside dir, while
        # "dir" (no slash) also matches "dir2/…" and "dir.mp4".
        if prefix.endswith("/"):
            root, name_prefix = prefix.rstrip("/") or "/", ""
        else:
            root, name_prefix = os.path.dirname(prefix), os.path.basename(prefix)
        if not os.path.isdir(root):
            return

        def walk(d: str) -> Iterator[ObjectInfo]:
            try:
                entries = sorted(os.scandir(d), key=lambda e: e.name)
            except FileNotFoundError:
                return
            for e in entries:
                if e.name.startswith(HIDDEN):
                    continue  # our own in-flight temp files
                if e.is_dir(follow_symlinks=False):
                    yield from walk(e.path)
                elif e.is_file():
                    st = e.stat()
                    yield ObjectInfo(normalize(e.path), st.st_size, st.st_mtime)

        for e in sorted(os.scandir(root), key=lambda e: e.name):
            if not e.name.startswith(name_prefix) or e.name.startswith(HIDDEN):
                continue
            if e.is_dir(follow_symlinks=False):
                yield from walk(e.path)
            elif e.is_file():
                st = e.stat()
                yield ObjectInfo(normalize(e.path), st.st_size, st.st_mtime)

    def stat(self, uri: str) -> ObjectInfo:
        p = _path(uri)
        try:
            st = os.stat(p)
        except OSError as exc:
            raise _errors(uri, exc) from None
        if not os.path.isfile(p):
            raise NotFound(f"no such object: {display(uri)} (a folder)")
        return ObjectInfo(normalize(p), st.st_size, st.st_mtime)

    def read_range(self, uri: str, start: int, end: int | None) -> bytes:
        try:
            with open(_path(uri), "rb") as fh:
                fh.seek(start)
                return fh.read() if end is None else fh.read(max(0, end - start))
        except OSError as exc:
            raise _errors(uri, exc) from None

    def download(self, uri: str, local: str) -> None:
        try:
            super().download(uri, local)
        except OSError as exc:
            raise _errors(uri, exc) from None

    def _download_to(self, uri: str, fh: BinaryIO) -> None:
        with open(_path(uri), "rb") as src:
            shutil.copyfileobj(src, fh, 8 * 1024 * 1024)

    def _tmp_for(self, path: str) -> tuple[int, str]:
        parent = os.path.dirname(path)
        os.makedirs(parent, exist_ok=True)
        return tempfile.mkstemp(prefix=".curator-tmp-", dir=parent)

    def write_bytes(self, uri: str, data: bytes) -> None:
        with self.open_write(uri) as fh:
            fh.write(data)

    def upload(self, local: str, uri: str) -> None:
        with self.open_write(uri) as fh, open(local, "rb") as src:
            shutil.copyfileobj(src, fh, 8 * 1024 * 1024)

    @contextlib.contextmanager
    def open_write(self, uri: str) -> Iterator[BinaryIO]:
        path = _path(uri)
        try:
            fd, tmp = self._tmp_for(path)
        except OSError as exc:
            raise _errors(uri, exc) from None
        try:
            with os.fdopen(fd, "wb") as fh:
                yield fh
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def delete(self, uri: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_path(uri))

    # -- conditional writes: a lock file (flock) around the check and an atomic rename ----
    def read_versioned(self, uri: str) -> tuple[bytes, str]:
        try:
            with open(_path(uri), "rb") as fh:  # one inode: a rename meanwhile does not mix versions
                st = os.fstat(fh.fileno())
                data = fh.read()
        except OSError as exc:
            raise _errors(uri, exc) from None
        return data, _version(st, data)

    @contextlib.contextmanager
    def _locked(self, path: str) -> Iterator[None]:
        """An exclusive flock on `.curator-lock-<name>` beside the file. The kernel drops it
        when the process dies, so a crash never leaves the object locked; the lock file
        itself stays (removing it would let two writers lock two different files)."""
        parent, name = os.path.split(path)
        os.makedirs(parent, exist_ok=True)
        fd = os.open(os.path.join(parent, LOCK_PREFIX + name), os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def put_if(self, uri: str, data: bytes, version: str | None) -> str:
        path = _path(uri)
        try:
            with self._locked(path):
                try:
                    current: str | None = self.read_versioned(uri)[1]
                except NotFound:
                    current = None
                if current != version:
                    what = "exists" if version is None else ("is gone" if current is None else "changed")
                    raise PreconditionFailed(f"conditional write of {display(uri)} refused: the object {what}")
                with self.open_write(uri) as fh:
                    fh.write(data)
                return _version(os.stat(path), data)
        except OSError as exc:
            raise _errors(uri, exc) from None
