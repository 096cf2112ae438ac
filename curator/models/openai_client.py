"""One way to build an OpenAI SDK client for an OpenAI-compatible server, shared by the caption
``endpoint`` backend (curator/models/vlm.py) and the prompt upsampler (curator/generate/upsample.py).

The SDK keeps a pooled HTTP client per ``openai.OpenAI`` and retries 408/409/429/5xx, timeouts
and connection errors with exponential backoff (honouring ``Retry-After``). The base URL and key
come from the config when it names them, else from ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``; with
no key the SDK still insists on one, so it gets a placeholder and every request omits the header.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

#: the environment variables the OpenAI SDK reads when the config does not say
BASE_URL_ENV = "OPENAI_BASE_URL"
API_KEY_ENV = "OPENAI_API_KEY"
#: HTTP statuses the OpenAI SDK retries (with 5xx)
RETRIED_STATUSES = (408, 409, 429)


def base_url(url: str | None) -> str | None:
    """The OpenAI base URL of a configured URL (a full .../chat/completions URL is accepted)."""
    if not url:
        return None
    url = url.rstrip("/")
    return url.removesuffix("/chat/completions")


def resolve_url(url: str | None) -> str | None:
    """The configured URL, else OPENAI_BASE_URL (as a base URL)."""
    return base_url(url or os.environ.get(BASE_URL_ENV))


def api_key(api_key_env: str | None, what: str) -> str | None:
    """The key from the variable the config names (a warning when it is unset), else OPENAI_API_KEY."""
    if api_key_env:
        key = os.environ.get(api_key_env) or None
        if not key:
            log.warning("%s: environment variable %s is not set; sending no API key", what, api_key_env)
        return key
    return os.environ.get(API_KEY_ENV) or None


@dataclass
class Client:
    """An ``openai.OpenAI`` with the headers every request must carry and a redactor for its key."""

    client: Any
    key: str | None
    headers: dict[str, Any] = field(default_factory=dict)

    def redact(self, text: str) -> str:
        return text.replace(self.key, "***") if self.key else text

    def close(self) -> None:
        self.client.close()


def make_client(url: str, *, api_key_env: str | None, timeout_s: float, max_retries: int,
                what: str = "openai client") -> Client:
    import openai

    key = api_key(api_key_env, what)
    headers: dict[str, Any] = {} if key else {"Authorization": openai.Omit()}
    client = openai.OpenAI(base_url=url, api_key=key or "unused", max_retries=max_retries, timeout=timeout_s)
    return Client(client, key, headers)


def status_message(exc: Any) -> str:
    """The server's error message of an APIStatusError, short."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        msg = err.get("message") if isinstance(err, dict) else err
        if msg:
            return str(msg)[:300]
    with contextlib.suppress(Exception):
        return str(exc.response.text[:300]).strip()
    return str(exc)[:300]
