"""Split rules, tokenizer windows and the one-pass plan, on synthetic manifest rows."""

from __future__ import annotations

from fractions import Fraction

import pytest

from curator.config import ConfigError, PipelineConfig, ShardConfig, SplitRules, parse_condition
from curator.media import windows as win
from curator.phases.shard import Planner, Selection, ShardError, bucket_of

pytestmark = pytest.mark.unit


def _row(i, q=None, m=None, vtype="nature", w=640, h=360, d=4.0, checks=None, frames=100, fps=25.0):
    return {"clip_id": f"v{i:03d}-00000", "clip_width": w, "clip_height": h, "clip_duration_s": d,
            "clip_bytes": 1000, "clip_frames": frames, "clip_fps": fps, "quality_score": q, "motion_score": m,
            "video_type": vtype, "checks": checks}


# ------------------------------------------------------------------------ rules parsing
@pytest.mark.parametrize("text, expect", [
    ("quality_score >= 0.7", ("quality_score", ">=", 0.7)),
    ("motion_score<3", ("motion_score", "<", 3)),
    ("video_type != talking_head", ("video_type", "!=", "talking_head")),
    ("video_type == 'a b'", ("video_type", "==", "a b")),
    ("checks.aesthetic >= 3.5", ("checks.aesthetic", ">=", 3.5)),
    ("has_audio == false", ("has_audio", "==", False)),
])
def test_conditions_parse(text, expect):
    assert parse_condition(text) == expect


@pytest.mark.parametrize("text", ["quality_score", "quality_score => 1", "quality_score >= high", "x >=", "1x > 2"])
def test_bad_conditions_are_config_errors(text):
    with pytest.raises(ConfigError, match="shard.splits.ft.where"):
        PipelineConfig.load(None, [f"shard.splits={{ft: {{where: [{text!r}]}}}}"])


@pytest.mark.parametrize("override, needle", [
    ("shard.tokenizer.short_side=100", "multiple of multiple"),
    ("shard.tokenizer.max_frames=120", "1 + 8 * k"),
    ("shard.tokenizer.sizes={'5:4': [80, 64]}", "aspect ratios not in aspect_ratios"),
    ("shard.tokenizer.sizes={'16:9': [100, 64]}", "multiples of 16"),
    ("shard.profile=[]", "at least one profile"),
    ("shard.profile=videos", "shard.profile"),
    ("shard.splits={'a b': {}}", "split name"),
    ("shard.splits={ft: {type_max_fraction: {x: 2}}}", "within [0, 1]"),
])
def test_bad_shard_config(override, needle):
    with pytest.raises(ConfigError, match="shard") as err:
        PipelineConfig.load(None, [override])
    assert needle in str(err.value)


def test_profile_accepts_one_name_or_a_list():
    assert PipelineConfig.load(None, ["shard.profile=tokenizer"]).shard.profile == ["tokenizer"]
    both = PipelineConfig.load(None, ["shard.profile=[wfm, tokenizer, wfm]"]).shard.profile
    assert both == ["wfm", "tokenizer"]
    assert list(ShardConfig().splits) == ["pretrain"] and ShardConfig().profile == ["wfm"]


# ---------------------------------------------------------------------------- selection
def test_thresholds_pick_the_finetune_subset_and_pretrain_takes_all():
    splits = {"pretrain": SplitRules(),
              "finetune": SplitRules(where=["quality_score >= 0.7", "motion_score >= 0.2"])}
    sel = Selection(splits, columns=["quality_score", "motion_score", "video_type"])
    rows = [_row(0, 0.9, 0.5), _row(1, 0.69, 0.5), _row(2, 0.9, 0.1), _row(3, None, 0.5), _row(4, 0.7, 0.2)]
    got = {r["clip_id"][:4]: sel.select(r, "b") for r in rows}
    assert got == {"v000": ["pretrain", "finetune"], "v001": ["pretrain"], "v002": ["pretrain"],
                   "v003": ["pretrain"], "v004": ["pretrain", "finetune"]}
    assert sel.admitted == {"pretrain": 5, "finetune": 2}
    assert sel.refused["finetune"] == {"where: quality_score >= 0.7": 2, "where: motion_score >= 0.2": 1}


def test_rules_read_filter_checks():
    sel = Selection({"hq": SplitRules(where=["checks.aesthetic >= 3.5"])}, columns=["checks"])
    good = _row(0, checks=[{"stage": "quality", "metric": "aesthetic", "value": 4.0, "threshold": 3.5,
                            "op": ">=", "passed": True}])
    bad = _row(1, checks=[{"stage": "quality", "metric": "aesthetic", "value": 3.0, "threshold": 3.5,
                           "op": ">=", "passed": False}])
    assert sel.select(good, "b") == ["hq"] and sel.select(bad, "b") == [] and sel.select(_row(2), "b") == []


def test_missing_columns_are_a_clear_error():
    cfg = ShardConfig(splits={"pretrain": SplitRules(), "finetune": SplitRules(where=["quality_score >= 0.7"])})
    with pytest.raises(ShardError, match=r"shard.splits.finetune: column 'quality_score' is not in the manifest"):
        Planner(cfg, columns=["clip_id", "clip_width"])
    quota = ShardConfig(splits={"p": SplitRules(type_max_count={"talking_head": 1})})
    with pytest.raises(ShardError, match="'video_type'"):
        Planner(quota, columns=["clip_id"])


def test_type_fraction_holds_at_every_point_and_counts_cap():
    rules = SplitRules(type_max_fraction={"talking_head": 0.25}, type_max_count={"cartoon": 2})
    sel = Selection({"ft": rules})
    kinds = ["talking_head", "nature", "nature", "nature", "talking_head", "cartoon", "cartoon", "cartoon",
             "talking_head", "nature", "nature", "talking_head"]
    taken = []
    for i, k in enumerate(kinds):
        if sel.select(_row(i, vtype=k), "b"):
            taken.append(k)
            assert taken.count("talking_head") <= 0.25 * len(taken)
    assert taken.count("cartoon") == 2
    assert taken.count("talking_head") == 2  # admitted at positions 4 and 11 (not 0 or 8)
    assert sel.refused["ft"]["type_max_count: cartoon"] == 1
    assert sel.refused["ft"]["type_max_fraction: talking_head"] == 2


def test_bucket_caps():
    rules = SplitRules(bucket_max=2, bucket_caps={"small": 1})
    sel = Selection({"ft": rules})
    got = [bool(sel.select(_row(i), b)) for i, b in enumerate(["big", "small", "big", "small", "big"])]
    assert got == [True, True, True, False, False]


# ------------------------------------------------------------------------------ windows
def test_resampling_arithmetic_is_exact():
    ntsc = win.rate(29.97003)
    assert ntsc == Fraction(30000, 1001)
    # 120 frames at 29.97 -> 12 fps: output j takes source floor(j * 2.4975)
    assert win.resampled_count(120, ntsc, Fraction(12)) == 49
    assert [win.source_index(j, ntsc, Fraction(12)) for j in range(5)] == [0, 2, 4, 7, 9]
    assert win.resampled_count(61, Fraction(25), Fraction(24)) == 59
    assert win.resampled_count(10, Fraction(10), Fraction(25)) == 25  # upsampling repeats frames
    assert win.source_index(24, Fraction(10), Fraction(25)) == 9


def test_windows_are_1_plus_8k_and_do_not_overlap():
    ws = win.windows(300, 121, 17, 8)
    assert [(w.start, w.frames) for w in ws] == [(0, 121), (121, 121), (242, 57)]
    assert all((w.frames - 1) % 8 == 0 for w in ws)
    assert win.windows(258, 121, 17, 8)[-1].frames == 121 and len(win.windows(258, 121, 17, 8)) == 2  # rest 16
    assert win.windows(16, 121, 17, 8) == []
    assert [w.frames for w in win.windows(30, 33, 9, 4)] == [29]


def test_target_sizes_follow_the_bucket_and_cover_crops():
    assert win.target_size("16:9", 256, 16) == (448, 256)
    assert win.target_size("9:16", 256, 16) == (256, 448)
    assert win.target_size("21:9", 64, 16) == (144, 64)
    assert win.target_size("1:1", 256, 16) == (256, 256)
    assert win.target_size("16:9", 256, 16, {"16:9": [1280, 704]}) == (1280, 704)
    sw, sh = win.cover(640, 272, 144, 64)
    assert sw >= 144 and sh >= 64 and sw % 2 == 0 and sh % 2 == 0 and abs(sw / sh - 640 / 272) < 0.05


# ------------------------------------------------------------------------------- plan
def test_one_pass_writes_both_sets_and_every_profile():
    cfg = ShardConfig(profile=["wfm", "tokenizer"], samples_per_shard=2,
                      splits={"pretrain": SplitRules(), "finetune": SplitRules(where=["quality_score >= 0.5"])},
                      tokenizer={"short_side": 64, "max_frames": 33, "min_frames": 9, "fps": 12})
    rows = [_row(i, q=i / 10, frames=100, fps=25.0) for i in range(10)] + [_row(20, q=0.9, frames=10, fps=25.0)]
    planner = Planner(cfg, columns=list(rows[0]))
    specs = list(planner.plan(iter(rows)))
    names = [s.name for s in specs]
    assert names == [s.name for s in Planner(cfg).plan(iter(rows))] and len(set(names)) == len(names)
    by = {}
    for s in specs:
        for smp in s.samples:
            by.setdefault((s.split, s.profile), []).append(smp.key)
            if s.profile == "tokenizer":
                assert s.bucket == f"{s.encode['width']}x{s.encode['height']}_t{smp.window.frames}"
    assert len(by[("pretrain", "wfm")]) == 11 and len(by[("finetune", "wfm")]) == 6
    # 100 frames at 25 fps -> 48 at 12 fps -> windows of 33 and 9; the 10-frame clip gives none
    assert len(by[("pretrain", "tokenizer")]) == 20 and by[("pretrain", "tokenizer")][0].endswith("-w000")
    assert planner.stats[("finetune", "tokenizer")].left_out == {"shorter than min_frames (9 at 12 fps)": 1}
    assert all(s.name.startswith(f"{s.split}/{s.profile}/{s.bucket}/shard-") for s in specs)
    assert all(len(s.samples) <= 2 for s in specs)
    assert bucket_of(640, 360, 4.0, cfg) == "res360_ar16x9_len0-5s"
