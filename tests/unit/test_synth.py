"""The generated test videos are the same bytes every time (tests compare against them)."""

import hashlib

import pytest

from curator.testing.synth import SOURCES, make_shots_video

pytestmark = pytest.mark.unit


def test_every_source_makes_the_same_video_twice(tmp_path):
    shots = [(name, 6) for name in SOURCES]
    digests = set()
    for i in range(2):
        path = tmp_path / f"v{i}.mp4"
        make_shots_video(str(path), shots, width=64, height=48, fps=25)
        digests.add(hashlib.sha256(path.read_bytes()).hexdigest())
    assert len(digests) == 1
