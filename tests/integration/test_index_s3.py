"""Search on a clip index stored in the S3 emulator's bucket (moto server)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from curator import index, storage
from curator.config import IndexConfig
from curator.testing.manifests import planted, unit, write_run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def s3(request):
    """moto's S3 server, from the storage test fixtures."""
    try:
        return request.getfixturevalue("moto_s3")
    except pytest.FixtureLookupError:
        pytest.skip("the moto_s3 fixture (curator.testing.fixtures) is not in this checkout")


@pytest.mark.integration
def test_search_on_an_index_in_the_s3_emulator_bucket(s3, tmp_path, monkeypatch):
    from curator.storage.config import StorageConfig

    for k, v in s3.env().items():
        monkeypatch.setenv(k, v)
    storage.configure(StorageConfig.model_validate(s3.storage_overrides()))
    try:
        root = s3.create_bucket("curated-index")
        out = storage.join(root, "run1")
        emb = planted(300)
        emb[222] = unit(emb[31] + 0.05 * planted(1, seed=4)[0])
        ids = write_run(out, "vidS3", emb)
        ix = storage.join(out, "index")
        assert index.add_run(out, ix, IndexConfig(ivf_min_rows=100))["added"] == 300
        assert storage.exists(storage.join(ix, "index.json"))
        proc = subprocess.run([sys.executable, "-m", "curator", "search", ix, "--like", ids[31], "--limit", "3",
                               *[a for o in s3.cli_overrides() for a in ("--set", o)]],
                              cwd=ROOT, capture_output=True, text=True, env={**os.environ, **s3.env()})
        assert proc.returncode == 0, proc.stderr
        first = proc.stdout.splitlines()[2].split()
        assert first[0] == ids[222] and first[-1].startswith("s3://curated-index/run1/staging/clips/")
    finally:
        storage.configure(None)
