"""One decode pass for detection and encoding gives what two passes give, byte for byte."""

import io

import av
import pytest

from curator.config import PipelineConfig, SplitConfig
from curator.media.cut import detect_and_encode
from curator.media.decode import DecodeStats, iter_frames
from curator.media.encode import Span, transcode_spans
from curator.media.shots import Label, make_detector
from stages.split import make_spans

pytestmark = pytest.mark.integration


def two_pass(src, cfg, fps, model=None, rotation=0):
    det = make_detector(cfg, {"fps": fps}, model)
    for idx, t, frame in iter_frames(src):
        det.push(idx, t, frame)
    det.finish()
    spans = make_spans(det.shots(), det.times, fps, cfg.min_clip_s, cfg.max_clip_s)
    clips = transcode_spans(src, [Span(**s) for s in spans], rotation=rotation, threads=2)
    return det, spans, clips


@pytest.mark.parametrize("method, max_s", [("scenedetect", 60.0), ("scenedetect", 1.5), ("fixed", 60.0)])
def test_one_pass_equals_two_passes(media_dir, method, max_s):
    src = str(media_dir / "bikes.mp4")
    cfg = SplitConfig(method=method, stride_s=3.0, min_clip_s=min(1.0, max_s / 3), max_clip_s=max_s)
    det, spans, clips = two_pass(src, cfg, 25.0)
    assert spans, "the test needs clips"

    det2 = make_detector(cfg, {"fps": 25.0})
    cut = detect_and_encode(src, det2, fps=25.0, min_s=cfg.min_clip_s, max_s=cfg.max_clip_s, threads=2)
    assert cut.shots == det.shots()
    spans2 = make_spans(cut.shots, cut.times, 25.0, cfg.min_clip_s, cfg.max_clip_s)
    assert spans2 == spans
    # every clip the pass encoded is a decided span, with the same bytes as the second pass makes
    by_span = {(s["start_frame"], s["end_frame"]): c for s, c in zip(spans, clips)}
    assert set(cut.encoded) <= set(by_span)
    for key, clip in cut.encoded.items():
        assert clip.sha256 == by_span[key].sha256 and clip.frames == by_span[key].frames
    if max_s >= 60:
        assert set(cut.encoded) == set(by_span), "every shot is one clip: nothing is left for a second pass"
    else:  # only bikes' first shot (1.2 s) fits in 1.5 s; the longer ones are pieces for the second pass
        assert set(cut.encoded) == {(0, 30)} and len(by_span) == 9


def test_transnetv2_labels_match_its_shots(media_dir):
    from curator.models import transnetv2

    src = str(media_dir / "bikes.mp4")
    model = transnetv2.load("cpu")
    cfg = SplitConfig(method="transnetv2", min_clip_s=1.0)
    det, spans, clips = two_pass(src, cfg, 25.0, model)
    det2 = make_detector(cfg, {"fps": 25.0}, model)
    cut = detect_and_encode(src, det2, fps=25.0, min_s=1.0, max_s=60.0, threads=2)
    assert cut.shots == det.shots() == [(0, 30), (30, 76), (76, 137), (137, 187), (187, 242), (242, 250)]
    # online labels rebuild the same shots
    starts = [i for i in range(det2.n) if det2.label(i) is Label.START]
    assert starts == [a for a, _ in cut.shots]
    assert {(s["start_frame"], s["end_frame"]) for s in spans} == set(cut.encoded)
    assert cut.wasted_frames == 8  # the last shot, 0.32 s, is too short and was encoded for nothing


def test_split_stage_hands_clips_to_transcode(media_dir, tmp_path, monkeypatch):
    """Through the real stages: split encodes in its pass, transcode reuses the clips (no
    second decode), and the clips equal those of split without encoding (two decodes)."""
    import stages.transcode
    from curator.driver import execute
    from curator.pipeline import build
    from curator.runners.local import LocalRunner

    second_passes = []
    real = stages.transcode.encode.transcode_spans

    def spy(source, spans, **kw):
        second_passes.append(len(spans))
        return real(source, spans, **kw)

    monkeypatch.setattr(stages.transcode.encode, "transcode_spans", spy)
    out = {}
    for encode_shots in (True, False):
        cfg = PipelineConfig.load(None, ["stages.order=[]", "dedup.enabled=false", "index.enabled=false",
                                         "stages.split.method=scenedetect", "stages.transcode.encoder=cpu",
                                         f"stages.split.encode_shots={str(encode_shots).lower()}"],
                                  input=str(media_dir / "bikes.mp4"), output=str(tmp_path / str(encode_shots)))
        execute(build(cfg), LocalRunner(), force=True)
        import pyarrow.parquet as pq

        rows = pq.read_table(tmp_path / str(encode_shots) / "manifest.parquet").to_pylist()
        out[encode_shots] = [(r["start_frame"], r["end_frame"], r["clip_sha256"], r["encoder"])
                             for r in rows if r["kind"] == "clip"]
    assert out[True] == out[False] and len(out[True]) == 3
    assert second_passes == [3], "only the run without encode_shots decodes twice"
    assert {e for *_, e in out[True]} == {"libx264"}


def test_truncated_source_keeps_what_decodes(media_dir):
    src = str(media_dir / "bikes_truncated_faststart.mp4")
    cfg = SplitConfig(method="scenedetect", min_clip_s=1.0)
    stats = DecodeStats()
    cut = detect_and_encode(src, make_detector(cfg, {"fps": 25.0}), fps=25.0, min_s=1.0, max_s=60.0,
                            stats=stats)
    assert 100 < stats.frames < 250  # the header says 250
    assert cut.shots[-1][1] == stats.frames
    for clip in cut.encoded.values():
        frames = list(av.open(io.BytesIO(clip.data)).decode(video=0))
        assert len(frames) == clip.span.end_frame - clip.span.start_frame
