"""Which config changes a rerun into the same output redoes from the manifest, and which
need --force (curator.config.changes)."""

import pytest

from curator.config import PipelineConfig
from curator.config import changes as ch
from curator.phases.refilter import filter_classes
from curator.pipeline import STAGES

pytestmark = pytest.mark.unit

RAN = ["ingest", "split", "transcode", "motion", "quality", "video_type", "embed", "staging"]


def _diff(*sets, stages=RAN):
    return ch.diff(PipelineConfig(), PipelineConfig.load(None, list(sets)), stages, stages)


@pytest.mark.parametrize("key, value, kind", [
    ("stages.quality.min_score", 0.7, ch.DECISIONS),
    ("stages.quality.drop_bottom_percent", 15, ch.DECISIONS),
    ("stages.motion.pan_threshold", 0.1, ch.DECISIONS),
    ("stages.video_type.weights", "{talking_head: 0}", ch.DECISIONS),
    ("shard.samples_per_shard", 3, ch.SHARD),
    ("dedup.threshold", 0.9, ch.DEDUP),
    ("stages.transcode.crf", 20, ch.CLIPS),
    ("stages.split.min_clip_s", 3, ch.CLIPS),
    ("stages.motion.method", "flow", ch.CLIPS),  # what the filter measures: its scores change
    ("stages.quality.sample_frames", 5, ch.CLIPS),
    ("stages.staging.keep_rejected_clips", False, ch.CLIPS),
])
def test_each_key_has_the_kind_of_work_it_invalidates(key, value, kind):
    found = _diff(f"{key}={value}")
    assert found.kinds == [kind], found.changes
    assert found.needs_recompute == (kind == ch.CLIPS)


@pytest.mark.parametrize("override", [
    "run.runner=local", "run.limit=3", "run.sample=0.5", "stages.split.resources.max_actors=9",
    "stages.split.encode_shots=false", "stages.embed.device=cpu", "storage.upload_threads=2",
    "report.kept_thumbs=3", "stages.ingest.extensions=[.mp4]",
    "stages.caption.prompt=other",  # caption did not run (not in the stage list): nothing to redo
])
def test_keys_that_change_nothing_produced_are_not_changes(override):
    assert not _diff(override)


def test_a_different_stage_list_needs_a_recompute():
    a, b = PipelineConfig(), PipelineConfig.load(None, ["stages.motion.enabled=false"])
    found = ch.diff(a, b, RAN, [s for s in RAN if s != "motion"])
    assert found.needs_recompute and found.names() == ["stages"]
    assert "motion" in found.changes[0].describe()
    assert not ch.diff(a, b, RAN, RAN)  # `enabled` itself is judged by the stage list


def test_changes_are_named_with_old_and_new_values():
    found = _diff("stages.transcode.crf=20", "stages.quality.min_score=0.7", "shard.samples_per_shard=3")
    assert found.names(ch.CLIPS) == ["stages.transcode.crf"]
    assert found.names(*ch.CHEAP) == ["shard.samples_per_shard", "stages.quality.min_score"]
    assert [c.describe() for c in found.of(ch.CLIPS)] == ["stages.transcode.crf (18 -> 20)"]
    assert found.as_record() == {"clips": ["stages.transcode.crf"], "shard": ["shard.samples_per_shard"],
                                 "decisions": ["stages.quality.min_score"]}


def test_resume_hash_covers_only_what_changes_clips():
    base = ch.resume_hash(PipelineConfig(), RAN)
    cheap = PipelineConfig.load(None, ["stages.quality.min_score=0.9", "shard.samples_per_shard=3",
                                       "dedup.enabled=false", "run.runner=local"], input="/x", output="/y")
    assert ch.resume_hash(cheap, RAN) == base
    assert ch.resume_hash(PipelineConfig.load(None, ["stages.transcode.crf=20"]), RAN) != base
    assert ch.resume_hash(PipelineConfig(), RAN[:-2] + ["staging"]) != base


def test_decision_keys_are_config_keys_and_cover_every_rule():
    """Every threshold a filter's rules name is a decision key, and every decision key exists."""
    cfg = PipelineConfig()
    filters = filter_classes(STAGES)
    assert set(ch.DECISION_KEYS) == set(filters)
    for name, cls in filters.items():
        stage_cfg = getattr(cfg.stages, name)
        for key in ch.DECISION_KEYS[name]:
            assert key in type(stage_cfg).model_fields, f"stages.{name}.{key}"
        for rule in cls.rules(stage_cfg):
            assert rule.key in ch.DECISION_KEYS[name], f"{name}: rule key {rule.key}"
        if cls.global_rules(stage_cfg):
            assert "drop_bottom_percent" in ch.DECISION_KEYS[name]


def test_a_recorded_config_from_an_older_version_still_diffs():
    old = PipelineConfig().model_dump(mode="json")
    old["stages"]["split"]["gone_key"] = 1  # a key this version no longer has
    found = ch.diff(old, PipelineConfig(), RAN, RAN)
    assert found.names() == ["stages.split.gone_key"] and found.needs_recompute


def test_generate_keys_never_refuse_a_rerun():
    """`generate.*` steers the loop around a run (budget, verify, upsampler), not the clips it curates."""
    from curator.config.changes import kind_of

    assert kind_of("generate.verify") is None
    assert kind_of("generate.upsampler.retries") is None
