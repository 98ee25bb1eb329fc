"""Converged state, stored per host by reference to a host state part (schema 5).

A host's converged state is nearly always "every resource as the last apply left it", and that apply's
document already holds those states in a content-addressed part (``document_parts``, see ingest.py).
So a host has one ``converged_hosts`` row: the part, the run and time that converged it, the part's
resources that run did not converge (``skip``), and the resources whose state comes from elsewhere
(``other``: converged by an earlier run, or no longer in the catalog), in full. An apply of 40 unchanged
hosts rewrites 40 small rows instead of 4 800, and a first converge stores no second copy of the
fingerprints and observed values.

Stores written before schema 5 have one ``converged`` row per resource: read as they are, and replaced
by the host's ``converged_hosts`` row the next time anything of that host converges.
"""

from __future__ import annotations

import json
import lzma
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from driftctl.errors import StoreError
from driftctl.store.db import Cursor, Row
from driftctl.store.packing import UNREADABLE, dumps, xz
from driftctl.store.types import ConvergedState, to_dt

ENCODING = "json+xz"
# converged.desired_fingerprint (and a desired fingerprint in ``other``) when it is the fingerprint
SAME_FINGERPRINT = "="

# (type, fingerprint, desired fingerprint, observed as JSON text, run id, time): what two states compare by
Key = tuple[str, str | None, str | None, str, int | None, float]


def key_of(type_: str, fingerprint: str | None, desired: str | None, observed: Any, run_id: int | None,
           at: float) -> Key:
    return (type_, fingerprint, desired, dumps(observed or {}), run_id, float(at))


def converged_fingerprint(r: dict[str, Any]) -> str | None:
    """The fingerprint a report entry (or a part's resource state) leaves on the host: the one the apply
    re-observed; a resource it did not re-observe was in sync, so its desired fingerprint is there."""
    fingerprint: str | None = r.get("observed_fingerprint") or r.get("desired_fingerprint")
    return fingerprint


def from_resource(r: dict[str, Any], run_id: int | None, at: float) -> Key:
    """The converged state a report entry (or a part's resource state) leaves (``converged_fingerprint``)."""
    return key_of(r.get("type") or r["id"].split(":", 1)[0], converged_fingerprint(r), r.get("desired_fingerprint"),
                  r.get("observed"), run_id, at)


@dataclass
class Base:
    """A part and the run that converged (most of) its resources."""

    part_hash: str
    part: dict[str, Any]
    run_id: int | None
    at: float
    _states: dict[str, Key] | None = field(default=None, init=False, repr=False, compare=False)

    def states(self) -> dict[str, Key]:
        """Each resource's state in the part (computed once: loading a host and writing it both ask)."""
        if self._states is None:
            self._states = {s["id"]: from_resource(s, self.run_id, self.at) for s in self.part.get("resources", [])
                            if isinstance(s, dict) and "id" in s}
        return self._states


@dataclass
class HostConverged:
    states: dict[str, Key] = field(default_factory=dict)
    base: Base | None = None


def _state(resource: str, k: Key, live_runs: set[int]) -> ConvergedState:
    run_id = k[4] if k[4] in live_runs else None  # the run was pruned (ON DELETE SET NULL, as before)
    return ConvergedState(resource=resource, type=k[0], fingerprint=k[1], desired_fingerprint=k[2],
                          observed=json.loads(k[3]), run_id=run_id, converged_at=to_dt(k[5]))


def _legacy_key(r: Row) -> Key:
    desired = r["desired_fingerprint"]
    return (r["type"], r["fingerprint"], r["fingerprint"] if desired == SAME_FINGERPRINT else desired,
            r["observed"], r["run_id"], float(r["converged_at"]))


@dataclass
class Stored:
    """A host's converged state as read from the store, its part still encoded (``decode`` reads it)."""

    legacy: dict[str, Key] = field(default_factory=dict)  # rows of a store written before schema 5
    body: dict[str, Any] | None = None  # the converged_hosts row's body
    part: tuple[str, str, bytes] | None = None  # (hash, encoding, body) of the part it refers to

    def run_ids(self) -> set[int]:
        """The runs its states name (without decoding the part: its states name the base's run)."""
        ids = {k[4] for k in self.legacy.values()}
        if self.body is not None:
            ids.add(self.body.get("run"))
            ids |= {e[4] for e in self.body.get("other", {}).values()}
        return {i for i in ids if i is not None}


def read(cur: Cursor, inventory: str, host: str | None = None) -> dict[str, Stored]:
    """host -> its converged state as stored (see ``decode``)."""
    where, params = "inventory = ?", [inventory]
    if host is not None:
        where += " AND host = ?"
        params.append(host)
    out: dict[str, Stored] = {}
    for r in cur.all(f"SELECT * FROM converged WHERE {where} ORDER BY host, resource", params):  # noqa: S608
        out.setdefault(r["host"], Stored()).legacy[r["resource"]] = _legacy_key(r)
    joined = "c.inventory = ?" + (" AND c.host = ?" if host is not None else "")
    rows = cur.all(
        "SELECT c.host AS host, c.part AS part, c.encoding AS encoding, c.body AS body,"  # noqa: S608
        " p.encoding AS part_encoding, p.body AS part_body"
        " FROM converged_hosts c LEFT JOIN document_parts p ON p.hash = c.part"
        f" WHERE {joined} ORDER BY c.host",
        params,
    )
    for r in rows:
        if r["part"] is not None and r["part_body"] is None:
            raise ValueError(f"the converged state of {r['host']} refers to a missing part")
        stored = out.setdefault(r["host"], Stored())
        stored.body = _decode(r["encoding"], r["body"])
        if r["part"] is not None:
            stored.part = (r["part"], r["part_encoding"], bytes(r["part_body"]))
    return out


def decode(stored: Stored) -> HostConverged:
    """The host's converged state (with its base, for writing it again)."""
    if stored.body is None:
        return HostConverged(dict(stored.legacy))
    from driftctl.store.ingest import decode_part

    body = stored.body
    hc = HostConverged()  # replaces what legacy rows said: they are deleted when this row is written
    if stored.part is not None:
        digest, encoding, part = stored.part
        hc.base = Base(digest, decode_part(encoding, part), body["run"], body["at"])
        skip = set(body.get("skip", []))
        hc.states = {k: v for k, v in hc.base.states().items() if k not in skip}
    for resource, e in body.get("other", {}).items():
        t, fp, desired, observed, run_id, at = e
        hc.states[resource] = key_of(t, fp, fp if desired == SAME_FINGERPRINT else desired, observed, run_id, at)
    return hc


def fingerprints(stored: Stored) -> dict[str, str]:
    """resource -> converged fingerprint, the states without their observed values: what a drift run
    compares with (``decode`` would encode every observed value as JSON to build keys it never reads)."""
    if stored.body is None:
        return {res: k[1] for res, k in stored.legacy.items() if k[1]}
    from driftctl.store.ingest import decode_part

    body = stored.body
    out: dict[str, str | None] = {}
    if stored.part is not None:
        _, encoding, part = stored.part
        skip = set(body.get("skip", []))
        for s in decode_part(encoding, part).get("resources", []):
            if isinstance(s, dict) and "id" in s and s["id"] not in skip:
                out[s["id"]] = converged_fingerprint(s)
    for resource, e in body.get("other", {}).items():
        out[resource] = e[1]
    return {res: fp for res, fp in out.items() if fp}


def load(cur: Cursor, inventory: str, host: str | None = None) -> dict[str, HostConverged]:
    """host -> its converged state (with its base, for writing it again)."""
    return {h: decode(s) for h, s in read(cur, inventory, host).items()}


def _decode(encoding: str, body: bytes | memoryview) -> dict[str, Any]:
    if encoding != ENCODING:
        raise ValueError(f"unknown converged encoding {encoding}")
    doc: dict[str, Any] = json.loads(lzma.decompress(bytes(body)).decode("utf-8"))
    return doc


@contextmanager
def readable(host: str) -> Iterator[None]:
    """Reading ``host``'s converged state: a damaged one is a StoreError naming the host."""
    try:
        yield
    except UNREADABLE as e:
        raise StoreError(f"the converged state of {host} cannot be read ({type(e).__name__})") from e


def live_runs(cur: Cursor, ids: set[int]) -> set[int]:
    """Those of the runs ``ids`` that are still stored (not pruned)."""
    runs = sorted(ids)
    live: set[int] = set()
    for i in range(0, len(runs), 500):
        chunk = runs[i:i + 500]
        marks = ", ".join("?" * len(chunk))
        live |= {int(r["id"]) for r in cur.all(f"SELECT id FROM runs WHERE id IN ({marks})", chunk)}  # noqa: S608
    return live


def public_host(hc: HostConverged, live: set[int]) -> dict[str, ConvergedState]:
    """resource -> ConvergedState, as the API gives it (``live``: the runs not pruned)."""
    return {res: _state(res, k, live) for res, k in sorted(hc.states.items())}


def public(cur: Cursor, loaded: dict[str, HostConverged]) -> dict[str, dict[str, ConvergedState]]:
    """host -> resource -> ConvergedState, as the API gives it."""
    live = live_runs(cur, {k[4] for hc in loaded.values() for k in hc.states.values() if k[4] is not None})
    return {h: public_host(hc, live) for h, hc in loaded.items()}


def write(cur: Cursor, inventory: str, host: str, states: dict[str, Key], candidates: list[Base]) -> None:
    """Store ``states`` as the host's converged state, on the candidate base that leaves least in full."""
    best: tuple[int, Base | None, list[str], dict[str, Key]] | None = None
    for base in [*candidates, None]:
        derived = base.states() if base is not None else {}
        covered = {res for res, k in derived.items() if states.get(res) == k}
        skip = sorted(res for res in derived if res not in covered)
        other = {res: k for res, k in states.items() if res not in covered}
        cost = len(other) * 4 + len(skip)
        if best is None or cost < best[0]:
            best = (cost, base, skip, other)
    assert best is not None
    _, base, skip, other = best
    _write_row(cur, inventory, host, base, skip, other)


def covered_by(stored: Stored | None, part: dict[str, Any], part_hash: str, done: list[dict[str, Any]],
               at: float) -> bool:
    """Whether a run at ``at`` that converged ``done``, exactly the resources of its own ``part``, leaves
    nothing of the host's earlier converged state ``stored``: then the new state is the part itself
    (``write_part``), and ``write`` would choose it too. Decides by ids and times alone, without
    computing a state (the whole cost of ``write`` for an apply that converged every resource)."""
    ids = [s.get("id") if isinstance(s, dict) else None for s in part.get("resources", [])]
    done_ids = {r["id"] for r in done}
    if len(done_ids) != len(done) or len(set(ids)) != len(ids) or set(ids) != done_ids:
        return False
    if stored is None:
        return True
    if stored.legacy or stored.body is None:
        return False  # rows of an older schema: write() replaces them
    other = stored.body.get("other", {})
    if any(res not in done_ids or float(e[5]) > at for res, e in other.items()):
        return False  # kept from another run, or newer than this one (a pull report collected late)
    if stored.part is not None:
        if float(stored.body["at"]) > at:
            return False
        skip = set(stored.body.get("skip", []))
        if stored.part[0] != part_hash:  # the same part has the same ids
            from driftctl.store.ingest import decode_part

            old = decode_part(stored.part[1], stored.part[2]).get("resources", [])
            if any(isinstance(s, dict) and s.get("id") not in done_ids and s.get("id") not in skip for s in old):
                return False
    return True


def write_part(cur: Cursor, inventory: str, host: str, base: Base) -> None:
    """Store ``base`` (a part and the run that converged all of it) as the host's converged state."""
    _write_row(cur, inventory, host, base, [], {})


def _write_row(cur: Cursor, inventory: str, host: str, base: Base | None, skip: list[str],
               other: dict[str, Key]) -> None:
    body: dict[str, Any] = {
        "run": base.run_id if base else None, "at": base.at if base else None, "skip": skip,
        "other": {res: [k[0], k[1], SAME_FINGERPRINT if k[1] is not None and k[2] == k[1] else k[2],
                        json.loads(k[3]), k[4], k[5]] for res, k in sorted(other.items())},
    }
    blob = xz(dumps(body).encode("utf-8"))
    cur.execute(
        "INSERT INTO converged_hosts (inventory, host, part, encoding, body) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (inventory, host) DO UPDATE SET part = excluded.part, encoding = excluded.encoding,"
        " body = excluded.body",
        (inventory, host, base.part_hash if base else None, ENCODING, blob),
    )
    cur.execute("DELETE FROM converged WHERE inventory = ? AND host = ?", (inventory, host))
