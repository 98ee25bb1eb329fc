"""Drift classification, as pure functions of fingerprints and watch entries.

Three fingerprints per resource (driftctl/fingerprint.py):
  D desired   — the manifest rendered now,
  C converged — what the last successful apply left (or the state baked into an image),
  O observed  — what the probe sees now.

  O == D                       in sync (whatever C is: nothing to do)
  no C                         pending: never converged by driftctl
  D == C, O != C               corrective: someone changed the host
  D != C, O == C               pending: the manifest moved since the last apply
  D != C, O != C (and O != D)  both
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from driftctl.model import UnmanagedChange

CORRECTIVE = "corrective"
PENDING = "pending"
BOTH = "both"


def classify(desired: str, observed: str | None, converged: str | None) -> str | None:
    if observed is None:  # not observed (an error): unknown, never "no drift"
        return None
    if observed == desired:
        return None
    if converged is None:
        return PENDING
    if desired == converged:
        return CORRECTIVE
    if observed == converged:
        return PENDING
    return BOTH


# Attributes of a watch entry whose change counts; anything else (e.g. a future field) is ignored.
WATCHED_FIELDS = ("type", "mode", "owner", "group", "size", "sha256", "target")


def _differs(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return any(a.get(k) != b.get(k) for k in WATCHED_FIELDS)


def _watched(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes of an entry that count (a stored baseline also carries when and by whom)."""
    return {k: entry[k] for k in WATCHED_FIELDS if entry.get(k) is not None}


def unmanaged_changes(baseline: Mapping[str, Mapping[str, Any]], observed: Mapping[str, Mapping[str, Any]],
                      roots: list[str] | None = None) -> list[UnmanagedChange]:
    """Entries added, removed or changed under the watched roots, sorted by path.

    ``roots`` limits the comparison to paths under the roots watched now (a root removed from the
    manifest is no longer compared, so it cannot report everything below it as removed).
    """
    def watched(path: str) -> bool:
        if roots is None:
            return True
        return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)

    out = []
    for path in sorted(set(baseline) | set(observed)):
        if not watched(path):
            continue
        before, after = baseline.get(path), observed.get(path)
        if before is None and after is not None:
            out.append(UnmanagedChange(path, "added", None, _watched(after)))
        elif after is None and before is not None:
            out.append(UnmanagedChange(path, "removed", _watched(before), None))
        elif before is not None and after is not None and _differs(before, after):
            out.append(UnmanagedChange(path, "changed", _watched(before), _watched(after)))
    return out


def rebaseline(old: Mapping[str, Mapping[str, Any]] | None, pre: Mapping[str, Mapping[str, Any]],
               post: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The baseline after an apply: what the apply itself changed is accepted, nothing else.

    ``pre``/``post`` are the watch scans before and after the apply. Entries that the apply added,
    removed or changed (a package installing files under a watched directory) move into the baseline;
    a change someone made by hand before the apply stays reported. Without a previous baseline, the
    post-apply scan becomes it.
    """
    if old is None:
        return {p: dict(e) for p, e in post.items()}
    new = {p: dict(e) for p, e in old.items()}
    for path in set(pre) | set(post):
        before, after = pre.get(path), post.get(path)
        if before == after:
            continue
        if after is None:
            new.pop(path, None)
        else:
            new[path] = dict(after)
    return new


def describe_entry_change(u: UnmanagedChange) -> str:
    """A person's line for an unmanaged change: ``/etc/cron.d/x added (file 0644 root)``."""
    if u.change == "added" and u.after:
        return f"{u.path} added ({u.after.get('type')} {u.after.get('mode')} {u.after.get('owner')})"
    if u.change == "removed":
        return f"{u.path} removed"
    fields = [k for k in WATCHED_FIELDS if (u.before or {}).get(k) != (u.after or {}).get(k)]
    parts = []
    for k in fields:
        b, a = (u.before or {}).get(k), (u.after or {}).get(k)
        if k == "sha256":
            parts.append("content changed")
        else:
            parts.append(f"{k} {b} -> {a}")
    return f"{u.path} " + ", ".join(parts)
