"""Shot boundaries: TransNetV2 and PySceneDetect on generated and real videos."""

import pytest

from curator.config import PipelineConfig
from curator.media.probe import probe
from curator.stage import RunContext
from stages.split import SplitStage

pytestmark = pytest.mark.integration

METHODS = ["transnetv2", "scenedetect"]


def _split(path, method, **kw):
    cfg = PipelineConfig()
    ctx = RunContext(cfg, "file:///in", "file:///out", "test", "h")
    stage = SplitStage(cfg.stages.split.model_copy(update={"method": method, "min_clip_s": 0.0, **kw}), ctx)
    row = {"kind": "video", "status": "ok", "video_id": "v", "source_uri": "file://" + str(path),
           **probe(str(path)).as_row()}
    out = stage.process([row])[0]
    assert out["status"] == "ok", out
    return out


@pytest.fixture(scope="module")
def generated(five_shots):
    return five_shots


@pytest.mark.parametrize("method", METHODS)
def test_generated_cuts_within_two_frames(generated, method):
    path, truth = generated
    found = [s["start_frame"] for s in _split(path, method)["spans"]][1:]
    assert len(found) == len(truth), (found, truth)
    assert all(abs(f - t) <= 2 for f, t in zip(found, truth)), (found, truth)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name, truth", [
    ("bikes.mp4", [30, 76, 137, 187, 242]),
    ("issue-134-rotate.mp4", [90, 210]),
])
def test_known_cuts_of_real_videos(media_dir, method, name, truth):
    found = [s["start_frame"] for s in _split(media_dir / name, method)["spans"]][1:]
    assert len(found) == len(truth)
    assert all(abs(f - t) <= 2 for f, t in zip(found, truth)), found


@pytest.mark.parametrize("method", METHODS)
def test_vfr_cuts_by_timestamp(media_dir, method):
    out = _split(media_dir / "goldeneye-vfr-drop3.mp4", method)
    times = [s["start_s"] for s in out["spans"]][1:]
    truth = [3.75375, 8.75875]
    assert len(times) == 2
    assert all(abs(a - b) <= 1 / 16 + 1e-3 for a, b in zip(times, truth)), times  # within one frame


def test_truncated_file_keeps_what_decodes(media_dir):
    out = _split(media_dir / "bikes_truncated_faststart.mp4", "scenedetect")
    assert 130 <= out["num_frames"] < 250
    assert "header says 250 frames" in out["detail"]
    assert [s["start_frame"] for s in out["spans"]][1:] == [30, 76, 137]


def test_transnetv2_does_not_leave_global_torch_state():
    import torch

    from curator.models import transnetv2

    before = torch.are_deterministic_algorithms_enabled()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    transnetv2.load("cpu")
    assert torch.are_deterministic_algorithms_enabled() == before
    assert torch.equal(torch.rand(3), expected)


def test_transnetv2_batching_does_not_change_predictions(generated):
    """CPU runs one window per batch (faster there), GPUs several: same probabilities."""
    import numpy as np

    from curator.media.decode import iter_frames
    from curator.models import transnetv2

    path, _ = generated
    frames = [f.to_ndarray(format="rgb24", width=transnetv2.SIZE[0], height=transnetv2.SIZE[1])
              for _, _, f in iter_frames(str(path))]
    model = transnetv2.load("cpu")
    one = transnetv2.predict(model, iter(frames))  # the CPU default: 1
    four = transnetv2.predict(model, iter(frames), batch_windows=4)
    assert len(one) == len(frames)
    np.testing.assert_allclose(one, four, atol=1e-4)
    assert transnetv2.scenes(one, 0.4) == transnetv2.scenes(four, 0.4)


@pytest.mark.parametrize("method, actor", [("transnetv2", True), ("scenedetect", False), ("fixed", False)])
def test_split_is_an_actor_pool_only_when_it_loads_a_model(method, actor):
    cfg = PipelineConfig()
    ctx = RunContext(cfg, "file:///in", "file:///out", "test", "h")
    assert SplitStage(cfg.stages.split.model_copy(update={"method": method}), ctx).stateful is actor


def test_the_manifest_lists_every_detected_shot_with_its_fate(tmp_path):
    """Through the binary: a 1.2 s shot (too short), a 4 s shot (kept), an 8 s shot (cut
    at max_clip_s=5 into two clips) and a 2.4 s shot (kept), each on the video row."""
    import subprocess
    import sys
    from pathlib import Path

    import pandas as pd

    from curator.testing.synth import make_shots_video

    cuts = make_shots_video(str(tmp_path / "in" / "s.mp4"), [("testsrc2", 30), ("mandelbrot", 100),
                                                             ("gradients", 200), ("zoneplate", 60)],
                            width=160, height=96, fps=25)
    assert cuts == [30, 130, 330]
    proc = subprocess.run([sys.executable, "-m", "curator", "run", "-i", str(tmp_path / "in"), "-o",
                           str(tmp_path / "out"), "--runner", "local", "--set", "stages.order=[]",
                           "--set", "stages.split.method=scenedetect", "--set", "stages.split.max_clip_s=5",
                           "--set", "run.shard=false", "--set", "dedup.enabled=false", "--set", "index.enabled=false"],
                          cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pd.read_parquet(tmp_path / "out" / "manifest.parquet")
    [video] = df[df.kind == "video"].to_dict("records")
    shots = list(video["shots"])
    assert video["num_shots"] == len(shots) == 4
    starts = [s["start_frame"] for s in shots]
    assert starts[0] == 0 and all(abs(a - b) <= 2 for a, b in zip(starts[1:], cuts)), starts
    assert [(s["fate"], s["clips"]) for s in shots] == [("too_short", 0), ("kept", 1), ("cut", 2), ("kept", 1)]
    assert [s["first_clip"] for s in shots[1:]] == [0, 1, 3] and pd.isna(shots[0]["first_clip"])
    clips = df[df.kind == "clip"].sort_values("clip_index")
    assert len(clips) == 4 and clips.start_frame.tolist()[0] == shots[1]["start_frame"]
    assert clips.end_frame.tolist()[-1] == shots[3]["end_frame"] == 390


@pytest.mark.parametrize("name", ["bikes.mp4", "goldeneye-vfr-drop3.mp4"])
def test_the_cheaper_scenedetect_score_is_pyscenedetects(media_dir, name):
    """curator's AdaptiveDetector computes each frame's score with OpenCV instead of numpy:
    the scores and the cuts must be PySceneDetect's own, to the last bit."""
    from scenedetect import AdaptiveDetector
    from scenedetect.common import FrameTimecode

    from curator.media.shots import SceneDetectDetector

    ours = SceneDetectDetector(3.0, 25.0)
    theirs = AdaptiveDetector(adaptive_threshold=3.0)
    from curator.media.decode import iter_frames

    cuts_ours, cuts_theirs = [], []
    for idx, _, frame in iter_frames(str(media_dir / name)):
        img = ours.small(frame)
        tc = FrameTimecode(idx, 25.0)
        cuts_ours += ours.detector.process_frame(tc, img)
        cuts_theirs += theirs.process_frame(tc, img)
        assert ours.detector._frame_score == theirs._frame_score, idx
    assert [c.frame_num for c in cuts_ours] == [c.frame_num for c in cuts_theirs]
    assert len(cuts_ours) >= 2


def test_the_configured_transnetv2_window_reaches_the_detector():
    from curator.media.shots import make_detector
    from curator.models import transnetv2

    cfg = PipelineConfig.load(None, ["stages.split.window_frames=300"])
    det = make_detector(cfg.stages.split, {"fps": 25.0}, transnetv2.load("cpu"))
    assert (det.stream.window, det.stream.step) == (300, 250)
    assert PipelineConfig().stages.split.window_frames == transnetv2.DEFAULT_WINDOW
    with pytest.raises(Exception, match="window_frames"):
        PipelineConfig.load(None, ["stages.split.window_frames=60"])  # under the reference window
