"""Each filter on the labelled clip set (curator.synth_filters, made once per session from
real clips and ffmpeg sources): precision and recall of its decisions, tag directions,
text frames, quality ladders."""

from __future__ import annotations

import json

import pytest

from curator.config import MotionConfig, QualityConfig, TextOverlayConfig
from curator.records import OK, REJECTED
from curator.synth_filters import FRAMES, clip_row

pytestmark = pytest.mark.integration

OPPOSITE = {"pan_left": "pan_right", "pan_right": "pan_left", "tilt_up": "tilt_down", "tilt_down": "tilt_up",
            "zoom_in": "zoom_out", "zoom_out": "zoom_in"}


def make(cls, cfg):
    from curator.config import PipelineConfig
    from curator.stage import RunContext

    return cls(cfg, RunContext(PipelineConfig(), "file:///in", "file:///out", "test", "hash"))


def run_stage(stage, clips):
    """Rows through the stage's real process() (the path the runners use), one batch."""
    rows = [clip_row(c) for c in clips]
    out = stage.process(rows)
    return {r["clip_id"]: r for r in out}


def precision_recall(truth: dict[str, bool], predicted: dict[str, bool]) -> tuple[float, float]:
    tp = sum(1 for k, t in truth.items() if t and predicted[k])
    fp = sum(1 for k, t in truth.items() if not t and predicted[k])
    fn = sum(1 for k, t in truth.items() if t and not predicted[k])
    return tp / max(1, tp + fp), tp / max(1, tp + fn)


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
    for reason, truth_label in (("static", "static"), ("shaky", "shaky")):
        truth = {c.name: c.motion == truth_label for c in clips}
        pred = {c.name: rows[c.name].get("reason") == reason for c in clips}
        p, r = precision_recall(truth, pred)
        assert p >= 0.9 and r >= 0.9, (method, reason, p, r)
    for c in clips:
        row = rows[c.name]
        if row["status"] != OK:
            assert_audited(row, "motion")
    moving = [c for c in clips if c.motion == "moving"]
    assert sum(rows[c.name]["status"] == OK for c in moving) / len(moving) >= 0.9


def test_camera_tag_directions(motion_rows):
    method, clips, rows = motion_rows
    moves = [c for c in clips if c.camera and c.camera != "static"]
    assert len(moves) >= 12
    right = sum(1 for c in moves if c.camera in rows[c.name]["camera_motion"]
                and OPPOSITE[c.camera] not in rows[c.name]["camera_motion"])
    assert right / len(moves) >= 0.9, [(c.name, rows[c.name]["camera_motion"]) for c in moves]
    still = [c for c in clips if c.camera == "static"]
    assert sum(rows[c.name]["camera_motion"] == ["static"] for c in still) / len(still) >= 0.9


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
    truth = {c.name: bool(c.text) for c in judged}
    pred = {c.name: rows[c.name].get("reason") == "text_overlay" for c in judged}
    p, r = precision_recall(truth, pred)
    assert p >= 0.9 and r >= 0.9, (p, r)
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
    ladders: dict[str, list] = {}
    for c in clips:
        ladders.setdefault(c.ladder, []).append((c.level, rows[c.name]["quality_score"]))
    assert len(ladders) == 6
    for name, steps in ladders.items():
        scores = [s for _, s in sorted(steps)]
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
