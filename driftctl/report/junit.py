"""JUnit XML: CI systems (GitLab, Jenkins, GitHub checks) show drift and failures as failed tests.

One ``testsuite`` per host, one ``testcase`` per resource and per unmanaged change:

- drift (not ignored) -> ``failure`` (message: the class and fields; body: change lines and diffs);
  on plan/check a pending change is a failure too (the host is not in sync); on apply a change passes;
- a failed resource -> ``failure`` with its error; a skipped resource or ignored drift -> ``skipped``;
- an unreachable host, or a host that failed as a whole -> an ``error`` testcase ``host:NAME``;
- everything else is a passing testcase.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from driftctl.report.common import (
    change_diff,
    change_line,
    duration,
    hosts,
    label,
    resources,
    title,
    unmanaged,
    unmanaged_line,
)


def _time(value: Any) -> str:
    return f"{float(value):.3f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "0.000"


def _body(r: Mapping[str, Any]) -> str:
    lines = []
    if r.get("error"):
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
    names = [str(c.get("field")) for c in r.get("changes") or []]
    return ", ".join(names)


def _outcome(command: str, r: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(element, type, message) for a resource, or None when it passes."""
    if r.get("status") == "failed":
        return "failure", "failed", f"{label(r)}: {r.get('error') or 'failed'}"
    if r.get("drift"):
        message = f"{r['drift']} drift: {_fields(r)}".rstrip(": ")
        if r.get("ignored"):
            return "skipped", "ignored", f"ignored {message} ({r['ignored']})"
        if command == "drift" and r.get("status") == "changed":
            return None  # remediated: in sync again (the change is in system-out)
        return "failure", str(r["drift"]), message
    if r.get("status") == "skipped":
        return "skipped", "skipped", str(r.get("reason") or "skipped")
    if r.get("status") == "changed" and command in ("plan", "check"):
        return "failure", "pending", f"not in sync: {_fields(r)}"
    return None


def _case(suite: ET.Element, host: str, name: str, time: str) -> ET.Element:
    return ET.SubElement(suite, "testcase", {"classname": host, "name": name, "time": time})


def render(doc: Mapping[str, Any]) -> str:
    root = ET.Element("testsuites", {"name": title(doc)})
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for h in hosts(doc):
        for key, value in _suite(root, doc, h).items():
            totals[key] += value
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", _time(duration(doc)))
    ET.indent(root)
    # ElementTree escapes text and attributes (&, <, >, quotes, and newlines in attributes); characters
    # XML 1.0 cannot carry at all (control characters in a captured file) are replaced first.
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(_clean(root), encoding="unicode") + "\n"


def _suite(root: ET.Element, doc: Mapping[str, Any], h: Mapping[str, Any]) -> dict[str, int]:
    """One host's testsuite: the host itself when it failed as a whole, each resource, each unmanaged
    change. Returns its counts."""
    name = str(h.get("name", "?"))
    suite = ET.SubElement(root, "testsuite", {"name": name})
    if doc.get("started"):
        suite.set("timestamp", str(doc["started"]).removesuffix("Z"))
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", {"name": "status", "value": str(h.get("status", ""))})
    ET.SubElement(props, "property", {"name": "inventory", "value": str(doc.get("inventory", ""))})
    outcomes: list[str | None] = []  # per test case: "failures", "errors", "skipped" or None (passed)
    if h.get("status") == "unreachable" or (h.get("status") == "failed" and h.get("error")):
        outcomes.append(_host_case(suite, name, h))
    outcomes += [_resource_case(suite, name, str(doc.get("command", "")), r) for r in resources(h)]
    outcomes += [_unmanaged_case(suite, name, u) for u in unmanaged(h)]
    counts = {"tests": len(outcomes), "failures": 0, "errors": 0, "skipped": 0}
    for outcome in outcomes:
        if outcome is not None:
            counts[outcome] += 1
    for key, value in counts.items():
        suite.set(key, str(value))
    suite.set("time", _time(h.get("duration")))
    return counts


def _host_case(suite: ET.Element, name: str, h: Mapping[str, Any]) -> str:
    case = _case(suite, name, f"host:{name}", _time(h.get("duration")))
    err = ET.SubElement(case, "error", {"type": str(h.get("status")),
                                        "message": f"{h.get('status')}: {h.get('error') or ''}".rstrip(": ")})
    err.text = str(h.get("error") or "")
    return "errors"


def _resource_case(suite: ET.Element, name: str, command: str, r: Mapping[str, Any]) -> str | None:
    case = _case(suite, name, str(r.get("id", "?")), "0.000")
    outcome = _outcome(command, r)
    body = _body(r)
    if outcome is None:
        if body:
            ET.SubElement(case, "system-out").text = body
        return None
    element, kind, message = outcome
    node = ET.SubElement(case, element, {"message": message})
    if element == "skipped":
        return "skipped"
    node.set("type", kind)
    node.text = body
    return "failures"


def _unmanaged_case(suite: ET.Element, name: str, u: Mapping[str, Any]) -> str:
    case = _case(suite, name, f"unmanaged:{u.get('path')}", "0.000")
    message = f"unmanaged change: {unmanaged_line(u)}"
    if u.get("ignored"):
        ET.SubElement(case, "skipped", {"message": f"ignored {message} ({u['ignored']})"})
        return "skipped"
    node = ET.SubElement(case, "failure", {"type": "unmanaged", "message": message})
    node.text = message + (f"\nsince {u['since']} ({u.get('runs') or 1} drift run(s))\n" if u.get("since") else "\n")
    return "failures"


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
        for k, v in list(el.attrib.items()):
            el.attrib[k] = _scrub(v) or ""
    return root
