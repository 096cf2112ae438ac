"""`curator generate`: how the generation loop makes prompts, calls a generator and counts its footage."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from curator.config.base import _Model


class UpsamplerConfig(_Model):
    """A text LLM (OpenAI-compatible chat completions) that rewrites each template prompt."""

    url: str | None = Field(None, description="Base URL of an OpenAI-compatible API (…/v1). Unset: OPENAI_BASE_URL "
                                              "when `model` is set, else no upsampling.")
    model: str = Field("", description="Model name sent with each request.")
    api_key_env: str | None = Field(None, description="Environment variable holding the API key (never the key); "
                                                      "unset: OPENAI_API_KEY, if set.")
    instruction: str | None = Field(None, description="System instruction; default: rewrite into one detailed "
                                                      "paragraph keeping every fact.")
    timeout_s: float = Field(60.0, gt=0, description="Per request; on failure the template's prompt is used.")
    retries: int = Field(2, ge=0, description="Retries of the OpenAI SDK (408/409/429/5xx, timeouts, connection "
                                              "errors, with backoff) before the template's prompt is used.")


class GenerateConfig(_Model):
    """The generation loop (docs/generate.md). None of it changes how footage is curated."""

    verify: bool = Field(False, description="Count a generated clip toward a cell only when the place tagger's tags "
                                            "agree with the cell it was made for (`target_cell`); off: it counts "
                                            "toward its target cell once it passes curation.")
    template: str | None = Field(None, description="Prompt template with {subject} and {details} (and any cell "
                                                   "column, e.g. {place}); default: a realistic-footage sentence.")
    negative_prompt: str = Field("blurry, distorted, low quality, watermark, text overlay, subtitles, cartoon",
                                 description="Sent with every prompt.")
    base_seed: int = Field(0, description="Mixed into every prompt's seed (a different value: different prompts).")
    model: str = Field("", description="The generator's model name, recorded in gen_model (e.g. "
                                       "Cosmos-1.0-Diffusion-7B-Text2World).")
    clip_seconds: float = Field(5.0, gt=0, description="Seconds of kept footage expected per generation, to turn a "
                                                       "min_hours gap into a number of prompts.")
    timeout_s: float = Field(1800.0, gt=0, description="Time limit per generation (the budget's remainder when less).")
    retries: int = Field(1, ge=0, description="Further attempts of a failed generation (exit status, HTTP error, "
                                              "invalid output; not a timeout).")
    batch_size: int = Field(8, ge=1, description="Prompts per call of a --batch-command.")
    max_rounds: int = Field(20, ge=1, description="Generate-curate-recount rounds per invocation at most.")
    condition: bool = Field(False, description="Endpoint generators: send a kept clip of the cell as `condition` "
                                               "(Video2World). Commands are conditioned when their template has "
                                               "{condition}.")
    endpoint_params: dict[str, Any] = Field(default_factory=dict, description="Extra JSON fields of every endpoint "
                                                                             "request (e.g. num_frames, fps).")
    api_key_env: str | None = Field(None, description="Endpoint generators: environment variable with a bearer key.")
    dedup_against_source: bool = Field(
        True, description="Dedup the generated clips against the source's clip index (--index, or the index of "
                          "--run): a near-copy of an existing clip (cosine >= dedup.threshold) is marked "
                          "`duplicate_of_index` in the manifest and does not count (sets dedup.reference_index).")
    upsampler: UpsamplerConfig = Field(default_factory=UpsamplerConfig)
