"""Tiny causal video tokenizers with the Cosmos Tokenizer's contract, saved as TorchScript.

Tests and benchmarks build them instead of downloading a tokenizer:

    build(folder)                                   # continuous: encoder.jit + decoder.jit, 16 channels
    build(folder, kind="discrete")                  # discrete: 256 codes (uint8 indices)
    install(model_dir, "cosmos-tokenizer:DV8x16x16")  # a stand-in where the registered id is read

Encoder: ``[B, 3, 1 + 8k, H, W]`` in [-1, 1] -> a tuple whose first element is the latent
``[B, C, 1 + k, H/8, W/8]`` (continuous) or the indices ``[B, 1 + k, H/8, W/8]`` (discrete,
int32, plus the codes, like Cosmos DV). It is causal like Cosmos: the first frame is encoded
alone, then each group of 8 frames; a latent step never sees a later frame. Each step is a
3-D convolution with a constant averaging kernel (an 8x8 block of the first frame, an 8x8x8
block of a group; computed as average pooling), followed by a fixed 1x1x1 convolution that
mixes 3 colours into C channels (continuous) or a uniform quantiser per colour (discrete). The decoders are approximate inverses (the mix's pseudo-inverse, then
nearest upsampling), so a decoded window resembles its source — PSNR well above that of a
wrong window — and the weights are deterministic (a seed), so no training is needed.

(No ``from __future__ import annotations`` here: TorchScript reads the annotations.)
"""

import os
import warnings
from typing import Any, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from curator.models import cosmos

DISCRETE_LEVELS = (8, 8, 4)  # 256 codes


class _Pool(nn.Module):
    """Causal averaging: frame 0 over s x s blocks, then groups of t frames over t x s x s blocks
    (a 3-D convolution with a constant kernel, computed as average pooling)."""

    def __init__(self, spatial: int, temporal: int):
        super().__init__()
        self.spatial, self.temporal = spatial, temporal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, t = self.spatial, self.temporal
        head = F.avg_pool3d(x[:, :, :1], (1, s, s))
        if x.shape[2] == 1:
            return head
        return torch.cat([head, F.avg_pool3d(x[:, :, 1:], (t, s, s))], dim=2)


class _Unpool(nn.Module):
    def __init__(self, spatial: int, temporal: int):
        super().__init__()
        self.spatial, self.temporal = spatial, temporal

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        y = y.repeat_interleave(self.spatial, dim=3).repeat_interleave(self.spatial, dim=4)
        head = y[:, :, :1]
        if y.shape[2] == 1:
            return head
        return torch.cat([head, y[:, :, 1:].repeat_interleave(self.temporal, dim=2)], dim=2)


class ContinuousEncoder(nn.Module):
    def __init__(self, channels: int = 16, spatial: int = 8, temporal: int = 8, seed: int = 0):
        super().__init__()
        self.pool = _Pool(spatial, temporal)
        g = torch.Generator().manual_seed(seed)
        mix = torch.randn(channels, 3, generator=g)
        self.mix = nn.Conv3d(3, channels, 1, bias=False)
        with torch.no_grad():
            self.mix.weight.copy_(mix[:, :, None, None, None])

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        z = self.mix(self.pool(x))
        return z, z.mean()  # a tuple whose first element is the latent, as Cosmos CV's encoder.jit


class ContinuousDecoder(nn.Module):
    def __init__(self, channels: int = 16, spatial: int = 8, temporal: int = 8, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        mix = torch.randn(channels, 3, generator=g)
        self.unmix = nn.Conv3d(channels, 3, 1, bias=False)
        with torch.no_grad():
            self.unmix.weight.copy_(torch.linalg.pinv(mix)[:, :, None, None, None])
        self.unpool = _Unpool(spatial, temporal)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.unpool(self.unmix(z)).clamp(-1.0, 1.0)


class DiscreteEncoder(nn.Module):
    levels: torch.Tensor
    basis: torch.Tensor
    codebook_size: int

    def __init__(self, levels: Sequence[int] = DISCRETE_LEVELS, spatial: int = 8, temporal: int = 8):
        super().__init__()
        self.pool = _Pool(spatial, temporal)
        lv = torch.tensor(list(levels), dtype=torch.int32)
        self.register_buffer("levels", lv.view(1, 3, 1, 1, 1))
        self.register_buffer("basis", torch.tensor([1, levels[0], levels[0] * levels[1]],
                                                   dtype=torch.int32).view(1, 3, 1, 1, 1))
        self.codebook_size = int(levels[0] * levels[1] * levels[2])

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        v = self.pool(x).float().clamp(-1.0, 1.0)
        top = (self.levels - 1).float()
        q = torch.round((v + 1.0) * 0.5 * top).to(torch.int32)
        indices = (q * self.basis).sum(dim=1).to(torch.int32)
        codes = q.float() / top * 2.0 - 1.0
        return indices, codes  # (indices, codes), as Cosmos DV's encoder.jit


class DiscreteDecoder(nn.Module):
    levels: torch.Tensor
    basis: torch.Tensor
    def __init__(self, levels: Sequence[int] = DISCRETE_LEVELS, spatial: int = 8, temporal: int = 8):
        super().__init__()
        self.register_buffer("levels", torch.tensor(list(levels), dtype=torch.int32).view(1, 3, 1, 1, 1))
        self.register_buffer("basis", torch.tensor([1, levels[0], levels[0] * levels[1]],
                                                   dtype=torch.int32).view(1, 3, 1, 1, 1))
        self.unpool = _Unpool(spatial, temporal)

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        q = torch.div(indices.to(torch.int32).unsqueeze(1), self.basis, rounding_mode="floor") % self.levels
        v = q.float() / (self.levels - 1).float() * 2.0 - 1.0
        return self.unpool(v)


def modules(kind: str = "continuous", *, channels: int = 16, spatial: int = 8, temporal: int = 8,
            levels: Sequence[int] = DISCRETE_LEVELS, seed: int = 0) -> tuple[Any, Any]:
    """(encoder, decoder) as eager torch modules in eval mode."""
    if kind == "continuous":
        return (ContinuousEncoder(channels, spatial, temporal, seed).eval(),
                ContinuousDecoder(channels, spatial, temporal, seed).eval())
    if kind == "discrete":
        return DiscreteEncoder(levels, spatial, temporal).eval(), DiscreteDecoder(levels, spatial, temporal).eval()
    raise ValueError(f"kind must be 'continuous' or 'discrete', not {kind!r}")


def build(folder: str, kind: str = "continuous", **kw: Any) -> str:
    """Save ``encoder.jit`` and ``decoder.jit`` (TorchScript) into `folder`; returns it."""
    enc, dec = modules(kind, **kw)
    os.makedirs(folder, exist_ok=True)
    for module, name in ((enc, cosmos.ENCODER_FILE), (dec, cosmos.DECODER_FILE)):
        path = os.path.join(folder, name)
        with warnings.catch_warnings():  # TorchScript is deprecated upstream; the format Cosmos ships is still it
            warnings.simplefilter("ignore", FutureWarning)
            torch.jit.save(torch.jit.script(module), path + ".part")
        os.replace(path + ".part", path)
    return folder


def install(model_dir: str, name: str, **kw: Any) -> str:
    """A tiny stand-in with the compression (and codebook size) of a registered Cosmos id,
    saved where that id is read, so the id resolves without a download; returns the folder."""
    from curator.models import registry

    tok = cosmos.KNOWN[name]
    kw.setdefault("spatial", tok.spatial)
    kw.setdefault("temporal", tok.temporal)
    if tok.kind == "discrete":
        kw.setdefault("levels", (40, 40, 40))  # 64,000 codes, as Cosmos DV
    else:
        kw.setdefault("channels", tok.channels)
    return build(registry.model_path(name, model_dir), tok.kind, **kw)


# factories for `module:callable` model strings (shard.latent.model / .decoder)
def continuous_encoder() -> Any:
    return modules("continuous")[0]


def continuous_decoder() -> Any:
    return modules("continuous")[1]
