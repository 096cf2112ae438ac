"""Charts drawn as inline SVG: funnel, bars, histograms, lines, placeholders."""

from __future__ import annotations

from curator.report.scan import MetricStats, Step
from curator.report.text import _hours, _num, esc

PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d", "#475569",
           "#ea580c"]


def _svg(w: int, h: int, body: str, cls: str, label: str, extra: str = "") -> str:
    return (f'<svg class="{cls}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" '
            f'height="{h}" role="img" aria-label="{esc(label)}"{extra}>{body}</svg>')


def svg_funnel(steps: list[Step]) -> str:
    width, row_h, left = 860, 34, 230
    total = max((st.seconds for st in steps), default=0.0)
    by_hours = total > 0
    top = max((st.count for st in steps), default=0) or 1
    parts = []
    for i, st in enumerate(steps):
        frac = (st.seconds / total) if by_hours else st.count / top
        bw = max(2.0, frac * (width - left - 150))
        y = i * row_h + 4
        x = left + (width - left - 150 - bw) / 2
        parts.append(f'<text x="{left - 8}" y="{y + 20}" text-anchor="end" class="lbl">{esc(st.label)}</text>'
                     f'<rect x="{x:.1f}" y="{y}" width="{bw:.1f}" height="{row_h - 8}" rx="3" '
                     f'fill="{PALETTE[i % len(PALETTE)]}" opacity="0.85"><title>{esc(st.label)}: {st.count}'
                     f'</title></rect>'
                     f'<text x="{width - 145}" y="{y + 20}" class="val">{st.count:,} · {_hours(st.seconds)}</text>')
    return _svg(width, len(steps) * row_h + 8, "".join(parts), "funnel", "funnel from raw hours to shards")


def svg_bars(items: list[tuple[str, int]], cls: str, label: str, color: str = "#dc2626") -> str:
    width, row_h, left = 860, 22, 330
    top = max((n for _, n in items), default=0) or 1
    parts = []
    for i, (name, n) in enumerate(items):
        y = i * row_h + 2
        bw = max(1.0, n / top * (width - left - 70))
        parts.append(f'<text x="{left - 6}" y="{y + 15}" text-anchor="end" class="lbl">{esc(name)}</text>'
                     f'<rect x="{left}" y="{y + 3}" width="{bw:.1f}" height="{row_h - 6}" fill="{color}" '
                     f'opacity="0.8"/><text x="{left + bw + 5:.1f}" y="{y + 15}" class="val">{n:,}</text>')
    return _svg(width, max(1, len(items)) * row_h + 4, "".join(parts), cls, label)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    return [lo + (hi - lo) * i / (n - 1) for i in range(n)]


def svg_histogram(m: MetricStats) -> str:
    width, height, pl, pr, pt, pb = 420, 210, 44, 26, 26, 34
    pw, ph = width - pl - pr, height - pt - pb
    lo, hi = m.edges
    n = len(m.bins) or 1
    top = max((a + b for a, b in m.bins), default=0) or 1
    bw = pw / n
    parts = [f'<line x1="{pl}" y1="{pt + ph}" x2="{pl + pw}" y2="{pt + ph}" class="axis"/>']
    for i, (ok, bad) in enumerate(m.bins):
        x = pl + i * bw
        h_ok, h_bad = ok / top * ph, bad / top * ph
        if bad:
            parts.append(f'<rect x="{x:.1f}" y="{pt + ph - h_bad:.1f}" width="{max(bw - 1, 1):.1f}" '
                         f'height="{h_bad:.1f}" fill="#dc2626"><title>{bad} rejected</title></rect>')
        if ok:
            parts.append(f'<rect x="{x:.1f}" y="{pt + ph - h_bad - h_ok:.1f}" width="{max(bw - 1, 1):.1f}" '
                         f'height="{h_ok:.1f}" fill="#16a34a"><title>{ok} passed</title></rect>')
    for v in _ticks(lo, hi):
        x = pl + (v - lo) / (hi - lo) * pw
        parts.append(f'<text x="{x:.1f}" y="{height - 18}" text-anchor="middle" class="tick">{v:.3g}</text>')
    parts.append(f'<text x="{pl - 4}" y="{pt + 4}" text-anchor="end" class="tick">{top}</text>'
                 f'<text x="{pl - 4}" y="{pt + ph}" text-anchor="end" class="tick">0</text>')
    for (op, thr), _cnt in m.thresholds.most_common(3):
        x = pl + (thr - lo) / (hi - lo) * pw
        keep = "keep ≥" if op == ">=" else "keep ≤"
        right = x > pl + pw / 2  # label on the side with room
        parts.append(f'<line class="threshold" x1="{x:.1f}" y1="{pt - 6}" x2="{x:.1f}" y2="{pt + ph}" '
                     f'stroke="#111" stroke-width="2" stroke-dasharray="5,3"/>'
                     f'<text x="{x - 4 if right else x + 4:.1f}" y="{pt - 10}" class="tick" '
                     f'text-anchor="{"end" if right else "start"}">{keep} {_num(thr)}</text>')
    parts.append(f'<text x="{pl + pw / 2}" y="{height - 3}" text-anchor="middle" class="lbl">'
                 f'{esc(m.stage)} / {esc(m.metric)}</text>')
    return _svg(width, height, "".join(parts), "histogram", f"histogram of {m.stage}/{m.metric}",
                f' data-metric="{esc(m.stage)}/{esc(m.metric)}"')


def svg_lines(series: list[tuple[str, list[float]]], step_s: float, cls: str, label: str, unit: str) -> str:
    width, height, pl, pr, pt, pb = 860, 240, 54, 150, 14, 34
    pw, ph = width - pl - pr, height - pt - pb
    n = max((len(v) for _, v in series), default=0)
    top = max((max(v) for _, v in series if v), default=0.0) or 1.0
    parts = [f'<line x1="{pl}" y1="{pt + ph}" x2="{pl + pw}" y2="{pt + ph}" class="axis"/>'
             f'<line x1="{pl}" y1="{pt}" x2="{pl}" y2="{pt + ph}" class="axis"/>'
             f'<text x="{pl - 4}" y="{pt + 8}" text-anchor="end" class="tick">{_num(top)}</text>'
             f'<text x="{pl - 4}" y="{pt + ph}" text-anchor="end" class="tick">0</text>'
             f'<text x="{pl + pw / 2}" y="{height - 2}" text-anchor="middle" class="lbl">seconds into the run '
             f'({esc(unit)})</text>']
    for v in _ticks(0, n * step_s):
        x = pl + (v / (n * step_s) * pw if n and step_s else 0)
        parts.append(f'<text x="{x:.1f}" y="{height - 18}" text-anchor="middle" class="tick">{_num(v)}</text>')
    for i, (name, values) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        if values:
            pts = " ".join(f"{pl + (j + 0.5) / max(1, n) * pw:.1f},{pt + ph - val / top * ph:.1f}"
                           for j, val in enumerate(values))
            parts.append(f'<polyline class="series" points="{pts}" fill="none" stroke="{color}" stroke-width="2">'
                         f'<title>{esc(name)}</title></polyline>')
        parts.append(f'<rect x="{pl + pw + 12}" y="{pt + i * 18}" width="12" height="12" fill="{color}"/>'
                     f'<text x="{pl + pw + 30}" y="{pt + i * 18 + 11}" class="lbl">{esc(name)}</text>')
    return _svg(width, height, "".join(parts), cls, label)


def svg_placeholder(reason: str, note: str, width: int) -> str:
    h = int(width * 9 / 16)
    body = (f'<rect x="1" y="1" width="{width - 2}" height="{h - 2}" rx="6" fill="#f1f5f9" stroke="#94a3b8" '
            f'stroke-dasharray="6,4"/>'
            f'<line x1="{width / 2 - 16}" y1="{h / 2 - 34}" x2="{width / 2 + 16}" y2="{h / 2 - 2}" stroke="#94a3b8" '
            f'stroke-width="3"/><line x1="{width / 2 + 16}" y1="{h / 2 - 34}" x2="{width / 2 - 16}" '
            f'y2="{h / 2 - 2}" stroke="#94a3b8" stroke-width="3"/>'
            f'<text x="{width / 2}" y="{h / 2 + 22}" text-anchor="middle" class="ph">no decodable frame</text>'
            f'<text x="{width / 2}" y="{h / 2 + 40}" text-anchor="middle" class="tick">{esc(note[:40])}</text>')
    return _svg(width, h, body, "placeholder", f"no decodable frame: {reason}")
