"""Live state of a run: per-stage batches and rows, and the nodes each stage ran on.

Every stage call reports ``(stage, node, rows in, rows out, seconds)`` to one
:class:`StageTracker`: in the driver process under the local runner, in a small Ray
actor under the Ray runner (workers call it once per batch and wait for it). The driver
writes a snapshot to ``<output>/progress.json`` when the run starts, every
`run.progress_interval_s` while it runs, and once at the end with the run's state:

    {"run_id": ..., "state": "running" | "succeeded" | "failed" | "stopped",
     "total": 120, "videos": .., "clips": .., "clips_kept": .., "videos_resumed": .., "elapsed_s": ..,
     "stage_order": ["ingest", ...],
     "stages": {"transcode": {"batches": 3, "rows_in": 3, "rows_out": 9, "busy_s": 4.2,
                              "nodes": {"<node id>": {"batches": 3, "rows_in": 3}}}, ...},
     "nodes": {"<node id>": {"hostname": .., "ip": .., "resources": {"CPU": 8, "GPU": 1, "nvenc": 1}}}}

`curator jobs status` reads it. At the end the per-stage `nodes` also go into the run's
``metrics.json`` (:func:`add_placement`), so a finished run says where each stage ran.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from typing import Any, Callable

from curator.rundir import PROGRESS

log = logging.getLogger(__name__)

PROGRESS_NAME = PROGRESS

#: run states written to progress.json
RUNNING, SUCCEEDED, FAILED, STOPPED = "running", "succeeded", "failed", "stopped"
LOCAL_NODE = "local"


def where() -> dict[str, Any]:
    """This process's node: the Ray node id when inside Ray, else ``local``."""
    info: dict[str, Any] = {"node_id": LOCAL_NODE, "hostname": socket.gethostname(), "ip": None}
    try:
        import ray

        if ray.is_initialized():
            info["node_id"] = ray.get_runtime_context().get_node_id()
            info["ip"] = ray.util.get_node_ip_address()
    except Exception:  # tracking never breaks a run
        pass
    return info


def merge_io(into: dict[str, dict[str, int]], more: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Add bytes read / written per scheme (as curator.storage.stats reports them)."""
    from curator.storage import stats

    return stats.merge(into, more)


class StageTracker:
    """Counters per stage and per node. Also runs as a Ray actor (see runners/ray.py)."""

    def __init__(self) -> None:
        self.stages: dict[str, dict[str, Any]] = {}
        self.nodes: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()  # the local runner records while the writer thread reads

    def record(self, stage: str, node: dict[str, Any], rows_in: int, rows_out: int, busy_s: float,
               io: dict[str, dict[str, int]] | None = None) -> None:
        with self._lock:
            self._record(stage, node, rows_in, rows_out, busy_s)
            if io and (io.get("read") or io.get("written")):  # bytes per URI scheme (curator.storage.stats)
                merge_io(self.stages[stage].setdefault("io", {}), io)

    def add_io(self, stage: str, io: dict[str, dict[str, int]]) -> None:
        """Bytes a stage moved outside its batches (the local runner's prefetch for ingest)."""
        with self._lock:
            s = self.stages.setdefault(stage, {"batches": 0, "rows_in": 0, "rows_out": 0, "busy_s": 0.0, "nodes": {}})
            merge_io(s.setdefault("io", {}), io)

    def _record(self, stage: str, node: dict[str, Any], rows_in: int, rows_out: int, busy_s: float) -> None:
        s = self.stages.setdefault(stage, {"batches": 0, "rows_in": 0, "rows_out": 0, "busy_s": 0.0, "nodes": {}})
        s["batches"] += 1
        s["rows_in"] += rows_in
        s["rows_out"] += rows_out
        s["busy_s"] = round(s["busy_s"] + busy_s, 6)
        node_id = node["node_id"]
        n = s["nodes"].setdefault(node_id, {"batches": 0, "rows_in": 0})
        n["batches"] += 1
        n["rows_in"] += rows_in
        if node_id not in self.nodes:
            self.nodes[node_id] = {"hostname": node.get("hostname"), "ip": node.get("ip")}

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return json.loads(json.dumps({"stages": self.stages, "nodes": self.nodes}))


def stage_nodes(doc: dict[str, Any], stage: str) -> set[str]:
    """Node ids that ran at least one batch of `stage` (progress.json or metrics.json)."""
    return set((doc.get("stages", {}).get(stage) or {}).get("nodes", {}))


def add_placement(metrics_doc: dict[str, Any], snapshot: dict[str, Any]) -> dict[str, Any]:
    """The run's final metrics document with, per stage, the nodes it ran on (and what
    each node advertises)."""
    for name, s in (snapshot.get("stages") or {}).items():
        metrics_doc.setdefault("stages", {}).setdefault(name, {})["nodes"] = s.get("nodes", {})
        if s.get("io"):
            metrics_doc["stages"][name]["io"] = s["io"]
    metrics_doc["nodes"] = snapshot.get("nodes", {})
    return metrics_doc


class StatusWriter:
    """Writes ``progress.json`` under the output: from a background thread every `every_s`
    while the run goes (so per-stage progress moves even while the driver waits for
    rows), and once at the end with the final state."""

    def __init__(self, output_uri: str, run_id: str, counts: Callable[[], dict[str, int]],
                 stages: Callable[[], dict[str, Any]], stage_order: list[str], every_s: float = 5.0):
        self.output_uri = output_uri
        self.run_id = run_id
        self.counts = counts
        self.stages = stages
        self.stage_order = list(stage_order)
        self.every_s = every_s
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._last: dict[str, Any] = {"stages": {}, "nodes": {}}

    @property
    def uri(self) -> str:
        from curator.rundir import RunDir

        return RunDir(self.output_uri).progress

    def start(self) -> "StatusWriter":
        self.write(RUNNING)
        self._thread = threading.Thread(target=self._loop, name="curator-progress", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.write(RUNNING)

    def snapshot(self) -> dict[str, Any]:
        """A fresh per-stage snapshot ({"stages": ..., "nodes": ...}), or the last good one."""
        with self._lock:
            self._refresh()
            return self._last

    def _refresh(self) -> None:
        try:
            self._last = self.stages() or self._last
        except Exception as exc:  # e.g. the tracker actor is gone: keep the last snapshot
            log.warning("stage progress unavailable: %s", exc)

    def finish(self, state: str, error: str | None = None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)  # a stopped job has seconds before SIGKILL
        self.write(state, error=error)

    def write(self, state: str, error: str | None = None) -> None:
        from curator import storage

        with self._lock:  # the final write never interleaves with a periodic one
            self._refresh()
            try:
                doc: dict[str, Any] = {"run_id": self.run_id, "state": state, "updated": time.time(),
                                       "elapsed_s": round(time.monotonic() - self.t0, 3), **self.counts()}
                doc.update(self._last)
                doc["stage_order"] = self.stage_order
                if error:
                    doc["error"] = error[:2000]
                storage.write_bytes(self.uri, json.dumps(doc, indent=1, sort_keys=True).encode())
            except Exception as exc:  # progress reporting never fails the run
                log.warning("could not write %s: %s", PROGRESS_NAME, exc)


def read(output_uri: str) -> dict[str, Any] | None:
    """The progress document of a run, or None when there is none (yet)."""
    from curator import storage
    from curator.rundir import RunDir

    try:
        return json.loads(storage.read_bytes(RunDir(output_uri).progress))
    except storage.NotFound:
        return None


def format_stages(doc: dict[str, Any]) -> str:
    """A small table of per-stage progress for `curator jobs status`."""
    stages = doc.get("stages") or {}
    nodes = doc.get("nodes") or {}
    lines = [f"{'stage':<12} {'batches':>8} {'rows in':>8} {'rows out':>8} {'busy s':>8}  nodes"]
    order = [n for n in doc.get("stage_order") or [] if n in stages] + sorted(set(stages) - set(doc.get("stage_order") or []))
    for name in order:
        s = stages[name]
        where_ = ", ".join(f"{_node_label(nid, nodes)}: {n['rows_in']}" for nid, n in sorted(s.get("nodes", {}).items()))
        lines.append(f"{name:<12} {s['batches']:>8} {s['rows_in']:>8} {s['rows_out']:>8} {s['busy_s']:>8.1f}  {where_}")
    return "\n".join(lines)


def _node_label(node_id: str, nodes: dict[str, Any]) -> str:
    info = nodes.get(node_id) or {}
    short = node_id[:8]
    host = info.get("ip") or info.get("hostname")
    return f"{short}@{host}" if host and node_id != LOCAL_NODE else (host or short)
