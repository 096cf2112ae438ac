"""Privacy blur on real clips: a camera panning past a real face (scikit-image's astronaut
portrait on a textured world, curator.testing.synth_text) comes out with the face blurred on
every frame and the rest as it was; a clip without faces is left byte for byte; and a run
through the CLI with stages.blur.enabled stages and shards only blurred clips."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from curator.testing import synth_text

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def gray_frames(data: bytes) -> list[np.ndarray]:
    import av

    with av.open(io.BytesIO(data)) as c:
        return [f.to_ndarray(format="gray").astype(np.float32) for f in c.decode(video=0)]


def energy(img: np.ndarray) -> float:
    import cv2

    return float(cv2.Laplacian(img, cv2.CV_32F).var())


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    folder = tmp_path_factory.mktemp("blur")
    return {"face": synth_text.make_text_clip(folder / "face_pan.mp4", sign=None, face=True, pan_px=1.5),
            "sign": synth_text.make_text_clip(folder / "sign_pan.mp4")}


def stage():
    from curator.config import BlurConfig, PipelineConfig
    from curator.stage import RunContext
    from stages.blur import BlurStage

    return BlurStage(BlurConfig(enabled=True), RunContext(PipelineConfig(), "file:///i", "file:///o", "t", "h"))


def assert_face_blurred(before: bytes, after: bytes, truth: synth_text.TextTruth) -> None:
    a, b = gray_frames(before), gray_frames(after)
    assert len(a) == len(b) == truth.frames
    for i, (fa, fb) in enumerate(zip(a, b)):
        x0, y0, x1, y1 = truth.face_boxes[i]
        ea, eb = energy(fa[y0:y1, x0:x1]), energy(fb[y0:y1, x0:x1])
        assert eb < 0.02 * ea, (i, ea, eb)  # on every frame: no flicker between detections
        away = np.ones(fa.shape, bool)  # well away from the padded box: only re-encoding differs
        away[max(0, y0 - 40):y1 + 40, max(0, x0 - 40):x1 + 40] = False
        assert float(np.abs(fa - fb)[away].mean()) < 2.0, i


def test_a_face_is_blurred_on_every_frame_and_recorded(made):
    import hashlib
    import json

    truth = made["face"]
    row = synth_text.clip_row(truth)
    before = row["mp4"]
    (out,) = stage().process([row])
    assert out["status"] == "ok", out.get("detail")
    assert out["blurred"] is True and out["blur_faces"] == 1 and out["blur_plates"] == 0
    assert out["blur_frames"] == truth.frames
    (t,) = json.loads(out["blur_tracks"])
    assert t["kind"] == "face" and t["first"] == 0 and t["detections"] >= truth.frames // 3 - 1
    assert out["mp4"] != before and out["clip_bytes"] == len(out["mp4"])
    assert out["clip_sha256"] == hashlib.sha256(out["mp4"]).hexdigest()
    assert_face_blurred(before, out["mp4"], truth)


def test_a_clip_without_faces_keeps_its_bytes(made):
    row = synth_text.clip_row(made["sign"])
    before = row["mp4"]
    (out,) = stage().process([row])
    assert out["mp4"] is before and out["blurred"] is False
    assert (out["blur_faces"], out["blur_plates"], out["blur_frames"]) == (0, 0, 0)


def test_a_run_with_blur_enabled_stages_and_shards_blurred_clips(made, tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    for name, t in made.items():
        (inp / f"{name}.mp4").write_bytes(Path(t.path).read_bytes())
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "curator", "run", "-i", str(inp), "-o", str(out), "--runner", "local",
                           # the shipped cascade fires once on this textured wall after transcode
                           # re-encodes it: min_detections=2 drops one-off detections
                           "--set", "stages.blur.enabled=true", "--set", "stages.blur.min_detections=2",
                           "--set", "stages.split.method=fixed",
                           "--set", "stages.split.stride_s=10", "--set", "stages.order=[]"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    clips = {r["source_key"].rsplit(".", 1)[0]: r for r in pq.read_table(out / "manifest.parquet").to_pylist()
             if r["kind"] == "clip"}
    face, sign = clips["face"], clips["sign"]
    assert face["status"] == sign["status"] == "ok"
    # the shipped LBP cascade is a weak detector: on the re-transcoded clip it can add a short
    # false track (seen: 3 detections on the shoulder), so the face is "at least one" here
    assert face["blurred"] is True and face["blur_faces"] >= 1 and face["blur_frames"] == made["face"].frames
    assert (sign["blurred"], sign["blur_faces"], sign["blur_frames"]) == (False, 0, 0)
    staged = Path(face["clip_uri"].removeprefix("file://")).read_bytes()
    assert_face_blurred(Path(made["face"].path).read_bytes(), staged, made["face"])
    shard_mp4s = []
    for tar in (out / "shards").rglob("*.tar"):
        with tarfile.open(tar) as tf:
            shard_mp4s += [tf.extractfile(m).read() for m in tf.getmembers() if m.name.endswith(".mp4")]
    assert staged in shard_mp4s  # what training reads is the blurred clip
