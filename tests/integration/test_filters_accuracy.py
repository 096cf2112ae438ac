"""Each filter on the labelled clip set (curator.testing.synth_filters, made once per session from
real clips and ffmpeg sources): precision and recall of its decisions, tag directions,
text frames, quality ladders."""

from __future__ import annotations

import json

import pytest

from curator.config import MotionConfig, QualityConfig, TextOverlayConfig
from curator.records import OK, REJECTED
from curator.testing.synth_filters import FRAMES, clip_row, ladders, motion_accuracy, text_accuracy

pytestmark = pytest.mark.integration

def make(cls, cfg):
    from curator.config import PipelineConfig
    from curator.stage import RunContext

    return cls(cfg, RunContext(PipelineConfig(), "file:///in", "file:///out", "test", "hash"))


def run_stage(stage, clips):
    """Rows through the stage's real process() (the path the runners use), one batch."""
    rows = [clip_row(c) for c in clips]
    out = stage.process(rows)
    return {r["clip_id"]: r for r in out}


def assert_audited(row, stage):
    """A rejected row says where, why, and with which score against which threshold."""
    assert row["status"] == REJECTED and row["stage"] == stage and row["reason"] and row["detail"]
    failed = [c for c in row["checks"] if c["stage"] == stage and c["passed"] is False]
    assert failed and all(c["value"] is not None and c["threshold"] is not None for c in failed)


@pytest.fixture(scope="module", params=["mv", "flow"])
def motion_rows(request, filter_set):
    from stages.motion import MotionStage

    clips = [c for c in filter_set if c.motion or c.camera]
    st = make(MotionStage, MotionConfig(method=request.param))
    return request.param, clips, run_stage(st, clips)


def test_motion_static_and_shaky_precision_recall(motion_rows):
    method, clips, rows = motion_rows
    assert {rows[c.name]["motion_method"] for c in clips} == {method}
    acc = motion_accuracy(clips, rows)
    for k in ("static_precision", "static_recall", "shaky_precision", "shaky_recall", "moving_kept"):
        assert acc[k] >= 0.9, (method, k, acc)
    for c in clips:
        if rows[c.name]["status"] != OK:
            assert_audited(rows[c.name], "motion")


def test_camera_tag_directions(motion_rows):
    method, clips, rows = motion_rows
    assert sum(1 for c in clips if c.camera and c.camera != "static") >= 12
    acc = motion_accuracy(clips, rows)
    assert acc["tag_direction_accuracy"] >= 0.9 and acc["static_tag_accuracy"] >= 0.9, (method, acc)


@pytest.fixture(scope="module")
def text_rows(filter_set):
    from stages.text_overlay import TextOverlayStage

    clips = [c for c in filter_set if c.text is not None or c.text_frames]
    st = make(TextOverlayStage, TextOverlayConfig())
    return clips, run_stage(st, clips)


def test_text_overlay_precision_recall(text_rows):
    clips, rows = text_rows
    judged = [c for c in clips if c.text is not None]
    assert sum(c.text for c in judged) >= 10 and sum(not c.text for c in judged) >= 30
    acc = text_accuracy(clips, rows)
    assert acc["text_precision"] >= 0.9 and acc["text_recall"] >= 0.9, acc
    for c in judged:
        if c.text:
            assert_audited(rows[c.name], "text_overlay")


def test_text_frames_match_the_drawn_ranges(text_rows):
    from curator.media.decode import uniform_indices

    clips, rows = text_rows
    n = TextOverlayConfig().sample_frames
    sampled = uniform_indices(FRAMES, n)
    for c in clips:
        if not c.text_frames:
            continue
        a, b = c.text_frames
        expected = sum(a <= i < b for i in sampled) / n
        row = rows[c.name]
        assert abs(row["text_frames_fraction"] - expected) <= 1 / n + 1e-9, (c.name, row["text_frames_fraction"])
        boxes = json.loads(row["text_boxes"])
        assert boxes and all(a <= sampled[b_["frame"]] < b for b_ in boxes), c.name  # no box outside the range
        assert all(0 <= b_["box"][0] < b_["box"][2] <= 160 and 0 <= b_["box"][1] < b_["box"][3] <= 120 for b_ in boxes)


@pytest.fixture(scope="module")
def quality_rows(filter_set):
    from stages.quality import QualityStage

    clips = [c for c in filter_set if c.ladder]
    st = make(QualityStage, QualityConfig())
    return clips, run_stage(st, clips)


def test_quality_ladders_are_monotone(quality_rows):
    clips, rows = quality_rows
    by_ladder = ladders(clips, rows)
    assert len(by_ladder) == 6
    for name, scores in by_ladder.items():
        assert len(scores) == 4
        assert all(a > b for a, b in zip(scores, scores[1:])), (name, scores)


def test_carphone_pristine_beats_distorted(media_dir):
    from stages.quality import QualityStage

    st = make(QualityStage, QualityConfig())
    st.ensure_setup()
    scores = {}
    for name in ("carphone_pristine", "carphone_distorted"):
        data = (media_dir / f"{name}.mp4").read_bytes()
        scores[name] = st.measure({"mp4": data, "clip_frames": 120})
    p, d = scores["carphone_pristine"], scores["carphone_distorted"]
    assert p["quality_score"] > d["quality_score"] + 0.1
    assert p["brisque"] < d["brisque"] and p["blockiness"] < d["blockiness"]


def test_strict_quality_threshold_rejects_with_audit(quality_rows):
    from stages.quality import QualityStage

    clips, _ = quality_rows
    worst = [c for c in clips if c.level == 3]
    st = make(QualityStage, QualityConfig(min_score=0.7))
    rows = run_stage(st, worst)
    for c in worst:
        assert_audited(rows[c.name], "quality")
        assert rows[c.name]["reason"] == "low_quality"
