"""GPU transcode (NVDEC + NVENC) against the CPU path. Skipped without CUDA."""

import io

import av
import pytest

from curator.media import encode, nvcodec
from curator.media.probe import probe

pytestmark = [pytest.mark.gpu, pytest.mark.integration]


@pytest.fixture(autouse=True)
def _needs_nvenc():
    why = nvcodec.unavailable_reason()
    if why:
        pytest.skip(why)


@pytest.mark.parametrize("name, spans", [
    ("bikes.mp4", [encode.Span(30, 76, 1.2, 3.04), encode.Span(137, 187, 5.48, 7.48)]),
    ("issue-134-rotate.mp4", [encode.Span(0, 90, 0, 3.75)]),
])
def test_gpu_clips_match_cpu_clips(media_dir, name, spans):
    src = str(media_dir / name)
    rot = probe(src).rotation
    cpu = encode.transcode_spans(src, spans, rotation=rot)
    gpu = nvcodec.transcode_spans(src, spans, rotation=rot)
    for c, g in zip(cpu, gpu):
        assert g.error is None, g.error
        assert (g.width, g.height, g.frames) == (c.width, c.height, c.frames)
        frames = list(av.open(io.BytesIO(g.data)).decode(video=0))
        assert len(frames) == c.frames
