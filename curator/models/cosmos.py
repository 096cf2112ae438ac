"""The Cosmos Tokenizer ids curator knows: compression factors, latent layout, where they come from.

Facts used (NVIDIA/Cosmos-Tokenizer, ``README.md`` and ``cosmos_tokenizer/video_lib.py``,
``cosmos_tokenizer/utils.py``, ``cosmos_tokenizer/modules/quantizers.py``; the Hugging Face
repositories' file lists):

- Each tokenizer ships TorchScript ``encoder.jit`` and ``decoder.jit`` (and
  ``autoencoder.jit``), loaded with ``torch.jit.load`` and moved to the device and dtype
  (bfloat16 on CUDA in NVIDIA's examples).
- Input: ``[B, 3, T, H, W]`` in [-1, 1], T = 1 + 8k for the 8x temporal tokenizers; H and W
  divisible by the spatial factor (their padding helper aligns to 16).
- Continuous (CV): the encoder returns a tuple whose first element is the latent
  ``[B, 16, 1 + (T-1)/8, H/s, W/s]``. Discrete (DV): ``(indices, codes)``, indices
  ``[B, 1 + (T-1)/8, H/s, W/s]`` int32 from an FSQ codebook with levels (8, 8, 8, 5, 5, 5),
  i.e. 64,000 codes, numbered 0 .. 63,999 by ``codes_to_indices``.
- Decoders take the latent (CV) or the indices (DV) and return ``[B, 3, T, H, W]`` in [-1, 1].
- Hugging Face repositories ``nvidia/Cosmos-0.1-Tokenizer-<ID>`` (renamed from
  ``nvidia/Cosmos-Tokenizer-<ID>``, which redirects), files ``encoder.jit`` / ``decoder.jit``
  of about 90 / 130 MB each.

This module is pure data and arithmetic (the config validates windows against it); loading
is :mod:`curator.models.tokenizer`.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "cosmos-tokenizer:"
ENCODER_FILE = "encoder.jit"
DECODER_FILE = "decoder.jit"


@dataclass(frozen=True)
class TokenizerInfo:
    id: str  # "CV8x8x8"
    kind: str  # "continuous" | "discrete"
    temporal: int
    spatial: int
    channels: int | None  # continuous latent channels
    codebook_size: int | None  # discrete
    size_mb: float  # encoder.jit + decoder.jit

    @property
    def name(self) -> str:
        return PREFIX + self.id

    @property
    def repo(self) -> str:
        return f"nvidia/Cosmos-0.1-Tokenizer-{self.id}"

    @property
    def rel_path(self) -> str:
        """Folder under the model directory."""
        return f"cosmos-tokenizer/{self.id}"

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, ...]:
        t = 1 + (frames - 1) // self.temporal
        h, w = height // self.spatial, width // self.spatial
        return (self.channels or 0, t, h, w) if self.kind == "continuous" else (t, h, w)


FSQ_CODEBOOK = 8 * 8 * 8 * 5 * 5 * 5  # 64,000

KNOWN: dict[str, TokenizerInfo] = {i.name: i for i in [
    TokenizerInfo("CV8x8x8", "continuous", 8, 8, 16, None, 226),
    TokenizerInfo("CV8x16x16", "continuous", 8, 16, 16, None, 223),
    TokenizerInfo("DV8x8x8", "discrete", 8, 8, None, FSQ_CODEBOOK, 214),
    TokenizerInfo("DV8x16x16", "discrete", 8, 16, None, FSQ_CODEBOOK, 224),
]}


def info(model: str) -> TokenizerInfo | None:
    """The known tokenizer a model string names, or None (a path or a factory)."""
    return KNOWN.get(model)


def check_windows(model: str, temporal_factor: int, multiple: int, sizes: dict[str, list[int]]) -> None:
    """Raise ValueError when the tokenizer profile's windows cannot feed a known tokenizer:
    window lengths 1 + temporal_factor*k must be 1 + (tokenizer factor)*k', sizes multiples
    of the spatial factor."""
    if model.startswith(PREFIX) and model not in KNOWN:
        raise ValueError(f"latent.model {model!r}: known Cosmos tokenizers are {', '.join(sorted(KNOWN))}")
    tok = KNOWN.get(model)
    if tok is None:
        return
    if temporal_factor % tok.temporal:
        raise ValueError(f"latent.model {model} compresses time {tok.temporal}x: tokenizer.temporal_factor "
                         f"({temporal_factor}) must be a multiple of {tok.temporal}")
    if multiple % tok.spatial:
        raise ValueError(f"latent.model {model} compresses space {tok.spatial}x: tokenizer.multiple ({multiple}) "
                         f"must be a multiple of {tok.spatial}")
    for ar, wh in sizes.items():
        if any(x % tok.spatial for x in wh):
            raise ValueError(f"tokenizer.sizes[{ar}] must be multiples of {tok.spatial} for latent.model {model}")


def index_dtype(codebook_size: int) -> str:
    """The smallest integer dtype that holds indices 0 .. codebook_size - 1."""
    if codebook_size <= 1 << 8:
        return "uint8"
    if codebook_size <= 1 << 16:
        return "uint16"
    if codebook_size <= 1 << 31:
        return "int32"
    return "int64"
