"""Shared fixtures. Ray-based tests run a local Ray with token auth and usage stats
switched off explicitly (recent Ray enables token auth by default)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

ROOT = Path(__file__).resolve().parent.parent
MEDIA = ROOT / "tests" / "data" / "media"


@pytest.fixture(scope="session")
def media_dir() -> Path:
    return MEDIA


@pytest.fixture
def media(tmp_path: Path):
    """Copy named files from tests/data/media into a fresh folder; returns that folder."""

    def _copy(*names: str) -> Path:
        d = tmp_path / "in"
        d.mkdir(exist_ok=True)
        for n in names:
            shutil.copy(MEDIA / n, d / n)
        return d

    return _copy


@pytest.fixture(scope="session")
def ray_session():
    """One embedded Ray for the whole session (ray.init costs seconds and ~1.7 GB)."""
    import ray

    if not ray.is_initialized():
        from curator.config import RunConfig
        from curator.runners.ray import init_ray

        init_ray(RunConfig(num_cpus=2))
    yield ray
    ray.shutdown()


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def five_shots(tmp_path_factory):
    """A generated 192x108 video of five shots with known cut frames: (path, cuts)."""
    from curator.testing.synth import make_shots_video

    path = tmp_path_factory.mktemp("five-shots") / "cuts.mp4"
    shots = [("testsrc2", 40), ("mandelbrot", 55), ("gradients", 47), ("zoneplate", 61), ("sierpinski", 38)]
    return path, make_shots_video(str(path), shots, width=192, height=108, fps=25)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """A model directory holding tiny random-weight models built here (no download):
    open_clip `open_clip:tiny-test/random`, the LLaVA-style VLM `hf:curator-test/tiny-llava`
    and the T5 text encoder `hf:curator-test/tiny-t5`."""
    from curator.testing import tiny_models

    d = str(tmp_path_factory.mktemp("models"))
    tiny_models.build_open_clip(d)
    tiny_models.build_vlm(d)
    tiny_models.build_text_encoder(d)
    return d


# Storage emulators (moto S3, gcp-storage-emulator, Azurite), started on first use.
from curator.testing.fixtures import azurite, gcs_emulator, moto_s3  # noqa: E402,F401


@pytest.fixture(scope="session")
def filter_set(tmp_path_factory):
    """The labelled clip set of curator.testing.synth_filters (~80 small clips with known truth),
    generated once per session."""
    from curator.testing.synth_filters import make_filter_set

    folder = tmp_path_factory.mktemp("filter_set")
    return make_filter_set(folder)
