"""curator.media.frames: the one way stages sample a clip's frames, and the even-size helper."""
import math

import numpy as np
import pytest

from curator.media.frames import even, sample_clip_frames

pytestmark = pytest.mark.unit


def test_even_matches_the_formulas_it_replaced():
    for x in [0.0, 0.4, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 7.49, 15.0, 101.0, 119.99, 120.0, 213.33, 1079.5]:
        assert even(x) == max(2, int(round(x / 2)) * 2)
        assert even(x, minimum=16) == max(16, int(round(x / 2)) * 2)
    for n in range(0, 50):
        assert even(n, minimum=0, how="up") == n + n % 2
        assert even(n, how="down") == max(2, n - n % 2)
        assert even(n + 0.5, minimum=0, how="down") == 2 * math.floor((n + 0.5) / 2)


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory) -> bytes:
    from curator.testing.synth import make_shots_video

    path = tmp_path_factory.mktemp("frames") / "clip.mp4"
    make_shots_video(str(path), [("testsrc", 10)], width=96, height=64, fps=10)
    return path.read_bytes()


def test_sample_clip_frames_equals_sample_frames(clip_bytes, tmp_path):
    from curator.media.decode import sample_frames

    ref, ref_idx = sample_frames(clip_bytes, 4, (48, 32))
    got, idx = sample_clip_frames({"mp4": clip_bytes, "clip_frames": 10}, 4, (48, 32))
    assert idx == ref_idx and np.array_equal(got, ref)
    staged = tmp_path / "c.mp4"
    staged.write_bytes(clip_bytes)
    got2, _ = sample_clip_frames({"clip_uri": str(staged)}, 4, (48, 32))  # the staged file, frames counted
    assert np.array_equal(got2, ref)
    gray, used = sample_clip_frames({"mp4": clip_bytes}, 2, (48, 32), "gray", indices=[1, 3])
    assert gray.shape == (2, 32, 48) and used == [1, 3]


def test_sample_clip_frames_without_frames():
    with pytest.raises(ValueError, match="neither bytes nor a staged file"):
        sample_clip_frames({"kind": "clip"}, 4)
