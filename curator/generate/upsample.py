"""Prompt upsampling: a text LLM behind an OpenAI-compatible ``/chat/completions`` endpoint
rewrites a short template prompt into a richer one (`generate.upsampler`).

Through the OpenAI SDK with the client the caption endpoint backend uses
(:mod:`curator.models.openai_client`): ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` when the
config names no URL / key variable, the SDK's pooled HTTP client and its retries of
408/409/429/5xx, timeouts and connection errors (``generate.upsampler.retries``). A failure
(an HTTP error after the retries, a timeout, an empty or malformed answer) returns the prompt
unchanged with the reason: upsampling never stops the loop.
"""

from __future__ import annotations

from typing import Any

from curator.models.openai_client import Client, make_client, resolve_url, status_message

DEFAULT_INSTRUCTION = (
    "Rewrite this video generation prompt into one detailed paragraph describing the scene, its lighting, "
    "materials, people and camera motion. Keep every fact of the original; answer with the prompt only.")


class Upsampler:
    """One pooled SDK client for all the prompts of a loop (thread-safe: the SDK's client is)."""

    def __init__(self, url: str | None, model: str, *, instruction: str = DEFAULT_INSTRUCTION,
                 api_key_env: str | None = None, timeout_s: float = 60.0, retries: int = 2, max_tokens: int = 300):
        base = resolve_url(url)
        if not base:
            raise ValueError("generate.upsampler.url is not set (nor OPENAI_BASE_URL)")
        self.url = base
        self.model = model
        self.instruction = instruction
        self.max_tokens = max_tokens
        self.oai: Client = make_client(base, api_key_env=api_key_env, timeout_s=timeout_s, max_retries=retries,
                                       what="prompt upsampler")

    def __call__(self, text: str, seed: int | None = None) -> tuple[str, str | None]:
        """(the upsampled prompt, None) or (`text`, why not)."""
        import openai

        kwargs: dict[str, Any] = {
            "model": self.model, "temperature": 0.0, "max_tokens": self.max_tokens,
            "messages": [{"role": "system", "content": self.instruction}, {"role": "user", "content": text}],
            "extra_headers": self.oai.headers or None}
        if seed is not None:
            kwargs["seed"] = seed
        try:
            doc = self.oai.client.chat.completions.create(**kwargs)
            answer = doc.choices[0].message.content
        except openai.APITimeoutError:
            return text, "timeout"
        except openai.APIConnectionError as exc:
            return text, self.oai.redact(f"connection error: {exc.__cause__ or exc}")[:500]
        except openai.APIStatusError as exc:
            return text, self.oai.redact(f"http {exc.status_code}: {status_message(exc)}")[:500]
        except Exception as exc:  # noqa: BLE001 - a malformed answer, anything: the template's prompt is kept
            return text, self.oai.redact(f"{type(exc).__name__}: {exc}")[:500]
        answer = (answer or "").strip() if isinstance(answer, str) else ""
        if not answer:
            return text, "empty answer"
        return answer, None

    def close(self) -> None:
        self.oai.close()


def upsample(text: str, url: str | None, model: str, *, instruction: str = DEFAULT_INSTRUCTION,
             api_key_env: str | None = None, timeout_s: float = 60.0, seed: int | None = None,
             retries: int = 2, max_tokens: int = 300) -> tuple[str, str | None]:
    """One prompt through a client made for it: (the upsampled prompt, None) or (`text`, why not)."""
    try:
        up = Upsampler(url, model, instruction=instruction, api_key_env=api_key_env, timeout_s=timeout_s,
                       retries=retries, max_tokens=max_tokens)
    except ValueError as exc:
        return text, str(exc)
    try:
        return up(text, seed)
    finally:
        up.close()
