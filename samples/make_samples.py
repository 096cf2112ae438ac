"""Regenerates samples/synthetic_cuts.mp4 (the demo's synthetic multi-shot video).

    python samples/make_samples.py

Four shots from ffmpeg test sources, hard cuts at frames 75, 150 and 240 (25 fps).
"""

import os

from curator.testing.synth import make_shots_video

HERE = os.path.dirname(os.path.abspath(__file__))

if __name__ == "__main__":
    cuts = make_shots_video(os.path.join(HERE, "synthetic_cuts.mp4"),
                            [("testsrc2", 75), ("mandelbrot", 75), ("gradients", 90), ("sierpinski", 85)],
                            width=320, height=180, fps=25, crf=28)
    print("cuts at", cuts)
