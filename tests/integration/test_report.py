"""`curator report` on a real run, opened in headless Chromium.

The run goes through the real pipeline (local runner, PySceneDetect) over a corpus with
video-level rejects of several kinds and a small filter stage defined here that scores
every clip (mean luma, luma spread) into `checks` and rejects some, so the report has
score histograms and clip-level rejects. Chromium comes from the distribution packages
(`make install` installs it; see the Makefile).
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curator.config import PipelineConfig, StageConfig
from curator.driver import execute
from curator.media.decode import sample_frames
from curator.pipeline import StageSpec, build
from curator.records import REJECTED, Row, stop
from curator.runners.local import LocalRunner
from curator.stage import Stage
from curator.testing.synth import make_audio_only, make_shots_video

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class LumaFilter(Stage):
    """A real, small filter: scores the clip's frames and records both checks."""

    name = "luma"
    kind = "clip"
    columns = [("mean_luma", pa.float64()), ("luma_std", pa.float64())]
    RULES = [("mean_luma", 80.0, "too_dark"), ("luma_std", 78.0, "flat")]

    def process_row(self, row: Row) -> Row:
        frames, _ = sample_frames(row["mp4"], 3, fmt="gray", num_frames=row["clip_frames"])
        row["mean_luma"], row["luma_std"] = float(frames.mean()), float(frames.std())
        checks = list(row.get("checks") or [])
        failed = []
        for metric, thr, reason in self.RULES:
            ok = row[metric] >= thr
            checks.append({"stage": self.name, "metric": metric, "value": row[metric], "threshold": thr,
                           "op": ">=", "passed": ok})
            if not ok:
                failed.append((reason, f"{metric} {row[metric]:.1f} < {thr}"))
        row["checks"] = checks
        if failed:
            stop(row, self.name, failed[0][0], "; ".join(text for _, text in failed), status=REJECTED)
        return row


@dataclass(frozen=True)
class LocalSpec(StageSpec):
    cls: type | None = None

    def stage_class(self) -> type[Stage]:
        assert self.cls is not None
        return self.cls


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed: `make install` installs it from the distribution packages")
    return exe


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    media = ROOT / "tests" / "data" / "media"
    d = tmp_path_factory.mktemp("report-corpus")
    for name in ["empty.mp4", "not_a_video.mp4", "bikes_truncated.mp4"]:
        shutil.copy(media / name, d / name)
    make_audio_only(str(d / "audio_only.mp4"), 2.0)
    make_shots_video(str(d / "short.mp4"), [("testsrc2", 30)], width=160, height=120)  # 1.2 s
    # three 0.8 s shots: no shot reaches stages.split.min_clip_s
    make_shots_video(str(d / "flashes.mp4"), [("testsrc2", 20), ("zoneplate", 20), ("sierpinski", 20)],
                     width=160, height=120)
    make_shots_video(str(d / "a.mp4"), [("sierpinski", 60), ("life", 60)], width=160, height=120)  # kept, too dark
    make_shots_video(str(d / "b.mp4"), [("testsrc2", 60), ("zoneplate", 60)], width=160, height=120)  # flat, kept
    out = tmp_path_factory.mktemp("report-out") / "run"
    # the built-in filters stay out: the stand-in LumaFilter decides what the report shows
    cfg = PipelineConfig.load(None, ["run.runner=local", "stages.split.method=scenedetect",
                                     "stages.order=[embed,caption]"], input=str(d), output=str(out))
    pipe = build(cfg)
    pipe.specs.insert(len(pipe.specs) - 1, LocalSpec("luma", "", StageConfig(), cls=LumaFilter))
    execute(pipe, LocalRunner())
    return out


def _figures(html_text: str) -> list[tuple[str, str, str]]:
    """(class, data-reason, inner html) of every thumbnail card."""
    return re.findall(r'<figure class="(thumb[^"]*)" data-reason="([^"]*)">(.*?)</figure>', html_text, re.S)


def _rows(out: Path) -> list[dict]:
    return pq.read_table(out / "manifest.parquet").to_pylist()


def test_corpus_has_the_reject_reasons_the_report_must_show(run):
    reasons = {(r["kind"], r["stage"], r["reason"]) for r in _rows(run) if r["status"] != "ok"}
    assert {("video", "ingest", "empty_file"), ("video", "ingest", "not_a_video"), ("video", "ingest", "unreadable"),
            ("video", "ingest", "audio_only"), ("video", "ingest", "too_short"),
            ("video", "split", "no_shots_long_enough"), ("clip", "luma", "too_dark"),
            ("clip", "luma", "flat")} <= reasons
    assert any(r["kind"] == "clip" and r["status"] == "ok" for r in _rows(run))


def test_report_cli_writes_default_and_explicit_output(run, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "curator", "report", str(run)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (run / "report.html").is_file()
    other = tmp_path / "elsewhere" / "r.html"
    proc = subprocess.run([sys.executable, "-m", "curator", "report", str(run), "--output", str(other)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert str(other) in proc.stdout
    assert other.read_bytes()[:15] == b"<!DOCTYPE html>"
    # animated WebP previews beside the stills of kept and rejected clips, bounded
    import base64

    from PIL import Image

    text = other.read_text()
    previews = re.findall(r'<figure class="thumb[^"]*" data-reason="([^"]*)">(?:(?!</figure>).)*?'
                          r'<img class="preview" src="data:image/webp;base64,([^"]+)"', text, re.S)
    reasons = {reason for reason, _ in previews}
    assert "kept" in reasons and reasons & {"luma/too_dark", "luma/flat"}, reasons
    assert 0 < len(previews) <= 24
    for _, b64 in previews:
        img = Image.open(io.BytesIO(base64.b64decode(b64)))
        assert img.format == "WEBP" and img.is_animated and img.n_frames > 1 and img.size[0] == 160
    missing = subprocess.run([sys.executable, "-m", "curator", "report", str(tmp_path / "nothing")], cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode == 1 and "not a finished run" in missing.stderr


def test_report_opens_in_chromium(run, tmp_path):
    from PIL import Image

    from curator.report import write_report

    exe = chromium()
    report = Path(write_report(str(run))[len("file://"):])
    text = report.read_text()
    # self-contained: no external fetches of any kind
    assert not re.search(r'(src|href)="(https?:|//|file:)', text)
    url = report.as_uri()
    png = tmp_path / "shot.png"
    base = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    subprocess.run(base + [f"--screenshot={png}", "--window-size=1280,2000", url], capture_output=True,
                   timeout=180, check=True)
    img = np.asarray(Image.open(png).convert("RGB"), dtype=np.float64)
    assert img.shape[:2] == (2000, 1280)
    assert img.std() > 20, "screenshot is blank"
    assert len(np.unique(img.reshape(-1, 3)[::97], axis=0)) > 50  # charts and thumbnails, not a flat page
    dom = subprocess.run(base + ["--dump-dom", url], capture_output=True, timeout=180, check=True).stdout.decode()

    # the funnel, with every step
    funnel = re.search(r'<section id="funnel">(.*?)</section>', dom, re.S).group(1)
    assert '<svg class="funnel"' in funnel
    for step in ("input videos", "probed OK", "shots within length rules", "clips cut", "clips kept by filters",
                 "clips in shards"):
        assert step in funnel
    # one histogram per metric found in the manifest's checks, each with its threshold line
    metrics = {f"{c['stage']}/{c['metric']}" for r in _rows(run) for c in (r["checks"] or [])}
    assert metrics == {"luma/mean_luma", "luma/luma_std"}
    hists = re.findall(r'<svg class="histogram"[^>]*data-metric="([^"]+)"[^>]*>(.*?)</svg>', dom, re.S)
    assert {m for m, _ in hists} == metrics and len(hists) == len(metrics)
    assert all('class="threshold"' in body for _, body in hists)
    # at least one thumbnail card per reject reason: a real frame where anything decodes
    figures = _figures(dom)
    by_reason: dict[str, list[str]] = {}
    for _cls, reason, inner in figures:
        by_reason.setdefault(reason, []).append(inner)
    for r in _rows(run):
        if r["status"] != "ok":
            cards = by_reason.get(f"{r['stage']}/{r['reason']}")
            assert cards and all("<img" in c or 'class="placeholder"' in c for c in cards), (r["reason"], cards)
    for reason in ("luma/too_dark", "luma/flat", "ingest/too_short", "split/no_shots_long_enough"):
        assert all('<img src="data:image/jpeg;base64,' in c for c in by_reason[reason]), reason
    for reason in ("ingest/empty_file", "ingest/not_a_video", "ingest/audio_only", "ingest/unreadable"):
        assert all('class="placeholder"' in c and "no decodable frame" in c for c in by_reason[reason]), reason
    assert any("<img" in c for c in by_reason["kept"])
    # the clip-level reject cards carry their scores and detail
    assert any("mean_luma" in c and "&lt; 80" in c for c in by_reason["luma/too_dark"])
    # throughput and queue charts from metrics.json
    assert '<svg class="throughput-chart"' in dom and '<svg class="queue-chart"' in dom
    assert 'id="rejects"' in dom and '<svg class="rejects-chart"' in dom


def test_thumbnails_are_the_middle_frames(run):
    """A kept clip's card holds its middle frame: of all frames of the staged mp4, the
    thumbnail is closest to the middle one."""
    import base64

    from PIL import Image

    from curator.config import ReportConfig
    from curator.report import render

    text = render(str(run), ReportConfig(kept_thumbs=50, thumb_width=160))
    kept = {r["clip_id"]: r for r in _rows(run) if r["kind"] == "clip" and r["status"] == "ok"}
    cards = [f for f in _figures(text) if f[1] == "kept"]
    assert len(cards) == len(kept)
    for _cls, _reason, inner in cards:
        clip_id = re.search(r'alt="kept: ([^"]+)"', inner).group(1)
        row = kept[clip_id]
        jpeg = base64.b64decode(re.search(r"base64,([^\"]+)", inner).group(1))
        got = np.asarray(Image.open(io.BytesIO(jpeg)).convert("L"), dtype=np.float64)
        path = row["clip_uri"][len("file://"):]
        size = (got.shape[1], got.shape[0])
        every, idx = sample_frames(path, row["clip_frames"], size, fmt="gray", num_frames=row["clip_frames"])
        assert idx == list(range(row["clip_frames"]))
        diffs = [np.abs(got - f).mean() for f in every.astype(np.float64)]
        assert abs(int(np.argmin(diffs)) - row["clip_frames"] // 2) <= 1, diffs
