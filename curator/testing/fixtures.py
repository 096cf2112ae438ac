"""pytest fixtures for the storage emulators (session-scoped, started on first use).

Import them into a conftest.py to use them::

    from curator.testing.fixtures import azurite, gcs_emulator, moto_s3  # noqa: F401

Each fixture starts its emulator on a free port of 127.0.0.1, exports the emulator's
(public, well-known) credentials into ``os.environ`` for the session — as a deployment
would — and stops it and restores the environment at the end. Note that a Ray session
started *before* a fixture does not see those variables in its workers; run Ray tests
that read buckets through the CLI (a fresh process) or start the emulators first.
"""

from __future__ import annotations

import os
import uuid
from typing import Any, Iterator

import pytest

from curator.testing.emulators import Azurite, Emulator, EmulatorUnavailable, GCSEmulator, MotoS3


def _run(emulator_cls: type[Emulator]) -> Iterator[Any]:
    try:
        emu = emulator_cls()
    except EmulatorUnavailable as exc:
        pytest.skip(str(exc))
    emu.start()
    saved = {k: os.environ.get(k) for k in emu.env()}
    os.environ.update(emu.env())
    try:
        yield emu
    finally:
        emu.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    """moto's S3 server (see curator.testing.emulators.MotoS3)."""
    yield from _run(MotoS3)


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[GCSEmulator]:
    """The gcp-storage-emulator package, in memory."""
    yield from _run(GCSEmulator)


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """Azurite's blob service from node_modules (skips, naming the fix, if not installed)."""
    yield from _run(Azurite)


def bucket_name(prefix: str = "t") -> str:
    """A fresh bucket / container name valid on S3, GCS and Azure."""
    return f"{prefix}{uuid.uuid4().hex[:16]}"


def storage_config(*emulators: Emulator, **top: Any) -> Any:
    """A StorageConfig pointing at the given emulators, plus top-level keys."""
    from curator.storage.config import StorageConfig

    data: dict[str, Any] = {}
    for e in emulators:
        for k, v in e.storage_overrides().items():
            data.setdefault(k, {}).update(v)
    for k, v in top.items():
        if isinstance(v, dict):
            data.setdefault(k, {}).update(v)
        else:
            data[k] = v
    return StorageConfig(**data)


#: the emulator fixture of each cloud scheme
EMULATOR_FIXTURE = {"s3": "moto_s3", "gs": "gcs_emulator", "az": "azurite"}


class Cloud:
    """A fresh bucket on one emulated cloud: `name` (s3, gs, az), its emulator, `root`
    (``<scheme>://<bucket>``)."""

    def __init__(self, name: str, emulator: Emulator, root: str):
        self.name, self.emulator, self.root = name, emulator, root

    def config(self, **top: Any) -> Any:
        return storage_config(self.emulator, **top)

    def config_json(self) -> str:
        return str(self.config(retries=3, backoff_s=0.05).model_dump_json())

    def set_args(self) -> list[str]:
        """`--set storage...` arguments for a curator command."""
        return [a for o in self.emulator.cli_overrides() for a in ("--set", o)]


def make_cloud(request: Any, name: str) -> Cloud:
    """A fresh bucket on the emulator of `name` (starting it on first use)."""
    emu = request.getfixturevalue(EMULATOR_FIXTURE[name])
    return Cloud(name, emu, emu.create_bucket(bucket_name()))
