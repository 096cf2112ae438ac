"""`cloud`: a fresh bucket on each emulated cloud in turn (S3 on moto, GCS, Azurite), with
storage configured for it."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from curator import storage
from curator.testing.fixtures import EMULATOR_FIXTURE, Cloud, make_cloud


@pytest.fixture(params=[pytest.param(n, marks=pytest.mark.integration) for n in EMULATOR_FIXTURE])
def cloud(request: Any) -> Iterator[Cloud]:
    c = make_cloud(request, request.param)
    storage.configure(c.config(retries=3, backoff_s=0.05))
    yield c
    storage.configure(None)
