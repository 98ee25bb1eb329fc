"""One self-contained HTML page: inline CSS, an inline SVG chart, no script, nothing from the network.

Sections: the run's summary; drift over time (drifted resources per drift run, stacked by class, from
the store's ``drift_series``); a table of hosts; per host, each drifted/failed/changed resource with
its class, since when, for how many runs, its change lines and diffs folded in ``<details>``.
Every value from the document is HTML-escaped; a Content-Security-Policy forbids scripts and remote
loads as a second line of defence.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from driftctl.report.common import (
    change_diff,
    change_line,
    host_counts,
    hosts,
    label,
    notable,
    parse_time,
    resources,
    scope_notes,
    title,
    unmanaged,
    unmanaged_line,
)

CHART_CLASSES = ("corrective", "both", "pending", "unmanaged")
COLORS = {"corrective": "#d9534f", "both": "#9b59b6", "pending": "#f0ad4e", "unmanaged": "#5b8fd9"}
STATUS_CLASS = {"ok": "ok", "changed": "warn", "drifted": "warn", "failed": "bad", "unreachable": "bad"}


@dataclass
class ChartRun:
    """One drift run in the chart: drifted subjects per class summed over hosts."""

    run_id: int | None
    time: datetime | None
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def chart_from_document(doc: Mapping[str, Any]) -> list[ChartRun]:
    """The chart of a single run, when no store is at hand."""
    if doc.get("command") != "drift":
        return []
    counts = dict.fromkeys(CHART_CLASSES, 0)
    for h in hosts(doc):
        c = host_counts(h)
        for cls, n in c.by_class.items():
            counts[cls] = counts.get(cls, 0) + n
        counts["unmanaged"] += c.unmanaged
    return [ChartRun(None, parse_time(doc.get("started")), counts)]


def chart_from_store(store: Any, inventory: str, limit: int = 60, until_run: int | None = None) -> list[ChartRun]:
    """The latest ``limit`` drift runs of an inventory (up to run ``until_run``), oldest first, with their
    drift per class. Runs that found nothing are in the chart too (as empty bars): drift_series leaves
    them out.
    """
    found = store.runs(inventory, limit=100_000 if until_run is not None else limit, command="drift")
    if until_run is not None:
        found = [r for r in found if r.id <= until_run][:limit]
    runs = list(reversed(found))
    if not runs:
        return []
    chart = {r.id: ChartRun(r.id, r.started, dict.fromkeys(CHART_CLASSES, 0)) for r in runs}
    for p in store.drift_series(inventory, since=runs[0].started):
        run = chart.get(p.run_id)
        if run is not None:
            run.counts[p.drift_class] = run.counts.get(p.drift_class, 0) + p.count
    return list(chart.values())


def e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1100px;
padding:1rem 1.5rem;color:#222;background:#fff}
h1{font-size:1.5rem;margin:.2rem 0}h2{font-size:1.2rem;margin-top:1.8rem;border-bottom:1px solid #ddd}
h3{font-size:1.05rem;margin-top:1.4rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{border-bottom:1px solid #e5e5e5;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f6f6}td.n{text-align:right;font-variant-numeric:tabular-nums}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
pre{background:#f7f7f7;padding:.5rem;overflow:auto;white-space:pre}
.ok{color:#2e7d32}.warn{color:#b26a00}.bad{color:#c62828;font-weight:600}.dim{color:#777}
.ins{color:#2e7d32}.del{color:#c62828}.hunk{color:#00838f}
.legend span{display:inline-block;margin-right:1rem}
.legend i{display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem;vertical-align:-1px}
ul.changes{margin:.2rem 0;padding-left:1.2rem}
svg text{font-size:11px;fill:#555}
"""


def _status(status: str) -> str:
    return f'<span class="{STATUS_CLASS.get(status, "")}">{e(status)}</span>'


def _fmt_time(dt: datetime | None) -> str:
    return dt.strftime("%Y-%m-%d %H:%M") if dt else "?"


def chart_svg(runs: Sequence[ChartRun]) -> str:
    """Stacked bars, one per drift run; each segment carries a tooltip (<title>)."""
    if not runs:
        return '<p class="dim">No drift run recorded yet.</p>'
    width, height, left, right, top, bottom = 760, 240, 40, 10, 10, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((r.total for r in runs), default=0)
    ymax = max(1, peak)
    slot = plot_w / len(runs)
    bar = max(1.0, slot * 0.8)
    parts = [f'<svg role="img" aria-label="Drifted resources per drift run, stacked by class" '
             f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">']
    for frac in (0.0, 0.5, 1.0):
        value = ymax * frac
        y = top + plot_h - plot_h * frac
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#e0e0e0"/>')
        text = f"{value:.0f}" if value == int(value) else f"{value:.1f}"
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{text}</text>')
    for i, run in enumerate(runs):
        x = left + i * slot + (slot - bar) / 2
        y = top + plot_h
        when = _fmt_time(run.time)
        name = f"run #{run.run_id}" if run.run_id is not None else "this run"
        for cls in CHART_CLASSES:
            n = run.counts.get(cls, 0)
            if not n:
                continue
            h = plot_h * n / ymax
            y -= h
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{COLORS[cls]}">'
                         f"<title>{e(name)} {e(when)}: {n} {e(cls)}</title></rect>")
        if not run.total:
            parts.append(f'<rect x="{x:.1f}" y="{top + plot_h - 1:.1f}" width="{bar:.1f}" height="1" fill="#2e7d32">'
                         f"<title>{e(name)} {e(when)}: no drift</title></rect>")
    picks = sorted({0, len(runs) // 2, len(runs) - 1})
    for i in picks:
        x = left + i * slot + slot / 2
        anchor = "start" if i == 0 and len(runs) > 1 else "end" if i == len(runs) - 1 and len(runs) > 1 else "middle"
        parts.append(f'<text x="{x:.1f}" y="{height - 14}" text-anchor="{anchor}">{e(_fmt_time(runs[i].time))}</text>')
    parts.append("</svg>")
    legend = "".join(f'<span><i style="background:{COLORS[c]}"></i>{e(c)}</span>' for c in CHART_CLASSES)
    caption = (f'<p class="dim">{len(runs)} drift run(s); the latest found {runs[-1].total} drifted '
               f"resource(s) and unmanaged change(s); the most in one run: {peak}.</p>")
    return "\n".join(parts) + f'\n<div class="legend">{legend}</div>\n{caption}'


def _diff(text: str) -> str:
    out = []
    for line in text.splitlines():
        cls = "ins" if line.startswith("+") else "del" if line.startswith("-") else \
            "hunk" if line.startswith("@@") else ""
        out.append(f'<span class="{cls}">{e(line)}</span>' if cls else e(line))
    return "<pre>" + "\n".join(out) + "</pre>"


def _resource_row(r: Mapping[str, Any]) -> str:
    items = []
    if r.get("error"):
        items.append(f'<li class="bad">{e(r["error"])}</li>')
    for c in r.get("changes") or []:
        item = f"<li><code>{e(change_line(r, c))}</code>"
        if c.get("diff"):
            item += f"<details><summary>diff of {e(c.get('field'))}</summary>{_diff(change_diff(r, c))}</details>"
        items.append(item + "</li>")
    if r.get("ignored"):
        items.append(f'<li class="dim">ignored: {e(r["ignored"])}</li>')
    status = "bad" if r.get("status") == "failed" else "warn" if r.get("drift") or r.get("status") == "changed" else ""
    source = f'<br><span class="dim">{e(r["source"])}</span>' if r.get("source") else ""
    return (f"<tr><td><code>{e(r.get('id'))}</code>{source}</td><td class=\"{status}\">{e(label(r))}</td>"
            f"<td>{e(r.get('since') or '')}</td><td class=\"n\">{e(r.get('runs') or '')}</td>"
            f'<td><ul class="changes">{"".join(items)}</ul></td></tr>')


def _has_details(doc: Mapping[str, Any], h: Mapping[str, Any]) -> bool:
    return any(notable(doc, r) for r in resources(h)) or bool(list(unmanaged(h))) or bool(h.get("error"))


def _host_details(doc: Mapping[str, Any], index: int, h: Mapping[str, Any]) -> str:
    if not _has_details(doc, h):
        return ""
    c = host_counts(h)
    items = [r for r in resources(h) if notable(doc, r)]
    changes = list(unmanaged(h))
    out = [f'<h3 id="host-{index}"><code>{e(c.name)}</code> {_status(c.status)}</h3>']
    if h.get("error"):
        out.append(f'<p class="bad">{e(h["error"])}</p>')
    if items:
        out.append("<table><tr><th>resource</th><th>class</th><th>since</th><th>runs</th><th>changes</th></tr>")
        out += [_resource_row(r) for r in items]
        out.append("</table>")
    if changes:
        out.append("<table><tr><th>unmanaged change</th><th>since</th><th>runs</th><th>note</th></tr>")
        for u in changes:
            note = f"ignored: {e(u['ignored'])}" if u.get("ignored") else ""
            out.append(f"<tr><td><code>{e(unmanaged_line(u))}</code></td><td>{e(u.get('since') or '')}</td>"
                       f'<td class="n">{e(u.get("runs") or "")}</td><td class="dim">{note}</td></tr>')
        out.append("</table>")
    return "\n".join(out)


def render(doc: Mapping[str, Any], chart: Sequence[ChartRun] | None = None) -> str:
    """The page; ``chart`` is the drift history (``chart_from_store``), else the run alone."""
    runs = list(chart) if chart is not None else chart_from_document(doc)
    s = doc.get("summary") or {}
    last_run = doc.get("finished") or doc.get("started") or ""
    rows = []
    all_hosts = hosts(doc)
    for i, h in enumerate(all_hosts):
        c = host_counts(h)
        name = f"<code>{e(c.name)}</code>"
        if _has_details(doc, h):
            name = f'<a href="#host-{i}">{name}</a>'
        # an unreachable host's drift is unknown, not zero
        drifted, unmanaged_n, failed = (c.drifted, c.unmanaged, c.failed) if c.reached else ("—", "—", "—")
        if not c.unmanaged_examined:
            unmanaged_n = "—"
        rows.append(f"<tr><td>{name}</td><td>{_status(c.status)}</td><td class=\"n\">{drifted}</td>"
                    f'<td class="n">{unmanaged_n}</td><td class="n">{failed}</td><td>{e(last_run)}</td></tr>')
    details = [d for d in (_host_details(doc, i, h) for i, h in enumerate(all_hosts)) if d]
    hosts_text = e(s.get("hosts", len(all_hosts))) + " host(s)"
    counts = ", ".join(f"{s.get(k, 0)} {k}" for k in ("ok", "changed", "drifted", "failed", "unreachable") if s.get(k))
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="driftctl {e(doc.get('driftctl_version') or '')}">
<title>{e(title(doc))}</title>
<style>{CSS}</style>
</head>
<body>
<header>
<h1>{e(title(doc))}</h1>
<p>Exit <strong>{e(doc.get('exit_code'))}</strong> · {hosts_text}{': ' + e(counts) if counts else ''}
 · {e(s.get('resources_drifted', 0))} drifted resource(s), {e(s.get('unmanaged_changes', 0))} unmanaged change(s),
 {e(s.get('resources_failed', 0))} failed resource(s)</p>
{''.join(f'<p><strong>{e(note)}</strong></p>' for note in scope_notes(doc))}
<p class="dim">Started {e(doc.get('started'))}, finished {e(doc.get('finished'))} on {e(doc.get('controller'))}
 by {e(doc.get('user'))} with driftctl {e(doc.get('driftctl_version'))}.</p>
</header>
<section>
<h2>Drift over time</h2>
{chart_svg(runs)}
</section>
<section>
<h2>Hosts</h2>
<table><tr><th>host</th><th>status</th><th>drifted</th><th>unmanaged</th><th>failed</th><th>last run</th></tr>
{chr(10).join(rows)}
</table>
</section>
<section>
<h2>Details</h2>
{chr(10).join(details) if details else '<p class="ok">Nothing drifted, failed or changed.</p>'}
</section>
</body>
</html>
"""
    return page
