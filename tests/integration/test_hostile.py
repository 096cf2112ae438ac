"""A hostile corpus through `curator run` (local runner): every input gets a row and a
reason, odd-but-valid inputs become clean clips, nothing escapes the output, no temp
file stays behind, and planted credentials appear in no output and no log line.

The corpus (curator/testing/synth_hostile.py) holds 21 inputs of 20 kinds: zero-byte, truncated
(no moov), random bytes, PNG / JPEG / text renamed .mp4, audio-only, one frame, a zero
time scale (0 fps), a three-day duration header, a 16000x16000 and a 16384x16384 header
on a 256x256 stream, 10-bit, 4:4:4, interlaced, rotated, variable frame rate, mkv with
two subtitle streams, and keys with '../', unicode, control characters and 240 chars.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from curator.testing.synth import ffmpeg_exe
from curator.testing.synth_hostile import make_hostile_corpus

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SAFE_ID = re.compile(r"^[A-Za-z0-9_-]+$")

#: planted where credentials live: the standard variables, and variables the config names
PLANTED = {
    "AWS_ACCESS_KEY_ID": "AKIAPLANTEDFAKE00042",
    "AWS_SECRET_ACCESS_KEY": "plantedAwsSecret/9f8e7d6c5b4a39281706f5e4d3c2b1a0",
    "AWS_SESSION_TOKEN": "plantedSessionToken0123456789abcdef",
    "AZURE_STORAGE_CONNECTION_STRING": "DefaultEndpointsProtocol=https;AccountName=plantedacct;"
                                       "AccountKey=plantedAzureKeyQmFzZTY0U2VjcmV0==;EndpointSuffix=core.windows.net",
    "CURATOR_TEST_AZ_CONN": "DefaultEndpointsProtocol=https;AccountName=plantedacct2;"
                            "AccountKey=plantedConfigNamedKeyU2VjcmV0Mg==",
    "CURATOR_TEST_AZ_KEY": "plantedAccountKeyU2VjcmV0Mw==",
    "GOOGLE_OAUTH_ACCESS_TOKEN": "ya29.plantedGoogleToken-abcdef",
}
#: the secret parts to look for (the account names are not secrets)
SECRETS = ["plantedAwsSecret", "plantedSessionToken", "plantedAzureKeyQmFzZTY0", "plantedConfigNamedKey",
           "plantedAccountKeyU2Vj", "plantedGoogleToken", "AKIAPLANTEDFAKE00042"]


def _tree(root: Path, skip: Path) -> dict[str, tuple[int, str]]:
    """Every path under root (not under skip) with its size and content digest."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        if d == skip or skip in d.parents:
            dirnames[:] = []
            continue
        out[str(d.relative_to(root)) + "/"] = (0, "")
        for f in filenames:
            p = d / f
            out[str(p.relative_to(root))] = (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def _curator(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "curator", *args], cwd=cwd, env=env, capture_output=True,
                          timeout=600)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    corpus, outputs, tmp, cwd = root / "in", root / "outputs", root / "tmp", root / "cwd"
    for d in (outputs, tmp, cwd):
        d.mkdir()
    kinds = make_hostile_corpus(str(corpus))
    out = outputs / "run"
    before = _tree(root, out)
    env = {**os.environ, **PLANTED, "TMPDIR": str(tmp), "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}
    sets = ["stages.split.method=scenedetect", "run.log_level=DEBUG", "run.progress_interval_s=0.5",
            "run.max_error_rate=1",  # a corpus of broken files: most inputs fail by design
            "storage.azure.connection_string_env=CURATOR_TEST_AZ_CONN",
            "storage.azure.account_key_env=CURATOR_TEST_AZ_KEY"]
    set_args = [a for s in sets for a in ("--set", s)]
    run = _curator(["run", "--input", str(corpus), "--output", str(out), "--runner", "local", *set_args], env, cwd)
    assert run.returncode == 0, run.stderr.decode(errors="replace")[-3000:]
    report = _curator(["report", str(out), *set_args], env, cwd)
    assert report.returncode == 0, report.stderr.decode(errors="replace")[-3000:]
    return {"root": root, "corpus": corpus, "out": out, "tmp": tmp, "cwd": cwd, "kinds": kinds, "before": before,
            "after": _tree(root, out), "logs": [run.stdout, run.stderr, report.stdout, report.stderr]}


def _rows(out: Path) -> list[dict]:
    return pq.read_table(out / "manifest.parquet").to_pylist()


def test_corpus_has_the_kinds_the_issue_lists(hostile):
    kinds = hostile["kinds"]
    names = {k.name for k in kinds.values()}
    assert len(names) >= 15
    for required in ("zero_byte", "truncated", "random_bytes", "png_renamed", "audio_only", "one_frame", "zero_fps",
                     "10-bit", "4:4:4", "interlaced", "rotated 90", "variable frame rate", "16k_header",
                     "mkv with two subtitle streams", "'../' and unicode in the key"):
        assert required in names


def test_every_input_has_a_row_with_a_status_and_reason(hostile):
    rows = _rows(hostile["out"])
    videos = {r["source_key"]: r for r in rows if r["kind"] == "video"}
    assert set(videos) == set(hostile["kinds"])
    clips = [r for r in rows if r["kind"] == "clip"]
    for key, kind in hostile["kinds"].items():
        v = videos[key]
        assert SAFE_ID.match(v["video_id"]), v["video_id"]
        if kind.expect is not None:
            assert v["status"] in ("error", "rejected"), (kind.name, v)
            assert v["reason"] in kind.expect and v["stage"] == "ingest", (kind.name, v["reason"], v["detail"])
            assert v["detail"], kind.name
            assert not [c for c in clips if c["video_id"] == v["video_id"]]
        else:
            mine = [c for c in clips if c["video_id"] == v["video_id"]]
            assert v["status"] == "ok" and v["num_clips"] == len(mine) >= 1, (kind.name, v)
            assert all(SAFE_ID.match(c["clip_id"]) for c in mine), kind.name
            for c in mine:  # kept, or rejected by a filter with its score, threshold and reason; never an error
                assert c["status"] in ("ok", "rejected"), (kind.name, c["stage"], c["reason"], c["detail"])
                if c["status"] == "rejected":
                    assert c["reason"] and any(ch["stage"] == c["stage"] and ch["passed"] is False
                                               for ch in c["checks"]), (kind.name, c["stage"], c["reason"])
    # the 16000x16000 claim is refused by the pixel guard, the three-day one by the duration guard
    assert videos["huge_16000x16000.mp4"]["reason"] == "too_many_pixels"
    assert "not decoded" in videos["huge_16000x16000.mp4"]["detail"]
    assert "contradicts" in videos["zero_fps_timescale.mp4"]["detail"]


def test_odd_inputs_become_8bit_yuv420_upright_clips(hostile):
    out, corpus = hostile["out"], hostile["corpus"]
    odd = {k for k, kind in hostile["kinds"].items() if kind.expect is None}
    for c in (r for r in _rows(out) if r["kind"] == "clip"):
        assert c["source_key"] in odd
        path = Path(c["clip_uri"][len("file://"):])
        with av.open(str(path)) as container:
            vs = container.streams.video[0]
            assert vs.codec_context.name == "h264" and vs.codec_context.pix_fmt == "yuv420p", c["source_key"]
            frames = list(container.decode(vs))
        assert len(frames) == c["clip_frames"] > 0
        assert {f.format.name for f in frames} == {"yuv420p"}
        assert all(f.rotation == 0 for f in frames)  # upright: no display matrix left to apply
        assert (frames[0].width, frames[0].height) == (c["clip_width"], c["clip_height"])
        if c["source_key"] == "rotated.mp4":
            assert (c["clip_width"], c["clip_height"]) == (120, 160)
            # the same picture as ffmpeg's own autorotation of the source
            raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(corpus / "rotated.mp4"), "-frames:v", "1",
                                  "-f", "rawvideo", "-pix_fmt", "gray", "-"], capture_output=True, check=True).stdout
            ref = np.frombuffer(raw, np.uint8).reshape(160, 120).astype(float)
            got = frames[0].to_ndarray(format="gray").astype(float)
            assert np.abs(got - ref).mean() < 3 < np.abs(got - ref[::-1, ::-1]).mean()


def test_nothing_written_outside_the_output_and_no_temp_files_left(hostile):
    before, after = hostile["before"], hostile["after"]
    assert after == before  # inputs untouched, cwd and the parent of the output unchanged
    assert sorted(os.listdir(hostile["out"].parent)) == ["run"]
    assert os.listdir(hostile["tmp"]) == []  # the runs' tempfile.gettempdir()
    assert os.listdir(hostile["cwd"]) == []
    out = hostile["out"].resolve()
    for dirpath, dirnames, filenames in os.walk(out):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            assert p.resolve().is_relative_to(out) and not p.is_symlink()
            assert not name.startswith((".curator-tmp-", ".part-")), p  # no half-written file left
    staged = [p for p in (out / "staging").rglob("*") if p.is_file()]
    assert staged and all(SAFE_ID.match(p.stem) for p in staged), staged


def test_planted_credentials_appear_in_no_output_and_no_log(hostile):
    out = hostile["out"]
    files = [p for p in out.rglob("*") if p.is_file()]
    names = {str(p.relative_to(out)) for p in files}
    assert {"manifest.parquet", "metrics.json", "summary.json", "config.yaml", "report.html"} <= names
    logs = hostile["logs"]
    assert b"[curator] INFO" in logs[1] and b"videos (100%)" in logs[1]  # logs (at DEBUG level) and progress
    for blob, where in [(p.read_bytes(), str(p)) for p in files] + [(b, "logs") for b in logs]:
        for secret in SECRETS:
            assert secret.encode() not in blob, f"{secret} found in {where}"
    # the config names the variables it reads, never their values
    cfg = (out / "config.yaml").read_text()
    assert "CURATOR_TEST_AZ_CONN" in cfg and "CURATOR_TEST_AZ_KEY" in cfg


def test_report_covers_every_reason_of_the_hostile_run(hostile):
    text = (hostile["out"] / "report.html").read_text()
    reasons = {f"{r['stage']}/{r['reason']}" for r in _rows(hostile["out"]) if r["status"] != "ok"}
    shown = set(re.findall(r'<figure class="thumb[^"]*" data-reason="([^"]+)"', text))
    assert reasons <= shown
    assert "\x1b" not in text  # the control-character key is shown escaped


def test_16k_header_is_refused_before_decoding(hostile):
    """Opening a container decodes frames to learn its parameters; the pixel guard must
    act before that. A 16000x16000 frame is ~384 MB as yuv420p: the probe stays far below,
    in memory and in CPU time (both, as the memory touched by a failing decode varies)."""
    path = hostile["corpus"] / "huge_16000x16000.mp4"
    code = (
        "import json, resource, sys, time\n"
        "from curator.media.probe import probe, ProbeError\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "t = time.process_time()\n"
        "try:\n"
        "    probe(sys.argv[1]); reason = None\n"
        "except ProbeError as e:\n"
        "    reason = e.reason\n"
        "print(json.dumps({'reason': reason, 'cpu_s': time.process_time() - t,\n"
        "                  'mb': (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["reason"] == "too_many_pixels"
    # before the guard acted ahead of decoding: 180-680 MB and 1.2-5 CPU seconds; now ~85 MB, 0.07 s
    assert res["mb"] < 150 and res["cpu_s"] < 0.6, res
