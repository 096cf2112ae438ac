"""The `backend` fixture: one fresh, empty bucket on each storage backend in turn.

    file  a temp folder            mem  the in-process memory store
    s3    moto's S3 server         gs   gcp-storage-emulator      az  Azurite

Every test that takes `backend` runs once per backend, unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import pytest

from curator import storage
from curator.storage import memory
from curator.testing.emulators import Emulator
from curator.testing.fixtures import bucket_name, storage_config

EMULATOR_FIXTURE = {"s3": "moto_s3", "gs": "gcs_emulator", "az": "azurite"}
CLOUD = tuple(EMULATOR_FIXTURE)


@dataclass
class Backend:
    name: str
    root: str  # "<scheme>://<fresh bucket>/" (file: a fresh folder)
    bucket: str
    emulator: Emulator | None = None

    @property
    def cloud(self) -> bool:
        return self.name in CLOUD

    def uri(self, key: str) -> str:
        return self.root + key

    def missing_bucket_uri(self, key: str = "some/key.mp4") -> str:
        return f"{self.name}://nobucket-{bucket_name()}/{key}"

    @property
    def store(self) -> Any:
        return storage.store_for(self.root)

    def configure(self, **top: Any) -> None:
        """Re-point storage at this backend with extra settings (few, fast retries)."""
        emus = [self.emulator] if self.emulator is not None else []
        top.setdefault("retries", 2)
        top.setdefault("backoff_s", 0.01)
        storage.configure(storage_config(*emus, **top))


def make_backend(request: Any, name: str, tmp_path: Any, **top: Any) -> Backend:
    if name == "file":
        b = Backend(name, storage.normalize(str(tmp_path / "bucket")) + "/", str(tmp_path / "bucket"))
    elif name == "mem":
        bucket = bucket_name()
        memory.create_bucket(bucket)
        b = Backend(name, f"mem://{bucket}/", bucket)
    else:
        emu = request.getfixturevalue(EMULATOR_FIXTURE[name])
        bucket = bucket_name()
        emu.create_bucket(bucket)
        b = Backend(name, f"{name}://{bucket}/", bucket, emu)
    b.configure(**top)
    return b


ALL = [pytest.param("file", marks=pytest.mark.unit), pytest.param("mem", marks=pytest.mark.unit),
       *(pytest.param(n, marks=pytest.mark.integration) for n in CLOUD)]


@pytest.fixture(params=ALL)
def backend(request: Any, tmp_path: Any) -> Iterator[Backend]:
    b = make_backend(request, request.param, tmp_path)
    yield b
    storage.configure(None)


@pytest.fixture(params=[pytest.param(n, marks=pytest.mark.integration) for n in CLOUD])
def cloud(request: Any, tmp_path: Any) -> Iterator[Backend]:
    """Only the three emulated clouds."""
    b = make_backend(request, request.param, tmp_path)
    yield b
    storage.configure(None)
