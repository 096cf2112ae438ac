"""Filter base: checks, decisions, re-decisions, percentile cut-offs; the pure parts of
each filter (tags, text summaries, quality measures, taxonomy, the type head)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from curator.config import MotionConfig, PipelineConfig, QualityConfig, VideoTypeConfig
from curator.filters import NOT_SCORED, Filter, Rule, decide
from curator.phases.refilter import percentile_cutoffs as _cutoffs
from curator.phases.refilter import reapply
from curator.records import OK, REJECTED
from curator.rundir import RunDir

pytestmark = pytest.mark.unit


def _clip(**kw):
    row = {"kind": "clip", "clip_id": "c", "status": OK, "checks": []}
    row.update(kw)
    return row


# ------------------------------------------------------------------ decide
def test_decide_records_every_thresholded_metric_and_stops_on_failure():
    rules = [Rule("a", ">=", 0.5, "too_low", "min_a"), Rule("b", "<=", 2.0, "too_high", "max_b"),
             Rule("c", ">=", None, "never")]
    row = _clip(a=0.2, b=3.0, c=1.0)
    failed = decide(row, "f", rules)
    assert [r.metric for r in failed] == ["a", "b"]
    assert row["status"] == REJECTED and row["stage"] == "f" and row["reason"] == "too_low"
    assert "a 0.2 < 0.5 (f.min_a)" in row["detail"] and "b 3 > 2 (f.max_b)" in row["detail"]
    assert row["checks"] == [
        {"stage": "f", "metric": "a", "value": 0.2, "threshold": 0.5, "op": ">=", "passed": False},
        {"stage": "f", "metric": "b", "value": 3.0, "threshold": 2.0, "op": "<=", "passed": False},
    ]


def test_decide_replaces_its_own_checks_and_keeps_others():
    row = _clip(a=1.0, checks=[{"stage": "g", "metric": "x", "value": 1.0, "threshold": 0.0, "op": ">=",
                                "passed": True},
                               {"stage": "f", "metric": "a", "value": 0.0, "threshold": 9.0, "op": ">=",
                                "passed": False}])
    decide(row, "f", [Rule("a", ">=", 0.5, "low")])
    assert row["status"] == OK
    assert [(c["stage"], c["passed"]) for c in row["checks"]] == [("g", True), ("f", True)]


def test_decide_boundary_is_inclusive():
    assert decide(_clip(a=0.5), "f", [Rule("a", ">=", 0.5, "low")]) == []
    assert decide(_clip(a=0.5), "f", [Rule("a", "<=", 0.5, "high")]) == []


def test_missing_score_is_not_scored_only_for_active_rows():
    row = _clip(a=None)
    decide(row, "f", [Rule("a", ">=", 0.5, "low")])
    assert (row["status"], row["reason"]) == (REJECTED, NOT_SCORED)
    already = _clip(a=None, status=REJECTED, stage="e", reason="x")
    decide(already, "f", [Rule("a", ">=", 0.5, "low")])
    assert already["reason"] == "x" and already["checks"] == []


def test_rule_rejects_unknown_op():
    with pytest.raises(ValueError):
        Rule("a", ">", 1.0, "x")


# ------------------------------------------------------------------ reapply (refilter core)
class _F1(Filter):
    name = "f1"

    @classmethod
    def rules(cls, config):
        return [Rule("s1", ">=", config.t1, "low1", "t1")]


class _F2(Filter):
    name = "f2"

    @classmethod
    def rules(cls, config):
        return [Rule("s2", "<=", config.t2, "high2", "t2")]


class _Cfg:
    def __init__(self, t1, t2):
        self.stages = type("S", (), {"f1": type("C", (), {"t1": t1})(), "f2": type("C", (), {"t2": t2})()})()


def test_reapply_readmits_and_rejects_from_recorded_scores():
    filters = {"f1": _F1, "f2": _F2}
    kept = _clip(s1=0.6, s2=1.0)
    rejected = _clip(s1=0.3, s2=5.0, status=REJECTED, stage="f1", reason="low1", detail="")
    error = _clip(s1=0.9, s2=0.0, status="error", stage="transcode", reason="transcode_failed")
    cfg = _Cfg(t1=0.2, t2=10.0)
    assert reapply(rejected, filters, cfg)["status"] == OK
    assert reapply(kept, filters, cfg)["status"] == OK
    assert reapply(error, filters, cfg)["status"] == "error"  # not a filter decision: untouched
    strict = _Cfg(t1=0.7, t2=10.0)
    assert reapply(kept, filters, strict)["reason"] == "low1"


def test_reapply_marks_unscored_readmissions():
    # rejected by f1 before f2 ever saw it: re-admitting it leaves f2 without a score
    row = _clip(s1=0.3, s2=None, status=REJECTED, stage="f1", reason="low1")
    reapply(row, {"f1": _F1, "f2": _F2}, _Cfg(t1=0.1, t2=1.0))
    assert (row["status"], row["stage"], row["reason"]) == (REJECTED, "f2", NOT_SCORED)


# ------------------------------------------------------------------ percentiles
def _write_manifest(tmp_path, values):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"kind": "video", "clip_id": None, "status": OK, "quality_score": None}]
    rows += [{"kind": "clip", "clip_id": f"c{i}", "status": OK, "quality_score": v} for i, v in enumerate(values)]
    pq.write_table(pa.Table.from_pylist(rows), str(tmp_path / "manifest.parquet"))
    return str(tmp_path)


def percentile_cutoffs(run, *args, **kwargs):
    with RunDir.of(run).open_manifest() as mf:
        return _cutoffs(mf, *args, **kwargs)


@pytest.mark.parametrize("pct", [15.0, 50.0, 3.0])
def test_percentile_cutoff_over_the_whole_manifest(tmp_path, pct):
    from stages.quality import QualityStage

    rng = np.random.default_rng(0)
    values = list(rng.uniform(0.2, 0.9, 1000)) + [None] * 7
    uri = _write_manifest(tmp_path, values)
    cfg = PipelineConfig()
    cfg.stages.quality.drop_bottom_percent = pct
    cfg.stages.quality.min_score = None
    cuts = percentile_cutoffs(uri, {"quality": QualityStage}, cfg, bins=4096)
    cut = cuts[("quality", "quality_score")]
    scored = np.array([v for v in values if v is not None])
    dropped = int((scored < cut).sum())
    assert dropped <= pct / 100 * len(scored)  # never more than asked
    assert dropped >= pct / 100 * len(scored) - 3  # and within one bin of it


def test_percentile_population_is_what_the_thresholds_keep(tmp_path):
    """The bottom 20 % of the clips that pass min_score, not of all clips."""
    from stages.quality import QualityStage

    values = [i / 100 for i in range(100)]  # 0.00 .. 0.99
    uri = _write_manifest(tmp_path, values)
    cfg = PipelineConfig()
    cfg.stages.quality.drop_bottom_percent = 20
    cfg.stages.quality.min_score = 0.5  # keeps 0.50 .. 0.99: 50 clips, the bottom 10 of them go
    cut = percentile_cutoffs(uri, {"quality": QualityStage}, cfg, bins=1 << 16)[("quality", "quality_score")]
    assert sum(0.5 <= v < cut for v in values) == 10


def test_no_percentile_rule_no_cutoff(tmp_path):
    from stages.quality import QualityStage

    uri = _write_manifest(tmp_path, [0.1, 0.2])
    assert percentile_cutoffs(uri, {"quality": QualityStage}, PipelineConfig()) == {}


# ------------------------------------------------------------------ motion (pure parts)
def test_camera_tag_convention():
    from stages.motion import camera_tags

    assert camera_tags(0.2, 0.0, 0.0, 0.04, 0.04) == ["pan_right"]
    assert camera_tags(-0.2, 0.0, 0.0, 0.04, 0.04) == ["pan_left"]
    assert camera_tags(0.0, 0.2, 0.0, 0.04, 0.04) == ["tilt_up"]
    assert camera_tags(0.0, -0.2, 0.0, 0.04, 0.04) == ["tilt_down"]
    assert camera_tags(0.0, 0.0, 0.1, 0.04, 0.04) == ["zoom_in"]
    assert camera_tags(0.0, 0.0, -0.1, 0.04, 0.04) == ["zoom_out"]
    assert camera_tags(0.01, -0.01, 0.0, 0.04, 0.04) == ["static"]
    assert camera_tags(0.3, 0.1, 0.2, 0.04, 0.04) == ["pan_right", "tilt_up", "zoom_in"]


def test_summarise_content_motion_to_camera_convention():
    from stages.motion import Step, summarise

    # content moves left 2 px/frame and down 1 px/frame in a 160x120 frame at 25 fps
    steps = [Step(t=i / 25, frames=1, magnitude=2.2, tx=-2.0, ty=1.0, log_scale=0.0, raw_tx=-2.0, raw_ty=1.0,
                  ok=True) for i in range(12)]
    out = summarise([steps], (160, 120), 25.0)
    assert out["camera_pan"] == pytest.approx(2.0 * 25 / 160, abs=1e-5)  # camera pans right
    assert out["camera_tilt"] == pytest.approx(1.0 * 25 / 120, abs=1e-5)  # camera tilts up
    assert out["shake_score"] == pytest.approx(0.0, abs=1e-9)  # a straight path does not shake
    assert out["motion_score"] == pytest.approx(2.2 * 25 / 200, abs=1e-5)


def test_shake_grows_with_jitter():
    from stages.motion import Step, shake_of

    rng = np.random.default_rng(1)
    pos = rng.uniform(-4, 4, 19)
    d = np.diff(pos)
    steps = [Step(i, 1, 1.0, float(x), 0.0, 0.0, float(x), 0.0, True) for i, x in enumerate(d)]
    assert shake_of([steps], 200.0) > 0.5


def test_motion_rules_and_derive_follow_config():
    from stages.motion import MotionStage

    cfg = MotionConfig(min_motion=0.01, max_shake=0.7, pan_threshold=0.1)
    assert [(r.metric, r.op, r.threshold) for r in MotionStage.rules(cfg)] == [
        ("motion_score", ">=", 0.01), ("shake_score", "<=", 0.7)]
    row = {"camera_pan": 0.05, "camera_tilt": 0.0, "camera_zoom": 0.0}
    MotionStage.derive(row, cfg)
    assert row["camera_motion"] == ["static"]
    MotionStage.derive(row, MotionConfig(pan_threshold=0.04))
    assert row["camera_motion"] == ["pan_right"]


# ------------------------------------------------------------------ text (pure parts)
def test_text_summary_area_persistence_and_boxes():
    from stages.text_overlay import summarise

    box = {"box": [10, 100, 150, 116], "text": "Hello", "score": 0.99}
    moving = {"box": [0, 0, 20, 10], "text": "ab", "score": 0.9}
    per = [[box], [box, moving], [], [box]]
    out = summarise(per, 160, 120)
    one = 140 * 16 / (160 * 120)
    assert out["text_area"] == pytest.approx((3 * one + 200 / 19200) / 4, rel=1e-4)
    assert out["text_frames_fraction"] == 0.75
    assert out["text_persistence"] == pytest.approx(3 / 4)
    boxes = json.loads(out["text_boxes"])
    assert [b["frame"] for b in boxes] == [0, 1, 1, 3] and boxes[0]["text"] == "Hello"


def test_box_motion_separates_fixed_scene_scroll_and_still():
    from stages.text_overlay import box_motion

    pan = (-6.0, 0.0)  # the background moved 6 px left over the gap
    assert box_motion((0.2, -0.1), pan, camera_moves=True) == "fixed"
    assert box_motion((-5.7, 0.3), pan, camera_moves=True) == "with_scene"
    assert box_motion((-14.0, 0.2), pan, camera_moves=True) == "scroll"  # faster than the scene, sideways
    assert box_motion((0.0, 7.0), pan, camera_moves=True) == "moving"
    assert box_motion((0.1, 0.0), (0.05, 0.0), camera_moves=False) == "still"
    assert box_motion((-9.0, 0.0), (0.0, 0.0), camera_moves=False) == "scroll"  # a ticker over a still scene
    assert box_motion(None, pan, camera_moves=True) == "unknown"


def _box(frame, box, text, motion, score=0.95):
    return {"frame": frame, "box": box, "text": text, "score": score, "motion": motion}


def test_text_tracks_kinds_and_overlay_area():
    from curator.config import TextOverlayConfig
    from stages.text_overlay import classify

    cfg = TextOverlayConfig()
    w, h = 320, 180
    boxes = []
    for f in range(4):
        boxes.append(_box(f, [150 - 30 * f, 40, 330 - 30 * f, 80], "CITY MUSEUM" if f else "CITY MUSEU", "with_scene"))
        boxes.append(_box(f, [70, 150, 250, 170], "See you tomorrow", "fixed" if f != 2 else "unknown"))
    out = classify(boxes, w, h, 6, cfg)
    tracks = json.loads(out["text_tracks"])
    assert [(t["text"], t["kind"], t["why"], t["frames"]) for t in tracks] == [
        ("CITY MUSEUM", "scene", "with_scene", [0, 1, 2, 3]), ("See you tomorrow", "overlay", "fixed", [0, 1, 2, 3])]
    assert out["text_kind"] == "both" and out["scene_text"] == "CITY MUSEUM"
    assert out["overlay_area"] == pytest.approx(4 * (180 * 20) / (w * h) / 6, rel=1e-3)  # 4 of 6 sampled frames

    ticker = [_box(f, [0, 156, 320, 176], t, "scroll") for f, t in enumerate(["NEWS +++ STORM", "STORM WARNING"])]
    out = classify(ticker, w, h, 2, cfg)
    assert out["text_kind"] == "overlay" and json.loads(out["text_tracks"])[0]["why"] == "ticker"
    mid = [_box(0, [0, 80, 320, 100], "BUS 42 CITY CENTRE", "scroll")]  # sideways, mid-frame: text on a vehicle
    assert classify(mid, w, h, 1, cfg)["text_kind"] == "scene"
    assert classify([], w, h, 6, cfg) == {"text_kind": "none", "scene_text": None, "overlay_area": 0.0,
                                          "text_tracks": "[]"}


def test_still_text_follows_the_policy():
    from curator.config import TextOverlayConfig
    from stages.text_overlay import classify

    w, h = 320, 180
    sign = [_box(f, [200, 60, 300, 80], "EXIT", "still") for f in range(3)]  # off-centre, mid-height
    title = [_box(f, [110, 80, 210, 100], "CHAPTER ONE", "still") for f in range(3)]  # centred
    sub = [_box(f, [20, 150, 140, 170], "Meet me", "still") for f in range(3)]  # bottom band
    layout = TextOverlayConfig()
    assert classify(sign, w, h, 3, layout)["text_kind"] == "scene"
    assert classify(title, w, h, 3, layout)["text_kind"] == "overlay"
    assert classify(sub, w, h, 3, layout)["text_kind"] == "overlay"
    assert classify(sign, w, h, 3, TextOverlayConfig(still_text="overlay"))["text_kind"] == "overlay"
    assert classify(sub, w, h, 3, TextOverlayConfig(still_text="scene"))["text_kind"] == "scene"
    # evidence outvotes the policy: one fixed observation while the camera moved decides
    mixed = sign[:2] + [_box(2, [200, 60, 300, 80], "EXIT", "fixed")]
    assert json.loads(classify(mixed, w, h, 3, layout)["text_tracks"])[0]["why"] == "fixed"


def test_text_rules_reject_overlays_only_by_default_and_any_text_when_asked():
    from curator.config import TextOverlayConfig
    from curator.filters import decide
    from stages.text_overlay import TextOverlayStage

    boxes = [_box(f, [10, 20, 310, 90], "CITY MUSEUM", "with_scene") for f in range(6)]
    row = {"status": "ok", "clip_width": 320, "clip_height": 180, "text_samples": 6, "text_area": 0.36,
           "text_frames_fraction": 1.0, "text_boxes": json.dumps(boxes)}
    cfg = TextOverlayConfig()
    TextOverlayStage.derive(row, cfg)
    assert decide(dict(row), "text_overlay", TextOverlayStage.rules(cfg)) == []
    old = TextOverlayConfig(max_text_area=0.01)  # the old behaviour: any text over 1 %
    r = dict(row)
    failed = decide(r, "text_overlay", TextOverlayStage.rules(old))
    assert [f.metric for f in failed] == ["text_area"] and r["reason"] == "text_overlay"
    assert "text_overlay.max_text_area" in r["detail"]
    # a row scored before the motion evidence existed (no "motion"): the policy decides
    legacy = dict(row, text_boxes=json.dumps([{k: v for k, v in b.items() if k != "motion"} for b in boxes]))
    TextOverlayStage.derive(legacy, cfg)
    assert legacy["text_kind"] == "overlay"  # centred in the frame: layout says overlay
    unscored = {"status": "ok", "text_boxes": None}
    TextOverlayStage.derive(unscored, cfg)
    assert "text_kind" not in unscored


def test_region_shift_and_global_motion_on_a_translated_texture():
    import cv2

    from curator.media.globalmotion import global_motion, moved, region_shift

    rng = np.random.default_rng(0)
    world = cv2.GaussianBlur((rng.random((200, 300)) * 255).astype(np.uint8), (0, 0), 2)
    a = world[20:140, 20:220].copy()
    b = world[22:142, 25:225].copy()  # camera moved right 5, down 2: content moves (-5, -2)
    box = (60, 50, 120, 70)
    a[50:70, 60:120] = 255  # a bright label fixed on the screen in both frames
    a[56:64, 70:110] = 0
    b[50:70, 60:120] = a[50:70, 60:120]
    m = global_motion(a, b, exclude=[box])
    assert m is not None and moved(m, 100, 60) == pytest.approx((-5, -2), abs=0.3)
    dx, dy, corr = region_shift(a, b, box, search=10)
    assert (dx, dy) == pytest.approx((0, 0), abs=0.3) and corr > 0.9
    dx, dy, corr = region_shift(a, b, (130, 80, 180, 110), search=10)  # plain texture moves with the scene
    assert (dx, dy) == pytest.approx((-5, -2), abs=0.3) and corr > 0.9
    assert region_shift(a, b, (60, 52, 62, 54), search=10) is None  # too small to match


# ------------------------------------------------------------------ quality (pure parts)
def test_brisque_works_under_numpy_2():
    """brisque 0.2.0's own scale_features fails under numpy 2; the wrapper must not."""
    from brisque import BRISQUE

    from curator.media.quality import brisque_model

    rng = np.random.default_rng(0)
    img = (rng.random((72, 96, 3)) * 255).astype(np.uint8)
    if int(np.__version__.split(".")[0]) >= 2:
        with pytest.raises(TypeError):
            BRISQUE(url=False).score(img)
    score = brisque_model().score(img)
    assert math.isfinite(score)


def test_brisque_wrapper_matches_the_reference_features():
    """The OpenCV MSCN path gives the package's scipy features."""
    from curator.media.quality import brisque_model

    rng = np.random.default_rng(3)
    img = rng.random((40, 50))
    ours = brisque_model()
    from brisque import BRISQUE

    ref = BRISQUE.calculate_mscn_coefficients(ours, img, 7, 7 / 6)
    np.testing.assert_allclose(ours.calculate_mscn_coefficients(img, 7, 7 / 6), ref, rtol=1e-6, atol=1e-6)


def test_quality_measures_respond_to_their_distortion():
    import cv2

    from curator.media import quality as q

    rng = np.random.default_rng(0)
    base = cv2.resize((rng.random((30, 40)) * 255).astype(np.float32), (160, 120), interpolation=cv2.INTER_CUBIC)
    blurred = cv2.GaussianBlur(base, (0, 0), 2.0)
    noisy = base + rng.normal(0, 10, base.shape).astype(np.float32)
    assert q.sharpness(blurred) < q.sharpness(base)
    assert q.noise_sigma(noisy) > q.noise_sigma(base) + 5
    blocky = np.kron(rng.random((15, 20)) * 255, np.ones((8, 8))).astype(np.float32)
    assert q.blockiness(blocky) > 3 * q.blockiness(base)
    clipped, mean = q.exposure(np.full((10, 10), 255.0))
    assert clipped == 1.0 and mean == 1.0


def test_quality_score_rederives_from_measures_with_new_weights():
    from stages.quality import QualityStage

    row = {"brisque": 20.0, "sharpness": 900.0, "noise": 1.0, "exposure": 0.0, "mean_luma": 0.4, "blockiness": 1.6}
    QualityStage.derive(row, QualityConfig())
    mixed = row["quality_score"]
    QualityStage.derive(row, QualityConfig(weights={"blockiness": 1.0}))
    assert row["quality_score"] < mixed < 1.0


# ------------------------------------------------------------------ video type (pure parts)
def test_default_taxonomy_covers_the_requested_domains():
    from curator.taxonomy import load_taxonomy

    tax = load_taxonomy(None)
    assert set(tax.keys) == {"city_streets", "hospitals", "zoos_animals", "museums", "amusement_parks", "interiors",
                             "nature", "driving", "sports", "people_crowds", "gameplay", "animation",
                             "screen_recordings", "slideshows", "talking_heads"}
    assert all(t.prompts for t in tax.types)
    assert tax.weight("slideshows", {}) == 0.0 and tax.weight("hospitals", {}) > 1.0
    assert tax.weight("slideshows", {"slideshows": 0.5}) == 0.5


def test_taxonomy_errors_name_the_problem(tmp_path):
    from curator.config import ConfigError
    from curator.taxonomy import load_taxonomy

    bad = tmp_path / "t.yaml"
    bad.write_text("types:\n  a:\n    weight: -1\n")
    with pytest.raises(ConfigError, match="weight"):
        load_taxonomy(str(bad))


def test_type_sampling_is_deterministic_and_proportional():
    from stages.video_type import VideoTypeStage

    cfg = VideoTypeConfig(weights={"talking_heads": 0.25, "slideshows": 0.0, "hospitals": 2.0})
    kept = {}
    for t in ("talking_heads", "slideshows", "hospitals"):
        rows = [_clip(clip_id=f"{t}-{i}", video_type=t, video_type_score=0.9) for i in range(800)]
        for r in rows:
            VideoTypeStage.derive(r, cfg)
            decide(r, "video_type", VideoTypeStage.rules(cfg))
        kept[t] = sum(r["status"] == OK for r in rows) / len(rows)
        again = _clip(clip_id=f"{t}-0", video_type=t)
        VideoTypeStage.derive(again, cfg)
        assert again["type_sample"] == rows[0]["type_sample"]
    assert kept["slideshows"] == 0.0 and kept["hospitals"] == 1.0
    assert 0.2 < kept["talking_heads"] < 0.3


def test_type_head_learns_separable_embeddings():
    from curator.type_head import head_accuracy, train_head

    rng = np.random.default_rng(0)
    classes = ["nature", "driving", "sports", "gameplay"]
    centers = rng.normal(size=(4, 32))
    def sample(n):
        y = rng.integers(0, 4, n)
        return centers[y] + 0.3 * rng.normal(size=(n, 32)), [classes[i] for i in y]
    x, y = sample(200)
    model = train_head(x, y, classes, hidden=32, epochs=60)
    xt, yt = sample(100)
    assert head_accuracy(model, xt, yt, classes) >= 0.95


# ------------------------------------------------------------------ failures stay per clip
class _Flaky(Filter):
    name = "flaky"
    columns = []

    @classmethod
    def rules(cls, config):
        return [Rule("s", ">=", 0.5, "low")]

    def measure(self, row):
        from curator.deadline import check

        if row["clip_id"] == "bad":
            raise ValueError("cannot decode")
        if row["clip_id"] == "slow":
            import time

            time.sleep(0.3)
            check()
        return {"s": 0.9 if row["clip_id"] == "good" else 0.1}


def test_one_bad_or_slow_clip_fails_alone():
    from curator.stage import RunContext

    cfg = PipelineConfig.load(None, ["run.item_timeout_s=0.1"])
    st = _Flaky(cfg.stages.quality, RunContext(cfg, "file:///i", "file:///o", "t", "h"))
    rows = [_clip(clip_id=c, mp4=b"x") for c in ("good", "bad", "slow", "low")]
    out = {r["clip_id"]: r for r in st.process(rows)}
    assert out["good"]["status"] == OK and out["good"]["checks"][0]["passed"]
    assert (out["bad"]["status"], out["bad"]["reason"]) == ("error", "stage_failed")
    assert (out["slow"]["status"], out["slow"]["reason"]) == ("error", "timeout") and "mp4" not in out["slow"]
    assert (out["low"]["status"], out["low"]["reason"]) == (REJECTED, "low")


def test_motion_vectors_are_deterministic(tmp_path):
    """Frame-threaded decoding exports a varying set of motion vectors; the stage must not."""
    from curator.testing.synth import make_shots_video
    from stages.motion import mv_steps, summarise

    p = tmp_path / "m.mp4"
    make_shots_video(str(p), [("mandelbrot", 70)], width=192, height=108, fps=25)
    data = p.read_bytes()
    outs = set()
    for _ in range(4):
        steps, size, fps = mv_steps(data)
        outs.add(json.dumps(summarise([steps], size, 25.0), sort_keys=True))
    assert len(outs) == 1


def test_ocr_engine_leaves_nothing_in_tmpdir(tmp_path):
    """Importing onnxruntime writes $TMPDIR/.ses; the text stage imports it in a private dir."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    code = ("import numpy as np; from stages.text_overlay import make_engine; "
            "make_engine(640)(np.zeros((64, 64, 3), np.uint8))")
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": str(root)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    assert os.listdir(tmp_path) == []
