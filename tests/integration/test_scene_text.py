"""Scene text is kept, overlays are rejected: generated clips with exact truth
(curator.testing.synth_text: a camera panning over a textured world with a sign in it; the
same pan with a burned-in caption; a broadcast ticker over a moving scene), through the text
filter's real process() and OCR, then through the real CLI: run, search, refilter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curator.config import TextOverlayConfig
from curator.records import OK, REJECTED
from curator.testing import synth_text

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TICKER = "BREAKING NEWS +++ STORM WARNING FOR THE COAST +++ MARKETS CLOSE HIGHER +++ TRAINS DELAYED"
CLIPS = {
    "sign_pan": {},  # the camera pans right over a wall with a sign: the sign slides left with the wall
    "sign_pan_caption": {"caption": "See you tomorrow"},  # the same pan, a caption burned in at the bottom
    "ticker_pan": {"sign": None, "ticker": TICKER},  # the pan, a ticker scrolling in a fixed bottom band
    "sign_still": {"pan_px": 0.0},  # a tripod shot of the sign: no motion evidence, the layout decides
}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scene_text")
    return {name: synth_text.make_text_clip(folder / f"{name}.mp4", frames=75, **kw) for name, kw in CLIPS.items()}


@pytest.fixture(scope="module")
def rows(made):
    from curator.config import PipelineConfig
    from curator.stage import RunContext
    from stages.text_overlay import TextOverlayStage

    st = TextOverlayStage(TextOverlayConfig(), RunContext(PipelineConfig(), "file:///i", "file:///o", "t", "h"))
    out = st.process([synth_text.clip_row(t) for t in made.values()])
    return {r["clip_id"]: r for r in out}


def iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def sampled(row) -> list[int]:
    from curator.media.decode import uniform_indices

    return uniform_indices(row["clip_frames"], row["text_samples"])


def test_a_pan_across_a_sign_is_kept_and_its_text_recorded(rows, made):
    r = rows["sign_pan"]
    assert r["status"] == OK, r["detail"]
    assert r["text_kind"] == "scene" and r["scene_text"] == "CITY MUSEUM"
    assert r["overlay_area"] == 0.0
    assert r["text_area"] > 0.05  # the old rule (any text over 1 %) threw this clip away
    assert r["text_camera_motion"] > TextOverlayConfig().min_camera_motion
    truth = made["sign_pan"]
    idx = sampled(r)
    boxes = json.loads(r["text_boxes"])
    assert {b["frame"] for b in boxes} == set(range(len(idx)))  # read on every sampled frame
    for b in boxes:
        assert b["motion"] == "with_scene"
        assert b["shift"] == pytest.approx([-2.0, 0.0], abs=0.35)  # the pan: 2 px per frame to the left
        assert iou(b["box"], truth.sign_boxes[idx[b["frame"]]]) > 0.5  # the box is on the sign, as it moves


def test_the_same_pan_with_a_burned_in_caption_is_rejected_as_overlay(rows, made):
    r = rows["sign_pan_caption"]
    assert r["status"] == REJECTED and r["stage"] == "text_overlay" and r["reason"] == "text_overlay"
    assert "overlay_area" in r["detail"] and "max_overlay_area" in r["detail"]
    assert r["text_kind"] == "both" and r["scene_text"] == "CITY MUSEUM"  # the sign is still recorded
    tracks = {t["text"]: t for t in json.loads(r["text_tracks"])}
    assert tracks["See you tomorrow"]["kind"] == "overlay" and tracks["See you tomorrow"]["why"] == "fixed"
    assert tracks["CITY MUSEUM"]["kind"] == "scene"
    caption = [b for b in json.loads(r["text_boxes"]) if b["text"] == "See you tomorrow"]
    assert len(caption) == r["text_samples"]
    assert all(iou(b["box"], made["sign_pan_caption"].caption_box) > 0.5 for b in caption)
    failed = [c for c in r["checks"] if c["stage"] == "text_overlay" and c["passed"] is False]
    assert [c["metric"] for c in failed] == ["overlay_area"] and failed[0]["value"] == r["overlay_area"]


def test_a_ticker_over_a_moving_scene_is_rejected(rows, made):
    r = rows["ticker_pan"]
    assert r["status"] == REJECTED and r["reason"] == "text_overlay"
    assert r["text_kind"] == "overlay" and r["scene_text"] is None
    tracks = json.loads(r["text_tracks"])
    assert tracks and all(t["kind"] == "overlay" and t["why"] == "ticker" for t in tracks)
    band = made["ticker_pan"].ticker_band
    for b in json.loads(r["text_boxes"]):
        assert b["motion"] == "scroll"
        assert b["shift"][0] == pytest.approx(-4.0, abs=0.5)  # its own speed, not the pan's (-2)
        assert band[0] - 4 <= b["box"][1] and b["box"][3] <= band[1] + 1  # inside the fixed bottom band


def test_a_tripod_shot_of_a_sign_is_decided_by_the_layout(rows):
    r = rows["sign_still"]
    assert {b["motion"] for b in json.loads(r["text_boxes"])} == {"still"}
    assert r["status"] == OK and r["text_kind"] == "scene" and r["scene_text"] == "CITY MUSEUM"
    assert json.loads(r["text_tracks"])[0]["why"] == "layout"


def curator(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "curator", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_run_search_and_refilter_through_the_cli(made, tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    for name in ("sign_pan", "sign_pan_caption", "ticker_pan"):
        (inp / f"{name}.mp4").write_bytes(Path(made[name].path).read_bytes())
    out = tmp_path / "out"
    proc = curator("run", "-i", str(inp), "-o", str(out), "--runner", "local",
                   "--set", "stages.split.method=fixed", "--set", "stages.split.stride_s=10",
                   "--set", "stages.order=[text_overlay,embed]")
    assert proc.returncode == 0, proc.stderr[-3000:]
    clips = {r["source_key"].rsplit(".", 1)[0]: r for r in pq.read_table(out / "manifest.parquet").to_pylist()
             if r["kind"] == "clip"}
    assert clips["sign_pan"]["status"] == OK and clips["sign_pan"]["scene_text"] == "CITY MUSEUM"
    for name in ("sign_pan_caption", "ticker_pan"):
        assert (clips[name]["status"], clips[name]["reason"]) == (REJECTED, "text_overlay"), name

    proc = curator("search", str(out / "index"), "--where", "scene_text CONTAINS 'museum'", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    hits = json.loads(proc.stdout)
    assert [h["clip_id"] for h in hits] == [clips["sign_pan"]["clip_id"]]  # rejected clips are not indexed

    # the old behaviour, from the manifest alone: any text over 1 % rejects the sign too
    proc = curator("refilter", str(out), "--set", "stages.text_overlay.max_text_area=0.01")
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = {r["source_key"].rsplit(".", 1)[0]: r for r in pq.read_table(out / "manifest.parquet").to_pylist()
             if r["kind"] == "clip"}
    assert (after["sign_pan"]["status"], after["sign_pan"]["reason"]) == (REJECTED, "text_overlay")
    assert "max_text_area" in after["sign_pan"]["detail"]
