"""The latent encoder on a real GPU (bfloat16, as NVIDIA runs the Cosmos Tokenizer) against
the CPU path (float32), with the tiny TorchScript stand-in. Skipped without CUDA."""

import numpy as np
import pytest
import torch

from curator.models import tokenizer as tk
from curator.testing import tiny_tokenizer

pytestmark = [pytest.mark.gpu, pytest.mark.integration]


def test_the_encoder_runs_on_cuda_in_bfloat16_and_agrees_with_the_cpu(tmp_path):
    folder = tiny_tokenizer.build(str(tmp_path / "cv"))
    ref = tk.resolve(folder, str(tmp_path))
    assert tk.resolve_device("auto") == "cuda"
    gpu, cpu = tk.load(ref, "cuda"), tk.load(ref, "cpu")
    assert gpu.dtype == torch.bfloat16 and cpu.dtype == torch.float32
    frames = np.random.default_rng(0).integers(0, 255, (4, 33, 64, 112, 3), dtype=np.uint8)
    z_gpu, z_cpu = gpu.encode(frames), cpu.encode(frames)
    assert z_gpu.device.type == "cpu" and z_gpu.shape == z_cpu.shape == (4, 16, 5, 8, 14)
    assert torch.allclose(z_gpu.float(), z_cpu, atol=0.05, rtol=0.02)  # bfloat16 rounding only
    dec = tk.load(tk.resolve_decoder(folder, None, str(tmp_path)), "cuda")
    assert dec.decode(z_gpu).shape == (4, 3, 33, 64, 112)
