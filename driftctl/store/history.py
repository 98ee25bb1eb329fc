"""The history timeline: events derived from run results and drift episodes (Store.history)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from driftctl.store.db import Cursor, Row
from driftctl.store.types import DriftEpisode, EventKind, HistoryEvent, to_dt

# (time, order within the same time, event): sorting by it gives a stable timeline.
Timed = tuple[float, int, HistoryEvent]


def events(
    cur: Cursor, inv: str, host: str | None, resource: str | None, start: float, limit: int
) -> list[HistoryEvent]:
    """The latest ``limit`` events since ``start`` (epoch seconds), oldest first."""
    limit = max(1, int(limit))
    found: list[Timed] = []
    found += _resource_events(cur, inv, host, resource, start, limit)
    found += _applied_events(cur, inv, host, resource, start, limit)
    if resource is None:
        found += _host_events(cur, inv, host, start, limit)
    found += _episode_events(cur, inv, host, resource, start, limit)
    found.sort(key=lambda e: (e[0], e[1], e[2].host, e[2].subject or ""))
    return _marked_pull(cur, inv, [e[2] for e in found[-limit:]])


def _marked_pull(cur: Cursor, inv: str, events: list[HistoryEvent]) -> list[HistoryEvent]:
    """Events of runs made by ``driftctl pull`` on the host say so, with the commit: ``pull 1a2b3c4d5e6f: ...``."""
    ids = sorted({e.run_id for e in events if e.run_id is not None})
    pulled: dict[int, str] = {}
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        marks = ", ".join("?" for _ in chunk)
        for r in cur.all(f"SELECT id, source_commit FROM runs WHERE inventory = ? AND mode = 'pull'"  # noqa: S608
                         f" AND id IN ({marks})", [inv, *chunk]):
            pulled[int(r["id"])] = str(r["source_commit"] or "")[:12] or "?"
    if not pulled:
        return events
    return [replace(e, detail=f"pull {pulled[e.run_id]}: {e.detail}") if e.run_id in pulled else e for e in events]


def episode_from_row(r: Row) -> DriftEpisode:
    return DriftEpisode(
        id=int(r["id"]), inventory=r["inventory"], host=r["host"], kind=r["kind"], subject=r["subject"],
        drift_class=r["drift_class"], fields=json.loads(r["fields"]), first_seen=to_dt(r["first_seen"]),
        last_seen=to_dt(r["last_seen"]), runs=int(r["runs"]), first_run=r["first_run"], last_run=r["last_run"],
        closed=to_dt(r["closed"]) if r["closed"] is not None else None, closed_run=r["closed_run"],
        close_reason=r["close_reason"],
    )


# Query text is only ever built from these fixed fragments; every value is a bound parameter
# (hence the S608 exemptions below).
def _filters(alias: str, host: str | None, subject_col: str | None, subject: str | None) -> tuple[str, list[Any]]:
    sql, params = "", []
    if host is not None:
        sql += f" AND {alias}.host = ?"
        params.append(host)
    if subject is not None and subject_col is not None:
        sql += f" AND {alias}.{subject_col} = ?"
        params.append(subject)
    return sql, params


def _resource_events(
    cur: Cursor, inv: str, host: str | None, resource: str | None, start: float, limit: int
) -> list[Timed]:
    extra, params = _filters("x", host, "resource", resource)
    rows = cur.all(
        "SELECT r.id AS run_id, r.command AS command, r.started AS started, x.host AS host,"  # noqa: S608
        " x.resource AS resource, x.status AS status, x.changes AS changes, x.error AS error"
        " FROM resource_results x JOIN runs r ON r.id = x.run_id"
        " WHERE r.inventory = ? AND r.started >= ?"
        " AND ((r.command = 'apply' AND x.status = 'changed') OR x.status = 'failed')"
        f"{extra} ORDER BY r.started DESC LIMIT ?",
        [inv, start, *params, limit],
    )
    out = []
    for r in rows:
        kind: EventKind
        if r["status"] == "changed":
            # field names; runs stored before schema 4 kept the whole changes
            fields = [str(c.get("field")) if isinstance(c, dict) else str(c) for c in json.loads(r["changes"])]
            detail = "applied: " + (", ".join(fields) if fields else "changed")
            kind = "applied"
        else:
            fields, kind = [], "failed"
            detail = f"failed during {r['command']}: {r['error'] or 'no error recorded'}"
        out.append((float(r["started"]), 1, HistoryEvent(
            time=to_dt(r["started"]), kind=kind, inventory=inv, host=r["host"], subject=r["resource"],
            run_id=int(r["run_id"]), command=r["command"], detail=detail, fields=fields,
        )))
    return out


def _applied_events(
    cur: Cursor, inv: str, host: str | None, resource: str | None, start: float, limit: int
) -> list[Timed]:
    """Resources changed by applies, from each host's list (host_results.changed), newest first."""
    from driftctl.store.ingest import decode_changed

    extra, params = _filters("h", host, None, None)
    out: list[Timed] = []
    offset, page = 0, 200
    while len(out) < limit:
        rows = cur.all(
            "SELECT r.id AS run_id, r.command AS command, r.started AS started, h.host AS host,"  # noqa: S608
            " h.changed AS changed FROM host_results h JOIN runs r ON r.id = h.run_id"
            " WHERE r.inventory = ? AND r.started >= ? AND h.changed IS NOT NULL"
            f"{extra} ORDER BY r.started DESC, r.id DESC, h.host LIMIT ? OFFSET ?",
            [inv, start, *params, page, offset],
        )
        for r in rows:
            changed = decode_changed(r["changed"])
            for subject, fields in changed.items():
                if resource is not None and subject != resource:
                    continue
                out.append((float(r["started"]), 1, HistoryEvent(
                    time=to_dt(r["started"]), kind="applied", inventory=inv, host=r["host"], subject=subject,
                    run_id=int(r["run_id"]), command=r["command"],
                    detail="applied: " + (", ".join(fields) if fields else "changed"), fields=list(fields),
                )))
        if len(rows) < page:
            break
        offset += page
    return out


def _host_events(
    cur: Cursor, inv: str, host: str | None, start: float, limit: int
) -> list[Timed]:
    extra, params = _filters("h", host, None, None)
    rows = cur.all(
        "SELECT r.id AS run_id, r.command AS command, r.started AS started, h.host AS host,"  # noqa: S608
        " h.status AS status, h.error AS error FROM host_results h JOIN runs r ON r.id = h.run_id"
        " WHERE r.inventory = ? AND r.started >= ?"
        # A host "failed" because some resources failed has those as events already: only a
        # failure of the host as a whole (it carries an error) is an event of its own.
        " AND (h.status = 'unreachable' OR (h.status = 'failed' AND h.error IS NOT NULL))"
        f"{extra} ORDER BY r.started DESC LIMIT ?",
        [inv, start, *params, limit],
    )
    return [
        (float(r["started"]), 0, HistoryEvent(
            time=to_dt(r["started"]), kind="unreachable" if r["status"] == "unreachable" else "host-failed",
            inventory=inv, host=r["host"], subject=None, run_id=int(r["run_id"]), command=r["command"],
            detail=f"{r['status']} during {r['command']}" + (f": {r['error']}" if r["error"] else ""),
        ))
        for r in rows
    ]


def _episode_events(
    cur: Cursor, inv: str, host: str | None, subject: str | None, start: float, limit: int
) -> list[Timed]:
    extra, params = _filters("e", host, "subject", subject)
    out = []
    found = cur.all(
        f"SELECT * FROM drift_episodes e WHERE e.inventory = ? AND e.first_seen >= ?{extra}"  # noqa: S608
        " ORDER BY e.first_seen DESC LIMIT ?",
        [inv, start, *params, limit],
    )
    for row in found:
        ep = episode_from_row(row)
        what = "unmanaged change" if ep.kind == "path" else f"{ep.drift_class} drift"
        detail = what + (": " + ", ".join(ep.fields) if ep.fields else "")
        out.append((float(row["first_seen"]), 2, HistoryEvent(
            time=ep.first_seen, kind="drift-found", inventory=inv, host=ep.host, subject=ep.subject,
            run_id=ep.first_run, command="drift", detail=detail, drift_class=ep.drift_class, fields=ep.fields,
        )))
    resolved = cur.all(
        f"SELECT * FROM drift_episodes e WHERE e.inventory = ? AND e.closed >= ?{extra}"  # noqa: S608
        " ORDER BY e.closed DESC LIMIT ?",
        [inv, start, *params, limit],
    )
    for row in resolved:
        ep = episode_from_row(row)
        assert ep.closed is not None
        runs = f"{ep.runs} drift run{'s' if ep.runs != 1 else ''}"
        out.append((float(row["closed"]), 3, HistoryEvent(
            time=ep.closed, kind="drift-resolved", inventory=inv, host=ep.host, subject=ep.subject,
            run_id=ep.closed_run, command=None, detail=f"resolved ({ep.close_reason}) after {runs}",
            drift_class=ep.drift_class, fields=ep.fields,
        )))
    return out
