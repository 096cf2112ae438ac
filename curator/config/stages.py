"""Per-video stages' options (ingest, split, transcode, embed, caption, staging) and ``stages`` itself."""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from curator.config.base import Resources, StageConfig, _Model, _res
from curator.config.filters import (
    AestheticConfig,
    DoverConfig,
    MotionConfig,
    QualityConfig,
    TextOverlayConfig,
    VideoTypeConfig,
)

VIDEO_EXTENSIONS = [".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".mts", ".flv", ".wmv", ".3gp"]


class IngestConfig(StageConfig):
    extensions: list[str] = Field(default_factory=lambda: list(VIDEO_EXTENSIONS),
                                  description="Listed objects with these suffixes are inputs (case-insensitive).")
    max_size_gb: float = Field(20.0, gt=0, description="Larger inputs are rejected (reason 'too_large').")
    max_duration_s: float = Field(6 * 3600.0, gt=0, description="Longer inputs are rejected ('too_long').")
    max_pixels: int = Field(8192 * 8192, gt=0, description="Width x height above this is rejected ('too_many_pixels').")
    max_fps: float = Field(1000.0, gt=0, description="Frame rates above this (or zero) mean a broken header ('bad_header').")
    min_duration_s: float = Field(2.0, ge=0, description="Shorter inputs are rejected ('too_short').")
    resources: Resources = _res(num_cpus=0.5, batch_size=1)


class SplitConfig(StageConfig):
    method: Literal["transnetv2", "scenedetect", "fixed"] = Field(
        "transnetv2", description="Shot detector: TransNetV2 (default), PySceneDetect adaptive, or a fixed stride."
    )
    threshold: float = Field(0.4, gt=0, lt=1, description="TransNetV2 transition probability threshold.")
    window_frames: int = Field(
        200, ge=100, le=1000,
        description="TransNetV2 window (frames); it advances by window_frames - 50 and keeps all but 25 frames at "
        "each end. 100 is the reference windowing (every frame seen twice); 200 sees each frame 1.33 times with the "
        "same cut frames on the benchmark videos (benchmarks/transnetv2_bench.py). Larger windows hold more "
        "decoded frames while the shots settle.",
    )
    scenedetect_threshold: float = Field(3.0, gt=0, description="PySceneDetect AdaptiveDetector adaptive_threshold.")
    stride_s: float = Field(10.0, gt=0, description="Clip length for method 'fixed'.")
    min_clip_s: float = Field(2.0, ge=0, description="Shots shorter than this are dropped.")
    max_clip_s: float = Field(60.0, gt=0, description="Shots longer than this are cut into pieces of at most this.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Device for TransNetV2.")
    encode_shots: bool = Field(
        True, description="When transcoding runs on the CPU, encode the shots in the detector's decode pass "
        "(one decode per video instead of two); false: split only detects."
    )
    resources: Resources = _res(num_cpus=1.0, min_actors=1, max_actors=2)

    @field_validator("max_clip_s")
    @classmethod
    def _max_ge_min(cls, v: float, info: Any) -> float:
        mn = info.data.get("min_clip_s", 0)
        if v < mn:
            raise ValueError(f"max_clip_s ({v}) must be >= min_clip_s ({mn})")
        return v


#: the custom Ray resource that cluster configs advertise on NVENC-capable GPU nodes
NVENC_RESOURCE = "nvenc"


class TranscodeConfig(StageConfig):
    encoder: Literal["auto", "cpu", "nvdec", "nvenc", "gpu"] = Field(
        "auto", description="'nvenc' = NVDEC decode + NVENC encode (L4, L40S, RTX); 'nvdec' = NVDEC decode + "
                            "libx264 on the CPU (A100, H100, H200: no NVENC); 'cpu' = libx264; 'auto' = the best "
                            "the worker's GPU really does (probed once per worker); 'gpu' = old name of 'nvenc'."
    )
    crf: int = Field(18, ge=0, le=51, description="libx264 constant rate factor (lower = higher quality).")
    preset: str = Field("veryfast", description="libx264 preset.")
    threads: int = Field(
        2, ge=1, le=16, description="libx264 threads per clip. Output bytes depend on it (not on the machine), "
        "so a fixed number keeps shards identical across runs and nodes."
    )
    gpu_bitrate_mbps: float = Field(10.0, gt=0, description="NVENC target bitrate.")
    max_short_side: int | None = Field(None, ge=16, description="Downscale clips whose short side is larger.")
    resources: Resources = _res(num_cpus=1.0, batch_size=1)

    @model_validator(mode="before")
    @classmethod
    def _gpu_encoders_want_a_gpu(cls, data: Any) -> Any:
        """encoder=nvenc (or gpu) places transcoding where NVENC exists: unless set
        explicitly, the stage asks for the custom Ray resource `nvenc` (1) and one GPU.
        Cluster configs advertise `nvenc` only on NVENC-capable GPU nodes (L4, L40S, A10G,
        RTX; not A100/H100/H200). encoder=nvdec asks for one GPU only, so it places on any
        GPU node, NVDEC-only ones included."""
        if not isinstance(data, dict) or data.get("encoder") not in ("gpu", "nvenc", "nvdec"):
            return data
        given = data.get("resources")
        if isinstance(given, Resources):  # an instance (assignment): keep what was set on it
            res = given.model_dump(exclude_unset=True)
        else:
            res = dict(given) if isinstance(given, dict) else {"num_cpus": 1.0, "batch_size": 1}
        if "custom" in res and not isinstance(res["custom"], dict):
            return data  # let field validation report it
        if data["encoder"] != "nvdec":
            res["custom"] = {NVENC_RESOURCE: 1.0, **(res.get("custom") or {})}
        res.setdefault("num_gpus", 1.0)
        # on assignment pydantic keeps the other fields as returned: hand back an instance
        return {**data, "resources": Resources(**res) if isinstance(given, Resources) else res}


class BlurConfig(StageConfig):
    enabled: bool = Field(False, description="Blur faces (and licence plates, with a plate detector) in every "
                                             "clip right after transcode, before any filter or model sees it and "
                                             "before anything is written (docs/privacy.md).")
    faces: str = Field("lbp", description="Face detector: 'lbp' (scikit-image's LBP frontal-face cascade, ships with "
                                          "the package), 'cascade:<file under models.dir>' (an OpenCV-format LBP "
                                          "cascade) or 'none'.")
    plates: str = Field("none", description="Licence-plate detector: 'cascade:<file under models.dir>' (an "
                                            "OpenCV-format LBP cascade; none ships with a package) or 'none'.")
    method: Literal["gaussian", "pixelate"] = Field("gaussian", description="How a region is blurred.")
    pad: float = Field(0.25, ge=0, le=2, description="Each detected box grows by this fraction of its size on "
                                                     "every side before blurring.")
    detect_every: int = Field(3, ge=1, description="Run the detectors on every n-th frame; boxes in between "
                                                   "are interpolated along each track.")
    hold_frames: int = Field(8, ge=0, description="A track is blurred this many frames before its first and "
                                                  "after its last detection (missed detections do not flicker).")
    detect_side: int = Field(480, ge=64, description="Frames are scaled so their long side is at most this for "
                                                     "detection (slower when larger; smaller faces found).")
    min_size: int = Field(24, ge=24, description="Smallest region the detectors look for, in pixels at "
                                                 "detect_side.")
    scale_factor: float = Field(1.15, gt=1, le=2, description="Step between the cascade's search scales "
                                                              "(smaller: slower, finds more).")
    min_neighbors: int = Field(4, ge=1, description="Overlapping cascade hits needed for a detection (higher: "
                                                    "fewer false detections, more misses).")
    min_detections: int = Field(
        1, ge=1, description="Blur a track only when it was detected on at least this many frames (2 drops "
                             "one-off false detections, and faces seen only once).")
    resources: Resources = _res(num_cpus=1.0, batch_size=1)

    @field_validator("faces", "plates")
    @classmethod
    def _detector(cls, v: str) -> str:
        if v not in ("lbp", "none") and not (v.startswith("cascade:") and len(v) > len("cascade:")):
            raise ValueError("must be 'lbp', 'none' or 'cascade:<file under models.dir>'")
        return v


class StagingConfig(_Model):
    keep_rejected_clips: bool = Field(
        True, description="Also stage clips a filter rejected, so `curator refilter` can re-admit them."
    )
    resources: Resources = _res(num_cpus=0.25, batch_size=4)


class EmbedEndpointConfig(_Model):
    url: str | None = Field(None, description="endpoint: OpenAI-compatible base URL serving /embeddings "
                                              "(unset: OPENAI_BASE_URL).")
    api_key_env: str | None = Field(None, description="endpoint: the environment variable holding the API key "
                                                      "(unset: OPENAI_API_KEY).")
    concurrency: int = Field(8, ge=1, le=1024, description="endpoint: requests in flight per worker.")
    timeout_s: float = Field(60.0, gt=0, description="endpoint: per-request timeout in seconds.")
    retries: int = Field(3, ge=0, description="endpoint: the OpenAI SDK's retries (5xx, 408/409/429, timeouts).")
    jpeg_quality: int = Field(90, ge=1, le=100, description="endpoint: JPEG quality of the frames sent.")


class EmbedConfig(StageConfig):
    model: str = Field(
        "perceptual",
        description="'perceptual' (built-in, weight-free 512-d DCT descriptor; works offline), "
                    "'open_clip:<arch>/<pretrained>' (e.g. open_clip:ViT-B-32/openai) or 'hf-video:<org>/<name>[@rev]' "
                    "(a transformers video-text model: X-CLIP, Cosmos-Embed1, InternVideo2) read from the model "
                    "directory, or 'endpoint:<server model>' (an OpenAI-compatible /v1/embeddings server: "
                    "stages.embed.endpoint).",
    )
    num_frames: int = Field(8, ge=1, le=256, description="Uniformly spaced frames per clip (open_clip; hf-video "
                                                         "models whose config names no frame count).")
    trust_remote_code: bool = Field(False, description="hf-video: run the model code its repository ships "
                                                       "(InternVideo2, Cosmos-Embed1).")
    endpoint: EmbedEndpointConfig = Field(default_factory=EmbedEndpointConfig)
    forward_batch_size: int = Field(
        64, ge=1, description="Frames per forward pass of the image tower (clips per call is resources.batch_size)."
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="'auto' = CUDA when the worker sees a GPU.")
    precision: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        "auto", description="Inference precision; 'auto' = fp16 autocast on CUDA, fp32 on CPU."
    )
    resources: Resources = _res(num_cpus=1.0, min_actors=1, max_actors=2, batch_size=8)

    @field_validator("model")
    @classmethod
    def _model_name(cls, v: str) -> str:
        if v != "perceptual" and not (v.startswith("open_clip:") and "/" in v[len("open_clip:"):]) \
                and not (v.startswith("hf-video:") and "/" in v[len("hf-video:"):]) \
                and not (v.startswith("endpoint:") and len(v) > len("endpoint:")):
            raise ValueError("must be 'perceptual', 'open_clip:<arch>/<pretrained>', 'hf-video:<org>/<name>' "
                             "or 'endpoint:<server model>'")
        return v


class CaptionEndpointConfig(_Model):
    url: str | None = Field(
        None, description="OpenAI-compatible base URL (http://host:8000/v1) or full .../chat/completions URL; "
                          "None: the environment variable OPENAI_BASE_URL."
    )
    api_key_env: str | None = Field(
        None, description="Name of the environment variable that holds the API key (sent as a Bearer token; "
                          "never logged). None: OPENAI_API_KEY if set, else no Authorization header."
    )
    concurrency: int = Field(8, ge=1, le=1024, description="Requests in flight per caption worker.")
    timeout_s: float = Field(60.0, gt=0, description="Per-request socket timeout in seconds.")
    retries: int = Field(3, ge=0, description="Retries after the first attempt on 5xx, 408/409/429, timeouts, "
                                              "connection errors (the OpenAI SDK's, backoff 0.5-8 s, Retry-After "
                                              "honoured) and malformed answers (curator's); at most retries + 1 "
                                              "requests per clip.")
    backoff_s: float = Field(1.0, ge=0, description="First delay before retrying a malformed answer; doubles per "
                                                    "retry (capped at 30 s), with jitter.")
    rate_limit_rps: float | None = Field(
        None, gt=0, description="Requests per second per caption worker (None: unlimited)."
    )
    image_format: Literal["jpeg", "png"] = Field("jpeg", description="Encoding of the frames in the data URLs.")
    jpeg_quality: int = Field(90, ge=1, le=100, description="JPEG quality of the frames sent.")
    extra_body: dict[str, Any] = Field(
        default_factory=dict, description="Extra JSON fields merged into every request body."
    )
    video: bool = Field(
        False, description="Send a window's frames as one video part (video_url with a data:video/jpeg URL of "
                           "comma-joined base64 JPEG frames, as vLLM serve reads it) instead of image_url parts; "
                           "for servers whose model takes video (Qwen2.5-VL, Qwen3-VL).",
    )


class CaptionEnhanceConfig(_Model):
    """An optional text LLM that rewrites the joined window captions into one clip caption."""

    enabled: bool = Field(False, description="Rewrite the clip caption with a text LLM (caption_enhance_model "
                                             "records which); off: the window captions joined.")
    backend: Literal["transformers", "endpoint"] = Field(
        "endpoint", description="'transformers' (AutoModelForCausalLM from the model directory) or 'endpoint' "
                                "(an OpenAI-compatible chat-completions server: stages.caption.enhance.url).",
    )
    model: str = Field("hf:Qwen/Qwen2.5-1.5B-Instruct", description="transformers: 'hf:<org>/<name>'; endpoint: "
                                                                   "the model name sent to the server.")
    url: str | None = Field(None, description="endpoint: OpenAI-compatible base URL (http://host:8000/v1).")
    api_key_env: str | None = Field(None, description="endpoint: the environment variable holding the API key.")
    prompt: str = Field(
        "Here are descriptions of consecutive parts of one video, in order:\n{captions}\n"
        "Write one coherent, detailed description of the whole video.",
        description="The instruction; {captions} is replaced by the window captions, one per line.",
    )
    max_tokens: int = Field(512, ge=1, description="Maximum new tokens of the enhanced caption.")


class CaptionVllmConfig(_Model):
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1, description="Share of GPU memory vLLM may take.")
    max_model_len: int | None = Field(None, ge=256, description="Context length (None: the model's).")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs per engine.")
    dtype: str = Field("auto", description="vLLM dtype ('auto', 'bfloat16', 'float16').")
    quantization: str | None = Field(None, description="vLLM quantization, e.g. 'fp8' (None: as stored).")
    video: Literal["auto", "on", "off"] = Field(
        "auto", description="Give a window's frames to the model as one video (multi_modal_data video [T,H,W,3]) "
                            "instead of images; 'auto': for Qwen2-VL, Qwen2.5-VL and Qwen3-VL models.",
    )


DEFAULT_CAPTION_PROMPT = "Elaborate on the visual and narrative elements of the video in detail"


class CaptionConfig(StageConfig):
    backend: Literal["transformers", "vllm", "endpoint"] = Field(
        "transformers", description="'transformers' (generate on CPU or GPU; small VLMs), 'vllm' (offline engine, "
                                    "GPU, batched) or 'endpoint' (an OpenAI-compatible chat-completions server).",
    )
    model: str = Field(
        "hf:HuggingFaceTB/SmolVLM-256M-Instruct",
        description="transformers / vllm: a model-directory name 'hf:<org>/<name>' (see `curator models list`); "
                    "endpoint: the model name sent to the server.",
    )
    prompt: str = Field(DEFAULT_CAPTION_PROMPT, description="The instruction sent with the frames.")
    prompts: dict[str, str] = Field(
        default_factory=dict,
        description="Prompts per domain: the clip's place (place taxonomy label; run place_tag before caption in "
                    "stages.order) -> instruction, e.g. {zoo: '...', default: '...'}; a clip without a matching "
                    "place gets 'default', else prompt.",
    )
    prompt_version: str | None = Field(
        None, description="Stored per clip as caption_prompt_version; None: 'sha-' + the used prompt's hash."
    )
    window_frames: int = Field(
        256, ge=0, description="Caption each window of this many frames (0: the whole clip as one window); a "
                               "remainder shorter than half a window joins the last window. Windows are recorded "
                               "in caption_windows; caption is their summary.",
    )
    num_frames: int = Field(8, ge=1, le=64, description="Uniformly spaced frames per window (first and last "
                                                        "included).")
    frame_size: list[int] | None = Field(
        None, description="Exact [width, height] of the frames given to the model; None: keep the aspect ratio "
                          "with the long side at max_side.",
    )
    max_side: int = Field(448, ge=16, description="Long side of the frames when frame_size is None (never upscaled).")
    max_tokens: int = Field(512, ge=1, description="Maximum new tokens per caption.")
    temperature: float = Field(0.0, ge=0, description="Sampling temperature (0: greedy).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass.")
    batch_size: int = Field(8, ge=1, description="Clips per generate call (transformers, vllm).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="transformers backend device.")
    precision: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        "auto", description="transformers backend dtype; 'auto' = bf16 on CUDA, fp32 on CPU."
    )
    on_error: Literal["keep", "error"] = Field(
        "keep", description="A clip whose caption failed after retries: 'keep' it (caption null, reason in "
                            "caption_error) or mark it status 'error' (reason caption_failed; not sharded).",
    )
    text_encoder: str | None = Field(
        None, description="Optional: 'hf:<org>/<name>' text encoder (e.g. a T5) in the model directory; captions "
                          "are then also stored as caption_embedding (mean-pooled, unit norm, float16).",
    )
    text_encoder_max_tokens: int = Field(512, ge=8, description="Caption tokens the text encoder reads.")
    endpoint: CaptionEndpointConfig = Field(default_factory=CaptionEndpointConfig)
    vllm: CaptionVllmConfig = Field(default_factory=CaptionVllmConfig)
    enhance: CaptionEnhanceConfig = Field(default_factory=CaptionEnhanceConfig)
    resources: Resources = _res(num_cpus=1.0, min_actors=1, max_actors=1, batch_size=8)

    @field_validator("frame_size")
    @classmethod
    def _frame_size(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (len(v) != 2 or min(v) < 16):
            raise ValueError("frame_size must be [width, height], each >= 16")
        return v

    def prompt_for(self, place: str | None) -> str:
        """The instruction for a clip of this place (prompts[place], prompts['default'], prompt)."""
        if place and place in self.prompts:
            return self.prompts[place]
        return self.prompts.get("default", self.prompt)

    def resolved_prompt_version(self, prompt: str | None = None) -> str:
        if self.prompt_version:
            return self.prompt_version
        return "sha-" + hashlib.sha256((prompt if prompt is not None else self.prompt).encode()).hexdigest()[:10]


class PlaceTagVlmConfig(_Model):
    """The VLM tagger of place_tag: the caption backend (stages.caption: backend, model, endpoint) asked for
    the taxonomy's fields as one JSON object."""

    enabled: bool = Field(False, description="Ask the caption backend's VLM for the tags (one request per clip; "
                                             "its valid answers win over the embedding tagger's, field by field).")
    prompt: str | None = Field(None, description="The instruction; None: built from the taxonomy (the fields, "
                                                 "their labels, and JSON-only output).")
    num_frames: int = Field(4, ge=1, le=64, description="Uniformly spaced frames per clip sent with the prompt.")
    max_tokens: int = Field(256, ge=16, description="Maximum tokens of the answer.")
    scene_text: bool = Field(True, description="Add the text OCR read in the clip (text_boxes, when text_overlay "
                                               "ran) to the prompt: signage localises a place.")
    json_schema: bool = Field(False, description="Endpoint backend: send the taxonomy's JSON schema as "
                                                 "response_format (servers with guided decoding, e.g. vLLM serve).")


class PlaceTagConfig(StageConfig):
    taxonomy: str | None = Field(None, description="Place taxonomy YAML (fields, labels, prompts, aliases); null = "
                                                   "the built-in curator/data/places.yaml (docs/places.md).")
    method: Literal["auto", "head", "zero_shot", "off"] = Field(
        "auto", description="Embedding tagger: 'head' (the trained head), 'zero_shot' (CLIP text prompts; needs an "
                            "open_clip embedding), 'auto' (the head when its file exists, else zero-shot), 'off' "
                            "(VLM only).")
    head: str = Field("place_tag/head.pt", description="Multi-field head from `curator train-tag-head`, relative "
                                                       "to models.dir.")
    min_confidence: float | None = Field(
        None, ge=0, le=1, description="Embedding-tagger labels whose probability is below this are left empty "
                                      "(the probability is still recorded in <field>_conf).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Torch device for the text tower / head.")
    vlm: PlaceTagVlmConfig = Field(default_factory=PlaceTagVlmConfig)
    resources: Resources = _res(num_cpus=1.0, batch_size=16)

    @field_validator("method", mode="before")
    @classmethod
    def _off(cls, v: Any) -> Any:
        return "off" if v is False else v  # YAML reads a bare `off` as false


#: the default middle of the pipeline: filters cheapest first (see benchmarks/filters_bench.py), then
#: embeddings, captions and place tags (on the clips every filter kept)
DEFAULT_ORDER = ["motion", "quality", "text_overlay", "embed", "video_type", "aesthetic", "dover", "caption",
                 "place_tag"]


class StagesConfig(_Model):
    order: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ORDER),
        description="Stages between transcode and staging, in run order (filters cheapest first, then "
                    "embed, video type, caption, place tags). A stage listed here still needs enabled: true.",
    )
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    transcode: TranscodeConfig = Field(default_factory=TranscodeConfig)
    blur: BlurConfig = Field(default_factory=BlurConfig)
    embed: EmbedConfig = Field(default_factory=EmbedConfig)
    caption: CaptionConfig = Field(default_factory=CaptionConfig)
    motion: MotionConfig = Field(default_factory=MotionConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    aesthetic: AestheticConfig = Field(default_factory=AestheticConfig)
    dover: DoverConfig = Field(default_factory=DoverConfig)
    text_overlay: TextOverlayConfig = Field(default_factory=TextOverlayConfig)
    video_type: VideoTypeConfig = Field(default_factory=VideoTypeConfig)
    place_tag: PlaceTagConfig = Field(default_factory=PlaceTagConfig)
    staging: StagingConfig = Field(default_factory=StagingConfig)
