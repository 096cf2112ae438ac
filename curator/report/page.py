"""The HTML renderer: one self-contained page from a scan, the run's metrics and its thumbnails."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from curator import storage
from curator.config import ReportConfig
from curator.records import OK
from curator.report.scan import Scan, Step
from curator.report.svg import svg_bars, svg_funnel, svg_histogram, svg_lines, svg_placeholder
from curator.report.text import _bytes, _hours, _num, esc
from curator.report.thumbnails import Thumbnailer

CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI','DejaVu Sans',sans-serif;margin:0;color:#0f172a;background:#fff}
header{background:#0f172a;color:#f8fafc;padding:18px 28px}header h1{margin:0 0 4px;font-size:22px}
header .meta{color:#cbd5e1;font-size:13px}main{padding:8px 28px 40px;max-width:1240px}
section{margin:26px 0}h2{font-size:18px;border-bottom:2px solid #e2e8f0;padding-bottom:4px}
h3{font-size:15px;margin:16px 0 6px}table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{border:1px solid #e2e8f0;padding:3px 9px;text-align:left;vertical-align:top}th{background:#f8fafc}
td.n{text-align:right;font-variant-numeric:tabular-nums}.lbl{font-size:12px;fill:#0f172a}
.val{font-size:12px;fill:#334155;font-weight:600}.tick{font-size:10px;fill:#475569}.ph{font-size:13px;fill:#475569;font-weight:600}
.axis{stroke:#94a3b8;stroke-width:1}.hists{display:flex;flex-wrap:wrap;gap:14px}
.hist{border:1px solid #e2e8f0;border-radius:6px;padding:6px}.hist p{margin:2px 4px;font-size:12px;color:#475569}
.grid{display:flex;flex-wrap:wrap;gap:12px}figure.thumb{margin:0;width:%(tw)dpx;border:1px solid #e2e8f0;border-radius:6px;
overflow:hidden;background:#f8fafc}figure.thumb img,figure.thumb svg{display:block;width:%(tw)dpx;height:auto}
figcaption{padding:5px 7px;font-size:11px;line-height:1.35;word-break:break-word}figcaption b{font-size:11.5px}
.detail{color:#b91c1c}.caption{color:#334155;font-style:italic}.scores{color:#475569;font-family:monospace;font-size:10.5px}
.kept{border-color:#16a34a!important}.removed{border-color:#dc2626!important}.muted{color:#64748b}
.group{border:1px solid #e2e8f0;border-radius:8px;padding:8px;margin:8px 0}
.reasons{display:flex;flex-wrap:wrap;gap:4px 26px;align-items:flex-start}.reason h3{margin-top:10px}
figure.thumb img.preview{width:%(pw)dpx;margin:4px auto 0;border-radius:3px}
"""


def page_css(thumb_width: int, preview_width: int | None = None) -> str:
    """The pages' shared style sheet at a thumbnail width (previews no wider than thumbnails)."""
    pw = thumb_width if preview_width is None else min(preview_width, thumb_width)
    return CSS % {"tw": thumb_width, "pw": pw}


def _table(head: list[str], rows: list[list[Any]], numeric: set[int] = frozenset()) -> str:  # type: ignore[assignment]
    out = ["<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>"]
    for r in rows:
        out.append("<tr>" + "".join(f'<td class="n">{esc(c)}</td>' if i in numeric else f"<td>{esc(c)}</td>"
                                    for i, c in enumerate(r)) + "</tr>")
    out.append("</table>")
    return "".join(out)


class Renderer:
    def __init__(self, run_uri: str, scan: Scan, cfg: ReportConfig, thumbs: Thumbnailer,
                 metrics: dict[str, Any] | None, summary: dict[str, Any] | None, run_doc: dict[str, Any] | None,
                 index: dict[str, Any] | None, dedup_doc: dict[str, Any] | None):
        self.run_uri, self.s, self.cfg, self.thumbs = run_uri, scan, cfg, thumbs
        self.metrics, self.summary, self.run_doc, self.index, self.dedup_doc = metrics, summary, run_doc, index, dedup_doc
        self.previews = 0  # animated previews on the page so far (at most cfg.max_previews)

    # ------------------------------------------------------------- sections
    def page(self) -> str:
        parts = [self.header(), "<main>", self.funnel(), self.rejects(), self.scores(), self.throughput(),
                 self.dedup(), self.kept(), self.rejected(), "</main>"]
        return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>curator report: {esc(storage.display(self.run_uri))}</title>"
                f"<style>{page_css(self.cfg.thumb_width, self.cfg.preview_width)}"
                "</style></head><body>" + "".join(parts) + "</body></html>")

    def header(self) -> str:
        run = (self.run_doc or {}).get("_run") or {}
        summ = self.summary or {}
        bits = [f"run {esc(run.get('run_id', '?'))}", f"config {esc(run.get('config_hash', '?'))}"]
        if summ.get("elapsed_s") is not None:
            bits.append(f"{summ['elapsed_s']:.1f} s wall")
        if run.get("stages"):
            bits.append("stages: " + esc(" → ".join(run["stages"])))
        bits.append("generated " + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
        return (f"<header><h1>curator report — {esc(storage.display(self.run_uri))}</h1>"
                f"<div class=\"meta\">{' · '.join(bits)}</div></header>")

    def funnel_steps(self) -> list[Step]:
        s = self.s
        steps = [s.videos, s.probed, s.shots, s.clips, s.passed]
        if s.dedup_rows or "dup_group" in s.columns:
            steps.append(s.deduped)
        shards = Step("clips in shards", s.shardable.count, s.shardable.seconds)
        if self.index is not None:
            # "clips": distinct clips over every split and profile; older indexes: "samples"
            shards.count = int(self.index.get("clips", self.index.get("samples", 0)))
            if shards.count != s.shardable.count and s.shardable.count:
                shards.seconds = s.shardable.seconds * shards.count / s.shardable.count
                shards.note = "hours estimated: the shards do not match the manifest (re-shard?)"
        else:
            shards.count, shards.seconds, shards.note = 0, 0.0, "no shards/index.json (run.shard off?)"
        steps.append(shards)
        return steps

    def funnel(self) -> str:
        s = self.s
        steps = self.funnel_steps()
        rows = [[st.label, st.count, _hours(st.seconds), st.note] for st in steps]
        rows[2][3] = f"{s.shots_detected:,} shots detected; kept: within stages.split min/max length"
        if s.durations_unknown:
            rows[0][3] = f"duration unknown for {s.durations_unknown:,} inputs that were not probed"
        size = f"{_bytes(s.input_bytes)} of input" if s.input_bytes else ""
        return (f'<section id="funnel"><h2>Funnel: from raw hours to shards</h2>{svg_funnel(steps)}'
                f'{_table(["step", "items", "hours", "note"], rows, {1})}<p class="muted">{size}</p></section>')

    def rejects(self) -> str:
        s = self.s
        if not s.rejects:
            return '<section id="rejects"><h2>Rejects by reason</h2><p>Nothing was rejected.</p></section>'
        items = sorted(s.rejects.items(), key=lambda kv: (-kv[1], kv[0]))
        rows = [[k, st, r, n, _hours(s.reject_seconds[(k, st, r)]) if s.reject_seconds[(k, st, r)] else "–"]
                for (k, st, r), n in items]
        chart = svg_bars([(f"{k}: {st}/{r}", n) for (k, st, r), n in items], "rejects-chart", "rejects by reason")
        return (f'<section id="rejects"><h2>Rejects by reason</h2>{chart}'
                f'{_table(["kind", "stage", "reason", "rows", "hours"], rows, {3})}</section>')

    def scores(self) -> str:
        s = self.s
        if not s.metrics:
            return ('<section id="scores"><h2>Score histograms</h2><p>No filter wrote scores (`checks`) in this '
                    'run.</p></section>')
        cards = []
        for key in sorted(s.metrics):
            m = s.metrics[key]
            thr = ", ".join(f"keep {op} {_num(t)} ({n:,})" for (op, t), n in m.thresholds.most_common())
            cards.append(f'<div class="hist">{svg_histogram(m)}<p>{m.count:,} scored · {m.passed:,} passed · '
                         f'{m.failed:,} rejected' + (f" · {m.not_scored:,} not scored" if m.not_scored else "")
                         + f'</p><p>threshold: {esc(thr) or "–"}</p></div>')
        return (f'<section id="scores"><h2>Score histograms</h2><p class="muted">Green: clips that passed this '
                f'check; red: clips it rejected; dashed line: the threshold.</p><div class="hists">'
                f'{"".join(cards)}</div></section>')

    def throughput(self) -> str:
        doc = self.metrics
        if not doc or not doc.get("stages"):
            return ('<section id="throughput"><h2>Stage throughput</h2><p>No metrics.json in this run.</p>'
                    '</section>')
        step = float(doc.get("bucket_s") or 0.0)
        order = ((self.run_doc or {}).get("_run") or {}).get("stages") or []
        stages = {name: doc["stages"][name] for name in sorted(
            doc["stages"], key=lambda n: (order.index(n) if n in order else len(order), n))}
        rate = [(name, [n / step if step else 0.0 for n in st.get("finished_per_bucket") or []])
                for name, st in stages.items()]
        queue = [(name, [float(q) for q in st["queue_per_bucket"]]) for name, st in stages.items()
                 if st.get("queue_per_bucket")]
        rows = [[name, st.get("items_in"), st.get("items_out"), st.get("busy_s"), st.get("items_per_busy_s"),
                 ", ".join(f"{r}: {n}" for r, n in sorted((st.get("rejects") or {}).items()))]
                for name, st in stages.items()]
        out = ['<section id="throughput"><h2>Stage throughput and queues</h2>',
               f'<p class="muted">Wall time {doc.get("wall_s", 0):.1f} s in buckets of {step:.2f} s.</p>',
               "<h3>Items finished per second</h3>",
               svg_lines(rate, step, "throughput-chart", "items finished per second by stage", "items/s")]
        if queue:
            out += ["<h3>Queue depth (finished by the previous stage, not yet by this one)</h3>",
                    svg_lines(queue, step, "queue-chart", "queue depth by stage", "items")]
        out.append(_table(["stage", "items in", "items out", "busy s", "items / busy s", "rejects"], rows,
                          {1, 2, 3, 4}))
        out.append("</section>")
        return "".join(out)

    def dedup(self) -> str:
        s = self.s
        if "dup_group" not in s.columns:
            return ('<section id="dedup"><h2>Duplicates</h2><p>Dedup did not run on this manifest.</p>'
                    '</section>')
        sizes = Counter(s.group_sizes.values())
        groups = sum(1 for n in s.group_sizes.values() if n > 1)
        stats = (self.dedup_doc or {}).get("stats") or {}
        lines = [f"{groups:,} groups of near-duplicates; {s.dedup_rows:,} clips removed"]
        if stats.get("threshold") is not None:
            lines.append(f"similarity threshold {_num(stats['threshold'])} ({esc(stats.get('embedding_model'))})")
        if s.groups_capped:
            lines.append(f"group sizes tallied for the first {self.cfg.max_dedup_groups_counted:,} groups only")
        chart = svg_bars([(f"groups of {k}", v) for k, v in sorted(sizes.items()) if k > 1], "dedup-sizes",
                         "duplicate group sizes", color="#7c3aed")
        out = [f'<section id="dedup"><h2>Duplicates</h2><p>{esc("; ".join(lines))}</p><h3>Group sizes</h3>{chart}']
        for g, members in s.group_members.items():
            cards = "".join(self.card(ex, "dedup", kept=ex["status"] == OK) for ex in members)
            out.append(f'<div class="group" data-group="{esc(g)}"><b>group {esc(g)}</b> · '
                       f'{s.group_sizes[g]} clips<div class="grid">{cards}</div></div>')
        out.append("</section>")
        return "".join(out)

    def _previews_note(self, made: int) -> str:
        if not self.cfg.max_previews:
            return ""
        return (f" Animated previews ({self.cfg.preview_frames} frames across the clip) for {made} of them; "
                f"the page holds at most {self.cfg.max_previews} (report.max_previews).")

    def kept(self) -> str:
        assert self.s.kept is not None
        items = self.s.kept.items()
        share = (self.cfg.max_previews + 1) // 2  # the other half is for the rejects
        before = self.previews
        cards = "".join(self.card(ex, "kept", preview=i < share) for i, ex in enumerate(items)) or "<p>No clip was kept.</p>"
        return (f'<section id="kept"><h2>Kept clips</h2><p class="muted">{len(items)} of '
                f'{self.s.deduped.count:,}, a deterministic sample; middle frame of each clip.'
                f'{self._previews_note(self.previews - before) if items else ""}</p>'
                f'<div class="grid">{cards}</div></section>')

    def rejected(self) -> str:
        s = self.s
        keys = [key for key, _ in sorted(s.rejects.items(), key=lambda kv: (-kv[1], kv[0]))]
        # what is left of the preview budget goes round the reasons: each reason's first
        # clip example, then each one's second, ...
        budget = max(0, self.cfg.max_previews - self.previews)
        clips = {key: [ex for ex in s.examples[key].items() if ex.get("kind") == "clip" and ex.get("clip_uri")]
                 for key in keys}
        chosen: set[tuple[tuple[str, str, str], str]] = set()
        for rank in range(max((len(v) for v in clips.values()), default=0)):
            for key in keys:
                if len(chosen) < budget and rank < len(clips[key]):
                    chosen.add((key, clips[key][rank]["clip_id"]))
        before = self.previews
        body = []
        if not s.rejects:
            body.append("<p>Nothing was rejected.</p>")
        for key in keys:
            kind, stage, reason = key
            cards = "".join(self.card(ex, f"{stage}/{reason}", preview=(key, ex.get("clip_id")) in chosen)
                            for ex in s.examples[key].items())
            body.append(f'<div class="reason" data-reason="{esc(stage)}/{esc(reason)}"><h3>{esc(kind)}: '
                        f'{esc(stage)}/{esc(reason)} <span class="muted">({s.rejects[key]:,})</span></h3>'
                        f'<div class="grid">{cards}</div></div>')
        note = self._previews_note(self.previews - before).strip() if chosen else ""
        return ('<section id="rejected"><h2>Rejected, by reason</h2>'
                + (f'<p class="muted">{note}</p>' if note else "")
                + '<div class="reasons">' + "".join(body) + "</div></section>")

    # ---------------------------------------------------------------- cards
    def card(self, ex: dict[str, Any], group: str, kept: bool | None = None, preview: bool = False) -> str:
        preview = preview and self.previews < self.cfg.max_previews
        th = self.thumbs(ex, preview=True) if preview else self.thumbs(ex)
        reason = f"{ex.get('stage')}/{ex.get('reason')}" if ex.get("status") != OK else "kept"
        name_id = esc(ex.get("clip_id") or ex.get("video_id"))
        if th.data_uri:
            visual = f'<img src="{th.data_uri}" alt="{esc(reason)}: {name_id}">'
        else:
            visual = svg_placeholder(reason, th.note, self.cfg.thumb_width)
        if th.preview:
            self.previews += 1
            visual += f'<img class="preview" src="{th.preview}" alt="preview: {name_id}">'
        name = ex.get("source_key") or ex.get("video_id")
        if ex.get("kind") == "clip":
            name = f"{name} #{ex.get('clip_index') if ex.get('clip_index') is not None else ex.get('clip_id')}"
            span = ex.get("start_s"), ex.get("end_s")
            if span[0] is not None and span[1] is not None:
                name += f" [{span[0]:.1f}–{span[1]:.1f} s]"
        lines = [f"<b>{esc(name)}</b>"]
        if ex.get("status") != OK and ex.get("detail"):
            lines.append(f'<span class="detail">{esc(ex["detail"])}</span>')
        elif ex.get("detail"):
            lines.append(f'<span class="muted">{esc(ex["detail"])}</span>')
        if ex.get("similarity") is not None and ex.get("dup_group"):
            role = "kept" if ex.get("status") == OK else f"duplicate of {ex.get('duplicate_of')}"
            lines.append(f"{esc(role)} · similarity {_num(ex['similarity'])}")
        if ex.get("scores"):
            lines.append('<span class="scores">' + "<br>".join(
                f"{'✓' if ok else ('✗' if ok is not None else '?')} {esc(st)}/{esc(me)} {_num(v)} "
                f"(keep {esc(op)} {_num(t)})" for st, me, v, op, t, ok in ex["scores"]) + "</span>")
        if ex.get("caption"):
            cap = ex["caption"]
            lines.append(f'<span class="caption">“{esc(cap[:400])}{"…" if len(cap) > 400 else ""}”</span>')
        cls = "thumb" + (" placeholder-card" if not th.data_uri else "")
        if kept is not None:
            cls += " kept" if kept else " removed"
        return (f'<figure class="{cls}" data-reason="{esc(group)}">{visual}'
                f'<figcaption>{"<br>".join(lines)}</figcaption></figure>')
