"""The cut pass's encoder thread and the frame graph's pass-through."""

import av
import numpy as np
import pytest

from curator.media.decode import FrameGraph
from curator.media.encode import EncoderThread

pytestmark = pytest.mark.unit


def test_calls_run_in_order_and_an_error_does_not_skip_the_later_ones():
    seen = []
    enc = EncoderThread(depth=2)

    def boom():
        raise RuntimeError("encoder broke")

    for i in range(5):
        enc.submit(seen.append, i)
    enc.submit(boom)
    enc.submit(seen.append, "abort")  # an abort queued after the failure still runs
    with pytest.raises(RuntimeError, match="encoder broke"):
        enc.close()
    assert seen == [0, 1, 2, 3, 4, "abort"]
    with pytest.raises(RuntimeError, match="encoder broke"):
        enc.submit(seen.append, 5)  # later submissions see the error
    enc.close(raise_error=False)  # closing twice is harmless


def _frame(w, h, fmt="yuv420p"):
    return av.VideoFrame.from_ndarray(np.zeros((h, w, 3), np.uint8), format="rgb24").reformat(format=fmt)


def test_frames_the_graph_would_not_change_pass_through():
    g = FrameGraph(even=True)
    f = _frame(64, 48)
    assert g(f) is f  # upright, even, already yuv420p
    odd = _frame(64, 48, "yuv444p")
    out = g(odd)  # another format mid-stream: through the graph
    assert out is not odd and out.format.name == "yuv420p"
    turned = FrameGraph(rotation=90, even=True)(_frame(64, 48))
    assert (turned.width, turned.height) == (48, 64)
    scaled = FrameGraph(width=32, height=24)(_frame(64, 48))
    assert (scaled.width, scaled.height) == (32, 24)
