"""Model directory, registry, `curator models`, and the open_clip loader with a tiny
random-weight model built and saved here (no network)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from curator.models import clip, registry
from curator.testing import tiny_models

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir) -> str:
    return tiny_model_dir


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "curator", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


# ---------------------------------------------------------------- layout and names
def test_layout_paths(tmp_path):
    d = str(tmp_path)
    assert registry.model_path("open_clip:ViT-B-32/openai", d) == os.path.join(d, "open_clip", "ViT-B-32", "openai")
    assert registry.model_path("hf:Qwen/Qwen2.5-VL-3B-Instruct", d) == os.path.join(d, "hf", "Qwen",
                                                                                  "Qwen2.5-VL-3B-Instruct")
    for bad in ("open_clip:ViT-B-32", "hf:only-org", "hf:a/../b", "nonsense"):
        with pytest.raises(registry.ModelError):
            registry.spec_for(bad)


def test_missing_names_exact_paths_and_the_fix(tmp_path):
    d = str(tmp_path)
    name = "open_clip:ViT-B-32/openai"
    root = registry.model_path(name, d)
    assert registry.missing(name, d) == [root + os.sep]
    os.makedirs(root)
    assert registry.missing(name, d) == [os.path.join(root, "open_clip_config.json"),
                                         os.path.join(root, "open_clip_model.safetensors")]
    req = registry.requirement(name, d, "stage embed")
    text = req.describe()
    assert "open_clip_config.json" in text and root in text
    assert f"curator models download {name} --model-dir {d}" in text and "605 MB" in text


def test_hf_weights_check_follows_the_shard_index(tmp_path):
    d = str(tmp_path)
    name = "hf:org/model"
    root = Path(registry.model_path(name, d))
    root.mkdir(parents=True)
    (root / "config.json").write_text("{}")
    assert registry.missing(name, d) == [str(root / "model.safetensors")]
    (root / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    (root / "model-00001-of-00002.safetensors").write_bytes(b"x")
    assert registry.missing(name, d) == [str(root / "model-00002-of-00002.safetensors")]
    (root / "model-00002-of-00002.safetensors").write_bytes(b"x")
    assert registry.missing(name, d) == []


def test_registered_file_models(tmp_path):
    spec = registry.register(registry.ModelSpec("test-head", "files", "hf:org/heads", 1, "a head",
                                                files=("head.onnx",)))
    try:
        d = str(tmp_path)
        assert registry.missing("test-head", d) == [os.path.join(d, "test-head") + os.sep]
        os.makedirs(os.path.join(d, "test-head"))
        assert registry.missing("test-head", d) == [os.path.join(d, "test-head", "head.onnx")]
        Path(d, "test-head", "head.onnx").write_bytes(b"x")
        assert registry.missing("test-head", d) == [] and "test-head" in registry.installed(d)
    finally:
        registry.KNOWN.pop(spec.name)


# ------------------------------------------------------------------- open_clip
def test_tiny_open_clip_loads_through_the_registry(model_dir):
    name = tiny_models.TINY_CLIP_NAME
    assert registry.missing(name, model_dir) == []
    m = clip.load_name(name, model_dir, device="cpu")
    assert m.image_size == (32, 32) and m.embed_dim == 32 and m.device == "cpu"
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (6, 24, 40, 3), dtype=np.uint8)
    img = m.encode_images(frames)
    assert img.shape == (6, 32) and np.allclose(np.linalg.norm(img, axis=1), 1, atol=1e-5)
    txt = m.encode_text(["a dog", "a car", "a street"])
    assert txt.shape == (3, 32) and np.allclose(np.linalg.norm(txt, axis=1), 1, atol=1e-5)
    assert not np.allclose(txt[0], txt[1])
    pooled = m.embed_clips([frames[:4], frames[4:]])
    want = img[:4].mean(0) / np.linalg.norm(img[:4].mean(0))
    assert np.allclose(pooled[0], want, atol=1e-5)
    # forward batches split the work, never the result
    m.forward_batch_size = 4
    assert np.allclose(m.encode_images(frames), img, atol=1e-5)


def test_preprocessing_matches_open_clips_own_transform(model_dir):
    import torch
    from PIL import Image

    m = clip.load_name(tiny_models.TINY_CLIP_NAME, model_dir, device="cpu")
    rng = np.random.default_rng(1)
    smooth = np.kron(rng.integers(0, 255, (6, 8, 3)), np.ones((8, 8, 1))).astype(np.uint8)  # 48x64
    ours = m.prepare(smooth[None])
    ref = m.preprocess(Image.fromarray(smooth))[None]
    assert ours.shape == ref.shape == (1, 3, 32, 32)
    assert float((ours - ref).abs().mean()) < 0.01  # same crop, same normalisation
    with torch.no_grad():
        a = m.encode_images(smooth[None])[0]
        b = torch.nn.functional.normalize(m.model.encode_image(ref), dim=-1)[0].numpy()
    assert float(a @ b) > 0.99


def test_decode_size_follows_resize_mode(model_dir):
    m = clip.load_name(tiny_models.TINY_CLIP_NAME, model_dir, device="cpu")
    assert m.decode_size(320, 240) == (42, 32)  # short side to 32, the long side is cropped
    assert m.decode_size(240, 320) == (32, 42)
    m.resize_mode = "squash"
    assert m.decode_size(320, 240) == (32, 32)
    m.resize_mode = "longest"
    assert m.decode_size(320, 240) == (32, 24)
    out = m.prepare(np.zeros((1, 24, 32, 3), np.uint8))
    assert tuple(out.shape) == (1, 3, 32, 32)


def test_load_of_a_missing_model_names_path_and_command(tmp_path):
    with pytest.raises(clip.ModelMissing) as ei:
        clip.load("ViT-B-32", "openai", str(tmp_path))
    assert str(tmp_path / "open_clip" / "ViT-B-32" / "openai") in str(ei.value)
    assert "curator models download open_clip:ViT-B-32/openai" in str(ei.value)


# ------------------------------------------------------------------------ CLI
def test_cli_models_list_check_download(model_dir, tmp_path):
    r = cli("models", "list", "--model-dir", model_dir)
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if tiny_models.TINY_CLIP_NAME in ln)
    assert line.split()[0] == "present" and registry.model_path(tiny_models.TINY_CLIP_NAME, model_dir) in line
    assert any(ln.split()[:2] == ["missing", "open_clip:ViT-B-32/openai"] for ln in r.stdout.splitlines())

    r = cli("models", "check", tiny_models.TINY_CLIP_NAME, "--model-dir", model_dir)
    assert r.returncode == 0 and r.stdout.startswith("ok")

    empty = str(tmp_path / "empty")
    r = cli("models", "check", "--model-dir", empty, "--set", "stages.embed.model=open_clip:ViT-B-32/openai")
    assert r.returncode == 1
    assert os.path.join(empty, "open_clip", "ViT-B-32", "openai") in r.stdout
    assert "curator models download open_clip:ViT-B-32/openai" in r.stdout
    assert "hf:HuggingFaceTB/SmolVLM-256M-Instruct" in r.stdout  # the default caption model

    r = cli("models", "download", "--dry-run", "hf:Qwen/Qwen2.5-VL-3B-Instruct", env={"CURATOR_MODEL_DIR": empty})
    assert r.returncode == 0
    assert os.path.join(empty, "hf", "Qwen", "Qwen2.5-VL-3B-Instruct") in r.stdout
    assert not os.path.exists(empty)  # a dry run writes nothing

    r = cli("models", "download", "no-such-model", "--model-dir", empty)
    assert r.returncode == 1 and "unknown model" in r.stderr
