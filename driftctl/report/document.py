"""The report document: a RunResult as versioned, JSON-ready data (schema ``driftctl.report/v1``).

Every other rendering (terminal, JUnit, HTML, Prometheus) and the store start from this document, so
people and machines always see the same facts. Values are already redacted by the engine.
See docs/report-schema.md.
"""

from __future__ import annotations

import getpass
import socket
from datetime import UTC, datetime
from typing import Any

from driftctl import __version__
from driftctl.model import Change, HostResult, ResourceResult, RunResult, UnmanagedChange

ABSENT = (None, "absent", "missing")
# the field that says whether the thing exists, for types without an ``ensure`` (a line, a block, a cron entry)
PRESENCE_FIELDS = ("ensure", "line", "block", "entry")

SCHEMA = "driftctl.report/v1"


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def change_doc(c: Change) -> dict[str, Any]:
    return {"field": c.field, "before": _plain(c.before), "after": _plain(c.after), "diff": c.diff}


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return value


def action(r: ResourceResult, command: str) -> str | None:
    """A changed resource as Terraform counts it: ``add`` (absent before), ``remove`` (made absent), or
    ``change`` (anything else: attributes, contents, a refresh, a command run, a pending deferral).
    None for resources not changed, and in drift runs (drift is not a plan)."""
    if r.status != "changed" or command == "drift":
        return None
    for c in r.changes:
        if c.field not in PRESENCE_FIELDS:
            continue
        if c.before in ABSENT and c.after not in ABSENT:
            return "add"
        if c.after in ABSENT and c.before not in ABSENT:
            return "remove"
    return "change"


def action_counts(resources: list[ResourceResult], command: str) -> dict[str, int]:
    counts = {"add": 0, "change": 0, "remove": 0}
    for r in resources:
        a = action(r, command)
        if a is not None:
            counts[a] += 1
    return counts


def resource_doc(r: ResourceResult, command: str = "") -> dict[str, Any]:
    return {
        "id": r.id,
        "type": r.type or r.id.split(":", 1)[0],
        "status": r.status,
        "drift": r.drift,
        "since": iso(r.since),
        "runs": r.runs,
        "ignored": r.ignored,
        "changes": [change_doc(c) for c in r.changes],
        "reason": r.reason,
        "error": r.error,
        "source": str(r.source) if r.source else None,
        "desired_fingerprint": r.desired_fingerprint,
        "observed_fingerprint": r.observed_fingerprint,
        "converged_fingerprint": r.converged_fingerprint,
        "observed": r.observed,
        "action": action(r, command),
    }


def unmanaged_doc(u: UnmanagedChange) -> dict[str, Any]:
    return {
        "path": u.path, "change": u.change, "before": u.before, "after": u.after,
        "since": iso(u.since), "runs": u.runs, "ignored": u.ignored,
    }


def host_status(h: HostResult, command: str) -> str:
    if h.status in ("unreachable", "failed"):
        return h.status
    if command == "drift" and (
        any(r.drift and not r.ignored for r in h.resources) or any(not u.ignored for u in h.unmanaged)
    ):
        return "drifted"
    return h.status


def host_doc(h: HostResult, command: str) -> dict[str, Any]:
    return {
        "name": h.host,
        "status": host_status(h, command),
        "error": h.error,
        "locked": h.locked,
        "interrupted": h.interrupted,
        "fingerprint": h.fingerprint,
        "catalog_digest": h.catalog_digest,
        "duration": round(h.duration, 3),
        "round_trips": h.round_trips,
        "facts": h.facts,
        "excluded": list(h.excluded),
        "batch": h.batch,
        "actions": action_counts(h.resources, command),
        "resources": [resource_doc(r, command) for r in h.resources],
        # null: the watch paths were not examined (not a drift run, host not probed, --against IMAGE);
        # []: examined, nothing changed
        "unmanaged": [unmanaged_doc(u) for u in h.unmanaged] if h.unmanaged_examined else None,
    }


def build(run: RunResult, inventory: str, argv: list[str] | None = None) -> dict[str, Any]:
    hosts = [host_doc(h, run.command) for h in run.hosts]
    statuses = [h["status"] for h in hosts]
    resources = [r for h in run.hosts for r in h.resources]
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "command": run.command,
        "inventory": inventory,
        "started": iso(run.started),
        "finished": iso(run.finished),
        "driftctl_version": __version__,
        "controller": socket.gethostname(),
        "user": current_user(),
        "argv": argv or [],
        "exit_code": run.exit_code,
        "summary": {
            "hosts": len(hosts),
            "ok": statuses.count("ok"),
            "changed": statuses.count("changed"),
            "drifted": statuses.count("drifted"),
            "failed": statuses.count("failed"),
            "unreachable": statuses.count("unreachable"),
            "resources": len(resources),
            "resources_changed": sum(r.status == "changed" for r in resources),
            "resources_failed": sum(r.status == "failed" for r in resources),
            "resources_drifted": sum(bool(r.drift) and not r.ignored for r in resources),
            "unmanaged_changes": sum(not u.ignored for h in run.hosts for u in h.unmanaged),
            "actions": action_counts(resources, run.command),
        },
        "partial": run.partial,
        "hosts": hosts,
    }
    if run.tags or run.skip_tags:
        doc["tags"] = {"only": list(run.tags), "skip": list(run.skip_tags)}
    if run.serial is not None:
        doc["serial"] = {
            "batches": run.serial.hosts, "max_fail_percentage": run.serial.max_fail_percentage,
            "stopped_after": run.serial.stopped_after, "reason": run.serial.reason,
            "not_started": run.serial.not_started,
        }
    return doc


def current_user() -> str:
    """Who runs driftctl, for reports and baselines (never fails: 'unknown' without a passwd entry)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def for_store(doc: dict[str, Any]) -> dict[str, Any]:
    """The document as the store keeps it: a new content's whole text (a diff from nothing) is left
    out, its hashes stay. A first converge of 40 hosts stored every created file in full (20 MB);
    history and reports need what changed, not the files."""
    hosts = []
    for h in doc.get("hosts", []):
        resources = []
        for r in h.get("resources", []):
            changes = [dict(c, diff=None) if c.get("diff") and c.get("before") is None else c
                       for c in r.get("changes", [])]
            resources.append(dict(r, changes=changes))
        hosts.append(dict(h, resources=resources))
    return dict(doc, hosts=hosts)
