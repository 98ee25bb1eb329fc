"""What to run next, read from a report document: the commands a person types after reading it.

Each step names the hosts it is about and gives commands to copy (shell-quoted): ``apply`` for
pending changes and pending drift, ``drift --remediate`` to put back changes made by hand, ``ignore
add`` to keep such a change for a while, ``accept`` for unmanaged changes under the watch paths,
``history``/``plan`` for a failed resource, ``facts`` to try an unreachable host again. Commands
come from the document alone (its inventory, hosts and resources): nothing here reads a manifest.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from driftctl.report.common import hosts, resources, unmanaged

PLACEHOLDER_REASON = "WHY"
PLACEHOLDER_EXPIRES = "YYYY-MM-DD"


@dataclass
class Step:
    """One thing to do: what (``title``), why (``text``), for which hosts, and the commands, one per line."""

    title: str
    text: str
    hosts: list[str]
    commands: list[str] = field(default_factory=list)


def _q(value: str) -> str:
    return shlex.quote(value)


def _limit(names: Sequence[str]) -> str:
    return "-l " + _q(",".join(names))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def next_steps(doc: Mapping[str, Any]) -> list[Step]:
    """The steps for this run, most pressing first (unreachable, failed, then drift and changes)."""
    inv = _q(str(doc.get("inventory") or "INVENTORY"))
    command = str(doc.get("command") or "")
    unreachable: list[str] = []
    host_failed: list[str] = []
    failed: dict[str, list[str]] = {}
    corrective: dict[str, list[str]] = {}
    pending: dict[str, list[str]] = {}
    changes: dict[str, list[str]] = {}
    paths: dict[str, list[str]] = {}
    for h in hosts(doc):
        name = str(h.get("name", "?"))
        if h.get("status") == "unreachable":
            unreachable.append(name)
            continue
        if h.get("status") == "failed" and h.get("error") and not list(resources(h)):
            host_failed.append(name)
        for r in resources(h):
            rid = str(r.get("id", "?"))
            if r.get("status") == "failed":
                failed.setdefault(name, []).append(rid)
            if r.get("drift") and not r.get("ignored"):
                remediated = r.get("status") == "changed"
                if r["drift"] in ("corrective", "both") and not remediated:
                    corrective.setdefault(name, []).append(rid)
                if r["drift"] in ("pending", "both"):
                    pending.setdefault(name, []).append(rid)
            elif r.get("status") == "changed" and command in ("plan", "check"):
                changes.setdefault(name, []).append(rid)
        for u in unmanaged(h):
            if not u.get("ignored"):
                paths.setdefault(name, []).append(str(u.get("path", "?")))

    steps: list[Step] = []
    again = f"driftctl {command if command in ('plan', 'check', 'apply', 'drift') else 'drift'} {inv}"
    if unreachable:
        steps.append(Step(
            "Unreachable", f"{_plural(len(unreachable), 'host')}, nothing known about "
            f"{'it' if len(unreachable) == 1 else 'them'}. Check the address, the SSH key and the host key, then "
            "try again:",
            unreachable, [f"driftctl facts {inv} {_limit(unreachable)}", f"{again} {_limit(unreachable)}"],
        ))
    if host_failed:
        steps.append(Step(
            "Failed as a whole", f"{_plural(len(host_failed), 'host')} (the error is under each). Once fixed, "
            "run again:", host_failed, [f"{again} {_limit(host_failed)}"],
        ))
    if failed:
        names = list(failed)
        n = sum(len(v) for v in failed.values())
        steps.append(Step(
            "Failed", f"{_plural(n, 'resource')} on {_plural(len(names), 'host')}. Read the error and what "
            "happened to the resource before, fix the manifest or the host, then see what is left to do:",
            names, [f"driftctl history {inv} --host {_q(names[0])} --resource {_q(failed[names[0]][0])}",
                    f"driftctl plan {inv} {_limit(names)}"],
        ))
    if pending:
        names = list(pending)
        n = sum(len(v) for v in pending.values())
        steps.append(Step(
            "Pending", f"the manifests changed since the last apply: {_plural(n, 'resource')} on "
            f"{_plural(len(names), 'host')} wait for it. See the changes, then apply them:",
            names, [f"driftctl plan {inv} {_limit(names)}", f"driftctl apply {inv} {_limit(names)}"],
        ))
    if changes:
        names = list(changes)
        n = sum(len(v) for v in changes.values())
        steps.append(Step(
            "To apply", f"{_plural(n, 'change')} on {_plural(len(names), 'host')}:",
            names, [f"driftctl apply {inv} {_limit(names)}"],
        ))
    if corrective:
        names = list(corrective)
        n = sum(len(v) for v in corrective.values())
        steps.append(Step(
            "Changed by hand", f"{_plural(n, 'resource')} on {_plural(len(names), 'host')} since the last apply. "
            "Put back what the manifests say; or keep the change: write it into the manifest, or leave it out "
            "of reports for a while with an ignore rule (one per resource, or a glob):",
            names, [f"driftctl drift {inv} {_limit(names)} --remediate",
                    f"driftctl ignore add {inv} --host {_q(names[0])} --target {_q(corrective[names[0]][0])} "
                    f"--reason {PLACEHOLDER_REASON} --expires {PLACEHOLDER_EXPIRES}"],
        ))
    if paths:
        names = list(paths)
        n = sum(len(v) for v in paths.values())
        first_path = paths[names[0]][0]
        steps.append(Step(
            "Unmanaged", f"{_plural(n, 'change')} under the watched paths on {_plural(len(names), 'host')}. If "
            "they are wanted, take the paths as they are now as the new baseline (all of them, or one path); "
            "or leave one out of reports for a while:",
            names, [f"driftctl accept {inv} {_limit(names)}",
                    f"driftctl accept {inv} {_limit(names[:1])} --path {_q(first_path)}",
                    f"driftctl ignore add {inv} --host {_q(names[0])} --target {_q(first_path)} "
                    f"--reason {PLACEHOLDER_REASON} --expires {PLACEHOLDER_EXPIRES}"],
        ))
    return steps
