"""Dedup on real clips with the built-in perceptual embedding: near-duplicate variants
(low-quality re-encode, half size, 90 % crop, brightness shift) of real and synthetic
clips, mixed with unrelated clips. Pairs are scored on group membership: two clips are
a found pair when dedup put them in the same group."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import av
import pytest

from curator import dedup, manifest, storage
from curator.config import DedupConfig
from curator.records import schema_for, to_table
from curator.testing.synth import make_shots_video, run_ffmpeg

pytestmark = pytest.mark.integration

MEDIA = Path(__file__).resolve().parents[1] / "data" / "media"

#: group name -> (source, start s, end s)
GROUPS = {
    "bikes": (MEDIA / "bikes.mp4", 0.0, 3.0),
    "carphone": (MEDIA / "carphone_pristine.mp4", 0.0, 3.0),
    "golden": (MEDIA / "goldeneye-vfr-drop3.mp4", 0.0, 3.0),   # first shot of the GoldenEye clip
    "rotate": (MEDIA / "issue-134-rotate.mp4", 4.0, 7.0),      # its second shot, rotated 90°
    "testsrc2": ("testsrc2", 0.0, 3.0),
    "mandelbrot": ("mandelbrot", 0.0, 3.0),
}
#: unrelated clips, one each (noise-like synthetic patterns and another part of bikes)
SINGLES = {
    "bikes_tail": (MEDIA / "bikes.mp4", 6.5, 9.5),
    "life": ("life", 0.0, 3.0),
    "zoneplate": ("zoneplate", 0.0, 3.0),
    "gradients": ("gradients", 0.0, 3.0),
    "sierpinski": ("sierpinski", 0.0, 3.0),
}
VARIANTS = {
    "orig": [],
    "lowq": ["-crf", "42"],
    "half": ["-vf", "scale=trunc(iw/4)*2:trunc(ih/4)*2"],
    "crop": ["-vf", "crop=trunc(iw*0.45)*2:trunc(ih*0.45)*2"],
    "bright": ["-vf", "eq=brightness=0.12"],
}


def _cut(src, start: float, end: float, out: Path, args: list[str]) -> None:
    if isinstance(src, str):  # an ffmpeg source
        raw = out.with_name(f"_{src}.mp4")
        if not raw.exists():
            make_shots_video(str(raw), [(src, int((end - start) * 25))], width=320, height=240)
        src, start, end = raw, 0.0, end - start
    extra = args if "-crf" in args else args + ["-crf", "20"]
    run_ffmpeg(["-ss", str(start), "-to", str(end), "-i", str(src), "-an", "-c:v", "libx264", "-preset",
                "ultrafast", "-pix_fmt", "yuv420p", *extra, str(out)])


def _probe(path: Path) -> tuple[int, int, float, int]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = sum(1 for _ in c.decode(s))
        dur = float(s.duration * s.time_base) if s.duration else frames / float(s.average_rate)
        return s.codec_context.width, s.codec_context.height, dur, frames


@pytest.fixture(scope="module")
def near_dup_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("neardup")
    clips = []
    for name, (src, a, b) in GROUPS.items():
        for v, args in VARIANTS.items():
            p = d / f"{name}_{v}.mp4"
            _cut(src, a, b, p, args)
            clips.append((name, f"{name}_{v}", p))
    for name, (src, a, b) in SINGLES.items():
        p = d / f"{name}.mp4"
        _cut(src, a, b, p, [])
        clips.append((name, name, p))
    # the heavily compressed real version of carphone belongs to its group too
    clips.append(("carphone", "carphone_distorted", MEDIA / "carphone_distorted.mp4"))
    rows = [{"kind": "video", "video_id": "set", "status": "ok"}]
    facts = {}
    for i, (group, cid, p) in enumerate(clips):
        w, h, dur, frames = _probe(p)
        facts[cid] = (group, w * h)
        rows.append({"kind": "clip", "video_id": "set", "clip_id": cid, "clip_index": i, "status": "ok",
                     "clip_width": w, "clip_height": h, "clip_duration_s": dur, "clip_frames": frames,
                     "clip_uri": storage.normalize(str(p)),
                     "clip_sha256": hashlib.sha256(p.read_bytes()).hexdigest()})
    out = storage.normalize(str(d / "run"))
    storage.write_bytes(manifest.manifest_uri(out), manifest.table_bytes(to_table(rows, schema_for())))
    res = dedup.dedup_run(out, DedupConfig())
    table = [r for r in manifest.read_manifest(out).to_pylist() if r["kind"] == "clip"]
    return res, table, facts


def test_precision_and_recall_on_duplicate_pairs(near_dup_run):
    res, table, facts = near_dup_run
    assert res.stats.embedding_model == "perceptual-dct-v1"
    assert res.stats.threshold == pytest.approx(0.8)
    group_of = {r["clip_id"]: r["dup_group"] for r in table}
    truth, found = set(), set()
    for a, b in itertools.combinations(sorted(facts), 2):
        if facts[a][0] == facts[b][0]:
            truth.add((a, b))
        if group_of[a] is not None and group_of[a] == group_of[b]:
            found.add((a, b))
    tp = len(truth & found)
    precision = tp / max(1, len(found))
    recall = tp / len(truth)
    assert len(truth) == 6 * 10 + 5  # 6 groups of 5 variants, + carphone_distorted with 5 partners
    assert precision >= 0.95, (precision, sorted(found - truth))
    assert recall >= 0.9, (recall, sorted(truth - found))


def test_kept_clip_is_the_highest_resolution_of_its_group(near_dup_run):
    _, table, facts = near_dup_run
    groups: dict[str, list[dict]] = {}
    for r in table:
        if r["dup_group"]:
            groups.setdefault(r["dup_group"], []).append(r)
    assert len(groups) >= len(GROUPS)
    for gid, members in groups.items():
        kept = [m for m in members if m["status"] == "ok"]
        assert len(kept) == 1 and kept[0]["clip_id"] == gid
        top = max(m["clip_width"] * m["clip_height"] for m in members)
        assert kept[0]["clip_width"] * kept[0]["clip_height"] == top
        for m in members:
            if m is not kept[0]:
                assert (m["status"], m["stage"], m["reason"], m["duplicate_of"]) == \
                    ("rejected", "dedup", "duplicate", gid)
    # unrelated clips stay alone and kept
    for r in table:
        if facts[r["clip_id"]][0] in SINGLES:
            assert r["dup_group"] is None and r["status"] == "ok"


def test_perceptual_embeddings_written_back_for_the_index(near_dup_run):
    _, table, _ = near_dup_run
    assert all(r["embedding_model"] == "perceptual-dct-v1" and len(r["embedding"]) == 512 for r in table)
