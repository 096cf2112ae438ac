"""The endpoint caption backend against a real local OpenAI-compatible server.

Clips are made of frames that carry their own (clip, frame) code; the server decodes the
images it receives and answers with the codes, so the tests check exactly which frames,
at which size, reached the model, and that each caption lands on its own clip."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from curator.config import PipelineConfig
from curator.media.decode import uniform_indices
from curator.models.vlm import RateLimiter
from curator.stage import RunContext
from curator.testing import coded
from curator.testing.coded import coded_video
from curator.testing.openai_server import FakeOpenAIServer, parse_caption
from stages.caption import CaptionStage

pytestmark = pytest.mark.unit

FRAMES = {0: 62, 1: 40, 2: 75, 3: 9, 4: 50, 5: 33}


@pytest.fixture(scope="module")
def clips() -> dict[int, bytes]:
    return {k: coded_video([k * 256 + i for i in range(n)], 128, 96) for k, n in FRAMES.items()}


def clip_row(k: int, data: bytes) -> dict:
    return coded.clip_row(f"v-{k:05d}", data, FRAMES[k], 128, 96, clip_index=k)


def make_stage(url: str, **caption: object) -> CaptionStage:
    over = ["stages.caption.backend=endpoint", f"stages.caption.endpoint.url={url}",
            "stages.caption.model=test-vlm", "stages.caption.endpoint.backoff_s=0.01"]
    for k, v in caption.items():
        over.append(f"stages.caption.{k}={v}")
    cfg = PipelineConfig.load(overrides=over)
    ctx = RunContext(config=cfg, input_uri="file:///in", output_uri="file:///out", run_id="t", config_hash="h")
    stage = CaptionStage(cfg.stages.caption, ctx)
    assert stage.requirements() == []
    return stage


def expected_codes(k: int, n: int = 8) -> list[int]:
    return [k * 256 + i for i in uniform_indices(FRAMES[k], n)]


def test_captions_land_on_their_clips_with_uniform_frames_at_configured_size(clips):
    with FakeOpenAIServer() as server:
        stage = make_stage(server.url, frame_size="[64, 48]", max_tokens=77, temperature=0.2, prompt_version="v7")
        rows = [clip_row(k, clips[k]) for k in (3, 0, 5, 1)]  # out of order on purpose
        out = stage.process(rows)
    assert [r["clip_id"] for r in out] == ["v-00003", "v-00000", "v-00005", "v-00001"]
    for r in out:
        k = r["clip_index"]
        assert r["status"] == "ok" and r["caption_error"] is None
        seen = parse_caption(r["caption"])
        assert seen["codes"] == expected_codes(k), k  # the 8 uniformly spaced frames, first and last included
        assert seen["size"] == (64, 48) and seen["n"] == 8
        assert r["caption_model"] == "test-vlm" and r["caption_prompt_version"] == "v7"
    assert len(server.requests) == 4
    for req in server.requests:
        assert req.model == "test-vlm" and req.max_tokens == 77 and req.temperature == 0.2
        assert req.prompt == "Elaborate on the visual and narrative elements of the video in detail"
        assert req.formats == ["image/jpeg"] * 8 and req.authorization is None
    # spelled out: first and last frame included, evenly spaced, rounded
    assert expected_codes(0) == [i for i in (0, 9, 17, 26, 35, 44, 52, 61)]
    assert expected_codes(3) == [3 * 256 + i for i in (0, 1, 2, 3, 5, 6, 7, 8)]


def test_frames_keep_aspect_at_max_side_and_num_frames(clips):
    with FakeOpenAIServer() as server:
        stage = make_stage(server.url, max_side=64, num_frames=5)
        [row] = stage.process([clip_row(2, clips[2])])
    seen = parse_caption(row["caption"])
    assert seen["size"] == (64, 48)
    assert seen["codes"] == expected_codes(2, 5) == [2 * 256 + i for i in (0, 18, 37, 56, 74)]
    assert row["caption_prompt_version"].startswith("sha-")


def test_failures_retry_then_record_a_per_clip_reason(clips, caplog):
    plan = {1: "500", 2: "hang", 3: "malformed", 5: "400"}

    def behaviour(req):
        k = req.codes[0] // 256
        if k == 4:  # transient: two 503s, then fine
            return "503" if req.attempt <= 2 else "ok"
        return plan.get(k, "ok")

    caplog.set_level(logging.DEBUG)
    with FakeOpenAIServer(behaviour, hang_s=2.0) as server:
        stage = make_stage(server.url, **{"endpoint.retries": 2, "endpoint.timeout_s": 0.5,
                                          "endpoint.concurrency": 6})
        out = stage.process([clip_row(k, clips[k]) for k in sorted(FRAMES)])
    by = {r["clip_index"]: r for r in out}
    assert all(r["status"] == "ok" for r in out)  # on_error: keep — the job and the clips go on
    for k in (0, 4):
        assert parse_caption(by[k]["caption"])["codes"] == expected_codes(k)
        assert by[k]["caption_error"] is None
    assert by[1]["caption"] is None and "after 3 attempts" in by[1]["caption_error"]
    assert "http 500" in by[1]["caption_error"]
    assert by[2]["caption"] is None and "timeout" in by[2]["caption_error"]
    assert by[3]["caption"] is None and "malformed response" in by[3]["caption_error"]
    assert by[5]["caption"] is None and by[5]["caption_error"].startswith("http 400")  # client error: no retry
    attempts = {}
    for req in server.requests:
        k = req.codes[0] // 256
        attempts[k] = attempts.get(k, 0) + 1
    assert attempts == {0: 1, 1: 3, 2: 3, 3: 3, 4: 3, 5: 1}


def test_on_error_error_stops_only_the_failed_clip(clips):
    with FakeOpenAIServer(lambda req: "500" if req.codes[0] // 256 == 1 else "ok") as server:
        stage = make_stage(server.url, on_error="error", **{"endpoint.retries": 1})
        out = stage.process([clip_row(k, clips[k]) for k in (0, 1)])
    assert out[0]["status"] == "ok" and out[0]["caption"]
    assert out[1]["status"] == "error" and out[1]["stage"] == "caption" and out[1]["reason"] == "caption_failed"
    assert "http 500" in out[1]["detail"] and out[1]["caption_error"]


def test_concurrency_is_bounded_and_used(clips):
    rows = [clip_row(k % 6, clips[k % 6]) for k in range(12)]
    with FakeOpenAIServer(latency_s=0.15) as server:
        stage = make_stage(server.url, **{"endpoint.concurrency": 4})
        out = stage.process(rows)
    assert all(r["caption"] for r in out)
    assert server.max_in_flight == 4


def test_api_key_is_sent_and_never_logged(clips, monkeypatch, caplog):
    monkeypatch.setenv("CURATOR_TEST_KEY", "sk-very-secret-123")
    caplog.set_level(logging.DEBUG)
    with FakeOpenAIServer(lambda req: "500" if req.codes[0] // 256 == 1 else "ok") as server:
        stage = make_stage(server.url, **{"endpoint.api_key_env": "CURATOR_TEST_KEY", "endpoint.retries": 1})
        out = stage.process([clip_row(k, clips[k]) for k in (0, 1)])
    assert {r.authorization for r in server.requests} == {"Bearer sk-very-secret-123"}
    assert out[1]["caption_error"]
    assert "sk-very-secret-123" not in caplog.text
    assert all("sk-very-secret-123" not in str(v) for r in out for v in r.values())


def test_unset_endpoint_url_is_a_startup_requirement():
    cfg = PipelineConfig.load(overrides=["stages.caption.backend=endpoint"])
    ctx = RunContext(config=cfg, input_uri="file:///in", output_uri="file:///out", run_id="t", config_hash="h")
    [req] = CaptionStage(cfg.stages.caption, ctx).requirements()
    assert "stages.caption.endpoint.url" in req.describe()


def test_rate_limiter_spaces_requests():
    lim = RateLimiter(20.0)
    t0 = time.monotonic()
    for _ in range(6):
        lim.acquire()
    assert time.monotonic() - t0 >= 5 / 20.0 - 0.01
    free = RateLimiter(None)
    t0 = time.monotonic()
    for _ in range(1000):
        free.acquire()
    assert time.monotonic() - t0 < 0.5


def test_rate_limit_applies_to_the_endpoint(clips):
    with FakeOpenAIServer() as server:
        stage = make_stage(server.url, **{"endpoint.rate_limit_rps": 10.0, "endpoint.concurrency": 8})
        t0 = time.monotonic()
        out = stage.process([clip_row(k, clips[k]) for k in (0, 1, 2, 3)])
        elapsed = time.monotonic() - t0
    assert all(r["caption"] for r in out)
    assert elapsed >= 0.3 - 0.01  # 4 requests at 10/s: the last starts 0.3 s after the first


def test_a_500_then_a_200_is_one_caption_after_a_retry(clips):
    """The SDK retries the 500; the clip gets its caption and the backend counts 2 attempts."""
    from curator.models.vlm import CaptionJob, EndpointBackend

    with FakeOpenAIServer(lambda req: "500" if req.attempt == 1 else "ok") as server:
        stage = make_stage(server.url, **{"endpoint.retries": 1})
        [row] = stage.process([clip_row(0, clips[0])])
        assert row["caption_error"] is None and parse_caption(row["caption"])["codes"] == expected_codes(0)
        assert [r.attempt for r in server.requests] == [1, 2]

        backend = EndpointBackend(stage.config)
        frames = np.stack([coded.code_frame(v, 64, 48) for v in (4000, 4001)])  # new images: attempt 1 again
        result = backend.caption_one(CaptionJob("k", frames, [0, 1]))
        backend.close()
    assert result.ok and result.attempts == 2, result


def test_openai_base_url_and_key_come_from_the_environment(clips, monkeypatch):
    """No endpoint.url / api_key_env in the config: OPENAI_BASE_URL and OPENAI_API_KEY."""
    cfg = PipelineConfig.load(overrides=["stages.caption.backend=endpoint", "stages.caption.model=test-vlm"])
    ctx = RunContext(config=cfg, input_uri="file:///in", output_uri="file:///out", run_id="t", config_hash="h")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    [req] = CaptionStage(cfg.stages.caption, ctx).requirements()
    assert "OPENAI_BASE_URL" in req.describe()
    with FakeOpenAIServer() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
        stage = CaptionStage(cfg.stages.caption, ctx)
        assert stage.requirements() == []
        [row] = stage.process([clip_row(1, clips[1])])
        monkeypatch.delenv("OPENAI_API_KEY")
        [row2] = CaptionStage(cfg.stages.caption, ctx).process([clip_row(2, clips[2])])
    assert parse_caption(row["caption"])["codes"] == expected_codes(1)
    assert parse_caption(row2["caption"])["codes"] == expected_codes(2)
    assert [r.authorization for r in server.requests] == ["Bearer sk-from-env", None]


def test_a_full_chat_completions_url_is_accepted(clips):
    with FakeOpenAIServer() as server:
        stage = make_stage(server.url + "/chat/completions/")
        [row] = stage.process([clip_row(0, clips[0])])
    assert row["caption"] and len(server.requests) == 1
