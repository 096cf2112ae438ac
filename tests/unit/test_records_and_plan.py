import io
import json
import tarfile

import pyarrow as pa
import pytest

from curator.config import PipelineConfig, ShardConfig
from curator.phases.shard import bucket_of, plan
from curator.records import SHOT, clip_id_for, safe_name, video_id_for
from curator.stage import RunContext
from stages.split import make_spans

pytestmark = pytest.mark.unit


def test_ids_are_deterministic_and_safe():
    a = video_id_for("dir/Ünïcode name../../x.mp4")
    assert a == video_id_for("dir/Ünïcode name../../x.mp4")
    assert a != video_id_for("dir/other/x.mp4")
    assert all(ch.isalnum() or ch in "-_" for ch in a)
    assert "." not in clip_id_for(a, 3) and clip_id_for(a, 3).endswith("-00003")
    assert safe_name("...") == "x"
    assert len(safe_name("a" * 500)) <= 80


def test_spans_drop_short_and_cut_long():
    fps = 10.0
    times = [i / fps for i in range(1000)]  # 100 s
    shots = [(0, 15), (15, 45), (45, 1000)]  # 1.5 s, 3 s, 95.5 s
    spans = make_spans(shots, times, fps, min_s=2.0, max_s=60.0)
    durs = [s["end_s"] - s["start_s"] for s in spans]
    assert spans[0]["start_frame"] == 15 and spans[0]["end_frame"] == 45
    assert len(spans) == 3  # 95.5 s -> two equal pieces of 47.75 s
    assert all(2.0 <= d <= 60.0 + 1e-6 for d in durs)
    assert spans[1]["start_frame"] == 45 and spans[-1]["end_frame"] == 1000
    assert spans[1]["end_frame"] == spans[2]["start_frame"]


def test_spans_when_equal_pieces_would_be_too_short():
    fps = 10.0
    times = [i / fps for i in range(35)]
    spans = make_spans([(0, 35)], times, fps, min_s=2.0, max_s=3.0)  # 3.5 s: halves would be 1.75 s
    assert [(s["start_frame"], s["end_frame"]) for s in spans] == [(0, 30)]


def test_every_detected_shot_is_recorded_with_its_fate():
    from stages.split import plan_shots

    fps = 10.0
    times = [i / fps for i in range(1000)]
    shots = [(0, 15), (15, 45), (45, 1000), (1000, 1010)]  # 1.5 s, 3 s, 95.5 s, past the last frame
    spans, recs = plan_shots(shots, times, fps, min_s=2.0, max_s=60.0)
    assert [(r["start_frame"], r["end_frame"], r["fate"], r["clips"], r["first_clip"]) for r in recs] == [
        (0, 15, "too_short", 0, None), (15, 45, "kept", 1, 0), (45, 1000, "cut", 2, 1), (1000, 1010, "empty", 0, None)]
    assert recs[2]["start_s"] == 4.5 and recs[2]["end_s"] == 100.0 and recs[3]["start_s"] is None
    assert spans == make_spans(shots, times, fps, min_s=2.0, max_s=60.0)
    # the records fit the manifest's column type
    pa.array(recs, type=SHOT)
    # pieces of max_s whose remainder is too short: the shot is cut, the remainder dropped
    _, [rec] = plan_shots([(0, 35)], times[:35], fps, min_s=2.0, max_s=3.0)
    assert (rec["fate"], rec["clips"], rec["first_clip"]) == ("cut", 1, 0)


def test_bucket_names():
    cfg = ShardConfig()
    assert bucket_of(1920, 1080, 7.0, cfg) == "res1080_ar16x9_len5-10s"
    assert bucket_of(544, 1280, 3.0, cfg) == "res480_ar9x16_len0-5s"
    assert bucket_of(176, 144, 4.0, cfg) == "res0_ar4x3_len0-5s"
    assert bucket_of(640, 272, 75.0, cfg) == "res240_ar21x9_len60s+"


def _clip(i, w=640, h=360, d=4.0, size=1000):
    return {"clip_id": f"v-{i:05d}", "clip_width": w, "clip_height": h, "clip_duration_s": d, "clip_bytes": size}


def test_plan_is_bounded_by_count_and_bytes_and_deterministic():
    cfg = ShardConfig(samples_per_shard=3, max_shard_mb=0.01)  # ~10 KB
    clips = [_clip(i) for i in range(7)] + [_clip(100 + i, 1920, 1080, 20.0, 4000) for i in range(5)]
    specs = list(plan(clips, cfg))
    names = [s.name for s in specs]
    assert names == [s.name for s in plan(clips, cfg)]
    assert len(set(names)) == len(names)
    for s in specs:
        assert len(s.samples) <= 3
        assert sum(x.row["clip_bytes"] + 2048 for x in s.samples) <= 0.01 * 1024 * 1024 or len(s.samples) == 1
    assert sorted(x.key for s in specs for x in s.samples) == sorted(c["clip_id"] for c in clips)


def test_shard_tar_is_byte_identical_across_writes(tmp_path):
    from curator.phases.shard import Sample, ShardSpec, write_shard

    mp4 = tmp_path / "a.mp4"
    mp4.write_bytes(b"\x00" * 100)
    row = {**_clip(1), "clip_uri": "file://" + str(mp4), "status": "ok", "timings": {"x": 1.0}}
    spec = ShardSpec("b", 0, [Sample(row["clip_id"], row)])
    r1 = write_shard(spec, "file://" + str(tmp_path / "o1"))
    r2 = write_shard(spec, "file://" + str(tmp_path / "o2"))
    assert r1["sha256"] == r2["sha256"] and not r1["skipped"]
    assert write_shard(spec, "file://" + str(tmp_path / "o1"))["skipped"]
    data = (tmp_path / "o1" / "shards" / "pretrain" / "wfm" / "b" / "shard-000000.tar").read_bytes()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
        meta = json.loads(tar.extractfile("v-00001.json").read())
    assert names == ["v-00001.mp4", "v-00001.json"]
    assert "timings" not in meta and meta["clip_id"] == "v-00001"


def test_actor_pools_are_fitted_to_a_cluster_that_cannot_grow():
    from curator.config import PipelineConfig
    from curator.runners.ray import fit_actor_cpus
    from curator.stage import RunContext, Stage

    class Pool(Stage):
        stateful = True

    class Task(Stage):
        pass

    cfg = PipelineConfig()
    ctx = RunContext(cfg, "file:///i", "file:///o", "r", "h")
    stages = [Pool(cfg.stages.split, ctx), Pool(cfg.stages.split, ctx), Task(cfg.stages.transcode, ctx)]
    assert fit_actor_cpus(stages, 8, fixed_size=True) == 1.0
    factor = fit_actor_cpus(stages, 2, fixed_size=True)  # 2 pools x 1 CPU + a 1-CPU task on 2 CPUs
    assert 2 * factor + 1.0 <= 2.0 + 1e-9
    assert fit_actor_cpus(stages, 2, fixed_size=False) == 1.0  # a cluster that may scale up
    # only half-CPU tasks between the pools: still a whole CPU left for Ray Data's repartitions
    small = [Pool(cfg.stages.split, ctx), Pool(cfg.stages.split, ctx), Task(cfg.stages.ingest, ctx)]
    factor = fit_actor_cpus(small, 2, fixed_size=True)
    assert 2 * factor + 1.0 <= 2.0 + 1e-9


@pytest.mark.parametrize("overrides, expected", [
    (["stages.split.method=scenedetect", "stages.order=[]"], [["ingest"], ["split", "transcode", "staging"]]),
    (["stages.order=[]"], [["ingest"], ["split", "transcode", "staging"]]),
    (["stages.order=[motion,quality,text_overlay]"],
     [["ingest"], ["split", "transcode", "motion", "quality"], ["text_overlay", "staging"]]),
    (["stages.order=[]", "stages.transcode.encoder=gpu"], [["ingest"], ["split"], ["transcode"], ["staging"]]),
    (["stages.order=[]", "run.fuse_stages=false"], [["ingest"], ["split"], ["transcode"], ["staging"]]),
])
def test_stage_groups(overrides, expected):
    """Neighbours that need the same kind of node share a Ray operator, one model each;
    ingest (downloads) keeps its own."""
    from curator.pipeline import STAGES, StageSpec, group_stages

    cfg = PipelineConfig.load(None, overrides, input="/in", output="/out")
    ctx = RunContext(cfg, "file:///in", "file:///out", "test", "h")
    names = ["ingest", "split", "transcode", *cfg.stages.order, "staging"]
    specs = [StageSpec(n, STAGES[n], getattr(cfg.stages, n)) for n in names]
    groups = group_stages(specs, ctx, fuse=cfg.run.fuse_stages)
    assert [[s.name for s in g.specs] for g in groups] == expected
    for g in groups:
        assert g.stateful == any(s.stateful for s in g.stages)
        assert g.resources.num_cpus == max(s.resources.num_cpus for s in g.stages)
