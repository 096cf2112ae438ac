"""Storage emulators on free ports of 127.0.0.1, started and stopped from Python.

    with MotoS3() as s3, GCSEmulator() as gcs, Azurite() as az:
        storage.configure(StorageConfig(**merge(s3.storage_overrides(), ...)))
        s3.create_bucket("raw")

Each emulator runs as a child process (its own interpreter, so its CPU and memory are not
mixed with the caller's) and is reachable from any process on this machine, Ray workers
included. What each one lacks is listed in docs/storage.md:

- ``MotoS3``: moto's server (as ``python -m moto.server`` runs it, plus a fast seeding
  endpoint for large listings and conditional writes made atomic:
  :mod:`curator.testing.moto_server`). Full S3 API incl. multipart;
  IAM authorisation can be switched on at run time (:meth:`MotoS3.enforce_auth`).
- ``GCSEmulator``: the ``gcp-storage-emulator`` package, in memory. JSON API, resumable
  uploads and ranged reads; no XML multipart API (501), no authorisation, one request
  at a time (a single-threaded HTTP/1.0 server). It ignores ``ifGenerationMatch``;
  :mod:`curator.testing.gcs_server` adds GCS's precondition check on uploads and downloads.
- ``Azurite``: Microsoft's emulator from npm (``azurite-blob``, installed by ``npm install``
  at the repository root), in memory. Shared-key and SAS authorisation are enforced.

Credentials are the emulators' public well-known test values, handed out by
:meth:`env` (environment variables, as a real deployment passes them) — never secrets.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

#: Azurite's documented development account (public, the same in every installation)
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class EmulatorUnavailable(RuntimeError):
    """The emulator is not installed here (the message says how to install it)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent.parent


class Emulator:
    """A child process serving one storage API on 127.0.0.1:<port>."""

    name = "emulator"
    start_timeout_s = 60.0
    #: how to ask it to stop (everything is in memory: nothing to flush)
    stop_signal = signal.SIGTERM

    def __init__(self) -> None:
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._logdir: str | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self, port: int) -> list[str]:
        raise NotImplementedError

    def child_env(self) -> dict[str, str]:
        return dict(os.environ)

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self) -> "Emulator":
        last = ""
        for _ in range(3):  # a free port can be taken between probing and binding
            self.port = free_port()
            self._logdir = tempfile.mkdtemp(prefix=f"curator-{self.name}-")
            self._log = open(os.path.join(self._logdir, "log.txt"), "wb")
            self.proc = subprocess.Popen(self.command(self.port), stdout=self._log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=self.child_env(), cwd=self._logdir,
                                         start_new_session=True)
            deadline = time.monotonic() + self.start_timeout_s
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    if self.ready():
                        return self
                except OSError:
                    pass
                time.sleep(0.1)
            last = self.log_tail()
            self.stop()
        raise RuntimeError(f"{self.name} did not start on 127.0.0.1: {last[-2000:]}")

    def log_tail(self) -> str:
        if not self._logdir:
            return ""
        try:
            return Path(self._logdir, "log.txt").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, self.stop_signal)  # its own session: the whole group
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._logdir:
            shutil.rmtree(self._logdir, ignore_errors=True)
            self._logdir = None

    def __enter__(self) -> "Emulator":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --------------------------------------------------------------- configuration
    def env(self) -> dict[str, str]:
        """Environment variables a client process needs (credentials for the emulator)."""
        return {}

    def storage_overrides(self) -> dict[str, Any]:
        """`storage:` config keys pointing curator at this emulator."""
        return {}

    def cli_overrides(self) -> list[str]:
        """The same as `--set storage.…=…` arguments for `curator run`."""
        out: list[str] = []

        def walk(prefix: str, d: dict[str, Any]) -> None:
            for k, v in d.items():
                if isinstance(v, dict):
                    walk(f"{prefix}{k}.", v)
                else:
                    out.append(f"storage.{prefix}{k}={v}")

        walk("", self.storage_overrides())
        return out

    def create_bucket(self, name: str) -> str:
        """Create a bucket (container) and return its URI root, e.g. 's3://name'."""
        raise NotImplementedError


def _http_ok(url: str, method: str = "GET") -> bool:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:
            return resp.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


# ------------------------------------------------------------------------------ S3
class CheckoutModule(Emulator):
    """An emulator run as ``python -m curator.testing.<server>``: the child imports this
    checkout's curator, not only an installed one."""

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        root = str(repo_root())
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        return env


class MotoS3(CheckoutModule):
    """moto's S3 server. Credentials: any; region us-east-1."""

    name = "moto"
    access_key = "testing"
    secret_key = "testing"
    region = "us-east-1"

    def command(self, port: int) -> list[str]:
        return [sys.executable, "-m", "curator.testing.moto_server", "-H", "127.0.0.1", "-p", str(port)]

    def ready(self) -> bool:
        return _http_ok(f"{self.endpoint}/moto-api/")

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_DEFAULT_REGION": self.region}

    def storage_overrides(self) -> dict[str, Any]:
        return {"s3": {"endpoint_url": self.endpoint, "region": self.region}}

    def client(self, access_key: str | None = None, secret_key: str | None = None) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=self.region,
                            aws_access_key_id=access_key or self.access_key,
                            aws_secret_access_key=secret_key or self.secret_key,
                            config=Config(retries={"total_max_attempts": 1, "mode": "standard"},
                                          max_pool_connections=32))

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return f"s3://{name}"

    def seed(self, bucket: str, prefix: str, count: int, size: int = 0, suffix: str = "") -> None:
        """Create `count` objects `prefix000000suffix`, … of `size` bytes in one request (fast set-up;
        see curator.testing.moto_server)."""
        from urllib.parse import urlencode

        q = urlencode({"bucket": bucket, "prefix": prefix, "count": count, "size": size, "suffix": suffix})
        req = urllib.request.Request(f"{self.endpoint}/_curator/seed?{q}", data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=300) as resp:
            resp.read()

    def enforce_auth(self, on: bool) -> None:
        """Switch moto's IAM authentication and authorisation on (or off again).

        While on, requests must be signed with an access key that moto's IAM knows, and
        IAM policies are evaluated (a user without an allowing policy gets 403)."""
        count = b"0" if on else b"inf"
        req = urllib.request.Request(f"{self.endpoint}/moto-api/reset-auth", data=count, method="POST",
                                     headers={"Content-Type": "text/plain"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            json.loads(resp.read())

    def iam_user(self, name: str, policy: dict[str, Any] | None = None) -> tuple[str, str]:
        """Create an IAM user (with an optional inline policy); returns its access key pair."""
        import boto3

        iam = boto3.client("iam", endpoint_url=self.endpoint, region_name=self.region,
                           aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key)
        iam.create_user(UserName=name)
        if policy is not None:
            iam.put_user_policy(UserName=name, PolicyName=f"{name}-policy", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]


# ----------------------------------------------------------------------------- GCS
class GCSEmulator(CheckoutModule):
    """gcp-storage-emulator, in memory. No authentication (anonymous clients)."""

    name = "gcs-emulator"
    project = "curator-test"

    def command(self, port: int) -> list[str]:
        # the emulator package plus GCS's generation preconditions (curator.testing.gcs_server)
        return [sys.executable, "-m", "curator.testing.gcs_server", "-H", "127.0.0.1", "-p", str(port)]

    def ready(self) -> bool:
        return _http_ok(f"{self.endpoint}/storage/v1/b?project={self.project}")

    def env(self) -> dict[str, str]:
        return {"GOOGLE_CLOUD_PROJECT": self.project}

    def storage_overrides(self) -> dict[str, Any]:
        return {"gcs": {"endpoint": self.endpoint, "project": self.project}}

    def client(self) -> Any:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage as gcs

        return gcs.Client(project=self.project, credentials=AnonymousCredentials(),
                          client_options={"api_endpoint": self.endpoint})

    def create_bucket(self, name: str) -> str:
        body = json.dumps({"name": name}).encode()
        req = urllib.request.Request(f"{self.endpoint}/storage/v1/b?project={self.project}", data=body,
                                     method="POST", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()
        return f"gs://{name}"


# --------------------------------------------------------------------------- Azure
def find_azurite() -> str:
    """Path of the `azurite-blob` executable: $AZURITE_BLOB, then node_modules at the
    repository root (`npm install`), then PATH."""
    cands = [os.environ.get("AZURITE_BLOB", ""), str(repo_root() / "node_modules" / ".bin" / "azurite-blob"),
             shutil.which("azurite-blob") or ""]
    for c in cands:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    raise EmulatorUnavailable("Azurite is not installed: run `npm install` at the repository root "
                              "(package.json lists it; `make install` does this) or set AZURITE_BLOB")


class Azurite(Emulator):
    """Azurite's blob service, in memory, with the well-known development account."""

    name = "azurite"
    stop_signal = signal.SIGKILL  # it ignores SIGTERM/SIGINT for many seconds; in-memory anyway
    account = AZURITE_ACCOUNT
    key = AZURITE_KEY

    def __init__(self) -> None:
        super().__init__()
        self.binary = find_azurite()

    def command(self, port: int) -> list[str]:
        return [self.binary, "--inMemoryPersistence", "--skipApiVersionCheck", "--loose",
                "--blobHost", "127.0.0.1", "--blobPort", str(port), "--silent"]

    def ready(self) -> bool:
        # any HTTP answer (400/403 for an unsigned request) means the server is up
        return _http_ok(f"{self.endpoint}/{self.account}?comp=list")

    @property
    def account_url(self) -> str:
        return f"{self.endpoint}/{self.account}"

    def connection_string(self, key: str | None = None) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={self.account};AccountKey={key or self.key};"
                f"BlobEndpoint={self.account_url};")

    def env(self) -> dict[str, str]:
        return {"AZURE_STORAGE_CONNECTION_STRING": self.connection_string()}

    def client(self) -> Any:
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string(), retry_total=0)

    def create_bucket(self, name: str) -> str:
        self.client().create_container(name)
        return f"az://{name}"
