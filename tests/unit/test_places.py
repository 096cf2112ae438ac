"""Place tags: the taxonomy, the three taggers (zero-shot, head, VLM through the endpoint backend
against the local OpenAI-compatible server), merging, and the eval-tags metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from curator.config import ConfigError, PipelineConfig
from curator.stage import RunContext
from curator.tagging import Answer, parse_answer, resolve
from curator.taxonomy import PLACE_FIELDS, SUB_FIELD, load_places
from curator.testing import coded
from curator.testing.coded import coded_video
from curator.testing.openai_server import FakeOpenAIServer

pytestmark = pytest.mark.unit

TAX = load_places(None)


# ------------------------------------------------------------------ taxonomy
def test_default_taxonomy_has_the_places_users_build_worlds_of():
    f = TAX.fields
    assert list(f) == ["place", SUB_FIELD] + [x for x in PLACE_FIELDS if x != "place"]
    assert {"city", "hospital", "zoo", "museum", "amusement_park", "library", "school", "stadium", "airport", "mall",
            "hotel_lobby"} <= set(f["place"].keys)
    subs = {"city": {"street", "plaza", "market", "transit", "waterfront", "skyline"},
            "hospital": {"corridor", "ward", "operating_room", "reception", "ambulance_bay"},
            "zoo": {"enclosure", "aquarium", "aviary"}, "museum": {"gallery", "hall", "exhibit"},
            "amusement_park": {"ride", "queue", "midway", "water_park"}}
    for place, want in subs.items():
        assert want <= set(TAX.subs_of(place)), place
        assert all(TAX.parent(s) == place for s in want)
    assert f["setting"].keys == ["indoor", "outdoor"] and f["weather"].nullable and not f["crowd"].nullable
    assert f["decor_elements"].kind == "multi" and f["city"].kind == "text" and f["region"].kind == "text"
    assert TAX.closed == ["place", SUB_FIELD, "setting", "time_of_day", "weather", "crowd", "decor"]
    # a place kind's zero-shot prompts include its sub-kinds', with the template
    assert "a photo of an aviary with birds" in TAX.prompts("place", "zoo")
    assert f["place"].lookup("Theme Park") == "amusement_park" and f["place"].lookup("castle") is None


@pytest.mark.parametrize("text, match", [
    ("fields:\n  colour:\n    labels: {red: [red]}\n", "unknown fields"),
    ("fields:\n  place:\n    labels: {a: {sub: {x: [x]}}, b: {sub: {x: [y]}}}\n", "appears twice"),
    ("fields:\n  place:\n    labels: {City Hall: [a]}\n", "lower case"),
    ("fields:\n  setting:\n    labels: {indoor: {sub: {x: [x]}}}\n", "only place kinds"),
    ("fields:\n  crowd:\n    labels: {}\n", "non-empty"),
    ("fields:\n  city:\n    labels: {paris: [paris]}\n", "free text"),
    ("fields:\n  setting:\n    labels: {indoor: {prompts: []}}\n", "prompts"),
    ("fields:\n  place:\n    labels: {a: {aliases: [b]}, b: [x]}\n", "names both"),
    ("fields: [place]\n", "mapping"),
])
def test_taxonomy_errors_name_the_problem(tmp_path, text, match):
    p = tmp_path / "places.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_places(str(p))


def test_a_broken_taxonomy_stops_the_start_up(tmp_path, capsys):
    from curator.cli import main

    p = tmp_path / "bad.yaml"
    p.write_text("fields:\n  place:\n    labels: {Zoo: [a zoo]}\n")
    (tmp_path / "in").mkdir()
    assert main(["run", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--runner", "local",
                 "--set", f"stages.place_tag.taxonomy={p}"]) == 2
    err = capsys.readouterr().err
    assert str(p) in err and "'Zoo' must be lower case" in err


def test_a_users_taxonomy_replaces_the_default_through_the_config_key(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text("fields:\n  place:\n    labels:\n      aquarium_hall: [an aquarium]\n      bazaar: [a bazaar]\n"
                 "  time_of_day:\n    labels: {day: [day], night: [night]}\n")
    cfg = PipelineConfig.load(overrides=[f"stages.place_tag.taxonomy={p}"])
    tax = load_places(cfg.stages.place_tag.taxonomy)
    assert list(tax.fields) == ["place", "time_of_day"] and tax.fields["place"].keys == ["aquarium_hall", "bazaar"]
    assert parse_answer('{"place": "bazaar", "time_of_day": "night"}', tax).values == {"place": "bazaar",
                                                                                       "time_of_day": "night"}


# ------------------------------------------------------------------ VLM answers
FULL = {"place": "zoo", "place_sub": "aviary", "setting": "outdoor", "time_of_day": "day", "weather": "clear",
        "crowd": "sparse", "decor": "natural", "decor_elements": ["signage", "plants"], "city": " San  Diego ",
        "region": "California"}


def test_a_full_valid_answer_is_taken_as_it_is():
    a = parse_answer(json.dumps(FULL), TAX)
    assert a.error is None
    assert a.values == {**FULL, "city": "San Diego"}  # decor_elements in taxonomy order


def test_fenced_answers_aliases_and_case_are_understood():
    text = ("Sure! Here are the tags:\n```json\n" + json.dumps({
        **FULL, "place": "Theme Park", "place_sub": "Water-Park", "decor_elements": "Plants, neon signs",
        "city": "unknown", "region": None}) + "\n```\nHope this helps.")
    a = parse_answer(text, TAX)
    assert a.error is None, a.error
    assert a.values["place"] == "amusement_park" and a.values["place_sub"] == "water_park"
    assert a.values["decor_elements"] == ["neon_signs", "plants"]  # taxonomy order
    assert a.values["city"] is None and a.values["region"] is None


@pytest.mark.parametrize("text, error", [
    ("I think this is a museum at night.", "invalid_json: "),
    ("[1, 2]", "invalid_json: not an object"),
    ("", "invalid_json: "),
])
def test_invalid_json_is_an_error_with_no_values(text, error):
    a = parse_answer(text, TAX)
    assert a.values == {} and a.error.startswith(error)


def test_partial_and_invalid_answers_keep_what_is_valid_and_say_what_is_not():
    a = parse_answer('{"place": "museum", "time_of_day": "Night", "crowd": null}', TAX)
    assert a.values == {"place": "museum", "time_of_day": "night"}
    assert a.error == ("partial: missing place_sub, setting, weather, crowd, decor, decor_elements, city, region")
    b = parse_answer(json.dumps({**FULL, "place": "castle", "place_sub": None, "weather": "sunny-ish",
                                 "decor_elements": ["plants", "lasers"], "city": 12}), TAX)
    assert "place" not in b.values and "weather" not in b.values and "city" not in b.values
    assert b.values["decor_elements"] == ["plants"] and b.values["crowd"] == "sparse"
    assert b.error.startswith("invalid: ") and "place=\"castle\" is not a label" in b.error
    assert "weather=\"sunny-ish\"" in b.error and "lasers" in b.error and "city=12 (not text)" in b.error
    # a sub-kind of another place is invalid; a sub-kind alone names its place
    c = parse_answer(json.dumps({**FULL, "place": "museum", "place_sub": "aviary"}), TAX)
    assert c.values["place"] == "museum" and SUB_FIELD not in c.values and "kind of 'zoo'" in c.error
    d = parse_answer(json.dumps({k: v for k, v in FULL.items() if k != "place"}), TAX)
    assert d.values["place"] == "zoo" and d.error is None


def test_the_prompt_and_schema_list_every_field_and_label():
    from curator.tagging import build_prompt, json_schema

    prompt = build_prompt(TAX)
    for name, f in TAX.fields.items():
        assert f'"{name}"' in prompt
        for k in f.keys:
            assert k in prompt
    schema = json_schema(TAX)
    assert schema["required"] == list(TAX.fields) and schema["properties"]["weather"]["enum"][-1] is None
    assert schema["properties"]["decor_elements"]["items"]["enum"] == TAX.fields["decor_elements"].keys


# ------------------------------------------------------------------ merging
def _probs(field: str, winner: str, p: float = 0.7) -> tuple[list[str], np.ndarray]:
    keys = TAX.fields[field].keys
    v = np.full(len(keys), (1 - p) / (len(keys) - 1))
    v[keys.index(winner)] = p
    return keys, v


def test_vlm_fields_win_and_the_embedding_tagger_fills_the_rest():
    probs = {f: _probs(f, TAX.fields[f].keys[0]) for f in TAX.closed}
    probs["place"] = _probs("place", "city", 0.6)
    # the embedding's favourite sub-kind is a zoo's; the VLM says museum: place_sub comes from the museum's
    subs = TAX.fields[SUB_FIELD].keys
    v = np.full(len(subs), 0.01)
    v[subs.index("aviary")], v[subs.index("hall")], v[subs.index("gallery")] = 0.5, 0.2, 0.1
    probs[SUB_FIELD] = (subs, v / v.sum())
    ans = Answer({"place": "museum", "time_of_day": "night", "city": "Paris"}, ["partial: missing crowd"])
    out = resolve(TAX, probs, ans, emb_source="zero_shot", model_ids=["zero_shot:m", "vlm:v"])
    assert (out["place"], out["place_conf"], out["time_of_day"], out["time_of_day_conf"]) == ("museum", None,
                                                                                              "night", None)
    assert out["place_sub"] == "hall" and out["place_sub_conf"] == pytest.approx(0.2 / (0.2 + 0.1 + 0.02), abs=1e-4)
    assert out["setting"] == "indoor" and out["setting_conf"] == pytest.approx(0.7)
    assert out["city"] == "Paris" and out["region"] is None and out["decor_elements"] is None
    assert out["tag_source"] == "vlm+zero_shot" and out["tag_model"] == "zero_shot:m; vlm:v"
    assert out["tag_error"] == "partial: missing crowd" and json.loads(out["tag_vlm"])["city"] == "Paris"
    assert json.loads(out["tag_top"])["place"] == {"city": 0.6, **{k: pytest.approx(0.4 / 11, abs=1e-4)
                                                                   for k in json.loads(out["tag_top"])["place"]
                                                                   if k != "city"}}
    # below min_confidence: no label, the probability is still recorded
    low = resolve(TAX, probs, None, emb_source="head", min_confidence=0.65)
    assert low["place"] is None and low["place_conf"] == pytest.approx(0.6) and low["setting"] == "indoor"
    assert low["tag_source"] == "head" and low["tag_vlm"] is None and low["tag_error"] is None


# ------------------------------------------------------------------ the stage: VLM through the endpoint backend
FRAMES = 30
ANSWERS = {
    0: json.dumps(FULL),
    1: "```json\n" + json.dumps({**FULL, "place": "theme park", "place_sub": "ride"}) + "\n```",
    2: "This looks like a museum at night.",
    3: json.dumps({"place": "museum", "time_of_day": "night"}),
    4: json.dumps({**FULL, "place": "castle", "place_sub": None, "weather": "sunny-ish"}),
}


def _ctx(*over: str) -> RunContext:
    cfg = PipelineConfig.load(overrides=list(over))
    return RunContext(config=cfg, input_uri="file:///in", output_uri="file:///out", run_id="t", config_hash="h")


def _vlm_stage(url: str, *extra: str):
    from stages.place_tag import PlaceTagStage

    ctx = _ctx("stages.place_tag.vlm.enabled=true", "stages.place_tag.method=off", "stages.caption.backend=endpoint",
               f"stages.caption.endpoint.url={url}", "stages.caption.model=test-vlm",
               "stages.caption.endpoint.retries=0", "stages.caption.frame_size=[64,48]", *extra)
    stage = PlaceTagStage(ctx.config.stages.place_tag, ctx)
    assert stage.requirements() == []
    return stage


@pytest.fixture(scope="module")
def clips() -> dict[int, bytes]:
    return {k: coded_video([k * 256 + i for i in range(FRAMES)], 128, 96) for k in range(6)}


def test_vlm_tagger_records_valid_partial_and_invalid_answers_per_clip_and_never_stops_a_clip(clips):
    answer = lambda req: ANSWERS[req.codes[0] // 256]  # noqa: E731 — each clip's frames name it
    behaviour = lambda req: "400" if req.codes[0] // 256 == 5 else "ok"  # noqa: E731
    with FakeOpenAIServer(behaviour, answer=answer) as server:
        stage = _vlm_stage(server.url)
        rows = [coded.clip_row(f"v-{k:05d}", clips[k], FRAMES, 128, 96, clip_index=k) for k in range(6)]
        rows[0]["text_boxes"] = json.dumps([{"frame": 0, "text": "San Diego Zoo", "score": 0.9},
                                            {"frame": 1, "text": "San Diego Zoo", "score": 0.8}])
        out = {r["clip_index"]: r for r in stage.process(rows)}
    assert all(r["status"] == "ok" for r in out.values())
    assert {k: r["place"] for k, r in out.items()} == {0: "zoo", 1: "amusement_park", 2: None, 3: "museum", 4: None,
                                                       5: None}
    assert out[0]["tag_error"] is None and out[0]["city"] == "San Diego" and out[0]["place_sub"] == "aviary"
    assert out[0]["decor_elements"] == ["signage", "plants"] and out[0]["place_conf"] is None
    assert out[0]["tag_source"] == "vlm" and out[0]["tag_model"] == "vlm:test-vlm"
    assert out[1]["place_sub"] == "ride" and out[1]["tag_error"] is None
    assert out[2]["tag_error"].startswith("invalid_json: ") and out[2]["tag_source"] is None
    assert out[3]["time_of_day"] == "night" and out[3]["tag_error"].startswith("partial: missing place_sub")
    assert "place=\"castle\"" in out[4]["tag_error"] and out[4]["crowd"] == "sparse"
    assert out[5]["tag_error"].startswith("vlm_failed: http 400")
    # what reached the model: the taxonomy prompt, the clip's OCR text once, 4 frames at the configured size
    by_clip = {req.codes[0] // 256: req for req in server.requests}
    assert by_clip[0].prompt.endswith('Text read in the video (OCR): "San Diego Zoo"')
    assert "OCR" not in by_clip[1].prompt and '"place_sub"' in by_clip[1].prompt
    assert all(len(r.codes) == 4 and r.sizes == [(64, 48)] * 4 and r.model == "test-vlm" for r in server.requests)
    assert all("response_format" not in r.extra for r in server.requests)


def test_json_schema_goes_as_response_format_when_asked(clips):
    with FakeOpenAIServer(answer=lambda req: ANSWERS[0]) as server:
        stage = _vlm_stage(server.url, "stages.place_tag.vlm.json_schema=true", "stages.place_tag.vlm.scene_text=false")
        [row] = stage.process([coded.clip_row("v-00000", clips[0], FRAMES, 128, 96)])
    assert row["place"] == "zoo"
    fmt = server.requests[0].extra["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["schema"]["required"] == list(TAX.fields)


def test_stage_is_skipped_with_the_fix_when_no_tagger_can_run(tmp_path):
    from curator import pipeline

    cfg = PipelineConfig.load(input=str(tmp_path), output=str(tmp_path / "o"),
                              overrides=[f"models.dir={tmp_path / 'models'}"])
    assert cfg.stages.order[-1] == "place_tag"
    skipped = dict(pipeline.build(cfg).skipped)
    assert "CLIP embedding" in skipped["place_tag"][0].describe()
    assert "stages.place_tag.vlm.enabled=true" in skipped["place_tag"][0].describe()
    cfg = PipelineConfig.load(input=str(tmp_path), output=str(tmp_path / "o"),
                              overrides=["stages.order=[place_tag,embed]", "stages.embed.model=open_clip:x/y"])
    assert "embed stage before place_tag" in dict(pipeline.build(cfg).skipped)["place_tag"][0].describe()
    # the VLM tagger asked for but without its URL: skipped, named
    cfg = PipelineConfig.load(input=str(tmp_path), output=str(tmp_path / "o"),
                              overrides=["stages.place_tag.vlm.enabled=true", "stages.caption.backend=endpoint"])
    assert "endpoint.url" in dict(pipeline.build(cfg).skipped)["place_tag"][0].describe()


# ------------------------------------------------------------------ zero-shot and the head
@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> tuple[str, str]:
    from curator.testing import tiny_models

    d = str(tmp_path_factory.mktemp("clip"))
    return d, tiny_models.build_open_clip(d)


def test_zero_shot_gives_each_label_its_own_text_embedding(clip_dir):
    from stages.place_tag import PlaceTagStage

    model_dir, name = clip_dir
    ctx = _ctx("stages.order=[embed,place_tag]", f"stages.embed.model={name}", f"models.dir={model_dir}",
               "stages.place_tag.device=cpu")
    stage = PlaceTagStage(ctx.config.stages.place_tag, ctx)
    assert stage.requirements() == []
    stage.ensure_setup()
    text = stage.emb.text
    # a clip whose embedding is a label's mean prompt embedding gets that label (and its sub-kinds only)
    for field in ("place", "time_of_day", "crowd"):
        keys = TAX.fields[field].keys
        rows = [{"kind": "clip", "clip_id": f"c{i}", "status": "ok", "embedding": text[field][i].tolist(),
                 "embedding_model": name} for i in range(len(keys))]
        out = stage.process(rows)
        assert [r[field] for r in out] == keys
        assert all(0 < r[f"{field}_conf"] <= 1 and r["tag_source"] == "zero_shot" for r in out)
        for r in out:
            assert r["place_sub"] in TAX.subs_of(r["place"]) or (r["place_sub"] is None and not TAX.subs_of(r["place"]))
    wrong = stage.process([{"kind": "clip", "clip_id": "x", "status": "ok", "embedding": text["place"][0].tolist(),
                            "embedding_model": "open_clip:other/model"}])[0]
    assert wrong["status"] == "ok" and wrong["place"] is None and "expects" in wrong["tag_error"]


def _clusters(n_per: int, seed: int, dim: int = 32) -> tuple[np.ndarray, list[str], list[str]]:
    """Clip embeddings around one centre per (place, time of day)."""
    rng = np.random.default_rng(7)
    centres = {(p, t): rng.standard_normal(dim) for p in ("zoo", "museum", "city") for t in ("day", "night")}
    r = np.random.default_rng(seed)
    xs, places, times = [], [], []
    for (p, t), c in centres.items():
        for _ in range(n_per):
            xs.append(c + 0.3 * r.standard_normal(dim))
            places.append(p)
            times.append(t)
    return np.stack(xs).astype(np.float32), places, times


def test_tag_head_learns_every_field_from_partly_labelled_clips_and_round_trips(tmp_path):
    from curator.type_head import load_tag_head, save_tag_head, tag_head_probs, train_tag_head

    x, places, times = _clusters(12, seed=1)
    # half the clips are labelled in one field only
    lab_p = [p if i % 4 != 1 else None for i, p in enumerate(places)]
    lab_t = [t if i % 4 != 2 else None for i, t in enumerate(times)]
    classes = {"place": ["city", "zoo", "museum"], "time_of_day": ["day", "night"]}
    model = train_tag_head(x, {"place": lab_p, "time_of_day": lab_t}, classes, hidden=32, epochs=60)
    xt, pt, tt = _clusters(10, seed=2)
    probs = tag_head_probs(model, xt)
    acc_p = np.mean([classes["place"][i] == p for i, p in zip(probs["place"].argmax(1), pt)])
    acc_t = np.mean([classes["time_of_day"][i] == t for i, t in zip(probs["time_of_day"].argmax(1), tt)])
    assert acc_p >= 0.95 and acc_t >= 0.95, (acc_p, acc_t)
    path = str(tmp_path / "head.pt")
    save_tag_head(path, model, classes, "open_clip:m/x", 32, x.shape[1])
    again, doc = load_tag_head(path)
    assert doc["fields"] == classes and doc["embedding_model"] == "open_clip:m/x"
    np.testing.assert_allclose(tag_head_probs(again, xt)["place"], probs["place"], atol=1e-6)
    with pytest.raises(ValueError, match="not a tag head"):
        from curator.type_head import build_head, save_head

        save_head(str(tmp_path / "vt.pt"), build_head(4, 4, 2), ["a", "b"], None, 4, 4)
        load_tag_head(str(tmp_path / "vt.pt"))


# ------------------------------------------------------------------ eval-tags metrics
def test_scores_per_label_and_macro():
    from curator.tag_eval import score_field

    gold = ["zoo", "zoo", "zoo", "museum", "museum", "city"]
    pred = ["zoo", "zoo", "museum", "museum", None, "city"]
    m = score_field("place", list(zip(gold, pred)))
    assert m["labels"]["zoo"] == {"precision": 1.0, "recall": 0.6667, "f1": 0.8, "support": 3, "predicted": 2}
    assert m["labels"]["museum"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2, "predicted": 2}
    assert m["labels"]["city"]["f1"] == 1.0
    assert m["macro"] == {"precision": round((1 + 0.5 + 1) / 3, 4), "recall": round((2 / 3 + 0.5 + 1) / 3, 4),
                          "f1": round((0.8 + 0.5 + 1) / 3, 4)}
    assert (m["accuracy"], m["coverage"], m["clips"]) == (round(4 / 6, 4), round(5 / 6, 4), 6)
    multi = score_field("decor_elements", [(frozenset({"plants", "tiles"}), frozenset({"plants"})),
                                           (frozenset({"tiles"}), frozenset({"tiles", "statues"}))])
    assert multi["labels"]["plants"]["recall"] == 1.0 and multi["labels"]["tiles"]["recall"] == 0.5
    assert multi["labels"]["statues"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0, "predicted": 1}
    assert multi["accuracy"] == 0.0


def test_vlm_hint_uses_scene_text_and_leaves_overlays_out():
    """The VLM hint carries what the text filter judged scene text; an overlay-only clip gives none."""
    import json as _json

    from curator.tagging import scene_text

    boxes = _json.dumps([{"frame": 0, "text": "BREAKING NEWS"}, {"frame": 0, "text": "CITY MUSEUM"}])
    assert scene_text({"scene_text": "CITY MUSEUM | Gallery 3", "text_boxes": boxes}) == ["CITY MUSEUM", "Gallery 3"]
    assert scene_text({"scene_text": None, "text_kind": "overlay", "text_boxes": boxes}) == []
    assert scene_text({"text_boxes": boxes}) == ["BREAKING NEWS", "CITY MUSEUM"]
