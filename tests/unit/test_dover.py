"""DOVER's two views as its repository builds them (dover.yml val-l1080p, get_spatial_fragments,
UnifiedFrameSampler, get_resized_video), with centre offsets instead of random ones, and the
dover stage running a tiny random-weight DOVER-shaped model on them (two 3D-conv branches with
score-map heads, as DOVER's VQAHead gives)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from curator.config import PipelineConfig
from curator.models import dover
from curator.stage import RunContext
from curator.testing import coded
from curator.testing.coded import coded_video

pytestmark = pytest.mark.unit


def test_temporal_fragments_follow_the_unified_frame_sampler():
    t = dover.technical_indices(600)
    assert len(t) == 96  # 3 clips x 32 frames, 2 apart, one clip per third, centred in it
    assert t[:3] == [68, 70, 72] and t[31] == 68 + 62
    assert t[32] == 200 + 68 and t[64] == 400 + 68
    a = dover.aesthetic_indices(600)
    assert a == [18 * i + 8 for i in range(32)]  # one frame per segment of 600 // 32 = 18
    # a short clip: segments shorter than a clip start at their beginning and wrap around
    short = dover.technical_indices(40)
    assert short[:2] == [0, 2] and max(short) < 40 and short[16] == 32 % 40 and short[20] == 40 % 40


def test_spatial_fragments_take_7x7_patches_of_32_from_the_full_resolution_frame():
    h, w = 480, 640
    yy, xx = np.mgrid[0:h, 0:w]
    frame = np.stack([yy % 256, xx % 256, (yy // 256) * 16 + xx // 256], -1).astype(np.uint8)
    rows, cols = dover.fragment_grid(h, w)
    assert rows == [68 * i + 18 for i in range(7)] and cols == [91 * j + 29 for j in range(7)]
    m = dover.fragments(frame)
    assert m.shape == (224, 224, 3)
    for i, j in [(0, 0), (3, 5), (6, 6)]:
        patch = m[32 * i:32 * (i + 1), 32 * j:32 * (j + 1)]
        assert np.array_equal(patch, frame[rows[i]:rows[i] + 32, cols[j]:cols[j] + 32])
    # a frame smaller than 224 is upsampled first (bilinear), as DOVER's fallback does
    small = dover.fragments(frame[:96, :128])
    assert small.shape == (224, 224, 3)


def test_views_have_dovers_shapes_and_normalisation():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (100, 120, 160, 3), dtype=np.uint8)
    v = dover.views_from_frames(frames)
    assert v["technical"].shape == (3, 3, 32, 224, 224) and v["aesthetic"].shape == (1, 3, 32, 224, 224)
    assert v["technical"].dtype == np.float32
    # the aesthetic view is the whole frame resized: a constant frame stays its normalised colour
    flat = np.full((64, 90, 120, 3), (200, 100, 50), np.uint8)
    a = dover.views_from_frames(flat)["aesthetic"]
    expect = (np.array([200, 100, 50], np.float32) - dover.MEAN) / dover.STD
    assert np.allclose(a[0, :, 0, 0, 0], expect, atol=1e-4) and np.allclose(a[0, :, -1, -1, -1], expect, atol=1e-4)
    assert dover.fuse(0.1107, -0.08285) == pytest.approx(0.5)
    assert dover.fuse(0.3, 0.0) > 0.9


def test_one_pass_decode_gives_the_same_views_as_decoding_everything():
    from curator.media.decode import sample_frames

    data = coded_video(list(range(120)), 256, 192)
    all_frames, _ = sample_frames(data, 120, indices=list(range(120)))
    want = dover.views_from_frames(all_frames)
    got = dover.decode_views(data, 120)
    for k in ("technical", "aesthetic"):
        assert np.array_equal(got[k], want[k]), k


def _tiny_dover_script(path: str, seen: list | None = None) -> None:
    import torch

    class Branch(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv3d(3, 4, kernel_size=(2, 32, 32), stride=(2, 32, 32))
            self.fc_hid = torch.nn.Conv3d(4, 4, 1)
            self.fc_last = torch.nn.Conv3d(4, 1, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, 3, T, 224, 224] -> score map [N, 1, T/2, 7, 7]
            return self.fc_last(torch.nn.functional.gelu(self.fc_hid(self.conv(x))))

    class TinyDover(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.technical = Branch()
            self.aesthetic = Branch()

        def forward(self, technical: torch.Tensor, aesthetic: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            torch._assert(technical.shape[1:] == (3, 32, 224, 224), "technical view shape")
            torch._assert(aesthetic.shape[1:] == (3, 32, 224, 224), "aesthetic view shape")
            torch._assert(technical.shape[0] == 3 * aesthetic.shape[0], "3 technical clips per video")
            return self.technical(technical), self.aesthetic(aesthetic)

    torch.manual_seed(0)
    torch.jit.script(TinyDover()).save(path)


def test_dover_stage_scores_clips_with_a_two_view_model_batched(tmp_path):
    from stages.quality import DoverStage

    (tmp_path / "dover").mkdir()
    _tiny_dover_script(str(tmp_path / "dover" / "tiny.pt"))
    clips = {k: coded_video([k * 1000 + i for i in range(70)], 160, 120) for k in (1, 2, 3)}
    rows = [coded.clip_row(f"v-{k:05d}", clips[k], 70, 160, 120) for k in (1, 2, 3)]

    def stage(*over: str) -> DoverStage:
        cfg = PipelineConfig.load(None, [f"models.dir={tmp_path}", "stages.dover.weights=dover/tiny.pt",
                                         "stages.dover.device=cpu", "stages.dover.min_score=0.5", *over])
        st = DoverStage(cfg.stages.dover, RunContext(cfg, "file:///in", "file:///out", "t", "h"))
        assert st.requirements() == []
        return st

    batched = stage("stages.dover.forward_batch_size=3").process([dict(r) for r in rows])
    single = stage("stages.dover.forward_batch_size=1").process([dict(r) for r in rows])
    for b, s in zip(batched, single):
        assert math.isfinite(b["dover_technical"]) and math.isfinite(b["dover_aesthetic"])
        assert b["dover_score"] == pytest.approx(dover.fuse(b["dover_technical"], b["dover_aesthetic"]), abs=1e-5)
        # batching clips together does not mix them
        assert b["dover_technical"] == pytest.approx(s["dover_technical"], abs=1e-4)
        assert b["dover_aesthetic"] == pytest.approx(s["dover_aesthetic"], abs=1e-4)
        assert [c["metric"] for c in b["checks"]] == ["dover_score"]
        assert (b["status"] == "ok") == (b["dover_score"] >= 0.5)
    assert len({round(r["dover_technical"], 5) for r in batched}) == 3  # different clips, different scores


def test_published_weights_need_the_dover_package(tmp_path, monkeypatch):
    from stages.quality import DoverStage

    (tmp_path / "dover").mkdir()
    (tmp_path / "dover" / "DOVER.pth").write_bytes(b"")
    monkeypatch.setattr(dover, "dover_package_missing", lambda: "the dover package (pip install x)")
    cfg = PipelineConfig.load(None, [f"models.dir={tmp_path}"])
    st = DoverStage(cfg.stages.dover, RunContext(cfg, "file:///in", "file:///out", "t", "h"))
    [req] = st.requirements()
    assert "dover package" in req.describe() and "VQAssessment/DOVER" in req.describe()
