"""Latent shards, the parts that need no pipeline: tokenizer ids and their download plan,
model strings, the tiny causal TorchScript tokenizers, storage dtypes, window frames,
config checks and the Ray task options of a GPU shard."""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from curator.config import ConfigError, PipelineConfig, Resources
from curator.media import windows as win
from curator.models import cosmos, registry
from curator.models import tokenizer as tk
from curator.testing import tiny_tokenizer

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    return {"cv": tiny_tokenizer.build(str(d / "cv")), "dv": tiny_tokenizer.build(str(d / "dv"), "discrete")}


def _video(b: int, t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth moving gradients, uint8 [B, T, H, W, 3]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((b, t, h, w, 3), np.uint8)
    for i in range(b):
        phase = rng.uniform(0, 6.28, 3)
        for j in range(t):
            for c in range(3):
                out[i, j, :, :, c] = 127.5 + 100 * np.sin(xx / 40 + yy / 55 + phase[c] + j * 0.01)
    return out


# ------------------------------------------------------------------------ ids and download
def test_tokenizer_ids_resolve_to_their_hub_repo_and_folder(tmp_path):
    d = str(tmp_path)
    for tid, repo in [("CV8x8x8", "nvidia/Cosmos-0.1-Tokenizer-CV8x8x8"),
                      ("DV8x16x16", "nvidia/Cosmos-0.1-Tokenizer-DV8x16x16")]:
        spec = registry.spec_for(f"cosmos-tokenizer:{tid}")
        assert spec.source == f"hf:{repo}" and spec.files == ("encoder.jit", "decoder.jit")
        assert registry.model_path(spec.name, d) == os.path.join(d, "cosmos-tokenizer", tid)
    assert set(cosmos.KNOWN) == {f"cosmos-tokenizer:{t}" for t in ("CV8x8x8", "CV8x16x16", "DV8x8x8", "DV8x16x16")}
    assert cosmos.KNOWN["cosmos-tokenizer:CV8x16x16"].latent_shape(121, 256, 448) == (16, 16, 16, 28)
    assert cosmos.KNOWN["cosmos-tokenizer:DV8x8x8"].latent_shape(121, 256, 448) == (16, 32, 56)


def test_models_download_dry_run_and_check_name_the_repo_files_and_folder(tmp_path):
    d = str(tmp_path / "models")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "curator", "models", "download", "--dry-run",
                        "cosmos-tokenizer:DV8x16x16", "--model-dir", d], cwd=ROOT, capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "hf:nvidia/Cosmos-0.1-Tokenizer-DV8x16x16 (encoder.jit, decoder.jit)" in r.stdout
    assert os.path.join(d, "cosmos-tokenizer", "DV8x16x16") in r.stdout and not os.path.exists(d)
    r = subprocess.run([sys.executable, "-m", "curator", "models", "check", "--model-dir", d,
                        "--set", "shard.profile=latent", "--set", "shard.latent.model=cosmos-tokenizer:CV8x16x16"],
                       cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1
    assert "MISSING  cosmos-tokenizer:CV8x16x16" in r.stdout
    assert f"fix: curator models download cosmos-tokenizer:CV8x16x16 --model-dir {d}" in r.stdout


def test_an_installed_stand_in_is_complete_and_resolves(tmp_path):
    d = str(tmp_path)
    name = "cosmos-tokenizer:DV8x16x16"
    assert registry.missing(name, d)
    folder = tiny_tokenizer.install(d, name)
    assert registry.missing(name, d) == [] and name in registry.installed(d)
    ref = tk.resolve(name, d)
    assert ref.target == os.path.join(folder, "encoder.jit")
    assert tk.resolve_decoder(name, None, d).target == os.path.join(folder, "decoder.jit")
    enc = tk.load(ref, "cpu")
    z = enc.encode(_video(1, 9, 32, 48))
    assert tuple(z.shape) == (1, 2, 2, 3) and enc.codebook_size == 64000  # 16x space, as DV8x16x16


# ------------------------------------------------------------------------- model strings
def test_model_strings(tiny, tmp_path):
    d = str(tmp_path)
    with pytest.raises(tk.TokenizerError, match="curator models download cosmos-tokenizer:CV8x8x8"):
        tk.resolve("cosmos-tokenizer:CV8x8x8", d)
    with pytest.raises(tk.TokenizerError, match="known"):
        tk.resolve("cosmos-tokenizer:CV4x4x4", d)
    assert tk.resolve(tiny["cv"], d).target == os.path.join(tiny["cv"], "encoder.jit")
    enc_file = os.path.join(tiny["cv"], "encoder.jit")
    assert tk.resolve(enc_file, d).target == enc_file
    assert tk.resolve_decoder(enc_file, None, d).target == os.path.join(tiny["cv"], "decoder.jit")
    ref = tk.resolve("curator.testing.tiny_tokenizer:continuous_encoder", d)
    assert ref.kind == "factory"
    with pytest.raises(tk.TokenizerError, match="shard.latent.decoder"):
        tk.resolve_decoder(ref.text, None, d)
    with pytest.raises(tk.TokenizerError, match="not a known id"):
        tk.resolve("no/such/file.jit", d)
    # a revision is the file's hash: it changes with the weights, not with the path
    rev = tk.revision(tk.resolve(tiny["cv"], d))
    assert rev.startswith("sha256:") and rev == tk.revision(tk.resolve(enc_file, d))
    assert tk.revision(tk.resolve(tiny["dv"], d)) != rev
    assert tk.revision(ref, "v1.2") == "v1.2"


def test_a_factory_encodes_like_its_torchscript_twin(tiny):
    x = _video(2, 17, 32, 48)
    eager = tk.load(tk.resolve("curator.testing.tiny_tokenizer:continuous_encoder", "/nowhere"), "cpu")
    script = tk.load(tk.resolve(tiny["cv"], "/nowhere"), "cpu")
    assert torch.allclose(eager.encode(x), script.encode(x), atol=1e-5)


# -------------------------------------------------------------------- the tiny tokenizers
@pytest.mark.parametrize("frames", [1, 9, 17, 33])
def test_tiny_tokenizers_have_the_cosmos_shapes_and_are_causal(tiny, frames):
    h, w = 32, 64
    x = _video(2, frames, h, w)
    cv = tk.load(tk.resolve(tiny["cv"], "/x"), "cpu")
    dv = tk.load(tk.resolve(tiny["dv"], "/x"), "cpu")
    z, idx = cv.encode(x), dv.encode(x)
    t = 1 + (frames - 1) // 8
    assert tuple(z.shape) == (2, 16, t, h // 8, w // 8) and z.dtype == torch.float32
    assert tuple(idx.shape) == (2, t, h // 8, w // 8) and idx.dtype == torch.int32
    assert int(idx.min()) >= 0 and int(idx.max()) < 256 and dv.codebook_size == 256
    if frames > 9:  # change frames 9.. : latent steps 0 (frame 0) and 1 (frames 1-8) must not move
        y = x.copy()
        y[:, 9:] = 255 - y[:, 9:]
        z2 = cv.encode(y)
        assert torch.equal(z[:, :, :2], z2[:, :, :2]) and not torch.equal(z[:, :, 2:], z2[:, :, 2:])
    # the decoders invert the encoders on smooth content
    cvd = tk.load(tk.resolve_decoder(tiny["cv"], None, "/x"), "cpu")
    dvd = tk.load(tk.resolve_decoder(tiny["dv"], None, "/x"), "cpu")
    from curator.latents import psnr

    assert psnr(cvd.decode(z)[0], x[0]) > 30
    assert 20 < psnr(dvd.decode(idx)[0], x[0]) < psnr(cvd.decode(z)[0], x[0])


# ------------------------------------------------------------------------------- storing
def test_index_dtypes_are_the_smallest_that_hold_the_codebook():
    assert [cosmos.index_dtype(n) for n in (2, 256, 257, 64000, 65536, 65537)] == [
        "uint8", "uint8", "uint16", "uint16", "uint16", "int32"]


def test_storing_latents_never_wraps_or_overflows():
    idx = torch.tensor([[0, 255], [17, 3]], dtype=torch.int32)
    arr, dtype = tk.to_numpy(idx, True, "float16", 256)
    assert arr.dtype == np.uint8 and dtype == "uint8" and tk.from_numpy(arr, dtype).tolist() == idx.tolist()
    assert tk.from_numpy(arr, dtype).dtype == torch.int64
    with pytest.raises(tk.TokenizerError, match="outside the codebook"):
        tk.to_numpy(idx + 1, True, "float16", 256)
    with pytest.raises(tk.TokenizerError, match="codebook size"):
        tk.to_numpy(idx, True, "float16", None)
    z = torch.tensor([0.1, -3.5, 1e-3, 200.0])
    arr, dtype = tk.to_numpy(z, False, "bfloat16", None)
    assert arr.dtype == np.uint16 and dtype == "bfloat16"
    back = tk.from_numpy(tk.load_npy(tk.npy_bytes(arr)), dtype)
    assert back.dtype == torch.bfloat16 and torch.equal(back, z.to(torch.bfloat16))
    arr, _ = tk.to_numpy(z, False, "float16", None)
    assert arr.dtype == np.float16
    with pytest.raises(tk.TokenizerError, match="range"):
        tk.to_numpy(torch.tensor([1e6]), False, "float16", None)
    assert tk.is_discrete(idx, "auto") and not tk.is_discrete(z, "auto") and tk.is_discrete(z, "discrete")


# ------------------------------------------------------------------------ window frames
def test_window_arrays_are_the_frames_encode_windows_encodes(media_dir):
    data = (media_dir / "bikes.mp4").read_bytes()
    src, dst = Fraction(25), Fraction(12)
    wins = win.windows(win.resampled_count(250, src, dst), 33, 9, 8)
    arrays = dict(win.window_arrays(data, wins, src_fps=src, dst_fps=dst, size=(112, 48)))
    assert sorted(arrays) == list(range(len(wins))) and len(wins) >= 4
    mp4s = win.encode_windows(data, wins, src_fps=src, dst_fps=dst, size=(112, 48), crf=0, preset="ultrafast")
    from curator.loader import decode_video

    for i, w in enumerate(wins):
        assert arrays[i].shape == (w.frames, 48, 112, 3) and arrays[i].dtype == np.uint8
        decoded = decode_video(mp4s[i]).permute(0, 2, 3, 1).numpy()  # crf 0: lossless
        assert np.array_equal(decoded, arrays[i])  # the same frames, converted to RGB as the loader does


# ------------------------------------------------------------------------------ config
@pytest.mark.parametrize("overrides, needle", [
    (["shard.latent.model=cosmos-tokenizer:CV8x16x16", "shard.tokenizer.multiple=8", "shard.tokenizer.short_side=64"],
     "multiple of 16"),
    (["shard.tokenizer.temporal_factor=4", "shard.tokenizer.max_frames=33"], "multiple of 8"),
    (["shard.latent.model=cosmos-tokenizer:XV1"], "known Cosmos tokenizers"),
])
def test_windows_that_cannot_feed_the_tokenizer_are_config_errors(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        PipelineConfig.load(None, ["shard.profile=[tokenizer, latent]", *overrides])


def test_latent_profile_defaults():
    cfg = PipelineConfig.load(None, ["shard.profile=latent"]).shard
    assert cfg.profile == ["latent"] and cfg.latent.model == "cosmos-tokenizer:CV8x8x8"
    assert cfg.latent.dtype == "float16" and not cfg.latent.keep_video and cfg.latent.resources.num_gpus == 0
    # where the encoder runs does not change a run's content hash; what it stores does
    base = PipelineConfig.load(None, []).content_hash()
    assert PipelineConfig.load(None, ["shard.latent.resources.num_gpus=1", "shard.latent.device=cpu",
                                      "shard.latent.batch_size=16"]).content_hash() == base
    assert PipelineConfig.load(None, ["shard.latent.dtype=bfloat16"]).content_hash() != base


def test_a_gpu_shard_task_keeps_its_worker():
    from curator.runners.ray import map_task_options

    gpu = map_task_options(Resources(num_cpus=2, num_gpus=1, memory_gb=8, custom={"a100": 1}))
    assert gpu == {"num_cpus": 2, "num_gpus": 1, "memory": 8 * 1024**3, "resources": {"a100": 1}, "max_calls": 0}
    assert "max_calls" not in map_task_options(Resources(num_cpus=1))


def test_a_missing_tokenizer_stops_a_run_at_start_and_the_shard_phase_before_writing(tmp_path):
    from curator.phases import PhaseError, PhaseState
    from curator.phases import shard as shard_phase
    from curator.pipeline import PipelineError, build
    from curator.rundir import RunDir

    models = str(tmp_path / "models")
    cfg = PipelineConfig.load(None, ["shard.profile=[wfm, latent]", f"models.dir={models}"], input=str(tmp_path),
                              output=str(tmp_path / "out"))
    with pytest.raises(PipelineError, match=f"fix: curator models download cosmos-tokenizer:CV8x8x8 --model-dir {models}"):
        build(cfg)
    build(cfg.model_copy(update={"run": cfg.run.model_copy(update={"shard": False})}))  # no shards, no tokenizer
    with pytest.raises(PhaseError, match="cosmos-tokenizer/CV8x8x8/encoder.jit is missing"):
        shard_phase.run(PhaseState(RunDir.of(str(tmp_path / "out")), cfg))
    assert not (tmp_path / "out").exists()
