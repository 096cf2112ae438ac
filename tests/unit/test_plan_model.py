"""`curator plan`'s arithmetic: which videos the trial takes and how it is scaled up."""

import pytest

from curator import plan
from curator.config import PipelineConfig
from curator.pipeline import build
from curator.records import new_video_row

pytestmark = pytest.mark.unit


def _pipeline(*sets, runner="local"):
    cfg = PipelineConfig.load(None, [f"run.runner={runner}", "stages.split.method=scenedetect",
                                     "stages.order=[motion]", *sets], input="/in", output="/out")
    return build(cfg)


def test_the_trial_spreads_over_pixel_rates_and_skips_unreadable_videos():
    rows = [new_video_row(f"file:///in/{i}.mp4", f"{i}.mp4") for i in range(6)]
    rates = [640 * 360 * 25, 1920 * 1080 * 30, 320 * 240 * 25, 1280 * 720 * 25, 0, 854 * 480 * 25]
    probed = [(r, 0.0 if rate == 0 else 10.0, float(rate)) for r, rate in zip(rows, rates)]
    picked = [r["source_key"] for r in plan.pick_trial(probed, 2)]
    # the five readable ones by pixel rate: 2, 0, 5, 3, 1; two picks sit at the quartiles
    assert picked == ["0.mp4", "3.mp4"]
    assert [r["source_key"] for r in plan.pick_trial(probed, 9)] == ["2.mp4", "0.mp4", "5.mp4", "3.mp4", "1.mp4"]
    unreadable = [(r, 0.0, 0.0) for r in rows[:3]]
    assert [r["source_key"] for r in plan.pick_trial(unreadable, 2)] == ["0.mp4", "1.mp4"]


def _trial():
    cold = plan.TrialPart(videos=1, video_s=10, pixels=10 * 25 * 1e5, stream_s=5.0,
                          phases_s={"dedup": 1.0, "shard": 0.5, "refilter": 0.1},
                          busy_s={"split": 2.0, "motion": 1.0})
    warm = plan.TrialPart(videos=1, video_s=20, pixels=20 * 25 * 4e5, stream_s=9.5,
                          phases_s={"dedup": 0.4, "shard": 0.2, "refilter": 0.1},
                          busy_s={"split": 6.0, "motion": 2.0})
    t = plan.Trial(videos=2, video_s=30, pixels=cold.pixels + warm.pixels, prepare_s=1.0,
                   busy_s={"split": 8.0, "motion": 3.0}, phases_s=dict(cold.phases_s), parts=[cold, warm],
                   cold_s=1.5, per_video_s=0.5, clips=6, clips_kept=4, clip_bytes=6000)
    return t


def test_estimate_scales_video_stages_by_pixels_and_clip_stages_by_seconds():
    pipeline = _pipeline()
    stages = plan.stage_plans(pipeline.ctx.config, pipeline, "local")
    t = _trial()
    inputs = plan.InputStats(source="/in", videos=10, duration_s=300, pixels=2 * t.pixels)
    est = plan.estimate(inputs, t, stages, {"CPU": 1.0, "GPU": 0.0}, pipeline, startup_s=2.0)
    assert (est.scale, est.pixel_scale) == (10.0, 2.0)
    # stream: cold start + split 8 s x 2 (pixels) + motion 3 s x 10 (seconds) + 0.5 s per video
    assert est.parts["stream_s"] == pytest.approx(1.5 + 16 + 30 + 0.5 * 10)
    # dedup embeds the clips (no embed stage) and shard copies them: warm rate x footage, plus
    # what the cold part spent beyond its rate; refilter counted once
    assert est.phases_s["dedup"] == pytest.approx((1.0 - 0.02 * 10) + 0.02 * 300)
    assert est.phases_s["shard"] == pytest.approx((0.5 - 0.01 * 10) + 0.01 * 300)
    assert est.phases_s["refilter"] == pytest.approx(0.1)
    assert est.wall_s == pytest.approx(sum(est.parts.values()), abs=0.01)
    assert (est.clips, est.clips_kept, est.output_bytes) == (60, 40, 60000)
    # with an embed stage, dedup compares the manifest's embeddings: counted once
    assert plan.scaled_phases(PipelineConfig(), ["ingest", "embed"]) == {"shard"}
    assert plan.scaled_phases(PipelineConfig.load(None, ["dedup.embeddings=perceptual"]), ["embed"]) == {
        "shard", "dedup"}


def test_under_ray_the_stream_is_bounded_by_workers_and_cpus():
    pipeline = _pipeline(runner="ray")
    busy = {"ingest": 1.0, "split": 40.0, "transcode": 0.0, "motion": 10.0, "staging": 0.0}
    # one operator for split..staging (1 CPU per task): 8 CPUs run 8 videos at once
    assert plan.stream_model(busy, 100, {"CPU": 8.0}, pipeline) == pytest.approx(max(50.0 / 8, 1.0 / 8,
                                                                                    (0.5 + 50.0) / 8))
    # ... but not more videos than there are
    assert plan.stream_model(busy, 2, {"CPU": 8.0}, pipeline) == pytest.approx(50.0 / 2)
    assert plan.stream_model(busy, 2, {"CPU": 1.0}, _pipeline()) == pytest.approx(51.0)  # local: the sum
