"""Entry points: ``render`` (a run to an HTML string) and ``write_report`` (to a file or URI)."""

from __future__ import annotations

import json
from typing import Any

import pyarrow.parquet as pq

from curator import manifest, storage
from curator.config import ReportConfig
from curator.report.page import Renderer
from curator.report.scan import scan_manifest
from curator.report.text import INDEX_NAME, REPORT_NAME, ReportError, log
from curator.report.thumbnails import Thumbnailer


def _json(uri: str) -> dict[str, Any] | None:
    try:
        return json.loads(storage.read_bytes(uri))
    except storage.NotFound:
        return None
    except ValueError:
        log.warning("%s is not valid JSON; left out of the report", storage.display(uri))
        return None


def _yaml(uri: str) -> dict[str, Any] | None:
    import yaml

    try:
        return yaml.safe_load(storage.read_bytes(uri)) or {}
    except storage.NotFound:
        return None


def render(run_uri: str, cfg: ReportConfig | None = None, *, max_pixels: int = 8192 * 8192) -> str:
    """The report of the run at `run_uri`, as HTML text."""
    cfg = cfg or ReportConfig()
    run_uri = storage.normalize(run_uri)
    muri = manifest.manifest_uri(run_uri)
    if not storage.exists(muri):
        raise ReportError(f"{storage.display(run_uri)} is not a finished run: no {manifest.MANIFEST_NAME}")
    with storage.local_copy(muri) as path:
        pf = pq.ParquetFile(path)
        try:
            scan = scan_manifest(pf, cfg)
        finally:
            pf.close()
    return Renderer(
        run_uri, scan, cfg, Thumbnailer(cfg, max_pixels),
        metrics=_json(storage.join(run_uri, "metrics.json")),
        summary=_json(storage.join(run_uri, "summary.json")),
        run_doc=_yaml(storage.join(run_uri, "config.yaml")),
        index=_json(storage.join(run_uri, INDEX_NAME)),
        dedup_doc=_json(storage.join(run_uri, "dedup.json")),
    ).page()


def write_report(run_uri: str, output: str | None = None, cfg: ReportConfig | None = None, *,
                 max_pixels: int = 8192 * 8192) -> str:
    """Write the report (default `<run>/report.html`) through curator.storage; returns its URI."""
    text = render(run_uri, cfg, max_pixels=max_pixels)
    out = storage.normalize(output) if output else storage.join(storage.normalize(run_uri), REPORT_NAME)
    storage.write_bytes(out, text.encode("utf-8"))
    return out
