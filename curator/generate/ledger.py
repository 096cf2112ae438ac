"""The generation ledger: ``<output>/generate/ledger.jsonl``, one JSON event per line.

Events (every one has ``event``, ``id`` where it concerns a prompt, and ``t``, the wall-clock time):

    started      a generation began: the prompt (cell, text, negative prompt, seed, variant, the
                 upsampled text), the generator, the model, the conditioning clip, ``allowance_s``
    done         it produced a valid video: ``output`` (key under generate/videos/), ``wall_s``
    failed       it did not: ``reason`` (exit_code, timeout, invalid_output, http_error, ...),
                 ``detail`` (stderr tail, probe error), ``wall_s``, ``attempts``
    interrupted  a rerun found it started and never finished (a killed loop): ``wall_s`` charged
    adopted      a rerun found it started with a valid output already written: done without
                 generating again
    curated      the outputs named in ``ids`` went through a curation run
    not_counted  a curated clip of the output (``clip_id``) does not count toward its cell: ``reason``
                 (``verify_mismatch``: its tags disagree with the cell; otherwise the curation's
                 rejection reason, e.g. ``duplicate_of_index``), ``detail``; once per clip

A local ledger is appended and fsync'd per event, so a kill -9 loses at most the event being
written (a torn last line is ignored on replay). A remote output keeps the ledger as one object
rewritten atomically per event. Replaying gives every prompt's state; the budget (generations
started, generator seconds) is summed from it, so it holds across reruns.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from curator import storage


@dataclass
class Entry:
    """One prompt's state after replay."""

    id: str
    started: dict[str, Any]
    state: str = "started"  # started | done | failed | interrupted (until retried)
    output: str | None = None
    wall_s: float = 0.0
    reason: str | None = None
    detail: str | None = None
    curated: bool = False
    not_counted: dict[str, str] = field(default_factory=dict)  # clip id -> reason


@dataclass
class LedgerState:
    entries: dict[str, Entry] = field(default_factory=dict)
    events: int = 0

    @property
    def generations(self) -> int:
        """Distinct prompts ever started (the --max-clips budget)."""
        return len(self.entries)

    @property
    def wall_s(self) -> float:
        """Generator seconds spent (the --budget-s budget)."""
        return sum(e.wall_s for e in self.entries.values())

    def with_state(self, *states: str) -> list[Entry]:
        return [e for e in self.entries.values() if e.state in states]


class Ledger:
    def __init__(self, uri: str):
        self.uri = storage.normalize(uri)
        self.path = storage.local_path(self.uri)
        self.lock = threading.Lock()
        self._lines: list[str] = []
        if self.path is not None and os.path.exists(self.path):
            with open(self.path, "rb+") as f:  # a line torn by a kill: end it, so the next event stands alone
                f.seek(0, os.SEEK_END)
                if f.tell():
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b"\n":
                        f.write(b"\n")
        if self.path is None and storage.exists(self.uri):
            self._lines = storage.read_bytes(self.uri).decode("utf-8").splitlines()

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        doc = {"event": event, "t": round(time.time(), 3), **fields}
        line = json.dumps(doc, sort_keys=True, default=str)
        with self.lock:
            if self.path is not None:
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    os.write(fd, (line + "\n").encode("utf-8"))
                    os.fsync(fd)
                finally:
                    os.close(fd)
            else:
                self._lines.append(line)
                storage.write_bytes(self.uri, ("\n".join(self._lines) + "\n").encode("utf-8"))
        return doc

    def lines(self) -> list[dict[str, Any]]:
        if self.path is not None:
            try:
                with open(self.path, encoding="utf-8") as f:
                    raw = f.read().splitlines()
            except FileNotFoundError:
                return []
        else:
            raw = list(self._lines)
        out = []
        for line in raw:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # a torn last line (killed mid-write)
                continue
        return out

    def replay(self) -> LedgerState:
        st = LedgerState()
        for ev in self.lines():
            st.events += 1
            kind, pid = ev.get("event"), ev.get("id")
            if kind == "started" and pid:
                old = st.entries.get(pid)
                e = Entry(pid, ev)
                if old is not None:  # a retry of an interrupted generation: its charge stays
                    e.wall_s = old.wall_s
                st.entries[pid] = e
            elif kind in ("done", "adopted") and pid in st.entries:
                e = st.entries[pid]
                e.state, e.output = "done", ev.get("output")
                e.wall_s += float(ev.get("wall_s") or 0.0)
            elif kind == "failed" and pid in st.entries:
                e = st.entries[pid]
                e.state, e.reason, e.detail = "failed", ev.get("reason"), ev.get("detail")
                e.wall_s += float(ev.get("wall_s") or 0.0)
            elif kind == "interrupted" and pid in st.entries:
                e = st.entries[pid]
                e.state = "interrupted"
                e.wall_s += float(ev.get("wall_s") or 0.0)
            elif kind == "not_counted" and pid in st.entries:
                st.entries[pid].not_counted[str(ev.get("clip_id"))] = str(ev.get("reason"))
            elif kind == "curated":
                for i in ev.get("ids") or []:
                    if i in st.entries:
                        st.entries[i].curated = True
        return st
