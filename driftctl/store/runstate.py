"""A run's view of the store: read once before any host is contacted, written once at the end.

A drift or apply run needs the converged state, open drift episodes, watch baselines and ignore rules
of its inventory, and ends by storing its report (and moving baselines). ``RunState`` reads all of it
in ONE transaction when the run starts (each host's converged state left encoded until the run asks
for it: an apply never does), serves the run from memory, and buffers the run's writes; so a
store that goes away in the middle of the run costs nothing while hosts are being worked on.
``finish()`` then stores the report and the baselines in one transaction (retried on a new
connection for a few seconds), or, when the store stays away, keeps them in the local spool
(driftctl/store/spool.py) and says where: the run's exit code gets bit 32 (ExitCode.NOT_STORED).

    store = open_store(settings.store_url)          # StoreUnavailable (exit 32): nothing has run
    with lock(store, ...):                         # the lock lives in the store too (driftctl/store/lock.py)
        state = RunState.begin(store, settings.state_dir, inventory_key(inventory))
        # state.ingested: spooled runs of earlier runs, stored first (oldest first)
        run = DriftRun(engine, state, ...).run(hosts)       # state has the Store's read methods
        record_run(settings, run, inventory, store=state)   # buffers the document and baselines
        saved = state.finish()                     # saved.run_id, or saved.spooled and saved.error
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from driftctl.errors import ExitCode, StoreError
from driftctl.store import converged as store_converged
from driftctl.store import spool
from driftctl.store.history import episode_from_row
from driftctl.store.report import check, inventory_key
from driftctl.store.store import Store
from driftctl.store.types import BaselineWrite, ConvergedState, DriftEpisode, IgnoreRule, to_dt


@dataclass
class Saved:
    """How a run's results were kept: in the store (``run_id``), or in the spool (``spooled``)."""

    run_id: int | None = None
    spooled: Path | None = None
    error: StoreError | None = None  # why the store did not take them

    @property
    def exit_bits(self) -> int:
        return ExitCode.NOT_STORED if self.spooled is not None else 0

    def message(self, store_url: str) -> str | None:
        """What to tell the user when the run was not stored (None when it was)."""
        if self.spooled is None:
            return None
        return (f"the run was not stored: {self.error or f'store {store_url} unavailable'}; its results were kept"
                f" in {self.spooled} and go into the store with the next run that reaches it")


@dataclass
class RunState:
    """The store as one run sees it (see the module docstring). Has the read methods of ``Store`` a
    run uses (``converged``, ``open_drift``, ``drift_since``, ``baseline``, ``ignores``) and buffers
    ``set_baseline`` and ``save_run`` until ``finish()``."""

    store: Store
    state_dir: Path
    inventory: str
    ingested: spool.Ingested = field(default_factory=spool.Ingested)
    # The converged state as read at begin (each host's part decoded when the run first asks for it:
    # an apply never does, a drift run does in the host's own worker), and the runs it names not pruned.
    _stored: dict[str, store_converged.Stored] = field(default_factory=dict)
    _live: set[int] = field(default_factory=set)
    _converged: dict[str, dict[str, ConvergedState]] = field(default_factory=dict)  # decoded, or read again
    _open: dict[str, list[DriftEpisode]] = field(default_factory=dict)
    _baselines: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    _ignores: list[IgnoreRule] = field(default_factory=list)
    _writes: list[BaselineWrite] = field(default_factory=list)
    _report: dict[str, Any] | None = None
    _cursors: dict[str, tuple[str, int]] = field(default_factory=dict)  # pull outboxes, per host

    @classmethod
    def begin(cls, store: Store, state_dir: str | os.PathLike[str], inventory: str) -> RunState:
        """Ingest the spool, then read what the run needs. Raises StoreUnavailable if the store is away
        (nothing has run yet: the caller stops, as Terraform does without its backend)."""
        state = cls(store, Path(state_dir), inventory_key(inventory))
        state.ingested = spool.ingest(store, state_dir)
        if state.ingested.error is not None:
            raise state.ingested.error
        store.retrying(state._load)
        return state

    def _load(self) -> None:
        inv = self.inventory
        with self.store.database.read() as cur:
            stored = store_converged.read(cur, inv)
            live = store_converged.live_runs(cur, {i for s in stored.values() for i in s.run_ids()})
            episodes = cur.all(
                "SELECT * FROM drift_episodes WHERE inventory = ? AND closed IS NULL"
                " ORDER BY first_seen, host, subject, id", (inv,))
            baselines = cur.all("SELECT * FROM baseline WHERE inventory = ? ORDER BY host, path", (inv,))
        self._converged, self._open, self._baselines = {}, {}, {}
        self._stored, self._live = stored, live
        for r in episodes:
            self._open.setdefault(r["host"], []).append(episode_from_row(r))
        for r in baselines:
            self._baselines.setdefault(r["host"], {})[r["path"]] = {
                "type": r["type"], "sha256": r["sha256"], "mode": r["mode"], "owner": r["owner"],
                "group": r["grp"], "size": r["size"], "target": r["target"],
                "accepted_at": to_dt(r["accepted_at"]), "accepted_by": r["accepted_by"],
            }
        self._ignores = self.store.ignores(inv, include_expired=True)
        with self.store.database.read() as cur:
            rows = cur.all("SELECT host, outbox, seq FROM pull_cursors WHERE inventory = ?", (inv,))
        self._cursors = {r["host"]: (str(r["outbox"]), int(r["seq"])) for r in rows}

    # -- pull mode: reports collected from a host's outbox during the run ---------------------------

    def pull_cursor(self, inventory: str, host: str) -> tuple[str, int] | None:
        self._mine(inventory)
        return self._cursors.get(host)

    def save_pulled(self, inventory: str, host: str, outbox: str, seq: int,
                    report: dict[str, Any] | None, key: tuple[str, int] | None = None) -> int | None:
        """Not buffered: a collected report is stored at once (the host keeps it until the store has
        it), and the host's converged state and open drift are read again, so the run that collected
        it judges the host against what that pull run left."""
        self._mine(inventory)
        run_id = self.store.save_pulled(inventory, host, outbox, seq, report, key=key)
        self._cursors[host] = (outbox, int(seq))
        if report is not None:
            self.store.retrying(lambda: self._reload_host(host))
        return run_id

    def _reload_host(self, host: str) -> None:
        inv = self.inventory
        with self.store.database.read() as cur:
            converged = store_converged.public(cur, store_converged.load(cur, inv, host))
            episodes = cur.all(
                "SELECT * FROM drift_episodes WHERE inventory = ? AND host = ? AND closed IS NULL"
                " ORDER BY first_seen, host, subject, id", (inv, host))
        self._converged[host] = converged.get(host, {})
        self._open[host] = [episode_from_row(r) for r in episodes]

    # -- what a run reads ---------------------------------------------------------------------------

    def _mine(self, inventory: str) -> None:
        if inventory_key(inventory) != self.inventory:
            raise StoreError(f"this run's store view is of {self.inventory}, not of {inventory_key(inventory)}")

    def converged(self, inventory: str, host: str) -> dict[str, ConvergedState]:
        self._mine(inventory)
        states = self._converged.get(host)
        if states is None:
            stored = self._stored.get(host)
            with store_converged.readable(host):
                states = {} if stored is None else store_converged.public_host(store_converged.decode(stored),
                                                                               self._live)
            self._converged[host] = states  # two threads asking at once decode it twice, to the same
        return dict(states)

    def converged_fingerprints(self, inventory: str, host: str) -> dict[str, str]:
        """resource id -> converged fingerprint (``converged`` without the observed values)."""
        self._mine(inventory)
        states = self._converged.get(host)  # read again after a collected pull report, or asked before
        if states is not None:
            return {res: s.fingerprint for res, s in states.items() if s.fingerprint}
        stored = self._stored.get(host)
        with store_converged.readable(host):
            return {} if stored is None else store_converged.fingerprints(stored)

    def open_drift(self, inventory: str, host: str | None = None) -> list[DriftEpisode]:
        self._mine(inventory)
        if host is not None:
            return list(self._open.get(host, []))
        return sorted((e for eps in self._open.values() for e in eps), key=lambda e: (e.first_seen, e.host, e.id))

    def drift_since(self, inventory: str, host: str) -> dict[str, DriftEpisode]:
        return {e.subject: e for e in self.open_drift(inventory, host)}

    def baseline(self, inventory: str, host: str) -> dict[str, dict[str, Any]]:
        self._mine(inventory)
        return {p: dict(e) for p, e in self._baselines.get(host, {}).items()}

    def ignores(self, inventory: str, now: datetime | None = None, include_expired: bool = False) -> list[IgnoreRule]:
        self._mine(inventory)
        return [r for r in self._ignores if include_expired or r.active(now)]

    # -- what a run writes --------------------------------------------------------------------------

    def set_baseline(self, inventory: str, host: str, entries: dict[str, dict[str, Any] | None], by: str,
                     replace: bool = True, now: datetime | None = None) -> None:
        """Buffered: stored by ``finish()`` with the run (and seen by ``baseline()`` meanwhile)."""
        self._mine(inventory)
        when = now or datetime.now(UTC)
        write = BaselineWrite(self.inventory, host, dict(entries), by, replace, when.timestamp())
        write.check()
        self._writes.append(write)
        current = {} if replace else self._baselines.get(host, {})
        for path, entry in entries.items():
            if entry is None:
                current.pop(path, None)
            else:
                current[path] = {**entry, "accepted_at": when.astimezone(UTC), "accepted_by": by}
        self._baselines[host] = current

    def save_run(self, report: dict[str, Any]) -> int:
        """Buffered: ``finish()`` stores it. Returns 0 (the run id is ``finish().run_id``)."""
        self._report = report
        return 0

    def finish(self) -> Saved:
        """Store the run's report and baselines in one transaction, or spool them (see module doc).

        Any store failure spools (a server away after the retries, a SQLite file that cannot be
        written). Raises StoreError only for a document the store would refuse (a bug, said at once),
        or when the spool cannot be written either.
        """
        if self._report is None:
            if not self._writes:
                return Saved()
            raise StoreError("a run wrote baselines but no report: nothing to store them with")
        check(self._report)  # a document the store would refuse is a bug: said now, never spooled
        pending = spool.Pending(self._report, baselines=tuple(self._writes))
        try:
            return Saved(run_id=pending.save(self.store, checked=True))
        except StoreError as e:  # the server away (after retries), or SQLite unable to write: keep it
            return Saved(spooled=spool.write(self.state_dir, pending), error=e)
