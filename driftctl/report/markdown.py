"""Markdown for a pull request or an issue: a summary table with one row per host, then a section per
host with one entry per drifted, failed or changed resource (diffs folded in ``<details>``).

User data (ids, paths, errors) goes into code spans or escaped text, so a value cannot break the
table or inject markup.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any

from driftctl.report.common import (
    change_diff,
    change_line,
    host_counts,
    hosts,
    label,
    notable,
    resources,
    scope_notes,
    title,
    unmanaged,
    unmanaged_line,
)

# Only what can start markup in the middle of a line (text() is never placed at a line start).
UNKNOWN = "\u2014"  # an em dash: not known in this run (not zero)
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def text(value: Any) -> str:
    """Plain text safe in Markdown (and in its inline HTML): one line, specials escaped."""
    s = " ".join(str(value).split())
    return _MD_SPECIAL.sub(r"\\\1", html.escape(s, quote=False))


def code(value: Any, in_table: bool = False) -> str:
    """A code span holding ``value`` verbatim, whatever backticks it contains (``|`` escaped in a table)."""
    s = " ".join(str(value).split())
    longest = max((len(m) for m in re.findall(r"`+", s)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if s.startswith("`") or s.endswith("`") or not s else ""
    # In a GFM table a pipe ends the cell even inside a code span; \| is the documented escape.
    span = f"{fence}{pad}{s}{pad}{fence}"
    return span.replace("|", "\\|") if in_table else span


def fenced(body: str, lang: str = "") -> str:
    longest = max((len(m) for m in re.findall(r"`{3,}", body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{body.rstrip()}\n{fence}"


def _summary(doc: Mapping[str, Any]) -> list[str]:
    s = doc.get("summary") or {}
    parts = [f"{s.get('hosts', 0)} host(s)"]
    for key in ("drifted", "changed", "failed", "unreachable"):
        if s.get(key):
            parts.append(f"{s[key]} {key}")
    line = ", ".join(parts)
    lines = [
        f"# {text(title(doc))}",
        "",
        f"**exit {doc.get('exit_code', '?')}** · {line} · "
        f"{s.get('resources_drifted', 0)} drifted resource(s), {s.get('unmanaged_changes', 0)} unmanaged change(s),"
        f" {s.get('resources_failed', 0)} failed",
        "",
        f"Run started {text(doc.get('started') or '?')}, finished {text(doc.get('finished') or '?')}"
        f" on {text(doc.get('controller') or '?')} by {text(doc.get('user') or '?')}"
        f" (driftctl {text(doc.get('driftctl_version') or '?')}).",
        "",
        *(line for note in scope_notes(doc) for line in (f"**{text(note)}**", "")),
        "| host | status | drifted | unmanaged | failed | changed | resources |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for h in hosts(doc):
        c = host_counts(h)
        # an unreachable host's drift is unknown, not zero; so are unmanaged changes not examined
        cells = [c.drifted, c.unmanaged, c.failed, c.changed, c.resources]
        shown = [str(v) if c.reached else UNKNOWN for v in cells]
        if not c.unmanaged_examined:
            shown[1] = UNKNOWN
        lines.append(f"| {code(c.name, in_table=True)} | {text(c.status)} | " + " | ".join(shown) + " |")
    return lines


def _resource(doc: Mapping[str, Any], r: Mapping[str, Any]) -> list[str]:
    head = f"- {code(r.get('id', '?'))} **{text(label(r))}**"
    extra = []
    if r.get("since"):
        extra.append(f"since {text(r['since'])}, {r.get('runs') or 1} drift run(s)")
    if r.get("ignored"):
        extra.append(f"ignored: {text(r['ignored'])}")
    if r.get("source"):
        extra.append(f"declared at {code(r['source'])}")
    if extra:
        head += " — " + "; ".join(extra)
    lines = [head]
    if r.get("error"):
        lines.append(f"  - error: {code(r['error'])}")
    for c in r.get("changes") or []:
        lines.append(f"  - {code(change_line(r, c))}")
        if c.get("diff"):
            lines += ["", "    <details><summary>diff of " + text(c.get("field", "")) + "</summary>", ""]
            lines += ["    " + line if line else "" for line in fenced(change_diff(r, c), "diff").splitlines()]
            lines += ["", "    </details>", ""]
    return lines


def render(doc: Mapping[str, Any]) -> str:
    lines = _summary(doc)
    for h in hosts(doc):
        c = host_counts(h)
        items = [r for r in resources(h) if notable(doc, r)]
        changes = list(unmanaged(h))
        if c.status == "ok" and not items and not changes:
            continue
        lines += ["", f"## {code(c.name)} — {text(c.status)}", ""]
        if h.get("error"):
            lines += [f"Error: {code(h['error'])}", ""]
        for r in items:
            lines += _resource(doc, r)
        for u in changes:
            line = f"- unmanaged change {code(unmanaged_line(u))}"
            if u.get("since"):
                line += f" — since {text(u['since'])}, {u.get('runs') or 1} drift run(s)"
            if u.get("ignored"):
                line += f"; ignored: {text(u['ignored'])}"
            lines.append(line)
    ok = [c.name for c in map(host_counts, hosts(doc)) if c.status == "ok"]
    if ok:
        lines += ["", f"In sync: {', '.join(code(n) for n in ok)}"]
    return "\n".join(lines).rstrip() + "\n"
