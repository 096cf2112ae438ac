"""Captioning backends behind one interface: a VLM turns a clip's frames into text.

    backend = make_backend(caption_config, model_dir)
    results = backend.caption([CaptionJob(key, frames, indices), ...])   # one result per job, same order
    backend.close()

Backends:

* ``transformers`` — ``AutoProcessor`` + ``AutoModelForImageTextToText`` from
  ``<model_dir>/hf/<org>/<name>``; batched ``generate`` on CPU or GPU. For small VLMs.
* ``vllm`` — the vLLM offline engine (GPU), batched through ``LLM.chat``; imported lazily,
  only where vLLM and CUDA exist (``pip install 'curator[vllm]'``).
* ``endpoint`` — an OpenAI-compatible ``/chat/completions`` server (vLLM serve, TGI, a
  hosted API) through the OpenAI SDK: frames as base64 data URLs in ``image_url`` parts,
  a bounded pool of concurrent requests over one pooled HTTP client, a per-request
  timeout, the SDK's retries with exponential backoff on 5xx, 408/409/429, timeouts and
  connection errors (``Retry-After`` honoured), retries of malformed answers, and a
  requests/s limit. The URL is ``stages.caption.endpoint.url``, else ``OPENAI_BASE_URL``;
  the API key comes from the environment variable the config names, else
  ``OPENAI_API_KEY``, and never appears in logs or error texts.

A job that fails (after the retries, for the endpoint) gets ``CaptionResult.error`` with
the reason; the other jobs of the batch are unaffected.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from curator.config import CaptionConfig
from curator.media.frames import even
from curator.models import registry
from curator.models.openai_client import (  # noqa: F401 - re-exported: the caption backend's names
    API_KEY_ENV,
    BASE_URL_ENV,
    RETRIED_STATUSES,
    base_url,
    make_client,
    resolve_url,
    status_message,
)
from curator.stage import Requirement

log = logging.getLogger(__name__)


@dataclass
class CaptionJob:
    key: str  # clip id (for logs)
    frames: np.ndarray  # uint8 [n, H, W, 3], in time order
    indices: list[int]  # the frame indices they are
    prompt: str | None = None  # this job's instruction (None: the config's prompt)


@dataclass
class CaptionResult:
    text: str | None = None
    error: str | None = None
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.text is not None


# ------------------------------------------------------------------------- frames
def frame_size(cfg: CaptionConfig, width: int, height: int) -> tuple[int, int]:
    """(width, height) of the frames the model gets for a width x height clip."""
    if cfg.frame_size:
        return int(cfg.frame_size[0]), int(cfg.frame_size[1])
    if not width or not height:
        return cfg.max_side, cfg.max_side
    scale = min(1.0, cfg.max_side / max(width, height))
    return even(width * scale), even(height * scale)


def encode_image(frame: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    img = Image.fromarray(frame)
    if fmt == "png":
        img.save(buf, format="PNG")
    else:
        img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def data_url(frame: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> str:
    mime = "image/png" if fmt == "png" else "image/jpeg"
    return f"data:{mime};base64," + base64.b64encode(encode_image(frame, fmt, quality)).decode("ascii")


def video_data_url(frames: np.ndarray, quality: int = 90) -> str:
    """The frames as one video data URL: ``data:video/jpeg;base64,<frame 1>,<frame 2>,...`` (how vLLM
    serve reads a video given as JPEG frames)."""
    return "data:video/jpeg;base64," + ",".join(base64.b64encode(encode_image(f, "jpeg", quality)).decode("ascii")
                                                for f in frames)


def openai_messages(prompt: str, frames: np.ndarray, fmt: str = "jpeg", quality: int = 90,
                    video: bool = False) -> list[dict[str, Any]]:
    """One user turn: the frames (in time order) as image_url parts — or, with `video`, as one
    video_url part — then the prompt. No frames: a text-only turn."""
    content: list[dict[str, Any]]
    if video and len(frames):
        content = [{"type": "video_url", "video_url": {"url": video_data_url(frames, quality)}}]
    else:
        content = [{"type": "image_url", "image_url": {"url": data_url(f, fmt, quality)}} for f in frames]
    content.append({"type": "text", "text": prompt})
    return [{"role": "user", "content": content}]


# ----------------------------------------------------------------------- backends
class CaptionBackend:
    """Base: `model_id` is what gets stored per clip as caption_model."""

    model_id: str = ""

    def caption(self, jobs: Sequence[CaptionJob]) -> list[CaptionResult]:
        raise NotImplementedError

    def close(self) -> None:
        pass


def requirements(cfg: CaptionConfig, model_dir: str) -> list[Requirement]:
    """What the configured backend is missing here (checked at start-up)."""
    out: list[Requirement] = []
    if cfg.backend == "endpoint":
        if not endpoint_url(cfg):
            out.append(Requirement("caption backend 'endpoint' has no URL",
                                   fix=f"set stages.caption.endpoint.url=http://HOST:PORT/v1 (or {BASE_URL_ENV})"))
        import importlib.util

        if importlib.util.find_spec("openai") is None:
            out.append(Requirement("caption backend 'endpoint' needs the openai package", fix="pip install openai"))
        return out
    if cfg.backend == "vllm":
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            out.append(Requirement("caption backend 'vllm' needs the vllm package",
                                   fix="pip install 'curator[vllm]' (in its own environment: vLLM pins torch)"))
        else:
            import torch

            if not torch.cuda.is_available():
                out.append(Requirement("caption backend 'vllm' needs a CUDA GPU",
                                       fix="run on a GPU node, or set stages.caption.backend=transformers"))
    req = registry.requirement(cfg.model, model_dir, f"caption ({cfg.backend})")
    if req is not None:
        out.append(req)
    return out


def make_backend(cfg: CaptionConfig, model_dir: str) -> CaptionBackend:
    if cfg.backend == "endpoint":
        return EndpointBackend(cfg)
    if cfg.backend == "vllm":
        return VllmBackend(cfg, model_dir)
    return TransformersBackend(cfg, model_dir)


def _torch_dtype(device: str, precision: str) -> Any:
    import torch

    if precision == "fp32" or (precision == "auto" and device == "cpu"):
        return torch.float32
    if precision == "fp16":
        return torch.float16
    return torch.bfloat16


class TransformersBackend(CaptionBackend):
    """Hugging Face transformers: the model's processor and chat template, batched generate."""

    def __init__(self, cfg: CaptionConfig, model_dir: str):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from curator.models.clip import resolve_device

        self.cfg = cfg
        self.model_id = registry.recorded_name(cfg.model, model_dir)
        path = registry.model_path(cfg.model, model_dir)
        gaps = registry.missing(cfg.model, model_dir)
        if gaps:
            raise FileNotFoundError(f"model {cfg.model} missing {', '.join(gaps)}; "
                                    f"fix: {registry.download_command(cfg.model, model_dir)}")
        self.device = resolve_device(cfg.device)
        self.processor = AutoProcessor.from_pretrained(path)
        tok = getattr(self.processor, "tokenizer", None)
        if tok is not None:
            tok.padding_side = "left"  # decoder-only generation pads on the left
            if tok.pad_token is None and tok.eos_token is not None:
                tok.pad_token = tok.eos_token
        model = AutoModelForImageTextToText.from_pretrained(path)
        # transformers types PreTrainedModel.to through a decorator that mypy reads as a different signature
        self.model = model.to(self.device, dtype=_torch_dtype(self.device, cfg.precision)).eval()  # type: ignore[arg-type]
        self._torch = torch
        import inspect

        self._kw_style = "processor_kwargs" in inspect.signature(self.processor.apply_chat_template).parameters

    def _inputs(self, jobs: Sequence[CaptionJob]) -> Any:
        from PIL import Image

        convs = []
        for job in jobs:
            content: list[dict[str, Any]] = [{"type": "image", "image": Image.fromarray(f)} for f in job.frames]
            content.append({"type": "text", "text": job.prompt or self.cfg.prompt})
            convs.append([{"role": "user", "content": content}])
        kwargs: dict[str, Any] = dict(add_generation_prompt=True, tokenize=True, return_dict=True,
                                      return_tensors="pt")
        if self._kw_style:
            kwargs["processor_kwargs"] = {"padding": True}
        else:
            kwargs["padding"] = True
        inputs = self.processor.apply_chat_template(convs, **kwargs)
        dtype = next(self.model.parameters()).dtype
        return {k: (v.to(self.device, dtype=dtype) if v.is_floating_point() else v.to(self.device))
                for k, v in inputs.items() if hasattr(v, "to")}

    def _generate(self, jobs: Sequence[CaptionJob]) -> list[str]:
        inputs = self._inputs(jobs)
        gen: dict[str, Any] = dict(max_new_tokens=self.cfg.max_tokens)
        if self.cfg.temperature > 0:
            gen.update(do_sample=True, temperature=self.cfg.temperature, top_p=self.cfg.top_p)
        else:
            gen.update(do_sample=False)
        with self._torch.inference_mode():
            out = self.model.generate(**inputs, **gen)
        new = out[:, inputs["input_ids"].shape[1]:]
        return [t.strip() for t in self.processor.batch_decode(new, skip_special_tokens=True)]

    def caption(self, jobs: Sequence[CaptionJob]) -> list[CaptionResult]:
        results: list[CaptionResult] = []
        bs = self.cfg.batch_size
        for i in range(0, len(jobs), bs):
            chunk = list(jobs[i:i + bs])
            try:
                results.extend(CaptionResult(text=t) for t in self._generate(chunk))
            except Exception as exc:  # isolate the failing clip(s): retry one by one
                if len(chunk) == 1:
                    results.append(CaptionResult(error=f"generate failed: {type(exc).__name__}: {exc}"))
                    continue
                log.warning("caption batch of %d failed (%s); retrying clip by clip", len(chunk), exc)
                results.extend(self.caption_one(j) for j in chunk)
        return results

    def caption_one(self, job: CaptionJob) -> CaptionResult:
        try:
            return CaptionResult(text=self._generate([job])[0])
        except Exception as exc:
            return CaptionResult(error=f"generate failed: {type(exc).__name__}: {exc}")


#: model types (config.json) whose processors take a video: their windows go to vLLM as one video
VIDEO_MODEL_TYPES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe", "qwen2_5_omni")


def model_type(path: str) -> str:
    try:
        with open(os.path.join(path, "config.json")) as fh:
            return str(json.load(fh).get("model_type", ""))
    except (OSError, ValueError):
        return ""


def takes_video(setting: str, path: str) -> bool:
    """Whether the model at `path` gets frames as a video ('on' / 'off' / 'auto' by model type)."""
    if setting != "auto":
        return setting == "on"
    return model_type(path) in VIDEO_MODEL_TYPES


class VllmBackend(CaptionBackend):
    """vLLM offline engine on GPU: every job of a batch goes to the engine in one call.

    Video models (Qwen2-VL / Qwen2.5-VL / Qwen3-VL, or ``vllm.video: on``) get a window's
    frames as one ``multi_modal_data={"video": uint8 [T, H, W, 3]}`` after a prompt built by the
    model's own chat template; others get the frames as images through ``LLM.chat``."""

    def __init__(self, cfg: CaptionConfig, model_dir: str):
        try:
            from vllm import LLM, SamplingParams
        except ImportError as exc:
            raise RuntimeError("the vllm backend needs vLLM: pip install 'curator[vllm]'") from exc
        gaps = registry.missing(cfg.model, model_dir)
        if gaps:
            raise FileNotFoundError(f"model {cfg.model} missing {', '.join(gaps)}; "
                                    f"fix: {registry.download_command(cfg.model, model_dir)}")
        self.cfg = cfg
        self.model_id = registry.recorded_name(cfg.model, model_dir)
        v = cfg.vllm
        path = registry.model_path(cfg.model, model_dir)
        self.video = takes_video(v.video, path)
        kwargs: dict[str, Any] = dict(
            model=path,
            limit_mm_per_prompt={"video": 1} if self.video else {"image": cfg.num_frames},
            gpu_memory_utilization=v.gpu_memory_utilization,
            tensor_parallel_size=v.tensor_parallel_size,
            dtype=v.dtype,
            seed=0,
        )
        if v.max_model_len:
            kwargs["max_model_len"] = v.max_model_len
        if v.quantization:
            kwargs["quantization"] = v.quantization
        self.llm = LLM(**kwargs)
        self.params = SamplingParams(max_tokens=cfg.max_tokens, temperature=cfg.temperature, top_p=cfg.top_p)
        self.processor = None
        if self.video:
            from transformers import AutoProcessor

            self.processor = AutoProcessor.from_pretrained(path)

    def video_prompt(self, prompt: str) -> str:
        """The model's chat template over one user turn: a video, then the instruction."""
        conv = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": prompt}]}]
        return str(self.processor.apply_chat_template(conv, tokenize=False,  # type: ignore[union-attr]
                                                      add_generation_prompt=True))

    def caption(self, jobs: Sequence[CaptionJob]) -> list[CaptionResult]:
        try:
            if self.video:
                reqs = [{"prompt": self.video_prompt(j.prompt or self.cfg.prompt),
                         "multi_modal_data": {"video": np.ascontiguousarray(j.frames)}} for j in jobs]
                outs = self.llm.generate(reqs, self.params, use_tqdm=False)
            else:
                convs = [openai_messages(j.prompt or self.cfg.prompt, j.frames, "jpeg", 95) for j in jobs]
                outs = self.llm.chat(convs, self.params, use_tqdm=False)
        except Exception as exc:
            return [CaptionResult(error=f"vllm failed: {type(exc).__name__}: {exc}") for _ in jobs]
        results = []
        for o in outs:
            text = o.outputs[0].text.strip() if o.outputs else ""
            results.append(CaptionResult(text=text) if text else CaptionResult(error="vllm returned no text"))
        return results


# ------------------------------------------------------------------------ endpoint
class RateLimiter:
    """At most `rate` acquisitions per second, shared by threads (even spacing, no bursts)."""

    def __init__(self, rate: float | None):
        self.interval = 1.0 / rate if rate else 0.0
        self.lock = threading.Lock()
        self.next_at = 0.0

    def acquire(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            at = max(now, self.next_at)
            self.next_at = at + self.interval
        if at > now:
            time.sleep(at - now)


def endpoint_url(cfg: CaptionConfig) -> str | None:
    """stages.caption.endpoint.url, else OPENAI_BASE_URL (the SDK's variable)."""
    return resolve_url(cfg.endpoint.url)


class _Unusable(Exception):
    """A 200 whose body is not a chat completion with text (the SDK does not retry these)."""


class EndpointBackend(CaptionBackend):
    """An OpenAI-compatible chat-completions server through the OpenAI SDK, with a bounded
    pool of concurrent requests.

    The SDK keeps one pooled HTTP client per backend, reads ``OPENAI_BASE_URL`` and
    ``OPENAI_API_KEY`` when the config names neither, and retries 408/409/429/5xx,
    timeouts and connection errors with exponential backoff and jitter, honouring
    ``Retry-After`` (its policy: from 0.5 s, doubling, at most 8 s). A 200 whose body is
    not a usable completion (malformed JSON, no choices, no text) is retried here, after
    ``endpoint.backoff_s`` doubling. ``endpoint.retries`` bounds the attempts of a clip
    over both: at most ``retries + 1`` requests."""

    MAX_BACKOFF_S = 30.0

    def __init__(self, cfg: CaptionConfig):

        url = endpoint_url(cfg)
        if not url:
            raise ValueError(f"stages.caption.endpoint.url is not set (nor {BASE_URL_ENV})")
        self.cfg = cfg
        self.ep = cfg.endpoint
        self.model_id = cfg.model
        self.url = url
        self.oai = make_client(url, api_key_env=self.ep.api_key_env, timeout_s=self.ep.timeout_s,
                               max_retries=self.ep.retries, what="caption endpoint")
        self._key = self.oai.key
        self._headers = self.oai.headers
        self.client = self.oai.client
        self.limiter = RateLimiter(self.ep.rate_limit_rps)
        self.pool = ThreadPoolExecutor(max_workers=self.ep.concurrency, thread_name_prefix="caption-http")
        self._rng = random.Random(0)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()

    def _redact(self, text: str) -> str:
        return self.oai.redact(text)

    def request(self, job: CaptionJob) -> dict[str, Any]:
        """The keyword arguments of ``chat.completions.create`` for a job."""
        return {
            "model": self.cfg.model,
            "messages": openai_messages(job.prompt or self.cfg.prompt, job.frames, self.ep.image_format,
                                        self.ep.jpeg_quality, video=self.ep.video),
            "max_tokens": self.cfg.max_tokens,
            "temperature": self.cfg.temperature,
            "top_p": self.cfg.top_p,
            "extra_body": dict(self.ep.extra_body) or None,
            "extra_headers": self._headers or None,
        }

    @staticmethod
    def _text(raw: Any) -> str:
        """The completion's text, or _Unusable."""
        try:
            doc = raw.parse()
            text = doc.choices[0].message.content
        except (ValueError, IndexError, AttributeError, TypeError) as exc:
            body = ""
            with contextlib.suppress(Exception):
                body = raw.http_response.text[:200]
            raise _Unusable(f"malformed response ({type(exc).__name__}): {body!r}") from None
        if isinstance(text, list):  # content parts
            text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
        if not isinstance(text, str):
            raise _Unusable(f"malformed response: content is {type(text).__name__}")
        return text.strip()

    def caption_one(self, job: CaptionJob) -> CaptionResult:
        import openai

        kwargs = self.request(job)
        budget = self.ep.retries + 1
        attempts = 0
        last = ""
        while attempts < budget:
            self.limiter.acquire()
            client = self.client.with_options(max_retries=budget - attempts - 1)
            try:
                raw = client.chat.completions.with_raw_response.create(**kwargs)
            except openai.APITimeoutError:
                return self._failed(budget, f"timeout after {self.ep.timeout_s:g} s")
            except openai.APIConnectionError as exc:
                return self._failed(budget, f"connection error: {exc.__cause__ or exc}")
            except openai.APIStatusError as exc:
                reason = f"http {exc.status_code}: {status_message(exc)}"
                if exc.status_code >= 500 or exc.status_code in RETRIED_STATUSES:
                    return self._failed(budget, reason)
                return CaptionResult(error=self._redact(reason), attempts=attempts + 1)
            except Exception as exc:  # anything unexpected stays this clip's problem
                return CaptionResult(error=self._redact(f"{type(exc).__name__}: {exc}"), attempts=attempts + 1)
            attempts += 1 + int(getattr(raw, "retries_taken", 0) or 0)
            try:
                return CaptionResult(text=self._text(raw), attempts=attempts)
            except _Unusable as exc:
                last = str(exc)
            if attempts >= budget:
                break
            delay = min(self.MAX_BACKOFF_S, self.ep.backoff_s * (2 ** (attempts - 1)))
            delay *= 0.5 + self._rng.random()  # jitter: no thundering herd after an outage
            log.info("caption %s: %s; retry %d/%d in %.2f s", job.key, self._redact(last), attempts,
                     self.ep.retries, delay)
            time.sleep(delay)
        return self._failed(attempts, last)

    def _failed(self, attempts: int, reason: str) -> CaptionResult:
        return CaptionResult(error=self._redact(f"after {attempts} attempts: {reason}"), attempts=attempts)

    def caption(self, jobs: Sequence[CaptionJob]) -> list[CaptionResult]:
        return list(self.pool.map(self.caption_one, jobs))


# ------------------------------------------------------------------------ enhancement
def enhance_prompt(template: str, captions: Sequence[str]) -> str:
    return template.replace("{captions}", "\n".join(captions))


class Enhancer:
    """A text LLM that rewrites a clip's window captions into one caption: `enhance(texts) -> results`."""

    model_id: str = ""

    def enhance(self, prompts: Sequence[str]) -> list[CaptionResult]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class EndpointEnhancer(Enhancer):
    """Text-only chat completions through the endpoint backend (same retries, timeouts, key handling)."""

    def __init__(self, cfg: CaptionConfig):
        e = cfg.enhance
        if not e.url:
            raise ValueError("stages.caption.enhance.url is not set")
        sub = cfg.model_copy(update={
            "model": e.model, "max_tokens": e.max_tokens,
            "endpoint": cfg.endpoint.model_copy(update={"url": e.url, "api_key_env": e.api_key_env, "video": False,
                                                        "extra_body": {}}),
        })
        self.backend = EndpointBackend(sub)
        self.model_id = e.model

    def enhance(self, prompts: Sequence[str]) -> list[CaptionResult]:
        none = np.zeros((0, 1, 1, 3), np.uint8)
        return self.backend.caption([CaptionJob(f"enhance-{i}", none, [], p) for i, p in enumerate(prompts)])

    def close(self) -> None:
        self.backend.close()


class TransformersEnhancer(Enhancer):
    """AutoModelForCausalLM + its tokenizer (chat template when it has one) from the model directory."""

    def __init__(self, cfg: CaptionConfig, model_dir: str):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from curator.models.clip import resolve_device

        e = cfg.enhance
        gaps = registry.missing(e.model, model_dir)
        if gaps:
            raise FileNotFoundError(f"model {e.model} missing {', '.join(gaps)}; "
                                    f"fix: {registry.download_command(e.model, model_dir)}")
        path = registry.model_path(e.model, model_dir)
        self.cfg = cfg
        self.model_id = registry.recorded_name(e.model, model_dir)
        self.device = resolve_device(cfg.device)
        self.tok = AutoTokenizer.from_pretrained(path)
        self.tok.padding_side = "left"
        if self.tok.pad_token is None and self.tok.eos_token is not None:
            self.tok.pad_token = self.tok.eos_token
        model = AutoModelForCausalLM.from_pretrained(path)
        self.model = model.to(self.device, dtype=_torch_dtype(self.device, cfg.precision)).eval()  # type: ignore[arg-type]
        self._torch = torch

    def _text(self, prompt: str) -> str:
        if getattr(self.tok, "chat_template", None):
            return str(self.tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                    add_generation_prompt=True))
        return prompt

    def _generate(self, prompts: Sequence[str]) -> list[CaptionResult]:
        templated = bool(getattr(self.tok, "chat_template", None))  # the template writes the special tokens
        enc = self.tok([self._text(p) for p in prompts], return_tensors="pt", padding=True,
                       add_special_tokens=not templated).to(self.device)
        with self._torch.inference_mode():
            gen = self.model.generate(**enc, max_new_tokens=self.cfg.enhance.max_tokens, do_sample=False)
        texts = [str(t).strip() for t in self.tok.batch_decode(gen[:, enc["input_ids"].shape[1]:],
                                                                  skip_special_tokens=True)]
        return [CaptionResult(text=t) if t else CaptionResult(error="enhancer returned no text") for t in texts]

    def enhance(self, prompts: Sequence[str]) -> list[CaptionResult]:
        """Batches of `batch_size` (left-padded, greedy); a failing batch is retried prompt by prompt."""
        out: list[CaptionResult] = []
        bs = self.cfg.batch_size
        for i in range(0, len(prompts), bs):
            chunk = list(prompts[i:i + bs])
            try:
                out.extend(self._generate(chunk))
            except Exception as exc:
                if len(chunk) == 1:
                    out.append(CaptionResult(error=f"enhance failed: {type(exc).__name__}: {exc}"))
                    continue
                for p in chunk:
                    try:
                        out.extend(self._generate([p]))
                    except Exception as exc1:
                        out.append(CaptionResult(error=f"enhance failed: {type(exc1).__name__}: {exc1}"))
        return out


def enhance_requirements(cfg: CaptionConfig, model_dir: str) -> list[Requirement]:
    e = cfg.enhance
    if not e.enabled:
        return []
    if e.backend == "endpoint":
        return [] if e.url else [Requirement("caption enhancement 'endpoint' has no URL",
                                             fix="set stages.caption.enhance.url=http://HOST:PORT/v1")]
    req = registry.requirement(e.model, model_dir, "caption enhancement (transformers)")
    return [req] if req else []


def make_enhancer(cfg: CaptionConfig, model_dir: str) -> Enhancer | None:
    if not cfg.enhance.enabled:
        return None
    if cfg.enhance.backend == "endpoint":
        return EndpointEnhancer(cfg)
    return TransformersEnhancer(cfg, model_dir)
