"""The HTML report on hand-made manifests: optional columns, bounds, redaction, buckets."""

from __future__ import annotations

import json
import os
import re
import tempfile

import pyarrow as pa
import pytest

from curator import manifest, storage
from curator.config import ReportConfig
from curator.records import BASE_SCHEMA, schema_for, to_table
from curator.report import MetricStats, ReportError, Sample, render, svg_histogram, write_report
from curator.storage import memory
from curator.testing.synth import make_shots_video

pytestmark = pytest.mark.unit

EXTRA = [("caption", pa.string()), ("dup_group", pa.string()), ("duplicate_of", pa.string()),
         ("similarity", pa.float32()), ("mean_luma", pa.float64()), ("num_shots", pa.int32())]
SECRET_SIG = "SuperSecretSig123"
SECRET_KEY = "TopSecretAccountKey=="


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("clip") / "c.mp4"
    make_shots_video(str(path), [("testsrc2", 12)], width=64, height=48, fps=12)
    return path.read_bytes()


@pytest.fixture
def bucket():
    memory.reset()
    memory.create_bucket("b")
    storage.configure(None)
    yield "mem://b"
    memory.reset()


def _check(metric: str, value: float | None, thr: float, passed: bool | None) -> dict:
    return {"stage": "quality", "metric": metric, "value": value, "threshold": thr, "op": ">=", "passed": passed}


def _clip(i: int, vid: str, status: str = "ok", **kw) -> dict:
    row = {"kind": "clip", "video_id": vid, "clip_id": f"{vid}-{i:05d}", "source_key": f"{vid}.mp4",
           "source_uri": f"mem://b/in/{vid}.mp4", "status": status, "clip_index": i, "start_s": 2.0 * i,
           "end_s": 2.0 * i + 1.0, "clip_width": 64, "clip_height": 48, "clip_frames": 12,
           "clip_duration_s": 1.0}
    row.update(kw)
    return row


def _write_run(run: str, rows: list[dict], schema: pa.Schema) -> None:
    storage.write_bytes(manifest.manifest_uri(run), manifest.table_bytes(to_table(rows, schema)))


def _figures(text: str) -> list[tuple[str, str, str]]:
    return re.findall(r'<figure class="(thumb[^"]*)" data-reason="([^"]*)">(.*?)</figure>', text, re.S)


def test_optional_columns_are_used_and_secrets_never_shown(bucket, clip_bytes):
    run = f"{bucket}/run"
    staged = f"{run}/staging/clips/v/v-00000.mp4"
    storage.write_bytes(staged, clip_bytes)
    storage.write_bytes(f"{bucket}/in/short.mp4", clip_bytes)  # a source for a video-level thumbnail
    leak = (f"GET https://acct.blob.core.windows.net/c/k.mp4?sv=2024&sig={SECRET_SIG} failed; "
            f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={SECRET_KEY}")
    rows = [
        {"kind": "video", "video_id": "v", "source_key": "v.mp4", "source_uri": "mem://b/in/v.mp4", "status": "ok",
         "duration_s": 3600.0, "codec": "h264", "fps": 12.0, "num_shots": 5, "num_clips": 4,
         "spans": [{"start_frame": 0, "end_frame": 12, "start_s": 0.0, "end_s": 1800.0}]},
        _clip(0, "v", clip_uri=staged, caption="A red car drives past a test card.", dup_group="v-00000",
              similarity=0.97, checks=[_check("mean_luma", 120.0, 80.0, True)], mean_luma=120.0),
        _clip(1, "v", "rejected", stage="dedup", reason="duplicate", detail="near-duplicate of v-00000",
              clip_uri=staged, dup_group="v-00000", duplicate_of="v-00000", similarity=0.97,
              checks=[_check("mean_luma", 118.0, 80.0, True)]),
        _clip(2, "v", "rejected", stage="quality", reason="too_dark", detail="mean_luma 40 < 80",
              clip_uri=staged, checks=[_check("mean_luma", 40.0, 80.0, False), _check("sharpness", 0.2, 0.5, False)]),
        _clip(3, "v", "error", stage="staging", reason="storage_error", detail=leak,
              checks=[_check("mean_luma", None, 80.0, None)]),
        {"kind": "video", "video_id": "w", "source_key": "evil\x1b[31m\nname.mp4", "source_uri": "mem://b/in/w.mp4",
         "status": "error", "stage": "ingest", "reason": "empty_file", "detail": "zero-byte file"},
        {"kind": "video", "video_id": "s", "source_key": "short.mp4", "source_uri": f"{bucket}/in/short.mp4",
         "status": "rejected", "stage": "ingest", "reason": "too_short", "detail": "1.0 s < 2.0",
         "duration_s": 1.0, "codec": "h264", "fps": 12.0},
    ]
    _write_run(run, rows, schema_for(EXTRA))
    storage.write_bytes(f"{run}/shards/index.json", json.dumps({"samples": 1, "shards": []}).encode())
    storage.write_bytes(f"{run}/metrics.json", json.dumps({
        "wall_s": 10.0, "bucket_s": 2.5, "stages": {
            "ingest": {"items_in": 3, "items_out": 1, "busy_s": 0.1, "finished_per_bucket": [3, 0, 0, 0]},
            "split": {"items_in": 1, "items_out": 1, "busy_s": 1.0, "finished_per_bucket": [0, 1, 0, 0],
                      "queue_per_bucket": [1, 0, 0, 0]}}}).encode())
    before = {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("curator-")}

    uri = write_report(run)

    assert uri == f"{run}/report.html"
    text = storage.read_bytes(uri).decode()
    after = {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("curator-")}
    assert not after - before, "the source fetched for a thumbnail was not removed"
    # secrets in details are redacted; control characters are shown escaped
    assert SECRET_SIG not in text and SECRET_KEY not in text and "AccountKey=***" in text
    assert "\x1b" not in text, text[max(0, text.find("\x1b") - 300):text.find("\x1b") + 50]
    assert "evil\\x1b[31m\nname.mp4" in text
    # funnel: dedup step present, hours from durations and spans
    funnel = re.search(r'<section id="funnel">(.*?)</section>', text, re.S).group(1)
    assert "clips kept after dedup" in funnel and "1.00 h" in funnel and "30.0 min" in funnel
    # histograms: one per metric, with the not-scored value counted apart
    hists = re.findall(r'<svg class="histogram"[^>]*data-metric="([^"]+)"', text)
    assert sorted(hists) == ["quality/mean_luma", "quality/sharpness"]
    assert "3 scored · 2 passed · 1 rejected · 1 not scored" in text
    # dedup: the group, kept first, removed marked, sizes chart
    group = re.search(r'<div class="group" data-group="v-00000">(.*?)</div></div>', text, re.S).group(1)
    cards = _figures(group)
    assert [c[0] for c in cards] == ["thumb kept", "thumb removed"]
    assert "duplicate of v-00000" in cards[1][2] and "similarity 0.97" in cards[1][2]
    assert '<svg class="dedup-sizes"' in text and "groups of 2" in text
    # thumbnails: captions and scores on cards; real frames from the staged clip and the source
    figs = {(r, i) for _, r, i in _figures(text)}
    kept = [i for r, i in figs if r == "kept"]
    assert kept and "A red car drives past a test card." in kept[0] and "<img" in kept[0]
    dark = [i for r, i in figs if r == "quality/too_dark"][0]
    assert "<img" in dark and "mean_luma 40" in dark and "✗ quality/sharpness 0.2" in dark
    assert "<img" in [i for r, i in figs if r == "ingest/too_short"][0]
    empty = [i for r, i in figs if r == "ingest/empty_file"][0]
    assert 'class="placeholder"' in empty and "no decodable frame" in empty
    # an unstaged clip falls back to its (missing) source: a placeholder, never an exception
    assert 'class="placeholder"' in [i for r, i in figs if r == "staging/storage_error"][0]
    assert '<svg class="throughput-chart"' in text and '<svg class="queue-chart"' in text


def test_minimal_manifest_without_optional_files(bucket):
    run = f"{bucket}/bare"
    rows = [{"kind": "video", "video_id": "x", "source_key": "x.mp4", "source_uri": "mem://b/in/x.mp4",
             "status": "error", "stage": "ingest", "reason": "not_a_video", "detail": "text"}]
    _write_run(run, rows, BASE_SCHEMA)
    text = render(run)
    assert "No filter wrote scores" in text and "Dedup did not run" in text and "No metrics.json" in text
    assert "no shards/index.json" in text and "No clip was kept." in text
    assert [r for _, r, _ in _figures(text)] == ["ingest/not_a_video"]


def test_examples_are_bounded_and_deterministic(bucket):
    run = f"{bucket}/many"
    rows = [{"kind": "video", "video_id": f"v{i:05d}", "source_key": f"v{i}.mp4", "source_uri": "mem://b/none",
             "status": "error", "stage": "ingest", "reason": ["empty_file", "not_a_video", "audio_only"][i % 3],
             "detail": "x"} for i in range(3000)]
    _write_run(run, rows, BASE_SCHEMA)
    cfg = ReportConfig(thumbs_per_reason=2, kept_thumbs=0)
    first = _figures(render(run, cfg))
    assert sorted(r for _, r, _ in first) == sorted(["ingest/empty_file", "ingest/not_a_video",
                                                     "ingest/audio_only"] * 2)
    _write_run(run, list(reversed(rows)), BASE_SCHEMA)  # same rows, another order: same examples
    assert sorted(_figures(render(run, cfg))) == sorted(first)


def test_sample_keeps_the_k_smallest_hashes():
    a, b = Sample(5), Sample(5)
    keys = [f"k{i}" for i in range(1000)]
    for k in keys:
        a.offer(k, {"k": k})
    for k in reversed(keys):
        b.offer(k, {"k": k})
    assert [x["k"] for x in a.items()] == [x["k"] for x in b.items()] and len(a.items()) == 5


def test_histogram_bins_and_threshold_line():
    m = MetricStats("motion", "flow")
    checks = [{"value": v, "threshold": 0.5, "op": ">=", "passed": v >= 0.5} for v in (0.0, 0.1, 0.2, 0.9, 1.0)]
    for c in checks:
        m.add(c)
    m.add({"value": None, "threshold": 0.5, "op": ">=", "passed": None})
    m.prepare_bins(10)
    for c in checks:
        m.bin(c)
    assert m.edges == (0.0, 1.0) and m.not_scored == 1
    assert [b[1] for b in m.bins[:3]] == [1, 1, 1] and m.bins[9] == [2, 0]
    assert sum(ok + bad for ok, bad in m.bins) == 5
    svg = svg_histogram(m)
    x = float(re.search(r'<line class="threshold" x1="([\d.]+)"', svg).group(1))
    assert x == pytest.approx(44 + 0.5 * (420 - 44 - 26), abs=0.1)  # halfway across the plot area
    # a threshold outside the scores widens the axis so the line stays visible
    m2 = MetricStats("q", "s")
    m2.add({"value": 3.0, "threshold": 10.0, "op": "<=", "passed": True})
    m2.prepare_bins(4)
    assert m2.edges == (3.0, 10.0)


def test_missing_manifest_is_a_clear_error(bucket):
    with pytest.raises(ReportError, match="not a finished run"):
        render(f"{bucket}/nothing")


def _webps(text: str) -> list[bytes]:
    import base64

    return [base64.b64decode(b) for b in re.findall(r'<img class="preview" src="data:image/webp;base64,([^"]+)"', text)]


def test_animated_previews_of_kept_and_rejected_clips_are_bounded(bucket, clip_bytes):
    """Each kept and rejected clip with a staged mp4 gets an animated WebP beside its still,
    up to report.max_previews for the page: about half for kept clips, the rest over the
    reject reasons in turn."""
    import io

    from PIL import Image

    run = f"{bucket}/previews"
    staged = f"{run}/staging/clips/v/v.mp4"
    storage.write_bytes(staged, clip_bytes)
    rows = [_clip(i, "v", clip_uri=staged) for i in range(4)]
    rows += [_clip(4 + i, "v", "rejected", stage="quality", reason="blurry" if i == 3 else "too_dark", detail="x",
                   clip_uri=staged) for i in range(4)]
    _write_run(run, rows, BASE_SCHEMA)

    text = render(run, ReportConfig(preview_frames=6, preview_width=48))
    webps = _webps(text)
    assert len(webps) == 8  # every kept and rejected example
    for data in webps:
        img = Image.open(io.BytesIO(data))
        assert img.format == "WEBP" and img.is_animated and img.n_frames > 1 and img.size[0] == 48
    assert "Animated previews (6 frames across the clip) for 4 of them" in text

    text = render(run, ReportConfig(max_previews=3))
    by_reason: dict[str, int] = {}
    for _, reason, inner in _figures(text):
        by_reason[reason] = by_reason.get(reason, 0) + ('class="preview"' in inner)
    # 2 kept, then round the reasons, the most frequent first
    assert by_reason == {"kept": 2, "quality/too_dark": 1, "quality/blurry": 0}
    assert "the page holds at most 3 (report.max_previews)" in text
    text = render(run, ReportConfig(max_previews=5))
    assert len(_webps(text)) == 5 and 'data-reason="quality/blurry"><img src="data:image/jpeg' in text
    blurry = [inner for _, reason, inner in _figures(text) if reason == "quality/blurry"]
    assert len(blurry) == 1 and 'class="preview"' in blurry[0]  # kept 3, too_dark 1, blurry 1
    assert _webps(render(run, ReportConfig(max_previews=0))) == []
