"""Windowed captions against the real local OpenAI-compatible server.

Every frame carries its own number (:mod:`curator.testing.coded`); the server reads the
numbers of the frames it receives and answers with them, so each window's caption says
exactly which frames reached the model for it. The server delays answers at random, so
with concurrent requests they come back out of order: the windows must still land on
their clip, in their order."""

from __future__ import annotations

import json
import threading

import pytest

from curator.config import PipelineConfig
from curator.stage import RunContext
from curator.testing import coded
from curator.testing.coded import coded_video
from curator.testing.openai_server import FakeOpenAIServer, parse_caption
from stages.caption import CaptionStage, window_indices, windows

pytestmark = pytest.mark.unit

FPS = 25
LONG = 20 * FPS  # a 20 s clip: 500 frames
SHORT = 60


@pytest.fixture(scope="module")
def videos() -> dict[str, bytes]:
    return {"long": coded_video(list(range(LONG)), 64, 48, fps=FPS),
            "short": coded_video([1000 + i for i in range(SHORT)], 64, 48, fps=FPS)}


def make_stage(url: str, *extra: str, **caption: object) -> CaptionStage:
    over = ["stages.caption.backend=endpoint", f"stages.caption.endpoint.url={url}",
            "stages.caption.model=test-vlm", "stages.caption.endpoint.backoff_s=0.01",
            "stages.caption.endpoint.concurrency=8", "stages.caption.window_frames=100",
            "stages.caption.num_frames=4", *extra]
    over += [f"stages.caption.{k}={v}" for k, v in caption.items()]
    cfg = PipelineConfig.load(overrides=over)
    ctx = RunContext(config=cfg, input_uri="file:///in", output_uri="file:///out", run_id="t", config_hash="h")
    stage = CaptionStage(cfg.stages.caption, ctx)
    assert stage.requirements() == []
    return stage


def rows(videos: dict[str, bytes], **extra: object) -> list[dict]:
    return [coded.clip_row("v-long-00000", videos["long"], LONG, 64, 48, **extra),
            coded.clip_row("v-short-00001", videos["short"], SHORT, 64, 48, **extra)]


def test_windows_cover_the_clip_and_a_short_remainder_joins_the_last():
    assert windows(500, 100) == [(0, 100), (100, 200), (200, 300), (300, 400), (400, 500)]
    assert windows(530, 100)[-1] == (400, 530)  # 30 < 50: joins the last window
    assert windows(560, 100)[-1] == (500, 560)  # 60 >= 50: a window of its own
    assert windows(80, 256) == [(0, 80)] and windows(600, 0) == [(0, 600)] and windows(0, 100) == []
    assert window_indices((100, 200), 4) == [100, 133, 166, 199]


def test_a_20s_clip_gets_its_100_frame_windows_in_order_despite_shuffled_answers(videos):
    finished: list[int] = []
    lock = threading.Lock()

    def answer(req):  # called after the random delay: the order answers leave the server
        with lock:
            finished.append(req.codes[0])
        from curator.testing.openai_server import caption_for
        return caption_for(req)

    with FakeOpenAIServer(jitter_s=0.3, answer=answer) as server:
        stage = make_stage(server.url)
        out = stage.process(rows(videos))
    assert finished != sorted(finished), "the server's random delays should have reordered the answers"
    assert server.max_in_flight > 1
    long_row, short_row = out
    assert long_row["clip_id"] == "v-long-00000" and long_row["status"] == "ok"
    doc = json.loads(long_row["caption_windows"])
    assert doc["summary"] == "join" and doc["window_frames"] == 100
    assert [(w["start"], w["end"]) for w in doc["windows"]] == windows(LONG, 100)
    for w in doc["windows"]:
        assert w["frames"] == window_indices((w["start"], w["end"]), 4)
        seen = parse_caption(w["caption"])
        assert seen["codes"] == w["frames"]  # these very frames reached the model for this window
        assert seen["n"] == 4 and seen["size"] == (64, 48)
    assert long_row["caption"] == "\n".join(w["caption"] for w in doc["windows"])
    assert long_row["caption_error"] is None and long_row["caption_enhance_model"] is None
    # the short clip is one window: its caption is that window's, unchanged
    sdoc = json.loads(short_row["caption_windows"])
    assert sdoc["summary"] == "single" and [(w["start"], w["end"]) for w in sdoc["windows"]] == [(0, SHORT)]
    assert parse_caption(short_row["caption"])["codes"] == [1000 + i for i in window_indices((0, SHORT), 4)]
    assert len(server.requests) == 6 and all(r.formats == ["image/jpeg"] * 4 for r in server.requests)


def test_video_parts_carry_the_window_as_one_video(videos):
    with FakeOpenAIServer(jitter_s=0.05) as server:
        stage = make_stage(server.url, "stages.caption.endpoint.video=true")
        long_row, _ = stage.process(rows(videos))
    assert all(r.videos == 1 and r.formats == ["video/jpeg"] * 4 for r in server.requests)
    doc = json.loads(long_row["caption_windows"])
    assert [parse_caption(w["caption"])["codes"] for w in doc["windows"]] == [w["frames"] for w in doc["windows"]]


def test_prompt_per_place_and_its_version(videos):
    with FakeOpenAIServer() as server:
        stage = make_stage(server.url, "stages.caption.window_frames=0",
                           'stages.caption.prompts={"zoo": "Describe the animals", "default": "Describe it"}')
        a, b = stage.process([coded.clip_row("v-a-00000", videos["short"], SHORT, 64, 48, place="zoo"),
                              coded.clip_row("v-b-00000", videos["short"], SHORT, 64, 48, place="office")])
    prompts = sorted(r.prompt for r in server.requests)
    assert prompts == ["Describe it", "Describe the animals"]
    assert a["caption_prompt_version"] != b["caption_prompt_version"]
    assert a["caption_prompt_version"].startswith("sha-") and b["caption_prompt_version"].startswith("sha-")


def test_enhancement_rewrites_the_joined_windows_and_is_recorded(videos):
    def enhanced(req):
        return f"ENHANCED {req.prompt.count('codes=')} windows"

    with FakeOpenAIServer(jitter_s=0.05) as vlm_server, FakeOpenAIServer(answer=enhanced) as llm:
        stage = make_stage(vlm_server.url, "stages.caption.enhance.enabled=true",
                           f"stages.caption.enhance.url={llm.url}", "stages.caption.enhance.model=test-llm")
        long_row, short_row = stage.process(rows(videos))
    assert long_row["caption"] == "ENHANCED 5 windows" and short_row["caption"] == "ENHANCED 1 windows"
    assert long_row["caption_enhance_model"] == "test-llm"
    doc = json.loads(long_row["caption_windows"])
    assert doc["summary"] == "enhance" and doc["enhance_model"] == "test-llm" and len(doc["windows"]) == 5
    assert {r.model for r in llm.requests} == {"test-llm"} and all(not r.codes for r in llm.requests)
    # the window captions, in order, are what the LLM was asked to rewrite
    first = [r for r in llm.requests if r.prompt.count("codes=") == 5][0]
    assert [line for line in first.prompt.splitlines() if line.startswith("codes=")] == \
        [w["caption"] for w in doc["windows"]]


def test_failed_enhancement_keeps_the_joined_captions(videos):
    with FakeOpenAIServer() as vlm_server, FakeOpenAIServer(behaviour=lambda r: "400") as llm:
        stage = make_stage(vlm_server.url, "stages.caption.enhance.enabled=true",
                           f"stages.caption.enhance.url={llm.url}")
        long_row, _ = stage.process(rows(videos))
    doc = json.loads(long_row["caption_windows"])
    assert long_row["caption"] == "\n".join(w["caption"] for w in doc["windows"])
    assert long_row["caption_enhance_model"] is None and "http 400" in doc["enhance_error"]


def test_one_failed_window_fails_the_clip_but_not_the_others(videos):
    def behaviour(req):
        return "400" if req.codes and req.codes[0] == 200 else "ok"  # the third window of the long clip

    with FakeOpenAIServer(behaviour=behaviour) as server:
        stage = make_stage(server.url)
        long_row, short_row = stage.process(rows(videos))
    assert long_row["caption"] is None and "window [200, 300): http 400" in long_row["caption_error"]
    doc = json.loads(long_row["caption_windows"])
    assert [w["caption"] is None for w in doc["windows"]] == [False, False, True, False, False]
    assert short_row["caption"] and short_row["caption_error"] is None


def test_enhancement_by_a_local_transformers_llm(videos, tmp_path, monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from curator.models import registry
    from curator.models.vlm import enhance_prompt
    from curator.testing import tiny_models

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    model_dir = str(tmp_path / "models")
    name = tiny_models.build_text_llm(model_dir)
    with FakeOpenAIServer(jitter_s=0.05) as server:
        stage = make_stage(server.url, f"models.dir={model_dir}", "stages.caption.enhance.enabled=true",
                           "stages.caption.enhance.backend=transformers", f"stages.caption.enhance.model={name}",
                           "stages.caption.enhance.max_tokens=6", "stages.caption.device=cpu",
                           "stages.caption.batch_size=2")
        long_row, short_row = stage.process(rows(videos))
    doc = json.loads(long_row["caption_windows"])
    assert long_row["caption_enhance_model"] == name and doc["summary"] == "enhance" and doc["enhance_model"] == name
    # what the model itself generates, greedily, for the enhancement prompt over the window captions
    path = registry.model_path(name, model_dir)
    tok, lm = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path).eval()
    cfg = stage.config
    text = tok.apply_chat_template([{"role": "user", "content": enhance_prompt(
        cfg.enhance.prompt, [w["caption"] for w in doc["windows"]])}], tokenize=False, add_generation_prompt=True)
    enc = tok([text], return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        gen = lm.generate(**enc, max_new_tokens=6, do_sample=False)
    assert long_row["caption"] == tok.decode(gen[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    assert short_row["caption_enhance_model"] == name


def test_the_shard_json_carries_the_windows_as_an_object():
    from curator.phases.shard.plan import sample_json

    doc = {"window_frames": 100, "summary": "join", "windows": [{"start": 0, "end": 100, "caption": "a"}]}
    out = sample_json({"clip_id": "v-00000", "caption": "a", "caption_windows": json.dumps(doc), "mp4": b"x"})
    assert out["caption_windows"] == doc and out["caption"] == "a"
    assert sample_json({"caption_windows": "not json"})["caption_windows"] == "not json"
