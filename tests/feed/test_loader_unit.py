"""The loader's bookkeeping on a synthetic shard set: partitioning over ranks and workers,
bucket-pure batches, exact sizes, seeded shuffling and resuming at any point."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from curator.config import ShardConfig
from curator.loader import Loader, ShardDataset, _Order, open_index
from curator.phases import shard as shard_stage

pytestmark = pytest.mark.unit


def _rows(tmp_path, n):
    rows = []
    sizes = [(640, 360), (1920, 1080), (480, 640)]
    for i in range(n):
        w, h = sizes[i % 3]
        clip = tmp_path / "clips" / f"c{i:03d}.mp4"
        clip.parent.mkdir(exist_ok=True)
        clip.write_bytes(f"clip {i}".encode() * (i + 1))
        row = {"clip_id": f"v{i:03d}-00000", "clip_width": w, "clip_height": h, "clip_duration_s": 3.0,
               "clip_bytes": clip.stat().st_size, "clip_uri": "file://" + str(clip), "status": "ok"}
        if i % 2 == 0:  # every other clip was captioned and embedded
            row["caption"] = f"caption of clip {i}"
            row["embedding"] = [float(i), 1.0, -1.0]
        rows.append(row)
    return rows


def _text(row):
    return [(f"{row['clip_id']}.txt", row["caption"].encode())] if row.get("caption") else []


def make_shards(tmp_path, n=31, per_shard=4):
    out = tmp_path / "run"
    cfg = ShardConfig(samples_per_shard=per_shard)
    results = [shard_stage.write_shard(spec, "file://" + str(out), extra_files=_text)
               for spec in shard_stage.plan(_rows(tmp_path, n), cfg)]
    shard_stage.write_indexes("file://" + str(out), shard_stage.build_indexes(results, cfg))
    return out


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_shards(tmp_path_factory.mktemp("loader"))


def _ds(shards, **kw):
    kw.setdefault("decode", "none")
    return ShardDataset(str(shards), split="pretrain", **kw)


def _keys(items):
    return [tuple(b["key"]) if isinstance(b["key"], list) else b["key"] for b in items]


def test_order_is_a_seeded_permutation_within_the_buffer():
    out = list(_Order(10, 60, 8, random.Random(3)))
    assert sorted(out) == list(range(10, 60)) and out != list(range(10, 60))
    assert out == list(_Order(10, 60, 8, random.Random(3)))
    # the k-th output is never more than buffer-1 positions ahead of the input
    assert all(k < 10 + i + 8 for i, k in enumerate(out))
    assert list(_Order(0, 5, 0, random.Random(1))) == [0, 1, 2, 3, 4]


def test_index_resolution(shards):
    uri, doc = open_index(str(shards))
    assert uri.endswith("shards/pretrain/wfm/index.json") and doc["samples"] == 31
    assert open_index(str(shards / "shards"))[0] == uri and open_index(uri)[0] == uri
    with pytest.raises(ValueError, match="no split 'finetune'.*pretrain"):
        open_index(str(shards), split="finetune")
    with pytest.raises(ValueError, match="no profile 'tokenizer'"):
        open_index(str(shards), profile="tokenizer")
    with pytest.raises(FileNotFoundError, match="no shard index"):
        open_index(str(shards / "nowhere"))


def test_samples_carry_caption_embedding_and_metadata(shards):
    got = {s["key"]: s for s in _ds(shards)}
    assert len(got) == 31
    for key, s in got.items():
        i = int(key[1:4])
        assert s["video"] == f"clip {i}".encode() * (i + 1)
        assert s["meta"]["clip_id"] == key and "embedding" not in s["meta"]
        if i % 2 == 0:
            assert s["caption"] == f"caption of clip {i}"
            assert s["embedding"].tolist() == [float(i), 1.0, -1.0]
        else:
            assert s["caption"] is None and s["embedding"] is None


@pytest.mark.parametrize("world", [1, 2, 3])
def test_ranks_read_disjoint_slices_whose_union_is_everything(shards, world):
    seen = []
    for rank in range(world):
        ds = _ds(shards, rank=rank, world_size=world, shuffle_buffer=5, seed=7)
        keys = [s["key"] for s in ds]
        assert len(keys) == ds.num_samples() == len(ds)
        seen += keys
    assert sorted(seen) == sorted(_ds(shards).keys()) and len(set(seen)) == len(seen)


def test_batches_never_mix_buckets_and_sizes_are_exact(shards):
    for drop_last in (False, True):
        ds = _ds(shards, batch_size=3, shuffle_buffer=6, seed=1, drop_last=drop_last)
        n = len(ds)
        batches = list(ds)
        assert len(batches) == n
        for b in batches:
            assert len({m["clip_width"] for m in b["meta"]}) == 1 and len(b["key"]) <= 3
            assert all(k[:4] in {x[:4] for x in b["key"]} for k in b["key"])
        per_bucket = Counter(b["bucket"] for b in batches)
        assert set(per_bucket) == set(ds.buckets)
        if drop_last:
            assert all(len(b["key"]) == 3 for b in batches)
        else:
            assert sum(len(b["key"]) for b in batches) == 31


def test_epochs_reshuffle_the_same_set_and_the_seed_fixes_the_order(shards):
    a = _ds(shards, shuffle_buffer=4, seed=5)
    e0, e1 = [s["key"] for s in a], [s["key"] for s in a]  # a full pass moves to the next epoch
    assert a.epoch == 2 and e0 != e1 and sorted(e0) == sorted(e1)
    assert [s["key"] for s in _ds(shards, shuffle_buffer=4, seed=5)] == e0
    assert [s["key"] for s in _ds(shards, shuffle_buffer=4, seed=6)] != e0


@pytest.mark.parametrize("batch_size", [None, 3])
def test_resuming_at_any_point_yields_exactly_the_rest(shards, batch_size):
    kw = dict(batch_size=batch_size, shuffle_buffer=5, seed=11, rank=1, world_size=2)
    ref = _keys(_ds(shards, **kw))
    for cut in range(len(ref) + 1):
        ds = _ds(shards, **kw)
        it = iter(ds)
        head = [next(it) for _ in range(cut)]
        state = ds.state_dict()
        again = _ds(shards, **kw)
        again.load_state_dict(state)
        assert _keys(head) + _keys(again) == ref, cut


def test_resuming_with_two_workers(shards):
    kw = dict(batch_size=2, shuffle_buffer=4, seed=3)
    ref = _keys(Loader(_ds(shards, **kw), num_workers=2))
    assert sorted(k for b in ref for k in b) == sorted(_ds(shards).keys())
    for cut in (1, 4, 7):
        loader = Loader(_ds(shards, **kw), num_workers=2)
        head = []
        for b in loader:
            head.append(tuple(b["key"]))
            if len(head) == cut:
                break
        state = loader.state_dict()
        ds = _ds(shards, **kw)
        ds.load_state_dict(state)
        rest = _keys(Loader(ds, num_workers=2))
        assert Counter(head + rest) == Counter(ref), cut
        with pytest.raises(ValueError, match="same number"):
            bad = _ds(shards, **kw)
            bad.load_state_dict(state)
            list(bad)  # one worker in this process, the state is for two


def test_state_from_another_dataset_is_refused(shards, tmp_path):
    state = _ds(shards, shuffle_buffer=2, seed=1).state_dict()
    with pytest.raises(ValueError, match="seed"):
        _ds(shards, shuffle_buffer=2, seed=2).load_state_dict(state)
    with pytest.raises(ValueError, match="world_size"):
        _ds(shards, seed=1, rank=0, world_size=2).load_state_dict(state)


def test_reads_are_ranged_and_grouped(shards, monkeypatch):
    from curator import storage

    calls = []
    real = storage.read_range
    monkeypatch.setattr(storage, "read_range", lambda uri, a, b=None: calls.append((uri, a, b)) or real(uri, a, b))
    list(_ds(shards))
    shard_count = len(_ds(shards).shards)
    assert len(calls) == shard_count  # one read per shard: its samples are adjacent
    assert all(b is not None for _, _, b in calls)
    calls.clear()
    list(_ds(shards, read_mb=1e-6))  # tiny reads: one per sample
    assert len(calls) == 31


def test_a_damaged_index_is_reported(shards, tmp_path):
    import json
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(shards, copy)
    idx = next((copy / "shards" / "pretrain" / "wfm").rglob("shard-000000.json"))
    doc = json.loads(idx.read_text())
    doc["members"] = doc["members"][:-1]
    idx.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="members, split index says"):
        list(_ds(copy))
    np.testing.assert_equal(len(_ds(copy).shards), len(_ds(shards).shards))


def test_decoding_gives_tchw_rgb_like_pyav():
    import io
    from fractions import Fraction

    import av
    import torch

    from curator.loader import decode_video
    from curator.media.encode import X264Writer

    rng = np.random.default_rng(0)
    w = X264Writer(40, 24, Fraction(10), 18, "ultrafast", 1)  # 40 px rows: padded planes
    for _ in range(9):
        w.write(av.VideoFrame.from_ndarray(rng.integers(0, 255, (24, 40, 3), dtype=np.uint8), format="rgb24"))
    data = w.finish()
    ref = np.stack([f.to_ndarray(format="rgb24") for f in av.open(io.BytesIO(data)).decode(video=0)])
    v = decode_video(data)
    assert v.shape == (9, 3, 24, 40) and v.dtype == torch.uint8 and v.is_contiguous()
    assert torch.equal(v, torch.from_numpy(ref).permute(0, 3, 1, 2))
    f = decode_video(data, "float")
    assert f.dtype == torch.float32 and torch.allclose(f, v.float() / 127.5 - 1)
    batch = torch.zeros((2, 9, 3, 24, 40), dtype=torch.float32)
    slot = batch[1]
    assert decode_video(data, "float", out=slot) is slot
    assert torch.equal(batch[1], f) and not batch[0].any()
    with pytest.raises(ValueError, match="expected"):
        decode_video(data, "uint8", out=torch.empty((10, 3, 24, 40), dtype=torch.uint8))
    with pytest.raises(ValueError, match="does not fit"):
        decode_video(data, "uint8", out=torch.empty((9, 3, 24, 48), dtype=torch.uint8))
    with pytest.raises(Exception):
        decode_video(b"not a video")
