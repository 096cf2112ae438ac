"""Place tags through the real `curator` binary: a run that tags every clip (zero-shot with a tiny
random-weight open_clip built here), eval-tags on a labelled synthetic set, a head trained on part of
it and applied to the run (`curator tag`), coverage against targets (text, JSON, an HTML heatmap
opened in headless Chromium, a run folder and its index alike), and the VLM tagger against the local
OpenAI-compatible server with valid, partial and invalid answers.

The synthetic set: one short video per (place, time of day); its fixed-stride clips are flat colour
with noise — the colour's hue is the place, its brightness the time of day — so a head over the
embeddings can learn them, while the random model's zero-shot tags mean nothing (reported, not
asserted)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
HUES = {"zoo": (20, 220, 20), "museum": (220, 20, 20), "hospital": (20, 80, 230), "city": (230, 220, 20)}
TIMES = {"day": 1.0, "night": 0.55}
CLIPS_PER_VIDEO = 4


def curator(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "curator", *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=600, env={**os.environ, "CURATOR_MODEL_DIR": "/nonexistent"})
    if check:
        assert r.returncode == 0, (args, r.stdout[-2000:], r.stderr[-3000:])
    return r


def clips(out: Path) -> list[dict]:
    return [r for r in pq.read_table(out / "manifest.parquet").to_pylist() if r["kind"] == "clip"]


def truth(row: dict) -> tuple[str, str]:
    place, tod = Path(row["source_key"]).stem.split("-")
    return place, tod


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from curator.testing import tiny_models
    from curator.testing.synth import make_colour_video

    root = tmp_path_factory.mktemp("places")
    model_dir = root / "models"
    name = tiny_models.build_open_clip(str(model_dir))
    inp = root / "in"
    for place, (r, g, b) in HUES.items():
        for tod, k in TIMES.items():
            shades = [tuple(min(255, int(c * k * (0.95 + 0.03 * i))) for c in (r, g, b))
                      for i in range(CLIPS_PER_VIDEO)]
            make_colour_video(str(inp / f"{place}-{tod}.mp4"), shades, seconds_each=2.0, seed=len(place))
    out = root / "out"
    r = curator("run", "-i", str(inp), "-o", str(out), "--runner", "local",
                "--set", "stages.order=[embed,place_tag]", "--set", f"stages.embed.model={name}",
                "--set", f"models.dir={model_dir}", "--set", "stages.embed.device=cpu",
                "--set", "stages.embed.num_frames=4", "--set", "stages.place_tag.device=cpu",
                "--set", "stages.split.method=fixed", "--set", "stages.split.stride_s=2",
                "--set", "stages.split.min_clip_s=1", "--set", "dedup.enabled=false", "--set", "run.shard=false")
    assert "place_tag" in r.stdout + r.stderr
    return root, model_dir, out


def labels(path: Path, rows: list[dict], keep: set[int]) -> Path:
    lines = ["clip_id,place,time_of_day"]
    lines += [f"{r['clip_id']},{','.join(truth(r))}" for r in rows if r["clip_index"] in keep]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_run_tags_every_clip_zero_shot_into_manifest_and_index(synthetic):
    from curator.taxonomy import load_places

    root, model_dir, out = synthetic
    rows = clips(out)
    tax = load_places(None)
    assert len(rows) == len(HUES) * len(TIMES) * CLIPS_PER_VIDEO
    for r in rows:
        assert r["status"] == "ok" and r["tag_source"] == "zero_shot", r
        assert r["place"] in tax.fields["place"].keys and 0 < r["place_conf"] <= 1
        assert r["time_of_day"] in tax.fields["time_of_day"].keys and r["setting"] in ("indoor", "outdoor")
        assert r["place_sub"] is None or tax.parent(r["place_sub"]) == r["place"]
        assert set(json.loads(r["tag_top"])) == set(tax.closed) and r["tag_error"] is None
        assert r["tag_model"].startswith("zero_shot:open_clip:tiny-test/")
    # the index holds the tags: `curator search --where` on them
    place, n = Counter(r["place"] for r in rows).most_common(1)[0]
    hits = json.loads(curator("search", str(out / "index"), "--where", f"place = '{place}'", "--limit", "100",
                              "--json").stdout)
    assert sorted(h["clip_id"] for h in hits) == sorted(r["clip_id"] for r in rows if r["place"] == place)
    assert all(h["place_conf"] is not None for h in hits)


def test_eval_tags_measures_zero_shot_and_a_head_trained_on_half_the_clips(synthetic, tmp_path):
    root, model_dir, out = synthetic
    rows = clips(out)
    train = labels(tmp_path / "train.csv", rows, {0, 2})
    test = labels(tmp_path / "test.csv", rows, {1, 3})
    zs = json.loads(curator("eval-tags", str(out), str(test), "--json").stdout)
    assert zs["matched"] == len(rows) // 2 and set(zs["fields"]) == {"place", "time_of_day"}
    print("\nzero-shot (tiny random CLIP):", {f: m["macro"] for f, m in zs["fields"].items()})

    # a copy of the run: retagging rewrites its manifest (the fixture's stays zero-shot for the other tests)
    run = tmp_path / "run"
    shutil.copytree(out, run)
    r = curator("train-tag-head", str(run), "--labels", str(train), "--epochs", "300", "--holdout", "0",
                "--set", f"models.dir={model_dir}")
    assert (model_dir / "place_tag" / "head.pt").is_file() and "saved:" in r.stdout
    try:
        r = curator("tag", str(run), "--set", f"models.dir={model_dir}")
        assert f"{len(rows)} of {len(rows)} clips tagged (head {len(rows)})" in r.stdout, r.stdout
    finally:
        (model_dir / "place_tag" / "head.pt").unlink()
    tagged = clips(run)
    assert all(t["tag_source"] == "head" and t["tag_model"] == "head:place_tag/head.pt" for t in tagged)
    head = json.loads(curator("eval-tags", str(run), str(test), "--json").stdout)
    print("head, held-out clips:", {f: (m["accuracy"], m["macro"]) for f, m in head["fields"].items()})
    for field in ("place", "time_of_day"):
        m = head["fields"][field]
        assert m["clips"] == len(rows) // 2 and m["coverage"] == 1.0
        assert m["macro"]["precision"] >= 0.9 and m["macro"]["recall"] >= 0.9, (field, m)


def test_coverage_counts_cells_and_gaps_and_draws_the_heatmap(synthetic, tmp_path):
    root, model_dir, out = synthetic
    rows = clips(out)
    want = Counter((r["place"], r["time_of_day"]) for r in rows)
    (place, tod), have = want.most_common(1)[0]
    (tmp_path / "targets.yaml").write_text(
        f"targets:\n  - where: {{place: {place}, time_of_day: {tod}}}\n    min_clips: {have}\n"
        f"  - where: {{place: zoo, time_of_day: night}}\n    min_clips: 1000\n    min_hours: 2\n"
        f"  - where: {{place: {place}}}\n    min_hours: 1\n")
    js, page = tmp_path / "c.json", tmp_path / "c.html"
    r = curator("coverage", str(out), "--by", "place,time_of_day", "--targets", str(tmp_path / "targets.yaml"),
                "--json", str(js), "--html", str(page))
    assert "targets: 3, met 1, gaps 2" in r.stdout
    doc = json.loads(js.read_text())
    assert {(c["cell"]["place"], c["cell"]["time_of_day"]): c["clips"] for c in doc["cells"]} == dict(want)
    assert doc["total"] == {"clips": len(rows), "hours": round(len(rows) * 2.0 / 3600, 6)}
    zoo_night = want.get(("zoo", "night"), 0)
    assert [(g["name"], g["clips"], g["missing_clips"], g["missing_hours"]) for g in doc["gaps"]] == [
        ("place=zoo, time_of_day=night", zoo_night, 1000 - zoo_night, round(2 - zoo_night * 2.0 / 3600, 6)),
        (f"place={place}", sum(n for (p, _), n in want.items() if p == place),
         0, round(1 - sum(n for (p, _), n in want.items() if p == place) * 2.0 / 3600, 6))]
    assert curator("coverage", str(out), "--targets", str(tmp_path / "targets.yaml"), "--fail-on-gaps",
                   check=False).returncode == 5
    # the index answers the same
    curator("coverage", str(out / "index"), "--by", "place,time_of_day", "--json", str(tmp_path / "i.json"))
    idx = json.loads((tmp_path / "i.json").read_text())
    assert idx["cells"] == doc["cells"] and idx["total"] == doc["total"]

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed: `make install` installs it from the distribution packages")
    text = page.read_text()
    assert not re.search(r'(src|href)="(https?:|//|file:)', text)
    dom = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
                         capture_output=True, timeout=180, check=True).stdout.decode()
    grid = re.search(r'<table class="heatmap" data-by="place,time_of_day">(.*?)</table>', dom, re.S).group(1)
    cells = {c: (cls, int(n)) for cls, c, n in re.findall(r'<td class="([^"]*)" data-cell="([^"]*)" data-clips="(\d+)"',
                                                         grid)}
    for (p, t), n in want.items():
        assert cells[f"{p}|{t}"][1] == n
    assert cells["hospital|dusk"][1] == want.get(("hospital", "dusk"), 0)  # every taxonomy label is on the grid
    assert "gap" in cells["zoo|night"][0] and "need +" in grid
    assert "met" in cells[f"{place}|{tod}"][0] and "gap" in cells[f"{place}|*"][0]
    assert cells["*|*"][1] == len(rows)
    assert re.search(r'<tr class="gaprow" data-target="place=zoo, time_of_day=night">', dom)


def test_vlm_tags_through_the_endpoint_with_valid_partial_and_invalid_answers(tmp_path):
    from curator.testing.coded import coded_video
    from curator.testing.openai_server import FakeOpenAIServer

    inp = tmp_path / "in"
    inp.mkdir()
    (inp / "coded.mp4").write_bytes(coded_video(list(range(200)), 128, 96, fps=25))  # frame i carries i
    answers = {
        0: '{"place": "zoo", "place_sub": "aquarium", "setting": "indoor", "time_of_day": "day", "weather": null, '
           '"crowd": "dense", "decor": "modern", "decor_elements": ["glass_facade"], "city": "Lisbon", '
           '"region": "Portugal"}',
        50: 'Here you go: {"place": "museum", "time_of_day": "night"}',
        100: "A zoo, probably.",
        150: '{"place": "castle", "place_sub": null, "setting": "outdoor", "time_of_day": "day", "weather": "clear", '
             '"crowd": "empty", "decor": "baroque", "decor_elements": [], "city": null, "region": null}',
    }
    with FakeOpenAIServer(answer=lambda req: answers[req.codes[0] - req.codes[0] % 50]) as server:
        out = tmp_path / "out"
        r = curator("run", "-i", str(inp), "-o", str(out), "--runner", "local", "--set", "stages.order=[place_tag]",
                    "--set", "stages.place_tag.vlm.enabled=true", "--set", "stages.caption.backend=endpoint",
                    "--set", f"stages.caption.endpoint.url={server.url}", "--set", "stages.caption.model=tag-vlm",
                    "--set", "stages.caption.frame_size=[64,48]", "--set", "stages.split.method=fixed",
                    "--set", "stages.split.stride_s=2", "--set", "dedup.enabled=false", "--set", "run.shard=false")
    assert len(server.requests) == 4 and all('"place_sub"' in q.prompt for q in server.requests)
    got = {c["start_frame"]: c for c in clips(out)}
    assert all(c["status"] == "ok" and c["tag_model"] == "vlm:tag-vlm" for c in got.values())
    assert (got[0]["place"], got[0]["place_sub"], got[0]["city"], got[0]["region"], got[0]["weather"],
            got[0]["tag_error"]) == ("zoo", "aquarium", "Lisbon", "Portugal", None, None)
    assert got[50]["place"] == "museum" and got[50]["tag_error"].startswith("partial: missing place_sub, setting")
    assert got[100]["place"] is None and got[100]["tag_error"].startswith("invalid_json")
    assert got[150]["place"] is None and got[150]["crowd"] == "empty"
    assert 'place="castle"' in got[150]["tag_error"] and 'decor="baroque"' in got[150]["tag_error"]
    cov = curator("coverage", str(out), "--by", "place").stdout
    assert re.search(r"museum\s+1", cov) and re.search(r"zoo\s+1", cov) and re.search(r"\(none\)\s+2", cov)
    assert "4 kept clips" in r.stdout + cov
