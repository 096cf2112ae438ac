"""Generation loop parts: cells of targets, prompts (deterministic, deduplicated, seeded), placeholder
quoting, the ledger's replay, generator failures, provenance listing, the generated share of shards."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import pytest

from curator.config import ShardConfig
from curator.generate.generators import CommandGenerator, Job, fill, validate_video
from curator.generate.ledger import Ledger
from curator.generate.prompts import cell_matches, cells_of, make_prompt, prompts_for
from curator.listing import load_provenance, with_provenance
from curator.phases.shard.plan import Selection
from curator.records import new_video_row
from curator.taxonomy import load_places


@pytest.fixture(scope="module")
def tax():
    return load_places()


def test_cells_of_mappings_lists_and_predicates() -> None:
    assert cells_of({"place": "zoo"}) == [{"place": "zoo"}]
    assert cells_of({"place": ["zoo", "museum"], "time_of_day": "night"}) == [
        {"place": "zoo", "time_of_day": "night"}, {"place": "museum", "time_of_day": "night"}]
    assert cells_of("place = 'city' AND weather IN ('rain', 'snow')") == [
        {"place": "city", "weather": "rain"}, {"place": "city", "weather": "snow"}]
    assert cells_of("decor_elements CONTAINS 'chandelier'") == [{"decor_elements": "chandelier"}]
    assert cells_of("place = 'city' OR place = 'zoo'") == []
    assert cells_of("clip_height >= 720") == []
    assert cell_matches({"decor_elements": "columns"}, {"decor_elements": ["columns", "tiles"]})
    assert not cell_matches({"place": "zoo"}, {"place": "museum"})


def test_prompts_are_deterministic_distinct_and_from_the_taxonomy(tax) -> None:
    cell = {"place": "zoo", "place_sub": "aquarium", "time_of_day": "night", "weather": "rain"}
    a, b = make_prompt(cell, 0, tax), make_prompt(cell, 0, tax)
    assert a == b and a.id.startswith("g") and a.seed == b.seed
    assert "aquarium tank" in a.text and "night" in a.text and "rain" in a.text
    ps = prompts_for(cell, 5, tax, skip=set())
    assert len({p.id for p in ps}) == 5 and len({p.seed for p in ps}) == 5
    again = prompts_for(cell, 2, tax, skip={p.id for p in ps[:3]})
    assert [p.id for p in again] == [p.id for p in ps[3:5]]  # made ones are passed over
    assert "in Vienna" in make_prompt({"place": "museum", "city": "Vienna"}, 0, tax).text
    assert make_prompt({"place": "zoo"}, 0, tax, base_seed=1).seed != make_prompt({"place": "zoo"}, 0, tax).seed


def test_fill_quotes_every_placeholder() -> None:
    nasty = "a zoo'; rm -rf / #"
    cmd = fill("gen --prompt {prompt} --seed {seed} --out {output} --json '{\"a\": 1}'",
               {"prompt": nasty, "seed": 3, "output": "/tmp/x y.mp4"})
    assert shlex.split(cmd) == ["gen", "--prompt", nasty, "--seed", "3", "--out", "/tmp/x y.mp4", "--json",
                                '{"a": 1}']


def test_ledger_replay_survives_a_torn_line(tmp_path: Path) -> None:
    led = Ledger(str(tmp_path / "ledger.jsonl"))
    led.append("started", id="g1", prompt={}, allowance_s=5)
    led.append("done", id="g1", output="g1.mp4", wall_s=2.0)
    led.append("started", id="g2", prompt={}, allowance_s=5)
    led.append("failed", id="g2", reason="exit_code", wall_s=1.0)
    led.append("started", id="g3", prompt={}, allowance_s=5)
    with open(tmp_path / "ledger.jsonl", "a") as f:
        f.write('{"event": "done", "id": "g3", "wal')  # killed mid-write
    st = Ledger(str(tmp_path / "ledger.jsonl")).replay()
    assert st.generations == 3 and st.wall_s == 3.0
    assert [e.id for e in st.with_state("done")] == ["g1"] and st.entries["g3"].state == "started"
    led = Ledger(str(tmp_path / "ledger.jsonl"))  # a rerun opens it: the torn line is ended
    led.append("interrupted", id="g3", wall_s=0.5)
    led.append("started", id="g3", prompt={}, allowance_s=5)  # redone: its charge stays, it counts once
    st = led.replay()
    assert st.generations == 3 and st.wall_s == 3.5


def _job(tax) -> Job:
    p = make_prompt({"place": "zoo"}, 0, tax)
    return Job(p, p.text)


@pytest.mark.parametrize("template,reason,detail", [
    ("echo boom >&2; exit 3", "exit_code", "exit 3: boom"),
    ("sleep 30", "timeout", "killed after"),
    ("printf 'not a video' > {output}", "invalid_output", ""),
    ("true", "no_output", "no output file"),
])
def test_command_failures_have_reasons(tax, tmp_path: Path, template: str, reason: str, detail: str) -> None:
    out = CommandGenerator(template).generate(_job(tax), str(tmp_path / "o.mp4"), str(tmp_path / "w"), 1.0)
    assert not out.ok and out.reason == reason and detail in (out.detail or "")
    assert out.wall_s < 10


def test_command_success_and_validation(tax, tmp_path: Path) -> None:
    tpl = f"{sys.executable} -m curator.testing.fake_generator --prompt {{prompt}} --seed {{seed}} --output {{output}}"
    out = CommandGenerator(tpl).generate(_job(tax), str(tmp_path / "o.mp4"), str(tmp_path / "w"), 60.0)
    assert out.ok and validate_video(out.path or "") is None
    (tmp_path / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(64))
    assert validate_video(str(tmp_path / "bad.mp4"))


def test_provenance_listing(tmp_path: Path) -> None:
    prov = tmp_path / "p.jsonl"
    prov.write_text(json.dumps({"source_key": "g1.mp4", "origin": "generated", "prompt": "a zoo", "seed": 4}) + "\n")
    rows = list(with_provenance([new_video_row("file:///x/g1.mp4", "g1.mp4"),
                                 new_video_row("file:///x/real.mp4", "real.mp4")], load_provenance(str(prov))))
    assert rows[0]["origin"] == "generated" and rows[0]["seed"] == 4 and rows[1]["origin"] == "real"
    prov.write_text(json.dumps({"source_key": "g1.mp4", "colour": "red"}) + "\n")
    with pytest.raises(ValueError, match="unknown"):
        load_provenance(str(prov))


def test_max_generated_fraction_per_bucket() -> None:
    cfg = ShardConfig(max_generated_fraction=0.5)
    sel = Selection(cfg.splits, None, cfg.max_generated_fraction)
    order = ["generated", "real", "generated", "generated", "real", "generated", "generated"]
    got = [bool(sel.select({"origin": o, "clip_duration_s": 2.0}, "b")) for o in order]
    assert got == [False, True, True, False, True, True, False]
    assert sel.generated["pretrain"]["b"] == 2 and sel.by_bucket["pretrain"]["b"] == 4
    assert sel.origins["pretrain"] == {"real": [2, 4.0], "generated": [2, 4.0]}
    # deterministic: the same order gives the same choice; another bucket is counted apart
    sel2 = Selection(cfg.splits, None, 0.5)
    assert [bool(sel2.select({"origin": o}, "b")) for o in order] == got
    assert not sel2.select({"origin": "generated"}, "other") and sel2.select({"origin": "real"}, "other")


def test_upsampler_through_the_openai_sdk_env_and_server_errors(monkeypatch) -> None:
    """OPENAI_BASE_URL / OPENAI_API_KEY honoured; a 5xx is retried by the SDK, then the template's prompt
    comes back with the reason; a malformed answer likewise."""
    from curator.generate.upsample import Upsampler, upsample
    from curator.testing.openai_server import FakeOpenAIServer

    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert upsample("a zoo", None, "tiny") == ("a zoo", "generate.upsampler.url is not set (nor OPENAI_BASE_URL)")
    with FakeOpenAIServer(answer=lambda req: f"LONG {req.prompt}") as ok:
        monkeypatch.setenv("OPENAI_BASE_URL", ok.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key")
        up = Upsampler(None, "tiny", instruction="rewrite", retries=0, timeout_s=10)
        assert up("a zoo", seed=7) == ("LONG a zoo", None)
        up.close()
        req = ok.requests[0]
        assert req.model == "tiny" and req.temperature == 0.0 and req.extra.get("seed") == 7
        assert req.authorization == "Bearer sk-test-key"
    monkeypatch.delenv("OPENAI_API_KEY")
    with FakeOpenAIServer(behaviour=lambda req: "500") as bad:
        text, err = upsample("a museum at night", bad.url, "tiny", retries=1, timeout_s=10)
        assert text == "a museum at night" and err == "http 500: injected 500"
        assert len(bad.requests) == 2  # the SDK retried the 5xx once
        assert bad.requests[0].authorization is None  # no key: no header
    with FakeOpenAIServer(behaviour=lambda req: "malformed") as mal:
        text, err = upsample("a city", mal.url, "tiny", retries=0, timeout_s=10)
        assert text == "a city" and err
