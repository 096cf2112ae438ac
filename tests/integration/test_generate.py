"""`curator generate` through the real binary, with the stand-in generator (curator/testing/fake_generator.py)
as a command and as an HTTP service: prompts only for gaps, budgets held across reruns, provenance in the
manifest, shards and index, kill -9 and rerun, failures recorded while the loop goes on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curator.testing.synth import make_colour_video

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
FAKE = f"{PY} -m curator.testing.fake_generator"
SETS = ["--set", "stages.order=[embed]", "--set", "stages.split.method=fixed", "--set", "stages.split.stride_s=2",
        "--set", "stages.split.min_clip_s=1", "--set", "dedup.enabled=false", "--set", "run.log_level=WARNING"]


def curator(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    r = subprocess.run([PY, "-m", "curator", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"curator {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def command(log: Path, extra: str = "") -> str:
    return (f"{FAKE} --prompt {{prompt}} --negative_prompt {{negative_prompt}} --seed {{seed}} --output {{output}} "
            f"--log {log} {extra}")


def targets(path: Path, items: list[dict]) -> Path:
    path.write_text(json.dumps({"targets": items}))
    return path


def log_lines(log: Path) -> list[dict]:
    return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []


def ledger(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "generate" / "ledger.jsonl").read_text().splitlines()]


def status(out: Path) -> dict:
    return json.loads((out / "generate" / "status.json").read_text())


def counted(out: Path) -> dict:
    return {t["name"]: (t["clips"], t["met"]) for t in status(out)["coverage"]["targets"]}


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run: one video, two 2-s clips (no place tags)."""
    base = tmp_path_factory.mktemp("real")
    make_colour_video(str(base / "in" / "street.mp4"), [(90, 90, 90), (30, 30, 120)], width=64, height=48)
    curator("run", "-i", str(base / "in"), "-o", str(base / "run"), "--runner", "local", *SETS,
            "--set", "run.shard=false")
    return base / "run"


def test_gaps_only_budget_provenance_and_idempotent(real_run: Path, tmp_path: Path) -> None:
    log, out = tmp_path / "gen.log", tmp_path / "out"
    tf = targets(tmp_path / "targets.json", [
        {"where": {"place": "zoo"}, "min_clips": 2},
        {"where": {"place": "museum", "time_of_day": "night"}, "min_clips": 1},
        {"where": "clip_height >= 48", "min_clips": 2, "name": "met by real footage"},
        {"where": {"place": "hospital"}, "min_clips": 0, "name": "nothing wanted"},
    ])
    r = curator("generate", "--targets", str(tf), "-o", str(out), "--run", str(real_run), "--generator", "command",
                "--command", command(log), "--max-clips", "6", *SETS)
    lines = log_lines(log)
    # prompts only for the two gaps: two for the zoo, one for museum at night; none for met targets
    assert len(lines) == 3, r.stdout + r.stderr
    assert sum("zoo" in x["prompt"] for x in lines) == 2
    assert sum("museum" in x["prompt"] and "night" in x["prompt"] for x in lines) == 1
    assert not any("hospital" in x["prompt"] for x in lines)
    assert len({(x["prompt"], x["seed"]) for x in lines}) == 3
    st = status(out)
    assert st["stop_reason"] == "targets met" and st["generations_total"] <= 6
    assert counted(out) == {"place=zoo": (2, True), "place=museum, time_of_day=night": (1, True),
                            "met by real footage": (5, True), "nothing wanted": (0, True)}
    # provenance: manifest (video and clip rows), shards' sample json, index
    m = pq.read_table(out / "manifest.parquet").to_pylist()
    assert {row["origin"] for row in m} == {"generated"} and len(m) == 6
    for row in m:
        assert row["generator"] == "command" and row["prompt"] and isinstance(row["seed"], int)
        assert json.loads(row["target_cell"]) in ({"place": "zoo"}, {"place": "museum", "time_of_day": "night"})
    assert {(row["prompt"], row["seed"]) for row in m} == {(x["prompt"], x["seed"]) for x in lines}
    real = pq.read_table(real_run / "manifest.parquet", columns=["origin"]).column("origin").to_pylist()
    assert set(real) == {"real"}
    samples = []
    for tar in (out / "shards").rglob("*.tar"):
        with tarfile.open(tar) as tf_:
            samples += [json.load(tf_.extractfile(mem)) for mem in tf_.getmembers() if mem.name.endswith(".json")]
    assert len(samples) == 3
    assert all(s["origin"] == "generated" and s["target_cell"] and s["prompt"] and "seed" in s for s in samples)
    card = (out / "shards" / "README.md").read_text()
    assert "| `pretrain` | 0 | 0.0000 | 3 |" in card and "| command |" in card
    hits = json.loads(curator("search", str(out / "index"), "--where", "origin = 'generated'", "--json").stdout)
    assert len(hits) == 3 and all(h["target_cell"] and h["prompt"] for h in hits)
    # a second invocation: targets met, no generator call
    r2 = curator("generate", "--targets", str(tf), "-o", str(out), "--run", str(real_run), "--generator", "command",
                 "--command", command(log), "--max-clips", "6", *SETS)
    assert len(log_lines(log)) == 3 and "0 generator calls" in r2.stdout


def test_max_clips_and_budget_held_across_reruns(tmp_path: Path) -> None:
    log, out = tmp_path / "gen.log", tmp_path / "out"
    tf = targets(tmp_path / "t.yaml", [{"where": {"place": "zoo"}, "min_clips": 3},
                                       {"where": {"place": "city"}, "min_clips": 3}])
    args = ["generate", "--targets", str(tf), "-o", str(out), "--generator", "command", "--command", command(log),
            "--max-clips", "3", *SETS]
    r = curator(*args)
    assert len(log_lines(log)) == 3 and "--max-clips reached" in r.stdout
    # both gaps got a prompt before either got a second
    prompts = [x["prompt"] for x in log_lines(log)]
    assert any("zoo" in p for p in prompts) and any("city" in p for p in prompts)
    curator(*args)
    assert len(log_lines(log)) == 3  # the budget holds for the output, across reruns
    r3 = curator(*args[:-len(SETS) - 2], "--max-clips", "4", *SETS)  # a larger budget: one more
    assert len(log_lines(log)) == 4 and "generations started" in r3.stdout
    # --budget-s: generator seconds; a slow generator with a budget of ~2 calls
    log2, out2 = tmp_path / "gen2.log", tmp_path / "out2"
    curator("generate", "--targets", str(tf), "-o", str(out2), "--generator", "command",
            "--command", command(log2, "--sleep 1"), "--budget-s", "4", *SETS)
    spent = sum(float(e.get("wall_s") or 0) for e in ledger(out2))
    assert spent <= 4.0 and 1 <= len(log_lines(log2)) <= 3
    assert "budget-s spent" in status(out2)["stop_reason"] or status(out2)["stop_reason"].startswith("--budget")


def test_failures_are_recorded_and_the_loop_goes_on(tmp_path: Path) -> None:
    log, out = tmp_path / "gen.log", tmp_path / "out"
    tf = targets(tmp_path / "t.yaml", [{"where": {"place": p}, "min_clips": 1}
                                       for p in ("zoo", "museum", "hospital", "city")])
    r = curator("generate", "--targets", str(tf), "-o", str(out), "--generator", "command",
                "--command", command(log, "--fail-if museum --hang-if hospital --garbage-if city"),
                "--max-clips", "4", "--set", "generate.timeout_s=3", "--set", "generate.retries=1", *SETS)
    ev = ledger(out)
    failed = {e["id"]: e for e in ev if e["event"] == "failed"}
    started = {e["id"]: e["prompt"]["cell"]["place"] for e in ev if e["event"] == "started"}
    by_place = {started[i]: e for i, e in failed.items()}
    assert set(by_place) == {"museum", "hospital", "city"}, r.stdout + r.stderr
    assert by_place["museum"]["reason"] == "exit_code" and "injected failure" in by_place["museum"]["detail"]
    assert by_place["museum"]["attempts"] == 2  # retried once
    assert by_place["hospital"]["reason"] == "timeout" and by_place["hospital"]["attempts"] == 1
    assert by_place["city"]["reason"] == "invalid_output"
    assert counted(out)["place=zoo"] == (1, True)  # the loop went on: the zoo was generated and counted
    assert [e for e in ev if e["event"] == "done"] and "--max-clips reached" in status(out)["stop_reason"]


def test_kill_9_then_rerun_generates_nothing_twice(tmp_path: Path) -> None:
    tf = targets(tmp_path / "t.yaml", [{"where": {"place": "zoo"}, "min_clips": 3},
                                       {"where": {"place": "museum"}, "min_clips": 2}])
    log, out = tmp_path / "gen.log", tmp_path / "out"
    args = [PY, "-m", "curator", "generate", "--targets", str(tf), "-o", str(out), "--generator", "command",
            "--command", command(log, "--sleep 0.8"), "--max-clips", "8", *SETS]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while len(log_lines(log)) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    time.sleep(0.4)  # most likely mid-way through the third generation
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = len(log_lines(log))
    assert 2 <= before < 5
    curator(*args[3:])
    lines = log_lines(log)
    keys = [(x["prompt"], x["seed"]) for x in lines]
    assert len(keys) == len(set(keys)) == 5  # no prompt generated twice
    # an uninterrupted loop makes the same prompts, outputs and counts
    log2, out2 = tmp_path / "gen2.log", tmp_path / "out2"
    curator("generate", "--targets", str(tf), "-o", str(out2), "--generator", "command", "--command", command(log2),
            "--max-clips", "8", *SETS)
    assert set(keys) == {(x["prompt"], x["seed"]) for x in log_lines(log2)}
    assert counted(out) == counted(out2) == {"place=zoo": (3, True), "place=museum": (2, True)}
    assert sorted(os.listdir(out / "generate" / "videos")) == sorted(os.listdir(out2 / "generate" / "videos"))


def test_batch_command_one_call_for_a_round(tmp_path: Path) -> None:
    log, out = tmp_path / "gen.log", tmp_path / "out"
    tf = targets(tmp_path / "t.yaml", [{"where": {"place": ["zoo", "museum", "city"]}, "min_clips": 3}])
    r = curator("generate", "--targets", str(tf), "-o", str(out), "--generator", "command",
                "--command", command(log),
                "--batch-command", f"{FAKE} --batch_input_path {{batch_jsonl}} --video_save_folder {{output_dir}} "
                                   f"--log {log}", *SETS)
    lines = log_lines(log)
    assert len(lines) == 3 and len({x["pid"] for x in lines}) == 1  # one process made all three
    assert "1 generator calls" in r.stdout and counted(out)["place=zoo|museum|city"] == (3, True)


def test_endpoint_generator_and_upsampler(tmp_path: Path) -> None:
    from curator.testing.fake_generator import FakeGeneratorServer
    from curator.testing.openai_server import FakeOpenAIServer

    def behaviour(doc: dict) -> str:
        p = doc["prompt"]
        return "url" if "museum" in p else "garbage" if "hospital" in p else "error" if "city" in p else "bytes"

    log, out = tmp_path / "gen.log", tmp_path / "out"
    tf = targets(tmp_path / "t.yaml", [{"where": {"place": p}, "min_clips": 1}
                                       for p in ("zoo", "museum", "hospital", "city")])
    with FakeGeneratorServer(str(tmp_path / "served"), behaviour, log=str(log)) as gen, \
            FakeOpenAIServer(answer=lambda req: f"UPSAMPLED {req.prompt}") as llm:
        curator("generate", "--targets", str(tf), "-o", str(out), "--generator", "endpoint", "--endpoint", gen.url,
                "--max-clips", "4", "--concurrency", "2", "--set", f"generate.upsampler.url={llm.url}",
                "--set", "generate.upsampler.model=tiny", "--set", "generate.model=fake-t2w", *SETS)
        # 4 prompts; the two failing ones retried once (generate.retries=1)
        assert len(gen.requests) == 6 and len({d["id"] for d in gen.requests}) == 4
        assert all(d["prompt"].startswith("UPSAMPLED ") for d in gen.requests)
        assert all(isinstance(d["seed"], int) and d["negative_prompt"] for d in gen.requests)
        assert len(llm.requests) == 4
    ev = ledger(out)
    cells = {e["id"]: e["prompt"]["cell"]["place"] for e in ev if e["event"] == "started"}
    failed = {cells[e["id"]]: e["reason"] for e in ev if e["event"] == "failed"}
    assert failed == {"hospital": "invalid_output", "city": "endpoint_error"}
    m = [r for r in pq.read_table(out / "manifest.parquet").to_pylist() if r["kind"] == "clip"]
    assert len(m) == 2 and {r["gen_model"] for r in m} == {"fake-t2w"} and {r["generator"] for r in m} == {"endpoint"}
    assert all(r["prompt"].startswith("UPSAMPLED ") for r in m)


def test_verify_counts_only_agreeing_tags(tmp_path: Path) -> None:
    """verify on: generated clips count only when the tagger agrees with their cell. Without a place_tag
    stage their tags are empty, so nothing counts and the loop stops at its budget."""
    log, out = tmp_path / "gen.log", tmp_path / "out"
    tf = targets(tmp_path / "t.yaml", [{"where": {"place": "zoo"}, "min_clips": 1}])
    curator("generate", "--targets", str(tf), "-o", str(out), "--generator", "command", "--command", command(log),
            "--max-clips", "2", "--set", "generate.verify=true", *SETS)
    assert len(log_lines(log)) == 2 and counted(out) == {"place=zoo": (0, False)}
    assert "--max-clips reached" in status(out)["stop_reason"]


def test_video2world_condition_from_the_source(real_run: Path, tmp_path: Path) -> None:
    """{condition}: a kept real clip of the cell from --run, recorded in condition_clip."""
    log, out = tmp_path / "gen.log", tmp_path / "out"
    tf = targets(tmp_path / "t.yaml", [{"where": {"clip_height": 48}, "min_clips": 4}])  # the real run has 2
    curator("generate", "--targets", str(tf), "-o", str(out), "--run", str(real_run), "--generator", "command",
            "--command", command(log, "--input_image_or_video_path {condition}"), "--max-clips", "4", *SETS)
    real = {r["clip_uri"] for r in pq.read_table(real_run / "manifest.parquet").to_pylist()
            if r["kind"] == "clip" and r["status"] == "ok"}
    lines = log_lines(log)
    assert len(lines) == 2 and all(os.path.isfile(x["condition"]) for x in lines)
    m = [r for r in pq.read_table(out / "manifest.parquet").to_pylist() if r["kind"] == "clip"]
    assert len(m) == 2 and {r["condition_clip"] for r in m} == real  # variants 0 and 1: each real clip once


def _samples(out: Path) -> list[dict]:
    samples = []
    for tar in (out / "shards").rglob("*.tar"):
        with tarfile.open(tar) as tf_:
            samples += [json.load(tf_.extractfile(mem)) for mem in tf_.getmembers() if mem.name.endswith(".json")]
    return samples


def test_near_copy_of_an_indexed_clip_is_a_duplicate_and_the_loop_goes_on(real_run: Path, tmp_path: Path) -> None:
    """Generated clips are deduplicated against the source's index (here the index of --run): the stand-in
    generator answers the first zoo prompt with a re-encode of a real, indexed clip; that clip is marked
    duplicate_of_index in the manifest, is not counted nor sharded, and the next round makes another zoo
    prompt, which is kept like the museum's."""
    import shlex

    from curator import storage
    from curator.generate.prompts import make_prompt
    from curator.taxonomy import load_places

    tax = load_places()
    first, second = (make_prompt({"place": "zoo"}, v, tax).text for v in (0, 1))
    assert first != second and first not in second
    real = sorted((r for r in pq.read_table(real_run / "manifest.parquet").to_pylist()
                   if r["kind"] == "clip" and r["status"] == "ok"), key=lambda r: r["clip_id"])
    assert (real_run / "index" / "index.json").is_file()
    copied = real[0]
    log, out = tmp_path / "gen.log", tmp_path / "out"
    tf = targets(tmp_path / "t.yaml", [{"where": {"place": "zoo"}, "min_clips": 1},
                                       {"where": {"place": "museum"}, "min_clips": 1}])
    extra = f"--copy-from {shlex.quote(storage.local_path(copied['clip_uri']))} --copy-if {shlex.quote(first)}"
    r = curator("generate", "--targets", str(tf), "-o", str(out), "--run", str(real_run), "--generator", "command",
                "--command", command(log, extra), "--max-clips", "4", *SETS)
    prompts = [x["prompt"] for x in log_lines(log)]
    assert sorted(prompts) == sorted([first, second, make_prompt({"place": "museum"}, 0, tax).text]), r.stderr
    clips = [c for c in pq.read_table(out / "manifest.parquet").to_pylist() if c["kind"] == "clip"]
    dup = [c for c in clips if c["prompt"] == first]
    assert len(dup) == 1 and len(clips) == 3
    d = dup[0]
    assert (d["status"], d["stage"], d["reason"]) == ("rejected", "dedup", "duplicate_of_index")
    assert d["duplicate_of"] == copied["clip_id"] and d["similarity"] >= 0.8 and copied["clip_id"] in d["detail"]
    kept = [c for c in clips if c is not d]
    assert all(c["status"] == "ok" and c["duplicate_of"] is None for c in kept)
    # the real clip the copy was not made of is not matched either
    assert {c["clip_id"] for c in kept}.isdisjoint({x["clip_id"] for x in real})
    st = status(out)
    assert st["stop_reason"] == "targets met" and st["not_counted"] == {"duplicate_of_index": 1}
    assert st["reference_index"] == storage.normalize(str(real_run / "index"))
    assert counted(out) == {"place=zoo": (1, True), "place=museum": (1, True)}
    nc = [e for e in ledger(out) if e["event"] == "not_counted"]
    assert len(nc) == 1 and nc[0]["clip_id"] == d["clip_id"] and nc[0]["reason"] == "duplicate_of_index"
    samples = _samples(out)
    assert len(samples) == 2 and first not in {s["prompt"] for s in samples}
    # without the source's index (dedup_against_source off) the copy would have counted
    log2, out2 = tmp_path / "gen2.log", tmp_path / "out2"
    curator("generate", "--targets", str(tf), "-o", str(out2), "--run", str(real_run), "--generator", "command",
            "--command", command(log2, extra), "--max-clips", "4", "--set", "generate.dedup_against_source=false",
            *SETS)
    assert len(log_lines(log2)) == 2 and counted(out2) == {"place=zoo": (1, True), "place=museum": (1, True)}


def test_verify_with_a_trained_head_counts_agreeing_clips_and_records_a_mismatch(tmp_path: Path) -> None:
    """verify with a tagger that recognises the stand-in's footage: a place head trained on its renders
    (tiny random-weight CLIP embeddings, colour = place). A zoo prompt rendered in the museum's colour is
    tagged museum: it does not count (verify_mismatch, recorded) and the loop makes another zoo prompt,
    which the head tags zoo and which counts."""
    import shlex

    from curator.generate.prompts import make_prompt
    from curator.taxonomy import load_places
    from curator.testing import tiny_models
    from curator.testing.fake_generator import render

    model_dir = tmp_path / "models"
    name = tiny_models.build_open_clip(str(model_dir))
    tag_sets = ["--set", "stages.order=[embed,place_tag]", "--set", f"stages.embed.model={name}",
                "--set", f"models.dir={model_dir}", "--set", "stages.embed.device=cpu",
                "--set", "stages.embed.num_frames=4", "--set", "stages.place_tag.device=cpu",
                "--set", "stages.split.method=fixed", "--set", "stages.split.stride_s=2",
                "--set", "stages.split.min_clip_s=1", "--set", "dedup.enabled=false", "--set", "run.log_level=WARNING"]
    places = ("zoo", "museum", "hospital", "city")
    for place in places:
        for seed in (101, 202, 303):
            render(f"footage of a {place}", seed, str(tmp_path / "train" / f"{place}-{seed}.mp4"))
    run = tmp_path / "trainrun"
    curator("run", "-i", str(tmp_path / "train"), "-o", str(run), "--runner", "local", *tag_sets,
            "--set", "run.shard=false", "--set", "index.enabled=false")
    rows = [r for r in pq.read_table(run / "manifest.parquet").to_pylist() if r["kind"] == "clip"]
    assert len(rows) == 12
    labels = tmp_path / "labels.csv"
    labels.write_text("clip_id,place\n" + "".join(f"{r['clip_id']},{Path(r['source_key']).stem.split('-')[0]}\n"
                                                  for r in rows))
    curator("train-tag-head", str(run), "--labels", str(labels), "--epochs", "300", "--holdout", "0",
            "--set", f"models.dir={model_dir}")
    assert (model_dir / "place_tag" / "head.pt").is_file()

    tax = load_places()
    zoo0, zoo1 = (make_prompt({"place": "zoo"}, v, tax).text for v in (0, 1))
    log, out = tmp_path / "gen.log", tmp_path / "out"
    tf = targets(tmp_path / "t.yaml", [{"where": {"place": "zoo"}, "min_clips": 1},
                                       {"where": {"place": "museum"}, "min_clips": 1}])
    r = curator("generate", "--targets", str(tf), "-o", str(out), "--generator", "command",
                "--command", command(log, f"--as-place museum --as-if {shlex.quote(zoo0)}"), "--max-clips", "4",
                "--set", "generate.verify=true", *tag_sets)
    prompts = sorted(x["prompt"] for x in log_lines(log))
    assert prompts == sorted([zoo0, zoo1, make_prompt({"place": "museum"}, 0, tax).text]), r.stdout + r.stderr
    clips = {c["prompt"]: c for c in pq.read_table(out / "manifest.parquet").to_pylist() if c["kind"] == "clip"}
    assert all(c["status"] == "ok" and c["tag_source"] == "head" for c in clips.values())
    assert clips[zoo0]["place"] == "museum" and clips[zoo1]["place"] == "zoo"
    st = status(out)
    assert st["stop_reason"] == "targets met" and st["not_counted"] == {"verify_mismatch": 1}
    assert counted(out) == {"place=zoo": (1, True), "place=museum": (1, True)}
    nc = [e for e in ledger(out) if e["event"] == "not_counted"]
    assert len(nc) == 1 and nc[0]["clip_id"] == clips[zoo0]["clip_id"] and nc[0]["reason"] == "verify_mismatch"
    assert "place='museum'" in nc[0]["detail"] and "place='zoo'" in nc[0]["detail"]
