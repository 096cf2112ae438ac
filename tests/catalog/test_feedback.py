"""`curator feedback`: clips training flags -> their nearest neighbours in the catalog get a
sampling weight, in a file the loader reads; the neighbours it names are drawn that much
more often, and nothing else changes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from curator import index, storage
from curator.config import IndexConfig
from curator.loader import ShardDataset
from curator.testing.manifests import planted, unit, write_run

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.unit


def _shards_for(tmp_path: Path, clip_ids: list[str]) -> str:
    """A shard set holding these clips (fake mp4 bytes: read with decode='none')."""
    from curator.config import ShardConfig
    from curator.phases import shard as shard_stage

    rows = []
    for cid in clip_ids:
        clip = tmp_path / "clips" / f"{cid}.mp4"
        clip.parent.mkdir(parents=True, exist_ok=True)
        clip.write_bytes(cid.encode() * 8)
        rows.append({"clip_id": cid, "clip_width": 640, "clip_height": 360, "clip_duration_s": 3.0,
                     "clip_bytes": clip.stat().st_size, "clip_uri": "file://" + str(clip), "status": "ok"})
    out = "file://" + str(tmp_path / "feed")
    cfg = ShardConfig(samples_per_shard=16)
    results = [shard_stage.write_shard(spec, out) for spec in shard_stage.plan(rows, cfg)]
    shard_stage.write_indexes(out, shard_stage.build_indexes(results, cfg))
    return out


def test_feedback_raises_the_sampling_of_the_neighbours_it_names(tmp_path):
    cat = storage.normalize(str(tmp_path / "catalog"))
    emb = planted(80, seed=6)
    flagged_at = 10
    close = [31, 47, 62]  # planted neighbours of clip 10, nearer to it than anything else
    for j, i in enumerate(close):
        emb[i] = unit(emb[flagged_at] + (0.15 + 0.05 * j) * planted(1, seed=20 + j)[0])
    run = storage.normalize(str(tmp_path / "run"))
    ids = write_run(run, "vidF", emb)
    index.add_run(run, cat, IndexConfig())
    flagged = tmp_path / "flagged.txt"
    flagged.write_text(f"# clips with high loss\n{ids[flagged_at]}\nno-such-clip\n")
    out = tmp_path / "weights.json"
    p = subprocess.run([sys.executable, "-m", "curator", "feedback", cat, "--clips", str(flagged), "--k", "4",
                        "--weight", "3", "--output", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "4 clips re-weighted x3 (1 flagged, k=4); 1 flagged clips are not in the catalog" in p.stdout
    doc = json.loads(out.read_text())
    assert doc["weights"] == {ids[i]: 3.0 for i in [flagged_at, *close]} and doc["missing"] == ["no-such-clip"]

    feed = _shards_for(tmp_path, ids)
    plain = Counter(it["key"] for it in ShardDataset(feed, decode="none"))
    weighted = Counter(it["key"] for it in ShardDataset(feed, decode="none", weights=str(out), shuffle_buffer=8))
    named = {ids[i] for i in [flagged_at, *close]}
    assert all(plain[k] == 1 for k in plain) and len(plain) == 80
    assert {k: weighted[k] for k in named} == {k: 3 for k in named}
    assert all(weighted[k] == 1 for k in plain if k not in named) and sum(weighted.values()) == 80 + 2 * 4
    # share of the named neighbours: 4/80 before, 12/88 after
    assert np.isclose(sum(weighted[k] for k in named) / sum(weighted.values()), 12 / 88)


def test_feedback_needs_clips_or_a_query_and_says_what_is_wrong(tmp_path):
    cat = storage.normalize(str(tmp_path / "catalog"))
    run = storage.normalize(str(tmp_path / "run"))
    write_run(run, "vidG", planted(5, seed=1))
    index.add_run(run, cat, IndexConfig())
    none = tmp_path / "none.txt"
    none.write_text("missing-1\nmissing-2\n")

    def cli(*a):
        return subprocess.run([sys.executable, "-m", "curator", "feedback", cat, *a, "--output",
                               str(tmp_path / "w.json")], cwd=ROOT, capture_output=True, text=True)

    p = cli("--clips", str(none))
    assert p.returncode == 1 and "none of the 2 flagged clips is in the catalog" in p.stderr
    p = cli("--query", "museum interiors")  # a catalog of the test model: no CLIP text tower to load
    assert p.returncode == 1 and "test-model" in p.stderr
    assert cli().returncode == 2  # argparse: one of --clips / --query is required


def test_feedback_from_a_text_query_weights_the_clips_nearest_it(tmp_path):
    from curator.models import clip
    from curator.testing import tiny_models

    model_dir = str(tmp_path / "models")
    tiny_models.build_open_clip(model_dir)
    text = clip.load_name(tiny_models.TINY_CLIP_NAME, model_dir, device="cpu").encode_text(["hospital corridor"])[0]
    emb = planted(40, d=len(text), seed=6)
    near = [5, 23]
    for j, i in enumerate(near):
        emb[i] = unit(text + (0.02 + 0.02 * j) * planted(1, d=len(text), seed=30 + j)[0])
    cat = storage.normalize(str(tmp_path / "catalog"))
    run = storage.normalize(str(tmp_path / "run"))
    ids = write_run(run, "vidQ", emb, model=tiny_models.TINY_CLIP_NAME)
    index.add_run(run, cat, IndexConfig())
    out = tmp_path / "w.json"
    p = subprocess.run([sys.executable, "-m", "curator", "feedback", cat, "--query", "hospital corridor", "--k", "2",
                        "--weight", "5", "--output", str(out), "--set", f"models.dir={model_dir}"],
                       cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    doc = json.loads(out.read_text())
    assert doc["weights"] == {ids[i]: 5.0 for i in near} and doc["flagged"] == ["hospital corridor"]
