"""Privacy blur, the parts without video: the shipped face detector finds a real face in a
generated frame, blurring removes its detail and nothing else, tracks hold and interpolate
boxes between detections, detector specs and their requirements."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

pytestmark = pytest.mark.unit


def laplacian_energy(img: np.ndarray) -> float:
    import cv2

    return float(cv2.Laplacian(img.astype(np.float32), cv2.CV_32F).var())


@pytest.fixture(scope="module")
def face_frame():
    """A textured 480x270 frame with scikit-image's astronaut portrait pasted in; the face box."""
    from curator.testing.synth_text import paste_face, world_texture

    frame = world_texture(480, 270, seed=3)
    face = paste_face(frame, 200, 30, size=200)
    return frame, face


def iou(a, b) -> float:
    from curator.media.blur import _iou

    return _iou(a, b)


def test_the_shipped_cascade_finds_the_face_and_blurring_removes_its_detail_only(face_frame):
    import cv2

    from curator.media.blur import blur_regions, pad_box
    from curator.models.detectors import load

    frame, face = face_frame
    det = load("lbp", "")
    assert det is not None
    boxes = det(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))
    assert len(boxes) == 1 and iou(boxes[0], face) > 0.5, (boxes, face)  # the face, and nothing else

    padded = pad_box(boxes[0], 0.25, frame.shape[1], frame.shape[0])
    out = blur_regions(frame.copy(), [padded])
    x0, y0, x1, y1 = face
    before, after = laplacian_energy(frame[y0:y1, x0:x1]), laplacian_energy(out[y0:y1, x0:x1])
    assert after < 0.02 * before, (before, after)  # high-frequency energy inside the face drops > 98 %
    outside = np.ones(frame.shape[:2], bool)
    outside[padded[1]:padded[3], padded[0]:padded[2]] = False
    assert np.array_equal(out[outside], frame[outside])  # not one pixel outside the box changes

    pix = blur_regions(frame.copy(), [padded], "pixelate")
    assert laplacian_energy(pix[y0:y1, x0:x1]) < 0.5 * before
    assert np.array_equal(pix[outside], frame[outside])


def test_blur_on_yuv420_planes_leaves_the_rest_exact(face_frame):
    import av

    from curator.media.blur import blur_yuv420, yuv420_planes

    frame, face = face_frame
    yuv = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p").to_ndarray()
    out = blur_yuv420(yuv.copy(), [face])
    h = frame.shape[0]
    x0, y0, x1, y1 = face
    assert laplacian_energy(out[y0:y1, x0:x1]) < 0.05 * laplacian_energy(yuv[y0:y1, x0:x1])
    mask = np.ones(yuv.shape, bool)
    y, u, v = yuv420_planes(mask)  # views
    assert y.shape == (h, frame.shape[1]) and u.shape == v.shape == (h // 2, frame.shape[1] // 2)
    y[y0:y1, x0:x1] = False  # the luma box, and the chroma boxes at half size
    u[y0 // 2:(y1 + 1) // 2, x0 // 2:(x1 + 1) // 2] = False
    v[y0 // 2:(y1 + 1) // 2, x0 // 2:(x1 + 1) // 2] = False
    assert not np.array_equal(out, yuv) and np.array_equal(out[mask], yuv[mask])


def test_tracks_interpolate_between_detections_and_hold_around_them():
    from curator.media.blur import boxes_for_frame, track

    # a face moving right 3 px a frame, detected every 4th frame but missed on frame 8;
    # a second face appears once (frame 12) far away
    found = {f: [("face", (10 + 3 * f, 20, 50 + 3 * f, 60))] for f in (0, 4, 12, 16)}
    found[12].append(("face", (200, 100, 230, 130)))
    found[16].append(("plate", (300, 150, 340, 165)))
    tracks = track(found, hold=6)
    assert [(t.kind, t.first, t.last, len(t.hits)) for t in tracks] == [
        ("face", 0, 16, 4), ("face", 12, 12, 1), ("plate", 16, 16, 1)]
    moving = tracks[0]
    for f in range(0, 17):  # every frame, the missed one too, has the face where it is
        assert moving.box_at(f) == pytest.approx((10 + 3 * f, 20, 50 + 3 * f, 60))
    assert moving.box_at(20) == pytest.approx((58, 20, 98, 60))  # held after the last detection
    w, h = 640, 360
    per_frame = [len(boxes_for_frame(tracks, f, 6, 0.0, w, h)) for f in range(-8, 26)]
    # track 1 from -6 to 22; track 2 from 6 to 18; the plate from 10 to 22
    expected = [int(-6 <= f <= 22) + int(6 <= f <= 18) + int(10 <= f <= 22) for f in range(-8, 26)]
    assert per_frame == expected
    (kind, box), = boxes_for_frame(tracks[:1], 0, 6, 0.25, w, h)
    assert kind == "face" and box == (0, 10, 60, 70)  # padded by a quarter, clipped at the frame's edge


def test_detector_specs_and_requirements(tmp_path, face_frame):
    import cv2

    from curator.config import BlurConfig, PipelineConfig
    from curator.models import detectors
    from curator.stage import RunContext
    from stages.blur import BlurStage

    def stage(**kw):
        cfg = PipelineConfig.load(None, [f"models.dir={tmp_path}"])
        return BlurStage(BlurConfig(enabled=True, **kw), RunContext(cfg, "file:///i", "file:///o", "t", "h"))

    assert stage().requirements() == []
    missing = stage(plates="cascade:plates/lbp_plates.xml").requirements()
    assert len(missing) == 1
    text = missing[0].describe()
    assert "plate detector" in text and str(tmp_path / "plates" / "lbp_plates.xml") in text and "fix:" in text
    with pytest.raises(ValueError, match="cascade:<file"):
        BlurConfig(faces="haar")

    # a cascade from the model directory is loaded by the same code (here the face cascade
    # standing in for a plate cascade, as no plate cascade ships with a package)
    (tmp_path / "plates").mkdir()
    shutil.copy(detectors.path_of("lbp", ""), tmp_path / "plates" / "lbp_plates.xml")
    st = stage(faces="none", plates="cascade:plates/lbp_plates.xml")
    assert st.requirements() == []
    st.ensure_setup()
    frame, face = face_frame
    found = st.detect(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))
    assert [k for k, _ in found] == ["plate"] and iou(found[0][1], face) > 0.5


def test_a_missing_detector_fails_start_up_instead_of_skipping_the_stage(tmp_path):
    from curator import pipeline
    from curator.config import PipelineConfig

    cfg = PipelineConfig.load(None, ["stages.blur.enabled=true", "stages.blur.plates=cascade:plates/x.xml",
                                     f"models.dir={tmp_path}"], input=str(tmp_path), output=str(tmp_path / "o"))
    with pytest.raises(pipeline.PipelineError, match="stage blur cannot run: plate detector"):
        pipeline.build(cfg)
    ok = pipeline.build(PipelineConfig.load(None, ["stages.blur.enabled=true"], input=str(tmp_path),
                                            output=str(tmp_path / "o")))
    assert [s.name for s in ok.specs][:4] == ["ingest", "split", "transcode", "blur"]
    assert "blur" not in [s.name for s in pipeline.build(PipelineConfig.load(
        None, [], input=str(tmp_path), output=str(tmp_path / "o"))).specs]  # off by default
    with pytest.raises(pipeline.PipelineError, match="unknown stage 'blur'"):
        pipeline.stage_order(PipelineConfig.load(None, ["stages.order=[blur]"]))  # its place is fixed
