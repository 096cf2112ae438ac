"""Filter stages' options: motion, quality, aesthetic, DOVER, text overlay, video type."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from curator.config.base import Resources, StageConfig, _res


class FilterConfig(StageConfig):
    """What every filter stage has. A threshold of null records the score without checking it."""

    score_rejected: bool = Field(
        False, description="Also score clips that an earlier filter rejected (their status is kept), so "
                           "`curator refilter` can re-admit them with every score known. Costs compute.")


class MotionConfig(FilterConfig):
    method: Literal["auto", "mv", "flow"] = Field(
        "auto", description="'mv' = codec motion vectors (PyAV export_mvs); 'flow' = Farneback optical flow on "
                            "sampled low-resolution frames; 'auto' = motion vectors when the decoder exports "
                            "them, else flow.")
    analysis_size: int = Field(160, ge=32, description="Long side (px) of the frames optical flow runs on.")
    windows: int = Field(3, ge=1, description="Flow: windows of consecutive frames sampled over the clip.")
    window_frames: int = Field(6, ge=3, description="Flow: consecutive frames per window (>= 3 for shakiness).")
    min_motion: float | None = Field(
        0.005, ge=0, description="Keep clips whose motion_score (mean motion, fraction of the frame diagonal per "
                                "second) is at least this; below is 'static'.")
    max_shake: float | None = Field(
        1.0, ge=0, description="Keep clips whose shake_score (frame-to-frame jitter of the global motion, % of "
                               "the frame diagonal) is at most this; above is 'shaky'.")
    pan_threshold: float = Field(
        0.04, gt=0, description="Camera translation (fraction of the frame width/height per second) from which "
                                "a clip is tagged pan_*/tilt_*.")
    zoom_threshold: float = Field(
        0.04, gt=0, description="Relative scale change per second from which a clip is tagged zoom_in/zoom_out.")
    resources: Resources = _res(num_cpus=1.0, batch_size=4)


class QualityConfig(FilterConfig):
    sample_frames: int = Field(3, ge=1, description="Frames sampled uniformly per clip.")
    max_side: int = Field(480, ge=64, description="Frames with a longer side are downscaled to this for BRISQUE, "
                                                  "sharpness and noise (blockiness uses the coded size).")
    min_score: float | None = Field(
        0.5, ge=0, le=1, description="Keep clips whose combined technical quality_score (0..1) is at least this.")
    max_brisque: float | None = Field(None, description="Keep clips whose mean BRISQUE (0 best .. 100 worst) is "
                                                        "at most this (null: not checked on its own).")
    min_sharpness: float | None = Field(None, ge=0, description="Keep clips whose sharpness (variance of the "
                                                                "Laplacian at max_side) is at least this.")
    max_clipped: float | None = Field(None, ge=0, le=1, description="Keep clips whose fraction of clipped "
                                                                     "(black or white) pixels is at most this.")
    max_blockiness: float | None = Field(None, ge=0, description="Keep clips whose blockiness (8x8 grid edge "
                                                                 "ratio, 1 = none) is at most this.")
    drop_bottom_percent: float = Field(
        0.0, ge=0, lt=100, description="Global rule: after the run, drop this percentage of clips with the lowest "
                                       "quality_score over the whole run's manifest (the reference design drops "
                                       "the bottom 15 % by DOVER). 0 = off.")
    weights: dict[str, float] = Field(
        default_factory=lambda: {"brisque": 0.35, "sharpness": 0.2, "noise": 0.2, "exposure": 0.1,
                                 "blockiness": 0.15},
        description="Weights of the sub-scores in quality_score.")
    resources: Resources = _res(num_cpus=1.0, batch_size=4)


class AestheticConfig(FilterConfig):
    weights: str = Field("aesthetic/sac+logos+ava1-l14-linearMSE.pth",
                         description="MLP head over CLIP image embeddings (state dict in the LAION improved-aesthetic-"
                                     "predictor layout), relative to models.dir; the default is its published head "
                                     "(`curator models download aesthetic`).")
    clip_model: str = Field("open_clip:ViT-L-14/openai", description="The CLIP model the head was trained on "
                                                                    "(a model-directory name).")
    sample_frames: int = Field(4, ge=1, description="Frames scored per clip (the clip score is their mean).")
    min_score: float | None = Field(3.5, description="Keep clips whose aesthetic_score is at least this (reference: 3.5).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Torch device.")
    resources: Resources = _res(num_cpus=1.0, batch_size=8)


class DoverConfig(FilterConfig):
    weights: str = Field("dover/DOVER.pth", description="DOVER's published weights (`curator models download dover`; "
                                                        "needs the dover package) or a TorchScript .pt / torch.export "
                                                        ".pt2 module, relative to models.dir (see docs/filters.md).")
    input: Literal["views", "single"] = Field(
        "views", description="'views': DOVER's technical and aesthetic views, forward(technical, aesthetic) -> "
                             "(technical, aesthetic); 'single': one [1, 3, frames, size, size] tensor (older exports).")
    forward_batch_size: int = Field(4, ge=1, description="Clips per forward pass (views input).")
    frames: int = Field(32, ge=1, description="input single: frames per clip given to the model.")
    size: int = Field(224, ge=32, description="input single: side of the square frames given to the model.")
    min_score: float | None = Field(None, description="Keep clips whose dover_score is at least this.")
    drop_bottom_percent: float = Field(
        15.0, ge=0, lt=100, description="Global rule: drop this percentage of clips with the lowest dover_score "
                                        "over the whole run (the reference design: 15).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Torch device.")
    resources: Resources = _res(num_cpus=1.0, batch_size=4)


class TextOverlayConfig(FilterConfig):
    sample_frames: int = Field(6, ge=1, description="Frames sampled uniformly per clip for OCR.")
    det_limit_side: int = Field(640, ge=64, description="Frames are scaled so the long side is at most this "
                                                        "before detection (larger is slower).")
    min_text_confidence: float = Field(0.5, ge=0, le=1, description="A detected box counts as text when "
                                                                    "recognition reads it with this confidence.")
    min_chars: int = Field(2, ge=1, description="... and at least this many letters or digits.")
    motion_gap_s: float = Field(
        0.12, gt=0, description="Each OCR frame is compared with the frame this much later (earlier at the "
                                "clip's end) to see how each text box and the background moved.")
    min_camera_motion: float = Field(
        0.02, ge=0, description="Background motion (fraction of the frame diagonal per second) from which the "
                                "camera counts as moving: text that stays put then is an overlay, text that "
                                "moves with the background is scene text.")
    still_text: Literal["layout", "overlay", "scene"] = Field(
        "layout", description="Text that does not move while the background does not move either gives no "
                              "motion evidence. 'layout': an overlay when it sits where overlays go (the top or "
                              "bottom band, or centred horizontally), else scene text; 'overlay' or 'scene': "
                              "always that.")
    band: float = Field(
        0.25, gt=0, lt=0.5, description="Height of the top and bottom bands (fraction of the frame) where "
                                        "captions, lower thirds and tickers sit (used for tickers and by "
                                        "still_text: layout).")
    max_overlay_area: float | None = Field(
        0.01, ge=0, le=1, description="Keep clips whose overlay_area (mean fraction of the frame covered by "
                                      "overlay text: captions, titles, tickers, logos) is at most this; scene "
                                      "text is not counted.")
    max_text_area: float | None = Field(
        None, ge=0, le=1, description="Keep clips whose text_area (mean fraction of the frame covered by any text, "
                                      "scene text included) is at most this (null: not checked; 0.01 is the "
                                      "old 'reject any text' behaviour).")
    max_text_frames: float | None = Field(
        None, ge=0, le=1, description="Keep clips whose text_frames_fraction (sampled frames with text) is at "
                                      "most this (null: not checked).")
    resources: Resources = _res(num_cpus=1.0, batch_size=4)


class VideoTypeConfig(FilterConfig):
    taxonomy: str | None = Field(None, description="Taxonomy YAML (types, prompts, sampling weights); null = the "
                                                   "built-in curator/data/taxonomy.yaml.")
    head: str | None = Field(
        "video_type/head.pt", description="MLP head from `curator train-type-head`, relative to models.dir; used "
                                          "instead of zero-shot prompts when the file exists.")
    weights: dict[str, float] = Field(
        default_factory=dict, description="Per-type sampling weights overriding the taxonomy's: 0 = drop, "
                                          "<1 = down-sample, >1 = up-sample.")
    min_confidence: float | None = Field(
        None, ge=0, le=1, description="Keep clips whose video_type_score (probability of the chosen type) is at "
                                      "least this.")
    seed: int = Field(0, description="Seed of the deterministic per-clip sampling draw for weights < 1.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Torch device for the text tower / head.")
    resources: Resources = _res(num_cpus=1.0, batch_size=16)
