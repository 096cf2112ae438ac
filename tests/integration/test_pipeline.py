"""The spine end to end through the real runners: raw videos -> manifest -> shards."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import av
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from curator import manifest
from curator.config import PipelineConfig
from curator.driver import execute
from curator.phases.shard import JSON_EXCLUDE
from curator.pipeline import build
from curator.records import RUN_VARYING
from curator.runners.local import LocalRunner
from curator.testing.synth import make_audio_only, make_shots_video

pytestmark = pytest.mark.integration

#: the spine's own middle stages: the filters (default) have their own tests
SPINE = "stages.order=[embed,caption]"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Good videos plus every kind of bad input the spine must survive."""
    src = Path(__file__).resolve().parents[1] / "data" / "media"
    d = tmp_path_factory.mktemp("corpus")
    for name in ["bikes.mp4", "carphone_pristine.mp4", "issue-134-rotate.mp4", "empty.mp4",
                 "bikes_truncated.mp4", "not_a_video.mp4"]:
        shutil.copy(src / name, d / name)
    make_audio_only(str(d / "audio_only.mp4"), 2.5)
    make_shots_video(str(d / "short.mp4"), [("testsrc2", 30)], width=160, height=120, fps=25)  # 1.2 s
    make_shots_video(str(d / "sub" / "two_shots.mp4"), [("testsrc2", 60), ("mandelbrot", 70)],
                     width=192, height=108, fps=25)
    return d


def _config(inp, out, **over):
    sets = [f"{k}={v}" for k, v in over.items()]
    return PipelineConfig.load(None, ["run.runner=local", "stages.split.method=scenedetect", SPINE, *sets],
                               input=str(inp), output=str(out))


def _run(cfg, runner=None):
    return execute(build(cfg), runner or LocalRunner())


@pytest.fixture(scope="module")
def run_local(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "run"
    summary = _run(_config(corpus, out))
    return out, summary


def _manifest_rows(out):
    return pq.read_table(out / "manifest.parquet").to_pylist()


def test_bad_inputs_get_reasons_and_good_ones_finish(run_local):
    out, summary = run_local
    rows = _manifest_rows(out)
    videos = {r["source_key"]: r for r in rows if r["kind"] == "video"}
    assert set(videos) == {"bikes.mp4", "carphone_pristine.mp4", "issue-134-rotate.mp4", "empty.mp4",
                           "bikes_truncated.mp4", "not_a_video.mp4", "audio_only.mp4", "short.mp4",
                           "sub/two_shots.mp4"}
    expect = {
        "empty.mp4": "empty_file",
        "bikes_truncated.mp4": "unreadable",
        "not_a_video.mp4": "not_a_video",
        "audio_only.mp4": "audio_only",
        "short.mp4": "too_short",
    }
    for key, reason in expect.items():
        v = videos[key]
        assert v["status"] in ("error", "rejected") and v["reason"] == reason and v["stage"] == "ingest", v
        assert v["detail"]
    for key in ["bikes.mp4", "carphone_pristine.mp4", "issue-134-rotate.mp4", "sub/two_shots.mp4"]:
        assert videos[key]["status"] == "ok" and videos[key]["num_clips"] >= 1, videos[key]
    assert summary.videos == 9
    assert summary.rejects["video: ingest/not_a_video"] == 1


def test_clips_obey_length_rules_and_decode(run_local):
    out, _ = run_local
    clips = [r for r in _manifest_rows(out) if r["kind"] == "clip"]
    assert clips
    for c in clips:
        assert c["status"] == "ok"
        assert 2.0 - 1e-6 <= c["end_s"] - c["start_s"] <= 60.0
        data = (Path(c["clip_uri"][len("file://"):])).read_bytes()
        container = av.open(io.BytesIO(data))
        n = sum(1 for _ in container.decode(video=0))
        assert abs(n - (c["end_frame"] - c["start_frame"])) <= 1
        assert n == c["clip_frames"]
    rotated = [c for c in clips if c["source_key"] == "issue-134-rotate.mp4"]
    assert {(c["clip_width"], c["clip_height"]) for c in rotated} == {(544, 1280)}
    two = sorted((c for c in clips if c["source_key"] == "sub/two_shots.mp4"), key=lambda c: c["clip_index"])
    assert [(c["start_frame"], c["end_frame"]) for c in two] == [(0, 60), (60, 130)]


def test_shards_open_with_webdataset_and_match_manifest(run_local):
    out, summary = run_local
    kept = {r["clip_id"]: r for r in _manifest_rows(out) if r["kind"] == "clip" and r["status"] == "ok"}
    tars = sorted((out / "shards").rglob("*.tar"))
    assert len(tars) == summary.shards > 0
    seen = {}
    for tar in tars:
        for sample in wds.WebDataset(str(tar), shardshuffle=False):
            meta = json.loads(sample["json"])
            seen[sample["__key__"]] = meta
            row = kept[sample["__key__"]]
            expected = {k: v for k, v in row.items()
                        if v is not None and k not in JSON_EXCLUDE}
            assert meta == json.loads(json.dumps(expected, default=str))
            assert len(sample["mp4"]) == row["clip_bytes"]
    assert set(seen) == set(kept)
    index = json.loads((out / "shards" / "index.json").read_text())
    assert index["splits"]["pretrain"]["wfm"]["samples"] == len(kept)


def test_second_run_is_identical_and_resumes(run_local, corpus, tmp_path):
    out, _ = run_local
    other = tmp_path / "again"
    _run(_config(corpus, other))
    # another output folder: identical apart from timings and the clip URIs under it
    a = pq.read_table(out / "manifest.parquet").drop([*RUN_VARYING, "clip_uri"])
    b = pq.read_table(other / "manifest.parquet").drop([*RUN_VARYING, "clip_uri"])
    assert manifest.table_bytes(a) == manifest.table_bytes(b)
    names = lambda d: sorted(str(p.relative_to(d)) for p in (d / "shards").rglob("*.tar"))  # noqa: E731
    assert names(out) == names(other)
    # the same output again from scratch (--force): byte-identical apart from timings
    first = pq.read_table(other / "manifest.parquet").drop(list(RUN_VARYING))
    execute(build(_config(corpus, other)), LocalRunner(), force=True)
    b = pq.read_table(other / "manifest.parquet").drop(list(RUN_VARYING))
    assert manifest.table_bytes(first) == manifest.table_bytes(b)

    # rerunning into the same output processes nothing again
    before = {p: p.stat().st_mtime_ns for p in (other / "staging" / "videos").iterdir()}
    summary = _run(_config(corpus, other))
    assert summary.videos_resumed == 9
    assert {p: p.stat().st_mtime_ns for p in (other / "staging" / "videos").iterdir()} == before
    c = pq.read_table(other / "manifest.parquet").drop(list(RUN_VARYING))
    assert manifest.table_bytes(c) == manifest.table_bytes(b)


def test_config_written_and_mixing_configs_refused(run_local, corpus):
    from curator.pipeline import PipelineError

    out, _ = run_local
    cfg = (out / "config.yaml").read_text()
    assert "scenedetect" in cfg and "config_hash" in cfg
    with pytest.raises(PipelineError, match="different config"):
        _run(_config(corpus, out, **{"stages.split.min_clip_s": 3}))


def test_long_shots_are_cut(corpus, tmp_path):
    cfg = _config(corpus / "sub", tmp_path / "o", **{"stages.split.min_clip_s": 1.0, "stages.split.max_clip_s": 1.5})
    _run(cfg)
    clips = [r for r in _manifest_rows(tmp_path / "o") if r["kind"] == "clip"]
    assert [(c["start_frame"], c["end_frame"]) for c in clips] == [(0, 30), (30, 60), (60, 95), (95, 130)]


def test_ray_runner_gives_the_same_clips(ray_session, corpus, run_local, tmp_path):
    from curator.runners.ray import RayRunner

    out, _ = run_local
    cfg = _config(corpus, tmp_path / "ray", **{"run.runner": "ray"})
    _run(cfg, RayRunner(cfg.run))
    cols = ["kind", "video_id", "clip_id", "status", "reason", "start_frame", "end_frame", "clip_frames",
            "clip_width", "clip_height", "clip_sha256"]
    a = pq.read_table(out / "manifest.parquet", columns=cols).to_pylist()
    b = pq.read_table(tmp_path / "ray" / "manifest.parquet", columns=cols).to_pylist()
    assert a == b
