"""The trainer feed end to end: real videos through the local runner into tokenizer and
wfm shards for a pretrain and a finetune split, then read back with the loader."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from curator.config import PipelineConfig
from curator.driver import execute
from curator.loader import Loader, ShardDataset
from curator.phases import PhaseState
from curator.phases import shard as shard_phase
from curator.pipeline import PipelineError, build
from curator.rundir import RunDir
from curator.runners.local import LocalRunner

pytestmark = pytest.mark.integration

MEDIA = ["bikes.mp4", "carphone_pristine.mp4", "issue-134-rotate.mp4", "goldeneye-vfr-drop3.mp4"]
SETTINGS = [
    "run.runner=local", "stages.split.method=scenedetect",
    "shard.profile=[wfm, tokenizer]", "shard.samples_per_shard=2",
    "shard.splits={pretrain: {}, finetune: {where: ['clip_duration_s >= 3.5'], bucket_max: 2}}",
    "shard.tokenizer.short_side=64", "shard.tokenizer.max_frames=33", "shard.tokenizer.min_frames=9",
    "shard.tokenizer.fps=12",
]


def _config(inp, out, *extra):
    return PipelineConfig.load(None, SETTINGS + list(extra), input=str(inp), output=str(out))


@pytest.fixture(scope="module")
def run(media_dir, tmp_path_factory):
    """The default middle of the pipeline (built-in perceptual embedding, captions from a
    tiny random-weight VLM built here), then both profiles for a pretrain and a finetune set."""
    from curator.testing import tiny_models

    models = str(tmp_path_factory.mktemp("models"))
    tiny_models.build_vlm(models)
    inp = tmp_path_factory.mktemp("in")
    for name in MEDIA:
        shutil.copy(media_dir / name, inp / name)
    out = tmp_path_factory.mktemp("out") / "run"
    cfg = _config(inp, out, f"models.dir={models}", f"stages.caption.model={tiny_models.TINY_VLM_NAME}",
                  "stages.caption.max_tokens=6", "stages.caption.frame_size=[48,32]", "stages.caption.device=cpu")
    execute(build(cfg), LocalRunner())
    return out, cfg


def _kept(out):
    rows = pq.read_table(out / "manifest.parquet").to_pylist()
    return {r["clip_id"]: r for r in rows if r["kind"] == "clip" and r["status"] == "ok"}


def shard(out, cfg):
    return shard_phase.run(PhaseState(RunDir.of(str(out)), cfg, LocalRunner()))


# ------------------------------------------------------------------ a causal encoder
class CausalConv3d(nn.Module):
    """3x3x3 convolution, stride 2 in time and space; time is padded on the past side only."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, kernel_size=3, stride=2, padding=(0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 0, 0, 0, 2, 0)))  # (W, W, H, H, T past, T future)


def encoder() -> nn.Module:
    """8x spatial, 8x temporal: [B, 3, 1 + 8k, H, W] -> [B, 8, 1 + k, H/8, W/8]."""
    torch.manual_seed(0)
    return nn.Sequential(CausalConv3d(3, 8), nn.SiLU(), CausalConv3d(8, 8), nn.SiLU(), CausalConv3d(8, 8))


def test_the_encoder_is_causal():
    enc = encoder().eval()
    x = torch.randn(1, 3, 17, 32, 32)
    y = torch.randn_like(x)
    y[:, :, :9] = x[:, :, :9]  # same past up to frame 8, different future
    with torch.no_grad():
        a, b = enc(x), enc(y)
    assert a.shape == (1, 8, 3, 4, 4)
    assert torch.equal(a[:, :, :2], b[:, :, :2]) and not torch.equal(a[:, :, 2], b[:, :, 2])


# ---------------------------------------------------------------------------- tests
def test_every_tokenizer_bucket_feeds_a_causal_encoder(run):
    out, _ = run
    index = json.loads((out / "shards" / "pretrain" / "tokenizer" / "index.json").read_text())
    assert len(index["buckets"]) >= 5  # four videos: several sizes and window lengths
    enc = encoder().eval()
    seen = 0
    for bucket, info in index["buckets"].items():
        ds = ShardDataset(str(out), split="pretrain", profile="tokenizer", buckets=[bucket], batch_size=2,
                          decode="float")
        for batch in ds:
            x = batch["video"]
            b, t, c, h, w = x.shape
            assert batch["bucket"] == bucket and (t, h, w) == (info["frames"], info["height"], info["width"])
            assert c == 3 and (t - 1) % 8 == 0 and h % 16 == 0 and w % 16 == 0
            assert x.dtype == torch.float32 and -1.0 <= x.min() and x.max() <= 1.0
            with torch.no_grad():
                z = enc(x.permute(0, 2, 1, 3, 4))
            assert z.shape == (b, 8, 1 + (t - 1) // 8, h // 8, w // 8)
            seen += b
    assert seen == index["samples"]


def test_tokenizer_samples_are_windows_of_the_clips(run):
    out, cfg = run
    kept = _kept(out)
    ds = ShardDataset(str(out), split="pretrain", profile="tokenizer", decode="uint8")
    by_clip: dict[str, list] = {}
    for s in ds:
        v, meta, win = s["video"], s["meta"], s["meta"]["window"]
        assert v.dtype == torch.uint8 and v.shape[1] == 3
        assert v.shape[0] == win["num_frames"] and (v.shape[0] - 1) % 8 == 0 and v.shape[0] <= 33
        assert (v.shape[3], v.shape[2]) == (win["width"], win["height"]) and win["fps"] == 12.0
        assert s["key"] == f"{meta['clip_id']}-w{win['index']:03d}"
        by_clip.setdefault(meta["clip_id"], []).append(win)
    assert set(by_clip) == set(kept)
    for clip_id, wins in by_clip.items():
        wins.sort(key=lambda w: w["index"])
        assert [w["start_frame"] for w in wins] == [33 * i for i in range(len(wins))]  # no overlap
        clip = kept[clip_id]
        assert wins[-1]["end_s"] <= clip["clip_duration_s"] + 1 / 12
        ratio = wins[0]["width"] / wins[0]["height"]
        assert (ratio > 1) == (clip["clip_width"] > clip["clip_height"])  # the rotated clip stays portrait


def test_samples_carry_the_clip_caption_embedding_and_metadata(run):
    out, _ = run
    kept = _kept(out)
    assert all(r["caption"] and r["embedding"] for r in kept.values())  # the stages ran
    for profile in ("wfm", "tokenizer"):
        for s in ShardDataset(str(out), split="pretrain", profile=profile, decode="none"):
            row = kept[s["meta"]["clip_id"]]
            assert s["caption"] == row["caption"]  # windows inherit their clip's caption (<key>.txt)
            assert s["embedding"].dtype == torch.float32 and s["embedding"].shape == (len(row["embedding"]),)
            assert torch.allclose(s["embedding"], torch.tensor(row["embedding"], dtype=torch.float32))
            assert s["meta"]["clip_duration_s"] == row["clip_duration_s"] and "embedding" not in s["meta"]
            assert s["video"][4:8] == b"ftyp"
    import tarfile

    for tar_path in (out / "shards" / "pretrain" / "tokenizer").rglob("*.tar"):
        with tarfile.open(tar_path) as tar:
            names = tar.getnames()
        order = [n.split(".")[0] for n in names]
        runs = [k for i, k in enumerate(order) if i == 0 or order[i - 1] != k]
        assert len(runs) == len(set(runs))  # a sample's members are adjacent (webdataset reads them so)
        assert {f"{k}.{ext}" for k in runs for ext in ("mp4", "json", "txt")} == set(names)


def test_splits_hold_the_right_clips(run):
    out, _ = run
    kept = _kept(out)
    long_ = {k for k, r in kept.items() if r["clip_duration_s"] >= 3.5}
    assert 0 < len(long_) < len(kept)
    pre = ShardDataset(str(out), split="pretrain", profile="wfm")
    fine = ShardDataset(str(out), split="finetune", profile="wfm")
    assert sorted(pre.keys()) == sorted(kept)
    fine_keys = fine.keys()
    assert set(fine_keys) <= long_
    # at most 2 per bucket
    buckets = json.loads((out / "shards" / "finetune" / "wfm" / "index.json").read_text())["buckets"]
    assert all(b["samples"] <= 2 for b in buckets.values())
    assert sum(b["samples"] for b in buckets.values()) == len(fine_keys)
    fine_tok = ShardDataset(str(out), split="finetune", profile="tokenizer").keys()
    assert {k.rsplit("-w", 1)[0] for k in fine_tok} == set(fine_keys)
    card = (out / "shards" / "README.md").read_text()
    assert f"{len(fine_keys)} of {len(kept)} kept clips selected" in card
    assert "`clip_duration_s >= 3.5`" in card and "at most 2 clips per bucket" in card
    top = json.loads((out / "shards" / "index.json").read_text())
    assert set(top["splits"]) == {"pretrain", "finetune"} and set(top["splits"]["pretrain"]) == {"wfm", "tokenizer"}
    assert top["clips"] == len(kept)  # distinct clips over every split and profile (the report's funnel)


def test_a_rule_on_a_missing_column_stops_before_writing(run, tmp_path):
    out, _ = run
    before = sorted(p.relative_to(out) for p in (out / "shards").rglob("*"))
    cfg = _config("x", out, "shard.splits={finetune: {where: ['no_such_score >= 0.7']}}")
    with pytest.raises(PipelineError, match="column 'no_such_score' is not in the manifest"):
        shard(out, cfg)
    assert sorted(p.relative_to(out) for p in (out / "shards").rglob("*")) == before


@pytest.mark.parametrize("world", [2])
def test_two_workers_on_two_ranks_read_disjoint_samples(run, world):
    out, _ = run
    everything = ShardDataset(str(out), split="pretrain", profile="tokenizer").keys()
    seen = []
    for rank in range(world):
        ds = ShardDataset(str(out), split="pretrain", profile="tokenizer", rank=rank, world_size=world,
                          shuffle_buffer=4, seed=2)
        keys = [s["key"] for s in Loader(ds, num_workers=2)]
        assert len(keys) == ds.num_samples()
        seen.append(keys)
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == sorted(everything)


def test_restarting_from_a_saved_position_yields_the_remaining_samples(run):
    out, _ = run
    kw = dict(split="pretrain", profile="tokenizer", batch_size=2, shuffle_buffer=3, seed=4)
    ref = [tuple(b["key"]) for b in ShardDataset(str(out), **kw)]
    loader = Loader(ShardDataset(str(out), **kw))
    head = []
    for b in loader:
        head.append(tuple(b["key"]))
        if len(head) == 3:
            break
    saved = json.loads(json.dumps(loader.state_dict()))  # a checkpoint survives JSON
    ds = ShardDataset(str(out), **kw)
    ds.load_state_dict(saved)
    rest = [tuple(b["key"]) for b in Loader(ds)]
    assert head + rest == ref


def test_tokenizer_shards_are_byte_identical_for_the_same_manifest(run, tmp_path):
    out, cfg = run
    other = tmp_path / "again"
    other.mkdir()
    for name in ("manifest.parquet", "config.yaml"):  # clip_uri still points at the staged clips
        shutil.copy(out / name, other / name)
    results = shard(other, cfg)
    assert results and not any(r["skipped"] for r in results)

    def files(d):
        return {str(p.relative_to(d / "shards")): p.read_bytes() for p in sorted((d / "shards").rglob("*")) if p.is_file()}

    a, b = files(out), files(other)
    assert a.keys() == b.keys() and any(k.startswith("pretrain/tokenizer/") for k in a)
    assert [k for k in a if a[k] != b[k]] == []
    # a rerun finds every shard complete and rewrites nothing
    again = shard(other, cfg)
    assert all(r["skipped"] for r in again) and files(other) == b


def test_the_s3_emulator_and_local_disk_give_identical_samples(run, moto_s3):
    from curator import storage
    from curator.testing.fixtures import bucket_name, storage_config

    out, _ = run
    cfg = storage_config(moto_s3)
    storage.configure(cfg)
    try:
        bucket = bucket_name()
        moto_s3.create_bucket(bucket)
        root = f"s3://{bucket}/curated/run1"
        for p in sorted((out / "shards").rglob("*")):
            if p.is_file():  # through curator.storage, as a user would publish them
                storage.write_bytes(f"{root}/shards/{p.relative_to(out / 'shards')}", p.read_bytes())
        kw = dict(split="pretrain", profile="tokenizer", batch_size=2, shuffle_buffer=3, seed=9)

        def samples(batches):
            return {k: (b["video"][i], b["meta"][i], b["bucket"]) for b in batches for i, k in enumerate(b["key"])}

        local = list(ShardDataset(str(out), **kw))
        remote_ds = ShardDataset(root, storage_config=cfg, **kw)
        assert remote_ds.index_uri == f"{root}/shards/pretrain/tokenizer/index.json"
        remote = list(remote_ds)
        assert [b["key"] for b in remote] == [b["key"] for b in local]  # same batches, same order
        two_workers = list(Loader(ShardDataset(root, storage_config=cfg, **kw), num_workers=2))
        a = samples(local)
        for other in (samples(remote), samples(two_workers)):
            assert other.keys() == a.keys()
            for k, (video, meta, bucket) in other.items():
                assert torch.equal(video, a[k][0]) and meta == a[k][1] and bucket == a[k][2]
    finally:
        storage.configure(None)


def test_curator_shard_reuses_the_run_config_and_removes_what_a_new_plan_drops(run, tmp_path):
    import subprocess
    import sys

    out, _ = run
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("manifest.parquet", "config.yaml"):
        shutil.copy(out / name, copy / name)
    shutil.copytree(out / "shards", copy / "shards")
    before = {p: p.stat().st_mtime_ns for p in (copy / "shards").rglob("*.tar")}
    root = Path(__file__).resolve().parents[2]

    def cli(*args):
        proc = subprocess.run([sys.executable, "-m", "curator", "shard", str(copy), *args], cwd=root,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    text = cli()  # profiles and splits come from the run's config.yaml: nothing to redo
    assert "pretrain/tokenizer" in text and "finetune/wfm" in text
    assert {p: p.stat().st_mtime_ns for p in (copy / "shards").rglob("*.tar")} == before
    cli("--set", "shard.profile=wfm")
    assert not list((copy / "shards").rglob("*_t*/*.tar")) and not (copy / "shards/pretrain/tokenizer/index.json").exists()
    top = json.loads((copy / "shards" / "index.json").read_text())
    assert {p for s in top["splits"].values() for p in s} == {"wfm"}
