"""Pull runs collected by the controller: the reports ``driftctl pull`` recorded on a host, taken from
its outbox in the controller's next probe and stored as runs of THAT host (docs/pull.md).

The probe asks for the reports after the host's cursor (``Store.pull_cursor``); each one is checked
(a pull run of this host only: a report naming any other host is refused, and said so) and stored
with the cursor moved in the same transaction (``Store.save_pulled``); the host removes them when the
next probe names them collected. They are stored before the probing run classifies drift, so a push
drift sees the converged state a pull apply left, exactly as if a push apply had made it.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from driftctl.errors import StoreError
from driftctl.model import Host

log = logging.getLogger("driftctl.pull")

DEFAULT_OUTBOX = "/var/lib/driftctl/pull/outbox"
OUTBOX_VAR = "driftctl_pull_outbox"  # a host whose pull runs with another --cache-dir: <cache-dir>/outbox
MAX_REPORTS = 20  # per probe; the rest come with the next ones
MAX_BYTES = 4 * 1024 * 1024
MAX_REPORT_BYTES = 40 * 1024 * 1024  # one report: the agent sends one over MAX_BYTES alone, up to 32 MiB
MAX_SEQ = 2**53  # an outbox counts one by one: more is a forged number (SQLite's integers end at 2**63)
CLOCK_SLACK = 300.0  # seconds a host's clock may run ahead of the controller's
_COMMIT = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_OUTBOX_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # driftctl pull makes 16 hex digits


def attach(engine: Any, store: Any, inventory: str) -> None:
    """Make ``engine``'s probes collect every host's recorded pull runs into ``store`` (a RunState or
    a Store), each stored before anything is judged from that probe. For any command that has a store:
    drift does it (DriftRun); an apply can (``attach(engine, view, key)`` before ``engine.run``)."""
    engine.outbox_for = lambda host: outbox_request(host, store.pull_cursor(inventory, host.name))
    engine.on_outbox = lambda host, answer: collect(store, inventory, host.name, answer)


def outbox_request(host: Host, cursor: tuple[str, int] | None) -> dict[str, Any]:
    """The probe's ``outbox`` request for ``host``, after what the store already has from it."""
    return {"dir": str(host.vars.get(OUTBOX_VAR) or DEFAULT_OUTBOX), "id": cursor[0] if cursor else None,
            "after": cursor[1] if cursor else 0, "max": MAX_REPORTS, "max_bytes": MAX_BYTES}


@dataclass
class Collected:
    """What one probe brought from a host's outbox."""

    stored: list[int] = field(default_factory=list)  # run ids
    refused: list[str] = field(default_factory=list)  # why, per report refused
    more: bool = False
    cursor: tuple[str, int] | None = None


def check_report(doc: Any, host: str, inventory: str) -> tuple[dict[str, Any] | None, str | None]:
    """(the document as the controller stores it, None) or (None, why it is refused)."""
    from driftctl.store.report import check

    if not isinstance(doc, dict):
        return None, "not a report document"
    if doc.get("mode") != "pull":
        return None, "not a pull run's report (mode is not pull)"
    if doc.get("command") not in ("apply", "drift"):
        return None, f"a {doc.get('command')!r} run is not recorded"
    hosts = doc.get("hosts")
    names = [h.get("name") for h in hosts if isinstance(h, dict)] if isinstance(hosts, list) else []
    if names != [host]:
        return None, (f"it names {', '.join(map(str, names)) or 'no host'}, not {host}: a host writes only its own "
                      "history")
    if not isinstance(doc.get("pull") or {}, dict):
        return None, "its pull part is not an object"
    if not isinstance(doc.get("commit"), str) or not _COMMIT.match(doc["commit"]):
        return None, "its commit is not a git commit id"
    stored = dict(doc, inventory=inventory)
    stored["pull"] = dict(doc.get("pull") or {}, collected=datetime.now(UTC).isoformat(timespec="seconds")
                          .replace("+00:00", "Z"))
    try:
        check(stored)
    except StoreError as e:
        return None, str(e)
    ahead = _ahead(stored)
    if ahead is not None:
        # a run dated later than now would stay the inventory's "latest" run (what `driftctl report`
        # shows for the whole fleet) and outrank every later push apply's converged state
        return None, (f"it claims a time {ahead:.0f}s ahead of this controller's clock (a host clock ahead, or "
                      "a forged report)")
    stored["summary"] = summary(stored)  # the host's own counts, never a claim about a fleet
    return stored, None


def _ahead(doc: dict[str, Any]) -> float | None:
    from driftctl.store.report import parse_time

    now = time.time()
    latest = max(parse_time(doc[k], k) for k in ("started", "finished") if doc.get(k) is not None)
    return latest - now if latest > now + CLOCK_SLACK else None


def summary(doc: dict[str, Any]) -> dict[str, Any]:
    """The ``summary`` of a collected document, counted again from its hosts (which ``check`` passed)."""
    hosts = [h for h in doc["hosts"] if isinstance(h, dict)]
    statuses = [h.get("status") for h in hosts]
    resources = [r for h in hosts for r in (h.get("resources") or []) if isinstance(r, dict)]
    actions: dict[str, int] = {}
    for h in hosts:
        for name, n in (h.get("actions") or {}).items() if isinstance(h.get("actions"), dict) else ():
            if isinstance(n, int) and not isinstance(n, bool):
                actions[str(name)] = actions.get(str(name), 0) + n
    return {
        "hosts": len(hosts),
        **{s: statuses.count(s) for s in ("ok", "changed", "drifted", "failed", "unreachable")},
        "resources": len(resources),
        "resources_changed": sum(r.get("status") == "changed" for r in resources),
        "resources_failed": sum(r.get("status") == "failed" for r in resources),
        "resources_drifted": sum(bool(r.get("drift")) and not r.get("ignored") for r in resources),
        "unmanaged_changes": sum(isinstance(u, dict) and not u.get("ignored")
                                 for h in hosts for u in (h.get("unmanaged") or [])),
        "actions": actions,
    }


def _written_as(doc: dict[str, Any] | None, ident: str, seq: int) -> tuple[str, int]:
    """The outbox id and number a report was written under (its own ``pull.outbox`` and ``pull.seq``):
    after the host's state was reset, a report still waiting comes again under the outbox's new id, and
    must not be stored twice. (The host can only name its own runs: the key holds the host's name.)"""
    own = (doc or {}).get("pull") or {}
    written, number = own.get("outbox"), own.get("seq")
    if isinstance(written, str) and _OUTBOX_ID.match(written) and isinstance(number, int) \
            and not isinstance(number, bool) and 0 < number <= MAX_SEQ:
        return written, number
    return ident, seq


def _seq(item: dict[str, Any]) -> int:
    """A report's number; 0 when it is not a plain positive integer (passed over)."""
    seq = item.get("seq")
    return seq if isinstance(seq, int) and not isinstance(seq, bool) and 0 < seq <= MAX_SEQ else 0


def collect(store: Any, inventory: str, host: str, answer: dict[str, Any] | None) -> Collected:
    """Store what ``answer`` (the probe's ``outbox`` answer) holds for ``host``; refusals are logged
    (the CLI shows them as warnings) and passed over, so they are not offered again."""
    got = Collected()
    if not answer:
        return got
    if answer.get("error"):
        log.warning("%s: its pull reports were not collected: %s", host, answer["error"])
        return got
    ident = answer.get("id")
    reports = answer.get("reports") or []
    if not ident or not isinstance(reports, list):
        return got
    if not isinstance(ident, str) or not _OUTBOX_ID.match(ident):
        log.warning("%s: its pull reports were not collected: the outbox's id is not one driftctl pull makes", host)
        return got
    # the agent's answer is the host's word: a compromised host may send anything, so the bounds the
    # probe asked for are enforced here again, and nothing at or before the cursor is taken twice
    cursor = store.pull_cursor(inventory, host)
    after = cursor[1] if cursor is not None and cursor[0] == ident else 0
    items = sorted((r for r in reports if isinstance(r, dict) and _seq(r) > after), key=_seq)
    got.more = bool(answer.get("more")) or len(items) > MAX_REPORTS
    for item in items[:MAX_REPORTS]:
        seq = _seq(item)
        doc, why = check_report(item.get("doc"), host, inventory)
        if doc is not None and len(json.dumps(doc, separators=(",", ":"), default=str)) > MAX_REPORT_BYTES:
            doc, why = None, f"larger than {MAX_REPORT_BYTES} bytes"
        if why is not None:
            said = item.get("error")  # the host's words: printable, short
            why = "".join(c for c in said[:200] if c.isprintable()) if isinstance(said, str) and said else why
            got.refused.append(f"report {seq}: {why}")
            log.warning("%s: pull report %d refused: %s", host, seq, why)
        try:
            run_id = store.save_pulled(inventory, host, str(ident), seq, doc, key=_written_as(doc, ident, seq))
        except StoreError as e:  # not stored: not acknowledged either; the next probe brings it again
            log.warning("%s: pull report %d not stored: %s", host, seq, e)
            break
        if run_id is not None:
            got.stored.append(run_id)
            assert doc is not None
            _move_baseline(store, inventory, host, doc)
        got.cursor = (str(ident), seq)
    return got


def _move_baseline(store: Any, inventory: str, host: str, doc: dict[str, Any]) -> None:
    """A pull apply's own changes under watched paths join the controller's baseline, as a push apply's
    do (D6); hand changes stay reported. No baseline yet: the first drift run takes one."""
    changed = (doc.get("pull") or {}).get("watch_changed")
    if doc.get("command") != "apply" or not isinstance(changed, dict) or not changed:
        return
    if not store.baseline(inventory, host):
        return
    entries = {str(p): (dict(e) if isinstance(e, dict) else None) for p, e in changed.items()}
    try:
        store.set_baseline(inventory, host, entries, by=f"pull apply on {host} (commit {str(doc.get('commit'))[:12]})",
                           replace=False)
    except StoreError as e:
        log.warning("%s: the watch baseline was not moved by its pull apply: %s", host, e)
