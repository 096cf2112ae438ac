"""Entry points: ``render`` (a run to an HTML string) and ``write_report`` (to a file or URI)."""

from __future__ import annotations

import json
from typing import Any

from curator import storage
from curator.config import ReportConfig
from curator.report.page import Renderer
from curator.report.scan import scan_manifest
from curator.report.text import ReportError, log
from curator.report.thumbnails import Thumbnailer
from curator.rundir import MANIFEST, RunDir


def _json(uri: str) -> dict[str, Any] | None:
    try:
        return json.loads(storage.read_bytes(uri))
    except storage.NotFound:
        return None
    except ValueError:
        log.warning("%s is not valid JSON; left out of the report", storage.display(uri))
        return None


def _run_doc(rundir: RunDir) -> dict[str, Any] | None:
    got = rundir.read_config()
    return None if got is None else {**got[0], "_run": got[1]}


def render(run_uri: str, cfg: ReportConfig | None = None, *, max_pixels: int = 8192 * 8192) -> str:
    """The report of the run at `run_uri`, as HTML text."""
    cfg = cfg or ReportConfig()
    rundir = RunDir.of(run_uri)
    run_uri = rundir.uri
    if not rundir.has_manifest():
        raise ReportError(f"{storage.display(run_uri)} is not a finished run: no {MANIFEST}")
    with rundir.open_manifest("report") as mf:
        scan = scan_manifest(mf.parquet, cfg)
    return Renderer(
        run_uri, scan, cfg, Thumbnailer(cfg, max_pixels),
        metrics=_json(rundir.metrics),
        summary=_json(rundir.summary),
        run_doc=_run_doc(rundir),
        index=_json(rundir.shard_index),
        dedup_doc=_json(rundir.dedup_report),
    ).page()


def write_report(run_uri: str, output: str | None = None, cfg: ReportConfig | None = None, *,
                 max_pixels: int = 8192 * 8192) -> str:
    """Write the report (default `<run>/report.html`) through curator.storage; returns its URI."""
    text = render(run_uri, cfg, max_pixels=max_pixels)
    out = storage.normalize(output) if output else RunDir.of(run_uri).report
    storage.write_bytes(out, text.encode("utf-8"))
    return out
