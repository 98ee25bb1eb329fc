"""JUnit XML: CI systems (Jenkins, GitLab, GitHub test reporters) show drift and failures as failed tests.

The file is valid against the Jenkins xunit plugin's ``junit-10.xsd`` and reads the same in
junitparser and xunitparser (tests/unit/test_junit.py checks all three). One ``testsuite`` per host
(``name`` and ``hostname``: the host), one ``testcase`` per resource (``classname``: the host,
``name``: the resource id), per unmanaged change (``unmanaged:/path``) and per resource the tags left out:

=================================================  ===========  ==========================================
what                                               element      type
=================================================  ===========  ==========================================
drift, not ignored                                 failure      the class: corrective, pending, both
a pending change on plan/check (not in sync)       failure      the action: add, change, remove
an unmanaged change under a watch path             failure      unmanaged
a failed resource (apply, probe, remediation)      error        failed
an unreachable host / a host that failed whole     error        unreachable, failed, locked, ... on an
                                                                extra testcase ``host:NAME``
ignored drift or unmanaged change                  skipped      ignored
a skipped resource (a dependency failed)           skipped      skipped
a resource left out by --tags/--skip-tags/never    skipped      excluded
a host never started (--serial stopped, aborted)   skipped      not started, on ``host:NAME``
in sync; changed on apply; remediated drift        (passes)     change lines in ``system-out``
=================================================  ===========  ==========================================

A failure says the host differs from the manifest; an error says driftctl could not do its part.
The ``message`` attribute is one line (class and fields, or the error's first line, at most 300
characters); the element's text starts with the whole message (GitLab shows only the text), then the
change lines, diffs (read as in the terminal), since when, and where the resource is declared. Each
resource's time is not measured: 0. Characters XML 1.0 cannot carry become U+FFFD.

What the run was (command, argv, inventory, times, version, controller, user, exit code, scope) is in
the properties of the first ``testsuite``, named ``driftctl.*``: property names are unique in the
whole file, because xunitparser merges every suite's properties into one dict and rejects a repeated
name. ``testsuites`` carries only what the XSD allows there (name, tests, failures, errors, time);
each suite has its ``skipped`` count and, in ``system-out``, a line or two about its host.
"""

from __future__ import annotations

import math
import shlex
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from driftctl.report.common import (
    change_diff,
    change_line,
    duration,
    host_counts,
    hosts,
    label,
    resources,
    scope_notes,
    title,
    unmanaged,
    unmanaged_line,
)

MESSAGE_LIMIT = 300  # characters of a one-line message attribute; the body keeps the whole text


@dataclass(frozen=True)
class Outcome:
    """What a testcase says when it does not simply pass."""

    element: str  # failure, error or skipped
    type: str
    message: str
    body: str = ""


def render(doc: Mapping[str, Any]) -> str:
    root = ET.Element("testsuites", {"name": title(doc)})
    totals = {"tests": 0, "failures": 0, "errors": 0}
    for index, h in enumerate(hosts(doc)):
        counts = _suite(root, doc, h, index)
        for key in totals:
            totals[key] += counts[key]
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", _time(duration(doc)))
    ET.indent(root)
    # ElementTree escapes text and attributes (&, <, >, quotes, and newlines in attributes); characters
    # XML 1.0 cannot carry at all (control characters in a captured file) are replaced first.
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(_clean(root), encoding="unicode") + "\n"


# -- suites -----------------------------------------------------------------------------------------


def _suite(root: ET.Element, doc: Mapping[str, Any], h: Mapping[str, Any], index: int) -> dict[str, int]:
    """One host's testsuite: the host itself when it failed as a whole or never started, each resource,
    each unmanaged change, each resource the tags left out. Returns its counts."""
    name = str(h.get("name", "?"))
    suite = ET.SubElement(root, "testsuite", {"name": name})
    if index == 0:
        props = ET.SubElement(suite, "properties")
        for key, value in _run_properties(doc):
            ET.SubElement(props, "property", {"name": f"driftctl.{key}", "value": value})
    command = str(doc.get("command", ""))
    outcomes: list[str | None] = []  # per testcase: "failure", "error", "skipped" or None (passed)
    host_outcome = _host_outcome(h)
    if host_outcome is not None:
        outcomes.append(_case(suite, name, f"host:{name}", host_outcome, time=_time(h.get("duration"))))
    for r in resources(h):
        outcomes.append(_case(suite, name, str(r.get("id", "?")), *_resource_outcome(command, r)))
    for u in unmanaged(h):
        outcomes.append(_case(suite, name, f"unmanaged:{u.get('path')}", _unmanaged_outcome(u)))
    left_out = f"left out by {_tag_words(doc)}: not examined in this run, its drift and converged state unchanged"
    for rid in h.get("excluded") or []:
        outcomes.append(_case(suite, name, str(rid), Outcome("skipped", "excluded", left_out)))
    counts = {
        "tests": len(outcomes),
        "failures": outcomes.count("failure"),
        "errors": outcomes.count("error"),
        "skipped": outcomes.count("skipped"),
    }
    for key, n in counts.items():
        suite.set(key, str(n))
    suite.set("time", _time(h.get("duration")))
    if doc.get("started"):
        # JUnit's timestamp is a local ISO 8601 time without a zone (Surefire, Ant); the document's is UTC
        suite.set("timestamp", str(doc["started"]).removesuffix("Z"))
    suite.set("hostname", name)
    suite.set("id", str(index))
    ET.SubElement(suite, "system-out").text = _host_text(doc, h)
    return counts


def _run_properties(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    argv = doc.get("argv") or []
    summary = doc.get("summary") or {}
    props: list[tuple[str, Any]] = [
        ("command", doc.get("command")),
        ("inventory", doc.get("inventory")),
        # the document's argv is already the recorded one: -e values hidden (cli/common.recorded_argv)
        ("argv", "driftctl " + shlex.join(str(a) for a in argv) if argv else None),
        ("started", doc.get("started")),
        ("finished", doc.get("finished")),
        ("exit_code", doc.get("exit_code")),
        ("hosts", summary.get("hosts")),
        ("version", doc.get("driftctl_version")),
        ("controller", doc.get("controller")),
        ("user", doc.get("user")),
        ("partial", "true" if doc.get("partial") else None),
        ("scope", " ".join(scope_notes(doc)) or None),
    ]
    return [(key, str(value)) for key, value in props if value is not None and value != ""]


def _host_text(doc: Mapping[str, Any], h: Mapping[str, Any]) -> str:
    """A line or two about the host, for readers of one suite (Jenkins shows it with each passing case)."""
    c = host_counts(h)
    error = str(h.get("error") or "")
    status = "not started" if error.startswith("not started") else "locked" if h.get("locked") else c.status
    lines = [f"{c.name}: {status} ({doc.get('command', '?')} of {doc.get('inventory', '?')}"
             f", started {doc.get('started') or '?'})"]
    if c.resources or (c.reached and not error):  # a host that failed before its resources has no counts
        parts = [f"{c.resources} resource(s) examined", f"{c.drifted} drifted", f"{c.failed} failed",
                 f"{c.changed} changed", f"{c.skipped} skipped"]
        if c.ignored:
            parts.append(f"{c.ignored} ignored")
        if c.unmanaged_examined:
            parts.append(f"{c.unmanaged} unmanaged change(s)")
        lines.append(", ".join(parts))
    if h.get("excluded"):
        lines.append(f"{len(h['excluded'])} resource(s) left out by {_tag_words(doc)}")
    if h.get("batch"):
        lines.append(f"batch {h['batch']}")
    if error:
        lines.append(error if status == "not started" else f"error: {error}")
    return "\n".join(lines) + "\n"


def _tag_words(doc: Mapping[str, Any]) -> str:
    tags = doc.get("tags") or {}
    chosen = " ".join(f"{opt} {','.join(tags[key])}" for opt, key in (("--tags", "only"), ("--skip-tags", "skip"))
                      if tags.get(key))
    return chosen or "the tag never"


# -- testcases ---------------------------------------------------------------------------------------


def _case(suite: ET.Element, host: str, name: str, outcome: Outcome | None, out: str = "",
          time: str = "0.000") -> str | None:
    """A testcase; returns the element of its outcome (None: it passed). The time of one resource is not
    measured: 0, as consumers expect a number."""
    case = ET.SubElement(suite, "testcase", {"classname": host, "name": name, "time": time})
    if outcome is not None:
        node = ET.SubElement(case, outcome.element, {"type": outcome.type, "message": _one_line(outcome.message)})
        node.text = _text(outcome.message, outcome.body)
    if out:
        ET.SubElement(case, "system-out").text = out
    return outcome.element if outcome is not None else None


def _host_outcome(h: Mapping[str, Any]) -> Outcome | None:
    status, error = str(h.get("status", "")), str(h.get("error") or "")
    if error.startswith("not started"):
        return Outcome("skipped", "not started", error)
    if status == "unreachable" or (status == "failed" and error):
        kind = ("locked" if h.get("locked") else str(h.get("interrupted") or "")) or status
        return Outcome("error", kind, f"{status}: {error}".rstrip(": "))
    return None


def _resource_outcome(command: str, r: Mapping[str, Any]) -> tuple[Outcome | None, str]:
    """(outcome, system-out) of a resource's testcase."""
    body = _body(r)
    status = r.get("status")
    if status == "failed":  # the message has the whole error: the body need not repeat it
        return Outcome("error", "failed", f"{label(r)}: {r.get('error') or 'failed'}", _body(r, error=False)), ""
    if r.get("drift"):
        message = f"{r['drift']} drift: {_fields(r)}".rstrip(": ")
        if r.get("ignored"):
            return Outcome("skipped", "ignored", f"ignored {message} ({r['ignored']})", body), ""
        if status == "changed":  # remediated: in sync again; what was done is in system-out
            return None, f"{label(r)}\n{body}"
        return Outcome("failure", str(r["drift"]), message, body), ""
    if status == "skipped":
        why = str(r.get("reason") or r.get("error") or "skipped")
        return Outcome("skipped", "skipped", why, body), ""
    if status == "changed":
        action = str(r.get("action") or "change")
        if command in ("plan", "check"):
            # a deferred resource says what it waits for (its reason); any other names its fields
            what = str(r.get("reason") or _fields(r))
            return Outcome("failure", action, f"not in sync ({action}): {what}", body), ""
        return None, f"changed ({action})\n{body}"
    return None, ""


def _unmanaged_outcome(u: Mapping[str, Any]) -> Outcome:
    message = f"unmanaged change: {unmanaged_line(u)}"
    body = message + "\n"
    if u.get("since"):
        body += f"since {u['since']} ({u.get('runs') or 1} drift run(s))\n"
    if u.get("ignored"):
        return Outcome("skipped", "ignored", f"ignored {message} ({u['ignored']})", body)
    return Outcome("failure", "unmanaged", message, body)


def _body(r: Mapping[str, Any], error: bool = True) -> str:
    lines = []
    if error and r.get("error"):
        lines.append(str(r["error"]))
    for c in r.get("changes") or []:
        lines.append(change_line(r, c))
        if c.get("diff"):
            lines.append(change_diff(r, c).rstrip("\n"))
    if r.get("since"):
        lines.append(f"since {r['since']} ({r.get('runs') or 1} drift run(s))")
    if r.get("source"):
        lines.append(f"declared at {r['source']}")
    return "\n".join(lines) + "\n" if lines else ""


def _fields(r: Mapping[str, Any]) -> str:
    return ", ".join(str(c.get("field")) for c in r.get("changes") or [])


def _text(message: str, body: str) -> str:
    """The text of a failure, error or skipped: the whole message, then the details. GitLab shows only
    this text (not the message attribute), Jenkins both, so the text alone must say what happened."""
    head = message.strip()
    if body.startswith(head):  # it begins with the message already (an unmanaged change, a skip reason)
        return body
    return f"{head}\n{body}" if body else f"{head}\n"


def _one_line(text: str) -> str:
    """A message attribute: the first line, cut at MESSAGE_LIMIT (the body has the rest)."""
    lines = text.strip().splitlines() or [""]
    line = lines[0]
    if len(line) > MESSAGE_LIMIT:
        line = line[: MESSAGE_LIMIT - 1] + "\u2026"
    elif len(lines) > 1:
        line += " \u2026"
    return line


def _time(value: Any) -> str:
    """Seconds with 3 decimals: the xunit XSD's SUREFIRE_TIME allows no more, and no exponent."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return f"{float(value):.3f}"
    return "0.000"


# -- characters ------------------------------------------------------------------------------------


def _xml_char(ch: str) -> bool:
    o = ord(ch)
    return o in (0x9, 0xA, 0xD) or 0x20 <= o <= 0xD7FF or 0xE000 <= o <= 0xFFFD or 0x10000 <= o <= 0x10FFFF


def _scrub(text: str | None) -> str | None:
    if text is None or all(_xml_char(c) for c in text):
        return text
    return "".join(c if _xml_char(c) else "\ufffd" for c in text)


def _clean(root: ET.Element) -> ET.Element:
    for el in root.iter():
        el.text = _scrub(el.text)
        el.tail = _scrub(el.tail)
        for k, v in list(el.attrib.items()):
            el.attrib[k] = _scrub(v) or ""
    return root
