"""One typed config for a curation run.

The pydantic model below is the single source of truth: it is the schema of the YAML
file, the set of keys `--set a.b=c` accepts on the command line, and the text of
`curator config --defaults` (field descriptions become comments). No parallel list of
flags exists anywhere else.

The model is split by topic: ``base`` (the base model, errors, resources), ``stages``
(per-video stages), ``filters`` (filter stages), ``shard`` (shard, dedup, index),
``run`` (runner, models, report), ``root`` (``PipelineConfig``: YAML, overrides,
content hash) and ``changes`` (what differs between two configs of one output, by what a
rerun must redo: the resume key). Import from ``curator.config``; the modules are an implementation detail.
"""

from __future__ import annotations

from curator.config.base import ConfigError, Resources, StageConfig
from curator.config.filters import (
    AestheticConfig,
    DoverConfig,
    FilterConfig,
    MotionConfig,
    QualityConfig,
    TextOverlayConfig,
    VideoTypeConfig,
)
from curator.config.generate import GenerateConfig, UpsamplerConfig
from curator.config.root import PipelineConfig
from curator.config.run import RUNTIME_KEYS, ModelsConfig, ReportConfig, RunConfig, default_model_dir
from curator.config.shard import (
    CatalogConfig,
    DedupConfig,
    IndexConfig,
    LatentProfileConfig,
    ShardConfig,
    SplitRules,
    TokenizerProfileConfig,
    parse_condition,
)
from curator.config.stages import (
    DEFAULT_CAPTION_PROMPT,
    DEFAULT_ORDER,
    NVENC_RESOURCE,
    VIDEO_EXTENSIONS,
    BlurConfig,
    CaptionConfig,
    CaptionEndpointConfig,
    CaptionVllmConfig,
    EmbedConfig,
    EmbedEndpointConfig,
    IngestConfig,
    PlaceTagConfig,
    PlaceTagVlmConfig,
    SplitConfig,
    StagesConfig,
    StagingConfig,
    TranscodeConfig,
)
from curator.storage.config import StorageConfig

__all__ = [
    "AestheticConfig", "BlurConfig", "CaptionConfig", "CatalogConfig", "CaptionEndpointConfig", "CaptionVllmConfig",
    "ConfigError", "DEFAULT_CAPTION_PROMPT", "DEFAULT_ORDER", "DedupConfig", "DoverConfig", "EmbedConfig",
    "EmbedEndpointConfig", "FilterConfig",
    "GenerateConfig", "IndexConfig", "IngestConfig", "LatentProfileConfig", "ModelsConfig", "MotionConfig", "NVENC_RESOURCE", "PipelineConfig",
    "PlaceTagConfig", "PlaceTagVlmConfig",
    "QualityConfig", "RUNTIME_KEYS", "ReportConfig", "Resources", "RunConfig", "ShardConfig", "SplitConfig",
    "SplitRules", "StageConfig", "StagesConfig", "StagingConfig", "StorageConfig", "TextOverlayConfig",
    "TokenizerProfileConfig", "TranscodeConfig", "UpsamplerConfig", "VIDEO_EXTENSIONS", "VideoTypeConfig", "default_model_dir",
    "parse_condition",
]
