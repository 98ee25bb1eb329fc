"""What every renderer reads the same way from a report document (``driftctl.report/v1``).

Renderers take the document as stored (documents from older runs may lack optional keys), so every
read here tolerates a missing key. Change lines come from the resource types' own ``describe()``, so
a report says exactly what the terminal says.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from driftctl.model import Change

DRIFT_CLASSES = ("corrective", "pending", "both")
RESOURCE_STATUSES = ("ok", "changed", "failed", "skipped")


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time of the document (``...Z``) -> an aware UTC datetime; None if absent or bad."""
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def title(doc: Mapping[str, Any]) -> str:
    return f"driftctl {doc.get('command', '?')}: {doc.get('inventory', '?')}"


def scope_notes(doc: Mapping[str, Any]) -> list[str]:
    """What the run did not look at, in words: a partial run (tags), batches that never started; and a
    pull run (made on the host itself, from which commit)."""
    notes = []
    if doc.get("mode") == "pull":
        fallback = (doc.get("pull") or {}).get("fallback")
        notes.append(f"Pull run on the host (driftctl pull): commit {str(doc.get('commit') or '?')[:12]} of "
                     f"{doc.get('source') or '?'}" + (f" ({fallback})" if fallback else "") + ".")
    if doc.get("partial"):
        tags = doc.get("tags") or {}
        chosen = " ".join(f"{opt} {','.join(tags[key])}" for opt, key in (("--tags", "only"), ("--skip-tags", "skip"))
                          if tags.get(key)) or "resources tagged never left out"
        left = sum(len(h.get("excluded") or []) for h in doc.get("hosts") or [])
        notes.append(f"Partial run ({chosen}): {left} resource(s) left out, not examined; their drift and "
                     "converged state are unchanged.")
    serial = doc.get("serial")
    if serial and serial.get("stopped_after"):
        notes.append(f"Stopped after batch {serial['stopped_after']} of {len(serial.get('batches') or [])} "
                     f"({serial.get('reason', '')}); never started: {', '.join(serial.get('not_started') or [])}.")
    return notes


_HUNK = re.compile(r"^@@ -(?P<old>\d+(?:,\d+)?) \+(?P<new>\d+(?:,\d+)?) @@(?P<rest>.*)$")


def reverse_diff(diff: str) -> str:
    """A unified diff read the other way: ``--- a +++ b`` becomes ``--- b +++ a``, each hunk's ranges
    swap, and added lines become removed ones. Drift shows contents as it shows fields: from what was
    converged (the manifest) to what the host has now, so a line added by hand reads ``+``."""
    lines = diff.splitlines(keepends=True)
    out: list[str] = []
    out_hunks = 0  # file headers come before the first hunk; "--- x" inside one is a removed "-- x"
    i = 0
    while i < len(lines):
        line = lines[i]
        if not out_hunks and line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            old_name, new_name = line[4:], lines[i + 1][4:]
            out += ["--- " + new_name, "+++ " + old_name]
            i += 2
            continue
        m = _HUNK.match(line.rstrip("\n"))
        if m:
            out_hunks += 1
            end = "\n" if line.endswith("\n") else ""
            out.append(f"@@ -{m.group('new')} +{m.group('old')} @@{m.group('rest')}{end}")
        elif line.startswith("+"):
            out.append("-" + line[1:])
        elif line.startswith("-"):
            out.append("+" + line[1:])
        else:
            out.append(line)
        i += 1
    return "".join(out)


def change_diff(resource: Mapping[str, Any], change: Mapping[str, Any]) -> str:
    """A change's diff as people read it: the other way round for drift (see ``reverse_diff``)."""
    diff = str(change.get("diff") or "")
    return reverse_diff(diff) if resource.get("drift") else diff


def change_line(resource: Mapping[str, Any], change: Mapping[str, Any]) -> str:
    """One change as people read it (``mode 0644 -> 0600``), through the resource type's describe().

    Drift reads from the converged/desired value to what the host has now, as in the terminal.
    """
    from driftctl.resources.base import get_type

    before, after = change.get("before"), change.get("after")
    if resource.get("drift"):
        before, after = after, before
    c = Change(str(change.get("field", "?")), before, after, change.get("diff"))
    rtype_name = resource.get("type") or str(resource.get("id", "")).split(":", 1)[0]
    rtype = get_type(rtype_name)
    if rtype is not None:
        try:
            return str(rtype.describe(c))
        except (TypeError, ValueError, KeyError, AttributeError):
            pass  # a stored document from an older version: fall back to the generic line
    if c.before is None:
        return f"{c.field} -> {c.after}"
    return f"{c.field} {c.before} -> {c.after}"


@dataclass
class HostCounts:
    """Per-host numbers every renderer shows."""

    name: str
    status: str
    error: str | None
    resources: int = 0
    drifted: int = 0  # not ignored
    ignored: int = 0  # drifted resources and unmanaged changes covered by an ignore rule
    unmanaged: int = 0  # not ignored
    failed: int = 0
    changed: int = 0
    skipped: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    by_class: dict[str, int] = field(default_factory=dict)
    unmanaged_examined: bool = True  # False: the watch paths were not compared in this run (unknown)

    @property
    def reached(self) -> bool:
        return self.status != "unreachable"


def host_counts(host: Mapping[str, Any]) -> HostCounts:
    counts = HostCounts(
        name=str(host.get("name", "?")), status=str(host.get("status", "?")), error=host.get("error"),
        by_status=dict.fromkeys(RESOURCE_STATUSES, 0), by_class=dict.fromkeys(DRIFT_CLASSES, 0),
        unmanaged_examined=host.get("unmanaged") is not None,
    )
    for r in resources(host):
        counts.resources += 1
        status = str(r.get("status"))
        counts.by_status[status] = counts.by_status.get(status, 0) + 1
        if r.get("drift"):
            if r.get("ignored"):
                counts.ignored += 1
            else:
                counts.drifted += 1
                counts.by_class[r["drift"]] = counts.by_class.get(r["drift"], 0) + 1
    for u in unmanaged(host):
        if u.get("ignored"):
            counts.ignored += 1
        else:
            counts.unmanaged += 1
    counts.failed = counts.by_status.get("failed", 0)
    counts.changed = counts.by_status.get("changed", 0)
    counts.skipped = counts.by_status.get("skipped", 0)
    return counts


def hosts(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [h for h in doc.get("hosts") or [] if isinstance(h, Mapping)]


def resources(host: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for r in host.get("resources") or []:
        if isinstance(r, Mapping):
            yield r


def unmanaged(host: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for u in host.get("unmanaged") or []:
        if isinstance(u, Mapping):
            yield u


def notable(doc: Mapping[str, Any], r: Mapping[str, Any]) -> bool:
    """A resource worth a section of its own: drifted, failed, skipped, or changed."""
    return bool(r.get("drift")) or r.get("status") in ("failed", "skipped", "changed")


def label(r: Mapping[str, Any]) -> str:
    """What happened to a resource, in two words: ``corrective drift``, ``failed``, ``changed``."""
    if r.get("drift"):
        text = f"{r['drift']} drift"
        if r.get("status") == "changed":
            text += " (remediated)"
        elif r.get("status") == "failed":
            text += " (remediation failed)"
        return text
    return str(r.get("status", "?"))


def unmanaged_line(u: Mapping[str, Any]) -> str:
    """``/etc/cron.d/backdoor added`` plus what differs for a changed path."""
    text = f"{u.get('path')} {u.get('change')}"
    before, after = u.get("before") or {}, u.get("after") or {}
    if u.get("change") == "changed" and isinstance(before, Mapping) and isinstance(after, Mapping):
        fields = [k for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]
        if fields:
            text += ": " + ", ".join(fields)
    return text


def duration(doc: Mapping[str, Any]) -> float | None:
    start, end = parse_time(doc.get("started")), parse_time(doc.get("finished"))
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())
