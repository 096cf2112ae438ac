"""`curator report RUN`: one self-contained HTML file that explains a finished run.

    curator report out/run1                    # -> out/run1/report.html
    curator report s3://bucket/run1 --output report.html

The file needs nothing else: CSS is inline, charts are SVG drawn here, thumbnails are
base64 JPEG data URIs. It shows

- the funnel from raw hours to clips in shards (count and hours at every step),
- rejects by kind / stage / reason (table and bar chart),
- one histogram per filter metric from the `checks` column, with its threshold,
- stage throughput and queue depth over the run (from metrics.json),
- duplicate groups (when dedup ran): group sizes, kept and removed clips,
- thumbnails of kept clips and, per reject reason, a few rejected ones with their
  detail, scores and caption; reasons for which no frame can exist get a labelled
  placeholder card.

Memory is bounded: the manifest is read in batches (twice: counts, then histogram bins
and the members of the chosen duplicate groups); only counters, histograms and a fixed
number of examples are kept. Columns written by optional stages (checks, caption,
dup_group, ...) are used when present and ignored when absent.

Modules: ``text`` (names, columns, redaction and escaping), ``scan`` (the manifest
passes), ``thumbnails``, ``svg`` (charts), ``page`` (the HTML renderer), ``api`` (``render``,
``write_report``).
"""

from __future__ import annotations

from curator.report.api import render, write_report
from curator.report.page import CSS, Renderer
from curator.report.scan import MetricStats, Sample, Scan, Step, scan_manifest
from curator.report.svg import svg_bars, svg_funnel, svg_histogram, svg_lines, svg_placeholder
from curator.report.text import COLUMNS, INDEX_NAME, NO_FRAME_REASONS, REPORT_NAME, ReportError, esc, redact
from curator.report.thumbnails import Thumb, Thumbnailer

__all__ = [
    "COLUMNS", "CSS", "INDEX_NAME", "NO_FRAME_REASONS", "REPORT_NAME", "MetricStats", "Renderer", "ReportError",
    "Sample", "Scan", "Step", "Thumb", "Thumbnailer", "esc", "redact", "render", "scan_manifest", "svg_bars",
    "svg_funnel", "svg_histogram", "svg_lines", "svg_placeholder", "write_report",
]
