"""Sampling weights and the federated feed, on synthetic shard sets: a mixture of sites holds
its proportions, a rank bound to a site (S3, GCS, Azure emulators) reads only that site,
type_weight 2 doubles a type's share, a generated-share cap holds, a re-weighting file raises
the clips it names, and a weighted position resumes exactly."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest

from curator import storage
from curator.config import ShardConfig
from curator.loader import Loader, MixtureDataset, ShardDataset
from curator.phases import shard as shard_stage


def make_set(root: Path, name: str, n: int, per_shard: int = 8, **cols) -> str:
    """A shard set of n fake clips (decode='none' reads them) whose manifest rows carry `cols`
    (callables of the clip number)."""
    rows = []
    for i in range(n):
        clip = root / name / "clips" / f"c{i:04d}.mp4"
        clip.parent.mkdir(parents=True, exist_ok=True)
        clip.write_bytes(f"{name} clip {i} ".encode() * 4)
        row = {"clip_id": f"{name}{i:04d}-00000", "clip_width": 640, "clip_height": 360, "clip_duration_s": 3.0,
               "clip_bytes": clip.stat().st_size, "clip_uri": "file://" + str(clip), "status": "ok"}
        row.update({k: f(i) for k, f in cols.items()})
        rows.append(row)
    out = "file://" + str(root / name / "run")
    cfg = ShardConfig(samples_per_shard=per_shard)
    results = [shard_stage.write_shard(spec, out) for spec in shard_stage.plan(rows, cfg)]
    shard_stage.write_indexes(out, shard_stage.build_indexes(results, cfg))
    return out


def keys(items) -> list[str]:
    return [k for it in items for k in (it["key"] if isinstance(it["key"], list) else [it["key"]])]


@pytest.mark.unit
def test_a_mixture_holds_its_proportions_and_resumes_exactly(tmp_path):
    sites = {make_set(tmp_path, "a", 40): 0.5, make_set(tmp_path, "b", 25): 0.3, make_set(tmp_path, "c", 60): 0.2}
    n = 3000
    ds = MixtureDataset(sites, decode="none", shuffle_buffer=8, seed=4, samples_per_epoch=n)
    got = list(ds)
    assert len(got) == n == len(ds)
    counts = Counter(it["site"] for it in got)
    for uri, p in sites.items():
        share = counts[storage.normalize(uri)] / n
        assert abs(share - p) <= 3 * math.sqrt(p * (1 - p) / n), (uri, share, p)  # within 3 sigma (<= 0.027)
    # every sample of a site comes round before any comes twice (a site's epochs run in turn)
    a_keys = [it["key"] for it in got if it["site"].endswith("/a/run")]
    assert sorted(a_keys[:40]) == sorted({k for k in a_keys[:40]}) and len(set(a_keys[:40])) == 40
    # resume: stop after 777 draws, load the state into a fresh mixture, get the rest exactly
    ds2 = MixtureDataset(sites, decode="none", shuffle_buffer=8, seed=4, samples_per_epoch=n)
    it = iter(ds2)
    head = [next(it)["key"] for _ in range(777)]
    state = ds2.state_dict()
    ds3 = MixtureDataset(sites, decode="none", shuffle_buffer=8, seed=4, samples_per_epoch=n)
    ds3.load_state_dict(state)
    assert head + [x["key"] for x in ds3] == [x["key"] for x in got]
    # and with two DataLoader workers the mixture splits the draws between them
    two = list(Loader(MixtureDataset(sites, decode="none", seed=4, samples_per_epoch=200), num_workers=2))
    assert len(two) == 200


@pytest.mark.unit
def test_type_weight_two_doubles_a_types_share(tmp_path):
    # half the clips are `museum` (recorded type_weight 2: up-sample), half `street` (1)
    uri = make_set(tmp_path, "t", 40, video_type=lambda i: "museum" if i % 2 else "street",
                   type_weight=lambda i: 2.0 if i % 2 else 1.0)
    ds = ShardDataset(uri, decode="none", shuffle_buffer=16, seed=1)
    got = list(ds)
    types = Counter(it["meta"]["video_type"] for it in got)
    assert types == {"museum": 40, "street": 20} and len(got) == 60 == len(ShardDataset(uri, decode="none"))
    assert len(set(keys(got))) == 40  # every clip, the museum ones twice
    # without weights (type_weights=False) each clip once
    assert Counter(it["meta"]["video_type"] for it in ShardDataset(uri, decode="none", type_weights=False)) == \
        {"museum": 20, "street": 20}
    # a loader-time mapping; fractional weights are drawn per epoch (seeded), so the share holds on average
    n_street = n_museum = 0
    for epoch in range(30):
        d = ShardDataset(uri, decode="none", type_weights={"street": 1.5, "museum": 1.0}, seed=2)
        d.set_epoch(epoch)
        c = Counter(it["meta"]["video_type"] for it in d)
        n_street, n_museum = n_street + c["street"], n_museum + c["museum"]
    assert abs(n_street / n_museum - 1.5) < 0.1
    # batches too: a bucket's batches hold the repeats
    batches = list(ShardDataset(uri, decode="none", batch_size=7, seed=1))
    assert sum(len(b["key"]) for b in batches) == 60


@pytest.mark.unit
def test_generated_share_caps_generated_footage(tmp_path):
    uri = make_set(tmp_path, "g", 60, origin=lambda i: "generated" if i % 2 else "real")
    gen = total = 0
    for epoch in range(20):
        d = ShardDataset(uri, decode="none", generated_share=0.2, seed=5)
        d.set_epoch(epoch)
        got = [it["meta"]["origin"] for it in d]
        gen, total = gen + got.count("generated"), total + len(got)
    assert abs(gen / total - 0.2) < 0.03
    # below the cap nothing changes
    assert Counter(it["meta"]["origin"] for it in ShardDataset(uri, decode="none", generated_share=0.6)) == \
        {"generated": 30, "real": 30}


@pytest.mark.unit
def test_a_weighted_position_resumes_exactly(tmp_path):
    uri = make_set(tmp_path, "r", 30, video_type=lambda i: "x" if i % 3 else "y",
                   type_weight=lambda i: 1.0 if i % 3 else 2.5)
    kw = dict(decode="none", shuffle_buffer=6, batch_size=4, seed=3)
    full = keys(ShardDataset(uri, **kw))
    ds = ShardDataset(uri, **kw)
    it = iter(ds)
    head = [next(it) for _ in range(5)]
    again = ShardDataset(uri, **kw)
    again.load_state_dict(ds.state_dict())
    assert keys(head) + keys(again) == full
    with pytest.raises(ValueError, match="weights"):
        ShardDataset(uri, decode="none", shuffle_buffer=6, batch_size=4, seed=3,
                     type_weights=False).load_state_dict(ds.state_dict())


@pytest.mark.unit
def test_a_reweighting_file_raises_the_clips_it_names(tmp_path):
    import json

    uri = make_set(tmp_path, "w", 30)
    named = [f"w{i:04d}-00000" for i in (3, 7, 11)]
    wfile = tmp_path / "weights.json"
    wfile.write_text(json.dumps({"format": "curator-weights/1", "weights": {c: 4.0 for c in named}}))
    c = Counter(keys(ShardDataset(uri, decode="none", weights=str(wfile))))
    assert all(c[k] == 4 for k in named) and sum(c.values()) == 27 + 12
    wfile.write_text("{}")
    with pytest.raises(ValueError, match="re-weighting file"):
        ShardDataset(uri, decode="none", weights=str(wfile))


@pytest.mark.integration
def test_a_rank_bound_to_a_site_reads_only_that_site(request, tmp_path):
    """Three sites in three emulated clouds; rank 2 of 4 is bound to the GCS site and opens
    nothing in S3 or Azure."""
    from curator.testing.fixtures import make_cloud, storage_config

    clouds = {n: make_cloud(request, n) for n in ("s3", "gs", "az")}
    storage.configure(storage_config(*(c.emulator for c in clouds.values())))
    try:
        sites = {}
        for n, cloud in clouds.items():
            local = Path(storage.local_path(make_set(tmp_path, n, 12)) or "")
            for p in sorted((local / "shards").rglob("*")):
                if p.is_file():
                    storage.write_bytes(f"{cloud.root}/feed/shards/{p.relative_to(local / 'shards')}", p.read_bytes())
            sites[f"{cloud.root}/feed"] = {"s3": 0.5, "gs": 0.3, "az": 0.2}[n]
        placement = {f"{clouds['s3'].root}/feed": [0, 1], f"{clouds['gs'].root}/feed": [2],
                     f"{clouds['az'].root}/feed": [3]}
        before = storage.stats.snapshot()
        with storage.stats.recording() as opened:
            ds = MixtureDataset(sites, placement=placement, rank=2, world_size=4, decode="none", seed=1)
            got = list(ds)
        io = storage.stats.delta(before)
        assert len(got) == 12 and {it["site"] for it in got} == {f"{clouds['gs'].root}/feed"}
        assert set(io["read"]) == {"gs"} and io["read"]["gs"] > 0
        assert opened and all(u.startswith(clouds["gs"].root + "/") for u in opened)
        # ranks 0 and 1 share the S3 site: disjoint halves of it
        halves = [keys(MixtureDataset(sites, placement=placement, rank=r, world_size=4, decode="none")) for r in (0, 1)]
        assert not set(halves[0]) & set(halves[1]) and len(halves[0]) + len(halves[1]) == 12
    finally:
        storage.configure(None)
