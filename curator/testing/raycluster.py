"""A real multi-node Ray cluster on this machine, started with `ray start` and torn down
by process id.

    with LocalRayCluster(num_cpus=1) as cluster:          # `ray start --head ...`
        cluster.add_worker(num_cpus=1, resources={"nvenc": 1})   # `ray start --address ...`
        client = JobSubmissionClient(cluster.dashboard_url)

or with the exact `ray start` commands a user types (e.g. the README's), to which the
cluster only adds what isolates it on a shared machine (its own ports for whatever the
command leaves at a default, its temp dir, `--block`):

    LocalRayCluster(head_command=["ray", "start", "--head", "--port", "6379", ...])
    cluster.add_worker(command=["ray", "start", "--address", "127.0.0.1:6379", ...])

Each node is one `ray start ... --block` process in its own process group; Ray's
daemons (GCS, raylet, dashboard, agents, workers, job drivers) are its descendants. The
teardown collects that process tree and terminates exactly those processes: `ray stop`
would kill every Ray process of this user on the machine, other sessions included.

Every node gets its own ports (several nodes share one host here) and the cluster its
own `--temp-dir`. Token auth and usage stats are switched off explicitly in the nodes'
environment (`RAY_AUTH_MODE=disabled`, `RAY_USAGE_STATS_ENABLED=0`): recent Ray turns
token auth on by default, and a test cluster must not phone home.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curator.testing.emulators import free_port

#: set for every node and for clients of the cluster (see the module docstring)
CLUSTER_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def ray_executable() -> str:
    """The `ray` script next to this interpreter (the same Ray as the caller's)."""
    cand = Path(sys.executable).with_name("ray")
    return str(cand) if cand.exists() else (shutil.which("ray") or "ray")


def cluster_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment plus CLUSTER_ENV, with this interpreter's bin first on PATH (so a
    job's `python -m curator` is this Python)."""
    env = dict(os.environ)
    env.update(CLUSTER_ENV)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.pop("RAY_ADDRESS", None)
    env.update(extra or {})
    return env


def _flag(argv: list[str] | None, flag: str) -> str | None:
    """The value of `--flag VALUE` or `--flag=VALUE` in argv, else None."""
    for i, a in enumerate(argv or []):
        if a == flag and i + 1 < len(argv or []):
            return (argv or [])[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


@dataclass
class Node:
    argv: list[str]
    proc: subprocess.Popen[bytes]
    log_path: Path
    extra: dict[str, Any] = field(default_factory=dict)


class LocalRayCluster:
    """A head node (with the dashboard and job server) plus workers added on demand."""

    def __init__(self, num_cpus: int = 1, resources: dict[str, float] | None = None,
                 object_store_mb: int = 256, temp_dir: str | None = None, env: dict[str, str] | None = None,
                 start_timeout_s: float = 180.0, head_command: list[str] | None = None):
        self.head_command = list(head_command) if head_command else None
        self.num_cpus = num_cpus
        self.resources = resources or {}
        self.object_store_mb = object_store_mb
        self.own_temp = temp_dir is None
        # short path: Ray's unix sockets live under it (108-byte limit)
        self.temp_dir = temp_dir or tempfile.mkdtemp(prefix="rc-", dir="/tmp")
        self.env = cluster_env(env)
        self.start_timeout_s = start_timeout_s
        self.gcs_port = int(_flag(self.head_command, "--port") or free_port())
        self.dashboard_port = int(_flag(self.head_command, "--dashboard-port") or free_port())
        self.nodes: list[Node] = []

    # ----------------------------------------------------------------- addresses
    @property
    def address(self) -> str:
        """The GCS address workers join (`ray start --address`)."""
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        """The Jobs API / dashboard address (`curator submit --address`)."""
        return f"http://127.0.0.1:{self.dashboard_port}"

    # ------------------------------------------------------------------- nodes
    def head_argv(self) -> list[str]:
        if self.head_command:
            return self._isolate(self.head_command, head=True)
        argv = ["ray", "start", "--head", "--port", str(self.gcs_port), "--dashboard-port", str(self.dashboard_port),
                "--num-cpus", str(self.num_cpus), "--disable-usage-stats"]
        if self.resources:
            argv += ["--resources", json.dumps(self.resources)]
        return self._isolate(argv, head=True)

    def worker_argv(self, num_cpus: int, resources: dict[str, float] | None) -> list[str]:
        argv = ["ray", "start", "--address", self.address, "--num-cpus", str(num_cpus)]
        if resources:
            argv += ["--resources", json.dumps(resources)]
        return self._isolate(argv, head=False)

    def _isolate(self, command: list[str], head: bool) -> list[str]:
        """The command with this machine's `ray`, plus a private value for every port it
        leaves at a default, the cluster's temp dir (head) and `--block`."""
        if command[:2] != ["ray", "start"]:
            raise ValueError(f"not a `ray start` command: {command}")
        argv = [ray_executable()] + command[1:]
        extra: dict[str, str] = {
            "--object-store-memory": str(self.object_store_mb * 1024 * 1024),
            "--node-manager-port": str(free_port()), "--object-manager-port": str(free_port()),
            "--dashboard-agent-listen-port": str(free_port()), "--dashboard-agent-grpc-port": str(free_port()),
            "--runtime-env-agent-port": str(free_port()), "--metrics-export-port": str(free_port()),
        }
        if head:
            extra.update({"--dashboard-host": "127.0.0.1", "--ray-client-server-port": str(free_port()),
                          "--temp-dir": self.temp_dir})
        for flag, value in extra.items():
            if _flag(argv, flag) is None:
                argv += [flag, value]
        return argv + ["--block"]

    def _spawn(self, argv: list[str], name: str) -> Node:
        log_path = Path(self.temp_dir) / f"{name}.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                    start_new_session=True)
        node = Node(argv, proc, log_path)
        self.nodes.append(node)
        return node

    def start(self) -> "LocalRayCluster":
        self._spawn(self.head_argv(), "head")
        self._wait(lambda: self._dashboard_up() and len(self.alive_nodes()) == 1, "the head's dashboard / job server")
        return self

    def add_worker(self, num_cpus: int = 1, resources: dict[str, float] | None = None,
                   command: list[str] | None = None) -> str:
        """Start a worker node; return its Ray node id once the cluster sees it alive."""
        before = {n["node_id"] for n in self.alive_nodes()}
        argv = self._isolate(command, head=False) if command else self.worker_argv(num_cpus, resources)
        node = self._spawn(argv, f"worker{len(self.nodes)}")
        new: list[str] = []

        def joined() -> bool:
            new[:] = [n["node_id"] for n in self.alive_nodes() if n["node_id"] not in before]
            return bool(new)

        self._wait(joined, "a worker node to join")
        node.extra["node_id"] = new[0]
        return new[0]

    # ------------------------------------------------------------------- state
    def _get(self, path: str, timeout: float = 5.0) -> Any:
        with urllib.request.urlopen(self.dashboard_url + path, timeout=timeout) as r:
            return json.loads(r.read().decode())

    def _dashboard_up(self) -> bool:
        try:
            return bool(self._get("/api/version").get("ray_version"))
        except Exception:
            return False

    def alive_nodes(self) -> list[dict[str, Any]]:
        """Alive nodes as the dashboard's state API reports them: node_id, resources_total, ..."""
        try:
            data = self._get("/api/v0/nodes?limit=100&detail=true")
        except Exception:
            return []
        return [n for n in data.get("data", {}).get("result", {}).get("result", []) if n.get("state") == "ALIVE"]

    def _wait(self, ok: Any, what: str) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if ok():
                return
            for node in self.nodes:
                if node.proc.poll() is not None:
                    raise RuntimeError(f"`{' '.join(node.argv[:3])} ...` exited ({node.proc.returncode}) "
                                       f"while waiting for {what}:\n{self.log_tail(node)}")
            time.sleep(0.5)
        raise TimeoutError(f"timed out after {self.start_timeout_s:.0f} s waiting for {what}")

    def log_tail(self, node: Node, chars: int = 4000) -> str:
        try:
            return node.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    # ---------------------------------------------------------------- teardown
    def pids(self) -> list[int]:
        """Every process this cluster started: the `ray start` processes and their descendants."""
        import psutil

        found: list[int] = []
        for node in self.nodes:
            try:
                root = psutil.Process(node.proc.pid)
                found += [root.pid] + [c.pid for c in root.children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
        return found

    def stop(self, grace_s: float = 5.0) -> None:
        import psutil

        procs = []
        for pid in self.pids():
            try:
                procs.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                pass
        for p in procs:
            try:
                p.send_signal(signal.SIGTERM)
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(procs, timeout=grace_s)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=grace_s)
        for node in self.nodes:
            if node.proc.poll() is None:
                node.proc.wait(timeout=grace_s)
        self.nodes.clear()
        if self.own_temp:
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> "LocalRayCluster":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: Any) -> None:
        self.stop()
