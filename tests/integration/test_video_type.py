"""Video type through the real pipeline: zero-shot with a tiny random-weight open_clip model
saved into a temporary model directory (its accuracy is meaningless and not asserted),
then `curator train-type-head` on that run's embeddings and a run that uses the head."""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq
import pytest

from curator.config import PipelineConfig
from curator.records import OK, REJECTED

pytestmark = pytest.mark.integration

NAMES = ["moving_bikes_a", "moving_carphone", "camera_pan_left_street", "static_people", "moving_life",
         "camera_zoom_in_street"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, filter_set):
    from curator.testing import tiny_models

    root = tmp_path_factory.mktemp("vt")
    model_dir = root / "models"
    name = tiny_models.build_open_clip(str(model_dir))
    inp = root / "in"
    inp.mkdir()
    src = {c.name: c.path for c in filter_set}
    for n in NAMES:
        shutil.copy(src[n], inp / f"{n}.mp4")
    return root, model_dir, name, inp


def run(inp, out, model_dir, name, *extra):
    from curator import pipeline
    from curator.driver import execute
    from curator.runners.local import LocalRunner

    cfg = PipelineConfig.load(None, ["stages.order=[embed,video_type]", "dedup.enabled=false",
                                     f"stages.embed.model={name}",
                                     f"models.dir={model_dir}", "stages.embed.device=cpu", "stages.embed.num_frames=4",
                                     "stages.video_type.device=cpu", "stages.split.method=fixed",
                                     "stages.split.stride_s=10", "run.runner=local", *extra],
                              input=str(inp), output=str(out))
    p = pipeline.build(cfg)
    assert [s.name for s in p.specs][3:5] == ["embed", "video_type"], p.describe()
    execute(p, LocalRunner())
    return [r for r in pq.read_table(out / "manifest.parquet").to_pylist() if r["kind"] == "clip"]


@pytest.fixture(scope="module")
def zero_shot(tiny):
    root, model_dir, name, inp = tiny
    out = root / "out"
    return out, run(inp, out, model_dir, name)


def test_zero_shot_classifies_every_clip_and_samples_by_weight(tiny, zero_shot):
    from curator.taxonomy import load_taxonomy

    root, model_dir, name, inp = tiny
    keys = set(load_taxonomy(None).keys)
    out, rows = zero_shot
    assert len(rows) == len(NAMES)
    for r in rows:
        assert r["video_type"] in keys and 0 < r["video_type_score"] <= 1
        assert r["type_weight"] == load_taxonomy(None).weight(r["video_type"], {})
        check = [c for c in r["checks"] if c["stage"] == "video_type"][0]
        assert check["metric"] == "type_sample" and check["threshold"] == 0.0
        if r["type_weight"] == 0:
            assert (r["status"], r["reason"]) == (REJECTED, "type_dropped")
        elif r["type_weight"] >= 1:
            assert r["status"] == OK
    # weight 0 for every type seen: the sampling rule must follow the configured weights
    seen = {r["video_type"] for r in rows}
    drop_all = [f"stages.video_type.weights.{k}=0" for k in seen]
    out = root / "out_drop"
    rows = run(inp, out, model_dir, name, *drop_all)
    assert all((r["status"], r["stage"], r["reason"]) == (REJECTED, "video_type", "type_dropped") for r in rows)


def test_train_type_head_then_classify_with_it(tiny, zero_shot, tmp_path):
    from curator.cli import main
    from curator.type_head import load_head

    root, model_dir, name, inp = tiny
    out, rows = zero_shot
    labels = tmp_path / "labels.csv"
    # arbitrary labels: the point is the path (CSV -> manifest embeddings -> head file -> stage)
    lines = ["clip_id,label"] + [f"{r['clip_id']},{'driving' if i % 2 else 'nature'}" for i, r in enumerate(rows)]
    labels.write_text("\n".join(lines) + "\n")
    head = model_dir / "video_type" / "head.pt"
    rc = main(["train-type-head", str(out), "--labels", str(labels), "--epochs", "30",
               "--set", f"models.dir={model_dir}"])
    assert rc == 0 and head.is_file()
    model, doc = load_head(str(head))
    assert doc["labels"] == ["nature", "driving"] and doc["embedding_model"] == name
    rows = run(inp, root / "out_head", model_dir, name)
    assert {r["video_type"] for r in rows} <= {"nature", "driving"}
    head.unlink()


def test_unknown_label_is_refused(tiny, zero_shot, tmp_path):
    from curator.cli import main

    root, model_dir, name, inp = tiny
    out, rows = zero_shot
    labels = tmp_path / "labels.csv"
    labels.write_text(f"clip_id,label\n{rows[0]['clip_id']},cats\n{rows[1]['clip_id']},nature\n")
    assert main(["train-type-head", str(out), "--labels", str(labels), "--set", f"models.dir={model_dir}"]) == 2


def test_video_type_needs_embed_first(tmp_path):
    from curator import pipeline

    cfg = PipelineConfig.load(None, ["stages.order=[video_type,embed]"], input=str(tmp_path), output=str(tmp_path / "o"))
    p = pipeline.build(cfg)
    skipped = dict(p.skipped)
    assert "video_type" in skipped and "embed" in skipped["video_type"][0].describe()
    cfg = PipelineConfig.load(None, ["stages.order=[embed,video_type]"], input=str(tmp_path),
                              output=str(tmp_path / "o"))
    assert "perceptual" in dict(pipeline.build(cfg).skipped)["video_type"][0].describe()


def test_the_binary_runs_video_type_only_when_its_model_can_run(tmp_path):
    """Through `curator run`: with the default perceptual embedding and no head, video_type
    is named as skipped (with the fix) and writes nothing; a CLIP model named but absent
    skips it too; once a head for these embeddings is in the model directory, it runs.
    The default config lists it in stages.order, so a default run skips it the same way."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    import numpy as np
    import yaml

    from curator import pipeline
    from curator.testing.synth import make_shots_video
    from curator.type_head import save_head, train_head

    root = Path(__file__).resolve().parents[2]
    models = tmp_path / "models"
    models.mkdir()
    make_shots_video(str(tmp_path / "in" / "a.mp4"), [("testsrc2", 60), ("mandelbrot", 60)], width=160, height=96)
    base = ["run", "-i", str(tmp_path / "in"), "--runner", "local", "--set", "stages.order=[embed,video_type]",
            "--set", "stages.split.method=scenedetect", "--set", "stages.split.min_clip_s=1", "--set", "run.shard=false",
            "--set", "dedup.enabled=false", "--set", "index.enabled=false", "--set", "stages.video_type.device=cpu"]
    env = {**__import__("os").environ, "CURATOR_MODEL_DIR": str(models)}

    def curator(out: str, *extra: str):
        proc = subprocess.run([sys.executable, "-m", "curator", *base, "-o", str(tmp_path / out), *extra], cwd=root,
                              capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        clips = [r for r in pq.read_table(tmp_path / out / "manifest.parquet").to_pylist() if r["kind"] == "clip"]
        run_doc = yaml.safe_load((tmp_path / out / "config.yaml").read_text())["_run"]
        return proc, clips, run_doc

    # perceptual embeddings, no head: skipped, with the fix
    proc, clips, run_doc = curator("o1")
    assert "\n  video_type" in proc.stderr and "need a CLIP embedding" in proc.stderr
    assert "curator train-type-head" in proc.stderr
    assert "video_type" not in run_doc["stages"] and "video_type" in run_doc["skipped"]
    assert clips and all("video_type" not in c for c in clips)
    # a CLIP model named but not in the model directory: skipped, with the download command
    proc, _, run_doc = curator("o2", "--set", "stages.embed.model=open_clip:ViT-B-32/openai")
    assert "video_type" in run_doc["skipped"] and "curator models download open_clip:ViT-B-32/openai" in proc.stderr
    # a head trained on these (perceptual) embeddings in the model directory: it runs
    emb = np.stack([np.asarray(c["embedding"], np.float32) for c in clips])
    head = train_head(emb, [["nature", "driving"][i % 2] for i in range(len(emb))], ["nature", "driving"], hidden=8,
                      epochs=5)
    save_head(str(models / "video_type" / "head.pt"), head, ["nature", "driving"], clips[0]["embedding_model"], 8,
              emb.shape[1])
    proc, clips, run_doc = curator("o3")
    assert "video_type" in run_doc["stages"] and "video_type" not in json.dumps(run_doc.get("skipped") or {})
    assert clips and all(c["video_type"] in {"nature", "driving"} for c in clips)
    # the default config has it in stages.order: without a head it is skipped, not run
    cfg = PipelineConfig.load(None, [f"models.dir={tmp_path / 'empty-models'}"], input=str(tmp_path / "in"),
                              output=str(tmp_path / "o4"))
    assert "video_type" in cfg.stages.order and cfg.stages.video_type.enabled
    built = pipeline.build(cfg)
    assert "video_type" in dict(built.skipped) and "video_type" not in [s.name for s in built.specs]
