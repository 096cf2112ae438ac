import pytest
import yaml

from curator.config import ConfigError, PipelineConfig

pytestmark = pytest.mark.unit


def test_defaults_are_the_reference_pipeline():
    cfg = PipelineConfig()
    assert cfg.stages.split.method == "transnetv2"
    assert cfg.stages.split.threshold == 0.4
    assert cfg.stages.split.min_clip_s == 2.0
    assert cfg.stages.split.max_clip_s == 60.0


def test_yaml_then_overrides_then_keywords(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("stages:\n  split:\n    method: fixed\n    stride_s: 5\nrun:\n  runner: local\n")
    cfg = PipelineConfig.load(f, ["stages.split.stride_s=7.5", "shard.samples_per_shard=3"], input="/a")
    assert cfg.stages.split.method == "fixed"
    assert cfg.stages.split.stride_s == 7.5
    assert cfg.shard.samples_per_shard == 3
    assert cfg.run.runner == "local"
    assert cfg.input == "/a"


@pytest.mark.parametrize("override, needle", [
    ("stages.split.methd=fixed", "stages.split.methd: unknown key"),
    ("stages.split.threshold=2", "stages.split.threshold"),
    ("stages.split.method=magic", "stages.split.method"),
    ("noequals", "not of the form"),
])
def test_bad_overrides_name_the_key(override, needle):
    with pytest.raises(ConfigError) as err:
        PipelineConfig.load(None, [override])
    assert needle in str(err.value)


def test_bad_yaml_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("stages: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        PipelineConfig.load(f)
    with pytest.raises(ConfigError, match="cannot read"):
        PipelineConfig.load(tmp_path / "missing.yaml")


def test_max_clip_must_not_be_below_min():
    with pytest.raises(ConfigError, match="max_clip_s"):
        PipelineConfig.load(None, ["stages.split.min_clip_s=5", "stages.split.max_clip_s=3"])


def test_commented_defaults_round_trip():
    text = PipelineConfig().to_yaml(comments=True)
    assert "# Shot detector" in text
    again = PipelineConfig.model_validate(yaml.safe_load(text))
    assert again == PipelineConfig()


def test_content_hash_ignores_where_and_how_wide():
    a = PipelineConfig.load(None, ["stages.split.resources.max_actors=9"], input="/x", output="/y")
    b = PipelineConfig.load(None, ["run.runner=local"], input="/p", output="/q")
    c = PipelineConfig.load(None, ["stages.split.threshold=0.5"])
    assert a.content_hash() == b.content_hash() == PipelineConfig().content_hash()
    assert c.content_hash() != a.content_hash()
