"""Prompt upsampling: a text LLM behind an OpenAI-compatible ``/chat/completions`` endpoint
rewrites a short template prompt into a richer one (`generate.upsampler`).

Kept to one plain HTTP call (standard library), isolated here, so it can move to whichever
client the caption backend settles on. A failure (HTTP error, timeout, an empty answer)
returns the prompt unchanged with the reason: upsampling never stops the loop.
"""

from __future__ import annotations

import json
import os
import urllib.request
from typing import Any

DEFAULT_INSTRUCTION = (
    "Rewrite this video generation prompt into one detailed paragraph describing the scene, its lighting, "
    "materials, people and camera motion. Keep every fact of the original; answer with the prompt only.")


def upsample(text: str, url: str, model: str, *, instruction: str = DEFAULT_INSTRUCTION,
             api_key_env: str | None = None, timeout_s: float = 60.0, seed: int | None = None,
             max_tokens: int = 300) -> tuple[str, str | None]:
    """(the upsampled prompt, None) or (`text`, why not)."""
    body: dict[str, Any] = {"model": model, "temperature": 0.0, "max_tokens": max_tokens,
                            "messages": [{"role": "system", "content": instruction},
                                         {"role": "user", "content": text}]}
    if seed is not None:
        body["seed"] = seed
    headers = {"Content-Type": "application/json"}
    key = os.environ.get(api_key_env) if api_key_env else None
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url.rstrip("/") + "/chat/completions", data=json.dumps(body).encode(),
                                 headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            doc = json.loads(r.read())
        answer = doc["choices"][0]["message"]["content"]
    except Exception as exc:  # noqa: BLE001 - any failure keeps the template's prompt
        return text, f"{type(exc).__name__}: {exc}"[:500]
    answer = (answer or "").strip()
    if not answer:
        return text, "empty answer"
    return answer, None
