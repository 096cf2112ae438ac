"""Latent shards end to end: real videos through the local runner into tokenizer windows and
their latents (a tiny causal TorchScript tokenizer standing in for the Cosmos Tokenizer at
its registered id), read back with the loader, re-sharded with the CLI (discrete indices),
checked with `curator latents verify`, and written once more by the Ray runner."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from curator.config import PipelineConfig
from curator.driver import execute
from curator.loader import ShardDataset
from curator.media import windows as win
from curator.models import registry
from curator.phases import PhaseState
from curator.phases import shard as shard_phase
from curator.pipeline import build
from curator.rundir import RunDir
from curator.runners.local import LocalRunner
from curator.testing import tiny_tokenizer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MEDIA = ["bikes.mp4", "carphone_pristine.mp4"]
MODEL = "cosmos-tokenizer:CV8x8x8"
SETTINGS = [
    "run.runner=local", "stages.split.method=scenedetect", "stages.order=[]", "dedup.enabled=false",
    "index.enabled=false", "shard.profile=[tokenizer, latent]", "shard.samples_per_shard=2",
    "shard.tokenizer.short_side=64", "shard.tokenizer.max_frames=33", "shard.tokenizer.min_frames=9",
    "shard.tokenizer.fps=12", f"shard.latent.model={MODEL}", "shard.latent.batch_size=2",
]


@pytest.fixture(scope="module")
def run(media_dir, tmp_path_factory):
    """Two videos (several shots, two aspect ratios) curated into tokenizer and latent shards;
    the tokenizer is a tiny stand-in saved where `cosmos-tokenizer:CV8x8x8` is read."""
    models = tmp_path_factory.mktemp("models")
    tiny_tokenizer.install(str(models), MODEL)
    tiny_tokenizer.build(str(models / "tiny-dv"), "discrete")
    tiny_tokenizer.build(str(models / "wrong-cv"), seed=1)  # same shapes, another colour mix
    inp = tmp_path_factory.mktemp("in")
    for name in MEDIA:
        shutil.copy(media_dir / name, inp / name)
    out = tmp_path_factory.mktemp("out") / "run"
    cfg = PipelineConfig.load(None, SETTINGS + [f"models.dir={models}"], input=str(inp), output=str(out))
    execute(build(cfg), LocalRunner())
    return out, cfg, models


def _index(out: Path, profile: str, split: str = "pretrain") -> dict:
    return json.loads((out / "shards" / split / profile / "index.json").read_text())


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "curator", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def _copy_run(out: Path, dest: Path) -> Path:
    """A run folder with the manifest, config and staged clips (no shards)."""
    dest.mkdir()
    for name in ("manifest.parquet", "config.yaml"):
        shutil.copy(out / name, dest / name)
    shutil.copytree(out / "staging", dest / "staging")
    return dest


# ----------------------------------------------------------------------------- shapes
def test_every_bucket_holds_the_latents_of_the_tokenizer_windows(run):
    out, _, _ = run
    lat, tok = _index(out, "latent"), _index(out, "tokenizer")
    assert set(lat["buckets"]) == set(tok["buckets"]) and len(lat["buckets"]) >= 3  # sizes and window lengths
    assert lat["latent"]["tokenizer"] == MODEL and lat["latent"]["revision"].startswith("sha256:")
    seen = []
    for bucket, info in lat["buckets"].items():
        t, h, w = info["frames"], info["height"], info["width"]
        shape = [16, 1 + (t - 1) // 8, h // 8, w // 8]  # [C, 1 + T/8, H/8, W/8] for T + 1 frames
        assert info["latent"] == {"shape": shape, "dtype": "float16", "kind": "continuous"}
        ds = ShardDataset(str(out), split="pretrain", profile="latent", buckets=[bucket], batch_size=2)
        for batch in ds:
            z = batch["latent"]
            assert batch["bucket"] == bucket and batch["video"] is None
            assert list(z.shape) == [len(batch["key"]), *shape] and z.dtype == torch.float16
            for meta in batch["meta"]:
                assert meta["latent"]["shape"] == shape and meta["window"]["num_frames"] == t
            seen += batch["key"]
    assert sorted(seen) == sorted(ShardDataset(str(out), split="pretrain", profile="tokenizer").keys())


def test_a_latent_is_the_encoder_applied_to_its_source_window(run):
    """The stored latent equals the eager tokenizer applied to the window cut again from the
    staged clip at the recorded span: alignment, resampling and crop are right."""
    out, _, models = run
    ds = ShardDataset(str(out), split="pretrain", profile="latent")
    encoder = tiny_tokenizer.modules("continuous", **_stand_in_args())[0]
    checked = 0
    for s in ds:
        meta, lat = s["meta"], s["meta"]["latent"]
        w, src = meta["window"], lat["source"]
        assert src["clip_id"] == meta["clip_id"] and src["video_id"] == meta["video_id"]
        fps = w["fps"]
        assert src["start_frame"] == win.source_index(w["start_frame"], win.rate(meta["clip_fps"]), win.rate(fps))
        assert src["end_frame"] <= meta["clip_frames"] and src["video_start_frame"] == meta["start_frame"] + src["start_frame"]
        mp4 = RunDir.of(str(out)).clip(src["video_id"], src["clip_id"])
        (_, frames), = win.window_arrays(Path(mp4.removeprefix("file://")).read_bytes(),
                                         [win.Window(w["index"], w["start_frame"], w["num_frames"])],
                                         src_fps=win.rate(meta["clip_fps"]), dst_fps=win.rate(fps),
                                         size=(w["width"], w["height"]))
        x = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
        with torch.no_grad():
            want = encoder(x)[0][0]
        assert torch.allclose(s["latent"].float(), want, atol=2e-3, rtol=2e-3)
        other = torch.roll(x, 8, dims=2)  # a window off by 8 frames encodes differently
        assert not torch.allclose(s["latent"].float(), encoder(other)[0][0], atol=2e-3, rtol=2e-3)
        checked += 1
        if checked == 3:
            break
    assert checked == 3


def _stand_in_args() -> dict:
    return {"channels": 16, "spatial": 8, "temporal": 8}


# ----------------------------------------------------------------------------- loader
def test_the_loader_batches_latents_and_resumes_exactly(run):
    out, _, _ = run
    kw = dict(split="pretrain", profile="latent", batch_size=2, shuffle_buffer=3, seed=5)
    ref = list(ShardDataset(str(out), **kw))
    assert all(len({tuple(z.shape) for z in b["latent"]}) == 1 for b in ref)  # bucket-pure, stacked
    from curator.loader import Loader

    loader = Loader(ShardDataset(str(out), **kw))
    head = []
    for b in loader:
        head.append(b)
        if len(head) == 2:
            break
    saved = json.loads(json.dumps(loader.state_dict()))
    ds = ShardDataset(str(out), **kw)
    ds.load_state_dict(saved)
    got = head + list(Loader(ds))
    assert [b["key"] for b in got] == [b["key"] for b in ref]
    assert all(torch.equal(a["latent"], b["latent"]) for a, b in zip(got, ref))
    # two ranks read disjoint samples whose union is the split
    keys = [[k for b in ShardDataset(str(out), rank=r, world_size=2, **kw) for k in b["key"]] for r in (0, 1)]
    assert not set(keys[0]) & set(keys[1])
    assert sorted(keys[0] + keys[1]) == sorted(k for b in ref for k in b["key"])


def test_card_and_indexes_give_bytes_per_sample_video_against_latent(run):
    out, _, _ = run
    lat = _index(out, "latent")
    top = json.loads((out / "shards" / "index.json").read_text())
    assert set(top["splits"]["pretrain"]) == {"tokenizer", "latent"}
    for b, info in lat["buckets"].items():
        per = info["member_bytes"]["latent.npy"] / info["samples"]
        assert per == 128 + 2 * np.prod(info["latent"]["shape"])  # .npy header + float16 values
        assert "mp4" not in info["member_bytes"]  # keep_video is off
    card = (out / "shards" / "README.md").read_text()
    assert "## Latent profile" in card and "latent B/sample" in card and "H.264 B/sample" in card
    row = next(line for line in card.splitlines() if line.startswith("| 80x64_t33 |") and "float16" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "16x5x8x10" and int(cells[6].replace(",", "")) == 128 + 2 * 16 * 5 * 8 * 10
    assert int(cells[7].replace(",", "")) > 0 and cells[8] == f"{33 * 64 * 80 * 3:,}"


# ------------------------------------------------------------------- curator latents verify
def test_latents_verify_decodes_a_sample_and_reports_psnr(run, capsys):
    from curator.cli import main

    out, _, models = run
    good = cli("latents", "verify", str(out), "--sample", "4", "--json")  # the installed command
    assert good.returncode == 0, good.stderr
    rep = json.loads(good.stdout)
    assert rep["samples"] == 4 and rep["decoders"] == {MODEL: str(Path(registry.model_path(MODEL, str(models)))
                                                                  / "decoder.jit")}
    assert rep["mean_psnr_db"] > 16, rep  # 8x8x8 averaging of real footage at 64 px, decoded by nearest upsampling
    assert main(["latents", "verify", str(out), "--sample", "4", "--json",
                 "--set", f"shard.latent.decoder={models / 'wrong-cv'}"]) == 0
    wrong = json.loads(capsys.readouterr().out)
    assert wrong["mean_psnr_db"] < rep["mean_psnr_db"] - 3  # a mismatched decoder shows
    assert main(["latents", "verify", str(out), "--sample", "4", "--min-psnr", str(rep["mean_psnr_db"] + 1)]) == 1
    text = capsys.readouterr()
    assert "below --min-psnr" in text.err and f"mean PSNR {rep['mean_psnr_db']:.2f} dB" in text.out


def test_discrete_latents_through_curator_shard(run, tmp_path):
    """`curator shard` with a discrete tokenizer (256 codes): uint8 indices [1 + T/8, H/8, W/8],
    int64 from the loader, and verify decodes them."""
    out, _, models = run
    copy = _copy_run(out, tmp_path / "copy")
    r = cli("shard", str(copy), "--set", "shard.profile=latent", "--set", f"shard.latent.model={models / 'tiny-dv'}",
            "--set", "shard.latent.keep_video=true")
    assert r.returncode == 0, r.stderr
    lat = _index(copy, "latent")
    card = (copy / "shards" / "README.md").read_text()
    assert "discrete, revision `sha256:" in card and "codebook 256" in card and "Each window's mp4 is kept" in card
    assert lat["latent"]["kind"] == "discrete" and lat["latent"]["codebook_size"] == 256
    for bucket, info in lat["buckets"].items():
        t, h, w = info["frames"], info["height"], info["width"]
        assert info["latent"] == {"shape": [1 + (t - 1) // 8, h // 8, w // 8], "dtype": "uint8", "kind": "discrete"}
        assert info["member_bytes"]["latent.npy"] == info["samples"] * (128 + np.prod(info["latent"]["shape"]))
        assert info["member_bytes"]["mp4"] > 0  # keep_video: the window's mp4 beside its indices
        for batch in ShardDataset(str(copy), split="pretrain", profile="latent", buckets=[bucket], batch_size=4):
            assert batch["latent"].dtype == torch.int64 and list(batch["latent"].shape[1:]) == info["latent"]["shape"]
            assert 0 <= int(batch["latent"].min()) and int(batch["latent"].max()) < 256
            assert tuple(batch["video"].shape[1:]) == (t, 3, h, w)  # decoded like a tokenizer sample
    v = cli("latents", "verify", str(copy), "--sample", "3", "--json")
    assert v.returncode == 0, v.stderr
    assert json.loads(v.stdout)["mean_psnr_db"] > 14


# ------------------------------------------------------------------------- reruns, Ray
def test_a_rerun_skips_latent_shards_and_new_weights_rewrite_them(run, tmp_path):
    out, cfg, models = run
    own_models = tmp_path / "models"
    shutil.copytree(models, own_models)
    copy = _copy_run(out, tmp_path / "copy")
    c = PipelineConfig.load(None, SETTINGS + [f"models.dir={own_models}"], input=cfg.input, output=str(copy))

    def shard():
        return shard_phase.run(PhaseState(RunDir.of(str(copy)), c, LocalRunner()))

    first = shard()
    assert first and not any(r["skipped"] for r in first)
    assert all(r["skipped"] for r in shard())
    tiny_tokenizer.install(str(own_models), MODEL, seed=3)  # new weights at the same id
    again = shard()
    assert {r["profile"] for r in again if not r["skipped"]} == {"latent"}
    assert all(r["skipped"] for r in again if r["profile"] == "tokenizer")


def test_latent_shards_under_the_ray_runner(run, tmp_path, ray_session):
    """The same shards from Ray tasks that carry shard.latent.resources (CPU here)."""
    from curator.runners.ray import RayRunner

    out, cfg, models = run
    copy = _copy_run(out, tmp_path / "copy")
    c = PipelineConfig.load(None, SETTINGS + [f"models.dir={models}", "shard.profile=latent", "run.runner=ray",
                                              "shard.latent.resources.num_cpus=0.5"],
                            input=cfg.input, output=str(copy))
    results = shard_phase.run(PhaseState(RunDir.of(str(copy)), c, RayRunner(c.run)))
    assert results and all(r["profile"] == "latent" for r in results)
    for r in results:  # byte-identical to the local runner's shards
        rel = Path("shards") / r["shard"]
        assert (copy / rel).read_bytes() == (out / rel).read_bytes()
    assert os.path.exists(copy / "shards" / "README.md")
