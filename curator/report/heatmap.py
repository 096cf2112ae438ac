"""`curator coverage --html`: one self-contained page (inline CSS, no script) with the coverage heatmap.

The grid is a table: rows are the values of the first `--by` column(s), columns the values of
the last one (one column when there is a single `--by`). Every label of a taxonomy field is a
row or column, so an empty cell shows as 0. A cell's shade follows its clip count; a cell that
a target names and that misses it is outlined in red with what is missing. The targets follow
in a table (met / gap, have, want, missing).
"""

from __future__ import annotations

import math
import time
from typing import Any

from curator import storage
from curator.coverage import ALL, Coverage, TargetResult, axis_values, cell_targets, gaps
from curator.report.page import page_css
from curator.report.text import _hours, esc

HEATMAP_CSS = """
table.heatmap td.cell{text-align:center;min-width:64px;font-variant-numeric:tabular-nums}
table.heatmap td.cell small{display:block;opacity:.75;font-size:10.5px}
table.heatmap td.total{background:#f8fafc;font-weight:600}table.heatmap tr.totals th{text-align:right}
table.heatmap td.gap{outline:3px solid #dc2626;outline-offset:-3px}
table.heatmap td.met{outline:2px solid #16a34a;outline-offset:-2px}
table.heatmap .need{color:#b91c1c;font-size:11px;font-weight:600}
table.heatmap th.row{text-align:right}tr.gaprow td{background:#fef2f2}tr.metrow td{background:#f0fdf4}
.legend span{display:inline-block;width:26px;height:12px;border:1px solid #e2e8f0;vertical-align:middle}
"""


def _label(v: Any) -> str:
    return "(none)" if v is None else str(v)


def _shade(clips: int, top: int) -> str:
    if clips <= 0 or top <= 0:
        return "#ffffff"
    f = math.sqrt(clips / top)  # perceptually: small counts still show
    r, g, b = (int(round(255 + (c - 255) * f)) for c in (37, 99, 235))
    return f"#{r:02x}{g:02x}{b:02x}"


def _ink(clips: int, top: int) -> str:
    return "#ffffff" if top and math.sqrt(clips / top) > 0.6 else "#0f172a"


def _need(trs: list[TargetResult]) -> str:
    parts = []
    for tr in trs:
        if tr.missing_clips:
            parts.append(f"+{tr.missing_clips} clips")
        if tr.missing_hours > 1e-9:
            parts.append(f"+{tr.missing_hours:.2f} h")
    return ", ".join(parts)


def _td(key: tuple, clips: int, seconds: float, top: int, trs: list[TargetResult], cls: str = "cell") -> str:
    missed = [t for t in trs if not t.met]
    cls += " gap" if missed else " met" if trs else ""
    need = f'<div class="need">need {esc(_need(missed))}</div>' if missed else ""
    shade = f"background:{_shade(clips, top)};color:{_ink(clips, top)}" if top else ""
    return (f'<td class="{cls}" data-cell="{esc("|".join("*" if v is ALL else _label(v) for v in key))}" '
            f'data-clips="{clips}" data-hours="{seconds / 3600:.6f}" style="{shade}">'
            f"{clips}<small>{esc(_hours(seconds))}</small>{need}</td>")


def render_coverage(cov: Coverage, taxonomy: Any = None) -> str:
    """The page: the grid of `cov.by` (rows: by[:-1], columns: by[-1], with totals) and the targets."""
    by = cov.by
    on = cell_targets(cov)
    top = max((c.clips for c in cov.cells.values()), default=0)
    last = axis_values(cov, len(by) - 1, taxonomy)
    if len(by) == 1:
        rows: list[tuple] = []
    elif len(by) == 2:
        rows = [(v,) for v in axis_values(cov, 0, taxonomy)]
    else:  # the combinations seen or targeted (the full product can be huge)
        rows = sorted({k[:-1] for k in cov.cells} | {k[:-1] for k in on if ALL not in k[:-1]},
                      key=lambda k: tuple(_label(v) for v in k))
    if len(by) == 1:  # one column of cells, one row per value
        head = f"<th>{esc(by[0])}</th><th>clips</th>"
        body = []
        for v in last:
            c = cov.cells.get((v,))
            body.append(f'<tr><th class="row">{esc(_label(v))}</th>'
                        + _td((v,), c.clips if c else 0, c.seconds if c else 0.0, top, on.get((v,), [])) + "</tr>")
    else:
        head = "".join(f"<th>{esc(b)}</th>" for b in by[:-1])
        head += "".join(f"<th>{esc(by[-1])}={esc(_label(c))}</th>" for c in last) + "<th>all</th>"
        body = []
        for r in rows:
            tds = []
            for c in last:
                cell = cov.cells.get(r + (c,))
                tds.append(_td(r + (c,), cell.clips if cell else 0, cell.seconds if cell else 0.0, top,
                               on.get(r + (c,), [])))
            tot = cov.rows.get(r)
            tds.append(_td(r + (ALL,), tot.clips if tot else 0, tot.seconds if tot else 0.0, 0, on.get(r + (ALL,), []),
                           "cell total"))
            body.append("<tr>" + "".join(f'<th class="row">{esc(_label(v))}</th>' for v in r) + "".join(tds) + "</tr>")
        tds = []
        for c in last:
            key = (ALL,) * (len(by) - 1) + (c,)
            tot = cov.cols.get(c)
            tds.append(_td(key, tot.clips if tot else 0, tot.seconds if tot else 0.0, 0, on.get(key, []), "cell total"))
        tds.append(_td((ALL,) * len(by), cov.total.clips, cov.total.seconds, 0, [], "cell total"))
        body.append(f'<tr class="totals"><th class="row" colspan="{len(by) - 1}">all</th>' + "".join(tds) + "</tr>")
    grid = f'<table class="heatmap" data-by="{esc(",".join(by))}"><tr>{head}</tr>' + "".join(body) + "</table>"
    legend = ('<p class="legend muted">clips per cell: '
              + " ".join(f'<span style="background:{_shade(int(top * f), top)}"></span> {int(top * f)}'
                         for f in (0.0, 0.25, 0.5, 1.0) if top)
              + " · outlined red: a target not met (with what is missing), green: met · totals count each clip "
                "once</p>")
    placed = {id(t) for trs in on.values() for t in trs}
    unplaced = [t for t in cov.targets if id(t) not in placed]
    note = (f'<p class="muted">{len(unplaced)} target(s) name other columns or combinations and are listed below '
            "only.</p>") if unplaced else ""
    return _page(cov, grid + legend + note, _targets(cov))


def _targets(cov: Coverage) -> str:
    if not cov.targets:
        return '<p class="muted">no targets given (--targets FILE)</p>'
    g = gaps(cov)
    rows = []
    for tr in cov.targets:
        want = " + ".join(x for x in (f"{tr.target.min_clips} clips" if tr.target.min_clips is not None else "",
                                      f"{tr.target.min_hours:g} h" if tr.target.min_hours is not None else "") if x)
        rows.append(f'<tr class="{"metrow" if tr.met else "gaprow"}" data-target="{esc(tr.target.name)}">'
                    f"<td>{'met' if tr.met else 'GAP'}</td><td>{esc(tr.target.name)}</td>"
                    f'<td class="n">{tr.clips}</td><td class="n">{tr.hours:.3f}</td><td>{esc(want)}</td>'
                    f'<td class="n">{tr.missing_clips}</td><td class="n">{tr.missing_hours:.3f}</td></tr>')
    return (f"<p>{len(cov.targets)} targets: {len(cov.targets) - len(g)} met, {len(g)} gaps.</p>"
            '<table class="targets"><tr><th></th><th>target</th><th>clips</th><th>hours</th><th>want</th>'
            "<th>missing clips</th><th>missing hours</th></tr>" + "".join(rows) + "</table>")


def _page(cov: Coverage, grid: str, targets: str) -> str:
    src = storage.display(cov.source)
    meta = (f"{cov.total.clips} kept clips · {esc(_hours(cov.total.seconds))} · by {esc(' × '.join(cov.by))} · generated "
            + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>curator coverage: {esc(src)}</title><style>{page_css(224)}{HEATMAP_CSS}</style></head><body>"
            f"<header><h1>curator coverage — {esc(src)}</h1><div class=\"meta\">{meta}</div></header><main>"
            f'<section id="heatmap"><h2>Clips per cell</h2>{grid}</section>'
            f'<section id="targets"><h2>Targets and gaps</h2>{targets}</section></main></body></html>')


def write_coverage_html(cov: Coverage, output: str, taxonomy: Any = None) -> str:
    out = storage.normalize(output)
    storage.write_bytes(out, render_coverage(cov, taxonomy).encode("utf-8"))
    return out

