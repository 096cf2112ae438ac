"""Embeddings from an OpenAI-compatible ``/v1/embeddings`` server (``stages.embed.model: endpoint:<name>``).

Texts go as the OpenAI API has them (``{"model", "input": [...], "encoding_format": "float"}``);
images as vLLM serve's multimodal embedding requests take them (``{"model", "messages": [one
user turn with the image as an image_url data URL], "encoding_format": "float"}``, e.g. a CLIP
or VLM2Vec model served with ``vllm serve --runner pooling``). A clip's vector is the mean of
its frames' vectors, L2-normalised, like the open_clip backend; the same server's text vectors
answer ``curator search "text"``. Requests go through the OpenAI SDK client the caption
endpoint shares (:mod:`curator.models.openai_client`: its retries, timeouts, key handling),
frames of a batch concurrently.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import numpy as np

from curator.config import EmbedEndpointConfig
from curator.models.openai_client import make_client, resolve_url
from curator.models.vlm import data_url

PREFIX = "endpoint:"


class EmbedEndpointError(RuntimeError):
    pass


class EndpointEmbedder:
    def __init__(self, model: str, cfg: EmbedEndpointConfig):
        url = resolve_url(cfg.url)
        if not url:
            raise ValueError("stages.embed.endpoint.url is not set (nor OPENAI_BASE_URL)")
        self.name = model
        self.server_model = model[len(PREFIX):] if model.startswith(PREFIX) else model
        self.cfg = cfg
        self.oai = make_client(url, api_key_env=cfg.api_key_env, timeout_s=cfg.timeout_s, max_retries=cfg.retries,
                               what="embed endpoint")
        self._headers = self.oai.headers
        self.client = self.oai.client
        self.pool = ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix="embed-http")

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()

    def _post(self, body: dict[str, Any]) -> list[list[float]]:
        body = {"model": self.server_model, "encoding_format": "float", **body}
        doc = self.client.post("/embeddings", body=body, cast_to=object,
                               options={"headers": self._headers} if self._headers else {})
        try:
            items = sorted(doc["data"], key=lambda d: d.get("index", 0))  # type: ignore[index]
            return [list(map(float, d["embedding"])) for d in items]
        except (KeyError, TypeError, ValueError) as exc:
            raise EmbedEndpointError(f"malformed embeddings response: {str(doc)[:200]!r}") from exc

    def _image(self, frame: np.ndarray) -> np.ndarray:
        content = [{"type": "image_url", "image_url": {"url": data_url(frame, "jpeg", self.cfg.jpeg_quality)}}]
        [vec] = self._post({"messages": [{"role": "user", "content": content}]})
        return np.asarray(vec, np.float32)

    def embed_clips(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """One unit-norm vector per clip: the mean of its frames' vectors (every frame of every clip
        in flight together, up to `concurrency`)."""
        frames = [f for c in clips for f in c]
        vecs = list(self.pool.map(self._image, frames))
        out, k = [], 0
        for c in clips:
            v = np.mean(vecs[k:k + len(c)], axis=0)
            out.append(v / (np.linalg.norm(v) + 1e-12))
            k += len(c)
        return np.stack(out).astype(np.float32)

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        vecs = np.asarray(self._post({"input": list(texts)}), np.float32)
        return vecs / (np.linalg.norm(vecs, axis=1, keepdims=True) + 1e-12)
