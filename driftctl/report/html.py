"""One self-contained HTML page for a person scanning a fleet: nothing is loaded from anywhere.

Sections: the run's summary; what to run next (report/nextsteps.py); drift and applies over time
(report/chart.py, an inline SVG); a table of hosts (in sync, changed, drifted, unmanaged, failed);
then per host every resource in one table row: its class, since when and for how many runs, its
change lines and diffs (folded in ``<details>``, scrolling inside their cell), and its past events
from the store's history (folded too, the latest few). A filter form (host text, resource text,
class) hides the rows that do not match, and the hosts with none left; the filter lives in the URL
fragment, so ``report.html#class=failed,corrective&host=web`` opens filtered.

Every value from the document is HTML-escaped. A Content-Security-Policy in a <meta> tag allows
nothing but the page's own stylesheet and filter script, each by its sha256 (report/htmlassets.py):
no other script, no event handler attribute, no ``style=`` attribute, no remote load.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from driftctl.report.chart import (
    CHART_CLASSES,
    COLORS,
    ChartRun,
    chart_from_document,
    chart_from_store,
    chart_svg,
)
from driftctl.report.common import (
    change_diff,
    change_line,
    host_counts,
    hosts,
    label,
    parse_time,
    resources,
    scope_notes,
    title,
    unmanaged,
    unmanaged_line,
)
from driftctl.report.htmlassets import SCRIPT, csp, stylesheet
from driftctl.report.nextsteps import next_steps
from driftctl.report.past import History, Past

__all__ = [
    "CHART_CLASSES",
    "COLORS",
    "FILTER_CLASSES",
    "ChartRun",
    "chart_from_document",
    "chart_from_store",
    "chart_svg",
    "render",
    "row_class",
]

# the filter's classes, in the order of the form; the value is each row's data-c
FILTER_CLASSES: tuple[tuple[str, str], ...] = (
    ("corrective", "corrective drift"), ("pending", "pending drift"), ("both", "both drift"),
    ("unmanaged", "unmanaged change"), ("changed", "changed"), ("failed", "failed"), ("skipped", "skipped"),
    ("unreachable", "unreachable"), ("ignored", "ignored"), ("insync", "in sync"),
)
DEFAULT_HIDDEN = ("insync",)  # a person scanning 40 hosts looks for what is not in sync first
STATUS_CLASS = {"ok": "ok", "changed": "warn", "drifted": "warn", "failed": "bad", "unreachable": "bad"}
EVENT_WORDS = {"applied": "applied", "failed": "failed", "host-failed": "host failed", "unreachable": "unreachable",
               "drift-found": "drift found", "drift-resolved": "drift fixed"}


def e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def row_class(r: Mapping[str, Any]) -> str:
    """The filter class of a resource: its drift class, ``ignored``, or its status (``insync`` for ok)."""
    if r.get("drift"):
        return "ignored" if r.get("ignored") else str(r["drift"])
    status = str(r.get("status") or "")
    return {"ok": "insync", "changed": "changed", "failed": "failed", "skipped": "skipped"}.get(status, "insync")


def _time(value: Any) -> str:
    """A time as a short, unbreakable ``2026-09-21 12:13Z``; the whole ISO time in its title."""
    dt = parse_time(value)
    if dt is None:
        return e(value or "")
    full = dt.isoformat(timespec="seconds").replace("+00:00", "Z")
    return f'<time datetime="{e(full)}" title="{e(full)}">{dt.strftime("%Y-%m-%d %H:%MZ")}</time>'


def _status(status: str) -> str:
    return f'<span class="{STATUS_CLASS.get(status, "")}">{e(status)}</span>'


def _diff(text: str) -> str:
    out = []
    for line in text.splitlines():
        cls = "ins" if line.startswith("+") else "del" if line.startswith("-") else \
            "hunk" if line.startswith("@@") else ""
        out.append(f'<span class="{cls}">{e(line)}</span>' if cls else e(line))
    return "<pre>" + "\n".join(out) + "</pre>"


def _past(past: Past | None, what: str = "") -> str:
    if past is None or not past.events:
        return ""
    n = len(past.events)
    more = f" (latest {n} of {past.total})" if past.total > n else ""
    items = []
    for ev in reversed(past.events):  # newest first: the question is "what happened lately"
        run = f' <span class="dim">run #{e(ev.run_id)}</span>' if ev.run_id is not None else ""
        items.append(f'<li>{_time(ev.time.isoformat())} <span class="ev ev-{e(ev.kind)}">'
                     f"{e(EVENT_WORDS.get(ev.kind, ev.kind))}</span> {e(ev.detail)}{run}</li>")
    of = f" of {e(what)}" if what else ""
    return (f'<details class="past"><summary>{n} event{"s" if n != 1 else ""}{of}{more}</summary>'
            f'<ol class="events">{"".join(items)}</ol></details>')


def _resource_row(r: Mapping[str, Any], past: Past | None) -> str:
    cls = row_class(r)
    items = []
    if r.get("error"):
        items.append(f'<li class="bad">{e(r["error"])}</li>')
    for c in r.get("changes") or []:
        item = f"<li><code>{e(change_line(r, c))}</code>"
        if c.get("diff"):
            item += f"<details><summary>diff of {e(c.get('field'))}</summary>{_diff(change_diff(r, c))}</details>"
        items.append(item + "</li>")
    if r.get("status") == "skipped" and r.get("reason"):
        items.append(f'<li class="dim">{e(r["reason"])}</li>')
    if r.get("ignored"):
        items.append(f'<li class="dim">ignored: {e(r["ignored"])}</li>')
    changes = f'<ul class="changes">{"".join(items)}</ul>' if items else ""
    source = f'<span class="src">{e(r["source"])}</span>' if r.get("source") else ""
    rid = str(r.get("id", ""))
    return (f'<tr data-c="{cls}" data-r="{e(rid)}"><td><code>{e(rid)}</code>{source}</td>'
            f'<td class="c-{cls}">{e(label(r) if cls != "insync" else "in sync")}</td>'
            f'<td>{_time(r.get("since"))}</td><td class="n">{e(r.get("runs") or "")}</td>'
            f'<td class="changes">{changes}</td><td>{_past(past)}</td></tr>')


def _unmanaged_row(u: Mapping[str, Any], past: Past | None) -> str:
    cls = "ignored" if u.get("ignored") else "unmanaged"
    note = f'<ul class="changes"><li class="dim">ignored: {e(u["ignored"])}</li></ul>' if u.get("ignored") else ""
    path = str(u.get("path", ""))
    return (f'<tr data-c="{cls}" data-r="{e(path)}"><td><code>{e(path)}</code></td>'
            f'<td class="c-{cls}">unmanaged change{" (ignored)" if u.get("ignored") else ""}</td>'
            f'<td>{_time(u.get("since"))}</td><td class="n">{e(u.get("runs") or "")}</td>'
            f'<td class="changes"><code>{e(unmanaged_line(u))}</code>{note}</td>'
            f'<td>{_past(past)}</td></tr>')


def _host_section(index: int, h: Mapping[str, Any], history: History) -> str:
    c = host_counts(h)
    rows = []
    if h.get("error"):
        cls = "unreachable" if c.status == "unreachable" else "failed"
        rows.append(f'<tr data-c="{cls}" data-r=""><td colspan="6" class="c-{cls}">{e(c.status)}: '
                    f'{e(h["error"])}</td></tr>')
    rows += [_resource_row(r, history.get((c.name, str(r.get("id", ""))))) for r in resources(h)]
    rows += [_unmanaged_row(u, history.get((c.name, str(u.get("path", ""))))) for u in unmanaged(h)]
    numbers = []
    if c.reached:
        numbers.append(f"{c.resources} resource(s)")
        if h.get("duration") is not None:
            numbers.append(f"{e(h.get('duration'))} s")
    head = (f'<h3><code>{e(c.name)}</code> {_status(c.status)} <span class="dim">{" · ".join(numbers)}</span></h3>'
            f'{_past(history.get((c.name, None)), "the host as a whole")}')
    table = ('<table class="res"><colgroup><col class="c-res"><col class="c-cls"><col class="c-since">'
             '<col class="c-runs"><col><col class="c-past"></colgroup>'
             '<thead><tr><th>resource</th><th>class</th><th>since</th><th class="n">runs</th><th>what changed</th>'
             f'<th>past events</th></tr></thead><tbody>{"".join(rows)}</tbody></table>') if rows else ""
    return f'<section class="host" id="host-{index}" data-host="{e(c.name)}">{head}{table}</section>'


def _host_row(index: int, h: Mapping[str, Any]) -> str:
    c = host_counts(h)
    # an unreachable host's drift is unknown, not zero
    known = c.reached
    def n(value: int) -> str:
        return str(value) if known else "—"
    in_sync = sum(row_class(r) == "insync" for r in resources(h))  # drifted ones are in their own column
    unmanaged_n = str(c.unmanaged) if known and c.unmanaged_examined else "—"
    duration = h.get("duration")
    return (f'<tr data-host-row="{e(c.name)}"><td><a href="#host-{index}"><code>{e(c.name)}</code></a></td>'
            f"<td>{_status(c.status)}</td><td class=\"n\">{n(c.resources)}</td><td class=\"n\">{n(in_sync)}</td>"
            f'<td class="n">{n(c.changed)}</td><td class="n">{n(c.drifted)}</td><td class="n">{unmanaged_n}</td>'
            f'<td class="n">{n(c.failed)}</td><td class="n">{e(duration) if duration is not None else ""}</td></tr>')


def _filters(counts: Counter[str], command: str) -> str:
    default = [c for c, _ in FILTER_CLASSES if c not in DEFAULT_HIDDEN]
    boxes = []
    for value, text in FILTER_CLASSES:
        if value == "changed" and command in ("plan", "check"):
            text = "to change"
        checked = " checked" if value in default else ""
        boxes.append(f'<label class="c-{value}"><input type="checkbox" name="c" value="{value}"{checked}> '
                     f'{e(text)} <span class="dim">({counts.get(value, 0)})</span></label>')
    presets = ('<span class="presets">show: <a href="#class=all">everything</a>'
               f'<a href="#class={",".join(default)}">all but in sync</a>'
               '<a href="#class=corrective,pending,both,unmanaged">drift only</a>'
               '<a href="#class=failed,unreachable">failures only</a></span>')
    return (f'<form id="filters" class="filters" hidden data-default="{",".join(default)}">'
            '<label>host <input type="search" name="host" placeholder="web, db1" autocomplete="off"></label>'
            '<label>resource <input type="search" name="res" placeholder="nginx, /etc/ssh" autocomplete="off">'
            f'</label>{presets}<fieldset><legend>class</legend>{"".join(boxes)}</fieldset>'
            '<output id="shown" class="dim"></output></form>')


def _next(doc: Mapping[str, Any]) -> str:
    steps = next_steps(doc)
    if not steps:
        return '<p class="ok">Nothing to do: no drift, no pending change, no failure.</p>'
    items = []
    for s in steps:
        names = ", ".join(s.hosts[:3]) + (f" and {len(s.hosts) - 3} more" if len(s.hosts) > 3 else "")
        items.append(f'<li><strong>{e(s.title)}</strong>: {e(s.text)} <span class="dim">({e(names)})</span>'
                     f'<pre class="cmd">{e(chr(10).join(s.commands))}</pre></li>')
    return f'<ul class="steps">{"".join(items)}</ul>'


def render(doc: Mapping[str, Any], chart: Sequence[ChartRun] | None = None,
           history: History | None = None) -> str:
    """The page. ``chart``: runs over time (``chart_from_store``), else the run alone; ``history``: each
    resource's past (report/past.py ``history_from_store``), else none shown."""
    runs = list(chart) if chart is not None else chart_from_document(doc)
    past: History = history or {}
    command = str(doc.get("command") or "")
    s = doc.get("summary") or {}
    all_hosts = hosts(doc)
    counts: Counter[str] = Counter()
    for h in all_hosts:
        if h.get("error"):
            counts["unreachable" if h.get("status") == "unreachable" else "failed"] += 1
        counts.update(row_class(r) for r in resources(h))
        counts.update("ignored" if u.get("ignored") else "unmanaged" for u in unmanaged(h))
    host_rows = "\n".join(_host_row(i, h) for i, h in enumerate(all_hosts))
    sections = "\n".join(_host_section(i, h, past) for i, h in enumerate(all_hosts))
    hosts_text = e(s.get("hosts", len(all_hosts))) + " host(s)"
    summary = ", ".join(f"{s.get(k, 0)} {k}" for k in ("ok", "changed", "drifted", "failed", "unreachable") if s.get(k))
    style = stylesheet()
    policy = csp(style, SCRIPT)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{e(policy)}">
<meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="driftctl {e(doc.get('driftctl_version') or '')}">
<title>{e(title(doc))}</title>
<style>{style}</style>
</head>
<body>
<header>
<h1>{e(title(doc))}</h1>
<p>Exit <strong>{e(doc.get('exit_code'))}</strong> · {hosts_text}{': ' + e(summary) if summary else ''}
 · {e(s.get('resources', 0))} resource(s): {e(s.get('resources_changed', 0))} changed,
 {e(s.get('resources_drifted', 0))} drifted, {e(s.get('unmanaged_changes', 0))} unmanaged change(s),
 {e(s.get('resources_failed', 0))} failed</p>
{''.join(f'<p><strong>{e(note)}</strong></p>' for note in scope_notes(doc))}
<p class="dim">Started {_time(doc.get('started'))}, finished {_time(doc.get('finished'))} on {e(doc.get('controller'))}
 by {e(doc.get('user'))} with driftctl {e(doc.get('driftctl_version'))}.</p>
</header>
<section id="next">
<h2>What to run next</h2>
{_next(doc)}
</section>
<section id="chart">
<h2>Drift and applies over time</h2>
{chart_svg(runs)}
</section>
<main>
{_filters(counts, command)}
<section id="hosts">
<h2>Hosts</h2>
<table><thead><tr><th>host</th><th>status</th><th class="n">resources</th><th class="n">in sync</th>
<th class="n">changed</th><th class="n">drifted</th><th class="n">unmanaged</th><th class="n">failed</th>
<th class="n">seconds</th></tr></thead>
<tbody>
{host_rows}
</tbody></table>
</section>
<section id="resources">
<h2>Resources by host</h2>
{sections if all_hosts else '<p class="dim">No host in this run.</p>'}
</section>
</main>
<script>{SCRIPT}</script>
</body>
</html>
"""
