"""The optional model-based quality stages: skipped and named when their weights are absent;
with weights present (random-weight stand-ins saved into a temporary model directory —
their scores are meaningless and not asserted) the real loading and scoring path runs."""

from __future__ import annotations

import math

import pytest

from curator.config import PipelineConfig
from curator.stage import RunContext
from curator.testing.synth_filters import H, W

pytestmark = pytest.mark.unit


def make(cls, name, model_dir, *over):
    cfg = PipelineConfig.load(None, [f"models.dir={model_dir}", *over])
    ctx = RunContext(cfg, "file:///in", "file:///out", "t", "h")
    return cls(getattr(cfg.stages, name), ctx)


@pytest.fixture(scope="module")
def clip_rows():
    import tempfile
    from pathlib import Path

    from curator.testing.synth import make_shots_video

    d = Path(tempfile.mkdtemp())
    rows = []
    for i, src in enumerate(["testsrc2", "mandelbrot"]):
        p = d / f"{i}.mp4"
        make_shots_video(str(p), [(src, 30)], width=W, height=H)
        data = p.read_bytes()
        rows.append({"kind": "clip", "video_id": "v", "clip_id": f"v-{i:05d}", "status": "ok", "clip_frames": 30,
                     "clip_width": W, "clip_height": H, "clip_fps": 25.0, "mp4": data})
    return rows


def test_absent_weights_are_named_with_their_paths(tmp_path):
    from stages.quality import AestheticStage, DoverStage

    a = make(AestheticStage, "aesthetic", tmp_path)
    missing = " | ".join(r.describe() for r in a.requirements())
    assert str(tmp_path / "aesthetic" / "sac+logos+ava1-l14-linearMSE.pth") in missing and "ViT-L-14" in missing
    assert "curator models download aesthetic" in missing
    d = make(DoverStage, "dover", tmp_path)
    text = d.requirements()[0].describe()
    assert str(tmp_path / "dover" / "DOVER.pth") in text and "curator models download dover" in text


def test_aesthetic_head_over_clip_embeddings(tmp_path, clip_rows):
    import torch

    from curator.testing import tiny_models
    from stages.quality import AestheticHead, AestheticStage

    name = tiny_models.build_open_clip(str(tmp_path))
    head = AestheticHead.build(32)  # the tiny CLIP's embedding width
    (tmp_path / "aesthetic").mkdir()
    torch.save(head.state_dict(), tmp_path / "aesthetic" / "head.pth")
    st = make(AestheticStage, "aesthetic", tmp_path, f"stages.aesthetic.clip_model={name}",
              "stages.aesthetic.weights=aesthetic/head.pth",
              "stages.aesthetic.device=cpu", "stages.aesthetic.sample_frames=2", "stages.aesthetic.min_score=-1e9")
    assert st.requirements() == []
    out = st.process([dict(r) for r in clip_rows])
    for r in out:
        assert r["status"] == "ok" and math.isfinite(r["aesthetic_score"])
        assert [c["metric"] for c in r["checks"]] == ["aesthetic_score"]
    # the same head loaded back scores the same
    again = st.process([dict(r) for r in clip_rows])
    assert [r["aesthetic_score"] for r in again] == [r["aesthetic_score"] for r in out]
    # the batch (all clips' frames through CLIP and the head together) scores each clip as alone
    alone = [st.measure(dict(r))["aesthetic_score"] for r in clip_rows]
    assert alone == pytest.approx([r["aesthetic_score"] for r in out], abs=1e-5)
    assert len(set(alone)) == len(alone)


def test_dover_style_torchscript_model(tmp_path, clip_rows):
    import torch

    from stages.quality import DoverStage

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.tech = torch.nn.Linear(3, 1)
            self.aes = torch.nn.Linear(3, 1)

        def forward(self, x):  # [1, 3, T, S, S] -> (technical, aesthetic)
            f = x.mean(dim=(2, 3, 4))
            return self.tech(f), self.aes(f)

    (tmp_path / "dover").mkdir()
    torch.jit.script(Tiny()).save(str(tmp_path / "dover" / "dover.pt"))
    st = make(DoverStage, "dover", tmp_path, "stages.dover.input=single", "stages.dover.weights=dover/dover.pt",
              "stages.dover.frames=4", "stages.dover.size=32",
              "stages.dover.device=cpu", "stages.dover.min_score=1e9")
    assert st.requirements() == []
    out = st.process([dict(r) for r in clip_rows])
    for r in out:
        assert math.isfinite(r["dover_score"])
        assert (r["status"], r["stage"], r["reason"]) == ("rejected", "dover", "low_dover")
    assert DoverStage.global_rules(st.config) == [("dover_score", 15.0)]
