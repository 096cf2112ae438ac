"""Caption text embeddings with a transformers text encoder from the model directory
(e.g. a T5 encoder, as world-model trainers condition on): mean of the last hidden state
over the caption's tokens, L2-normalised."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from curator.models import registry


class TextEncoder:
    def __init__(self, name: str, model_dir: str, device: str = "auto", max_tokens: int = 512):
        import torch
        from transformers import AutoConfig, AutoModel, AutoModelForTextEncoding, AutoTokenizer

        from curator.models.clip import resolve_device

        gaps = registry.missing(name, model_dir)
        if gaps:
            raise FileNotFoundError(f"model {name} missing {', '.join(gaps)}; "
                                    f"fix: {registry.download_command(name, model_dir)}")
        path = registry.model_path(name, model_dir)
        self.name = name
        self.device = resolve_device(device)
        self.max_tokens = max_tokens
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        # encoder-decoder checkpoints (T5): load only the encoder
        loader = AutoModelForTextEncoding if AutoConfig.from_pretrained(path).is_encoder_decoder else AutoModel
        self.model = loader.from_pretrained(path).to(self.device).eval()
        self._torch = torch

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> float32 [N, D], unit norm."""
        torch = self._torch
        if not texts:
            return np.zeros((0, 0), np.float32)
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_tokens,
                               return_tensors="pt").to(self.device)
        with torch.inference_mode():
            hidden = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        return torch.nn.functional.normalize(pooled.float(), dim=-1).cpu().numpy()
