"""Progress on the driver: a live line on a terminal, periodic log lines otherwise.

    [curator] 41/120 videos (34%)  clips 388 (kept 301)  rejects 87  1.9 videos/s  ETA 0:00:42
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO, cast


def _eta(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):  # nan / inf
        return "?"
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    def __init__(self, total: int | None = None, *, stream: TextIO | None = None, interval_s: float = 15.0,
                 tty: bool | None = None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval_s = 0.5 if self.tty else interval_s
        self.total = total
        self.t0 = time.monotonic()
        self.last = 0.0
        self.videos = self.resumed = self.clips = self.kept = self.rejects = self.shards = 0
        self.phase = "curating"

    # --------------------------------------------------------------- events
    def start(self, total: int) -> None:
        self.total = total
        self.t0 = time.monotonic()
        self._emit(force=True)

    def video_done(self, clips: int, kept: int, rejects: int, resumed: bool = False) -> None:
        if resumed:
            self.resumed += 1
        else:
            self.videos += 1
            self.clips += clips
            self.kept += kept
            self.rejects += rejects
        self._emit()

    def shard_done(self) -> None:
        self.shards += 1
        self._emit()

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        self._emit(force=True)

    def close(self) -> None:
        self._emit(force=True)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()

    # ------------------------------------------------------------------ text
    def line(self) -> str:
        el = max(1e-6, time.monotonic() - self.t0)
        done = self.videos + self.resumed
        rate = self.videos / el
        parts = []
        if self.total:
            parts.append(f"{done}/{self.total} videos ({100 * done / self.total:.0f}%)")
        else:
            parts.append(f"{done} videos")
        parts.append(f"clips {self.clips} (kept {self.kept})")
        parts.append(f"rejects {self.rejects}")
        if self.shards:
            parts.append(f"shards {self.shards}")
        parts.append(f"{rate:.2f} videos/s")
        if self.total and self.phase == "curating":
            left = self.total - done
            parts.append(f"ETA {_eta(left / rate) if rate > 0 else '?'}" if left else "ETA 0:00:00")
        if self.phase != "curating":
            parts.append(self.phase)
        return "[curator] " + "  ".join(parts)

    def _emit(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.interval_s:
            return
        self.last = now
        if self.tty:
            self.stream.write("\r\x1b[2K" + self.line())
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()


class NullProgress(Progress):
    def __init__(self) -> None:
        super().__init__(stream=cast(TextIO, _Null()), tty=False)

    def _emit(self, force: bool = False) -> None:
        pass


class _Null:
    def write(self, _: Any) -> None:
        pass

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False
