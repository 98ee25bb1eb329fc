"""The Store: one object per open store, the same API on SQLite and PostgreSQL (see driftctl.store)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar

from driftctl.errors import InputError, StoreError
from driftctl.store import converged, ingest, migrations
from driftctl.store import history as timeline
from driftctl.store.db import RETRY_DELAYS, Cursor, Database, Dialect, Row, StoreUnavailable
from driftctl.store.packing import UNREADABLE
from driftctl.store.report import check, inventory_key
from driftctl.store.types import (
    BaselineWrite,
    ConvergedState,
    DriftEpisode,
    HistoryEvent,
    IgnoreRule,
    PruneResult,
    RunInfo,
    SeriesPoint,
    to_dt,
)

T = TypeVar("T")
_CHUNK = 500  # ids per IN (...) list

_BASELINE_FIELDS = ("type", "sha256", "mode", "owner", "group", "size", "target")


def _epoch(value: datetime | date | float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def _now() -> datetime:
    return datetime.now(UTC)


class Store:
    """Run history, converged state, drift episodes, baselines and ignore rules of every inventory.

    Open with ``driftctl.store.open_store(url)``; use as a context manager or call ``close()``.
    Inventories are keyed by ``report.inventory_key()`` of their name; hosts by (inventory, host).
    """

    def __init__(self, db: Database, retry_delays: Sequence[float] = RETRY_DELAYS) -> None:
        self._db = db
        self.retry_delays = tuple(retry_delays)
        self.schema_version = self.retrying(lambda: migrations.migrate(db))

    def _reading(self, fn: Callable[[Cursor], T]) -> T:
        """``fn(cur)`` in one read snapshot, retried like a write (reads are always safe to repeat)."""
        def work() -> T:
            with self._db.read() as cur:
                return fn(cur)

        return self.retrying(work)

    def retrying(self, work: Callable[[], T]) -> T:
        """``work()``, again on a new connection while the server is away (a restart), for a few seconds.

        ``work`` must be one whole transaction (or several, each safe to repeat): a transaction cut by
        a lost connection was rolled back by the server, so doing it again is the same as doing it once.
        The one ambiguous case, a connection lost during COMMIT, is why runs carry a ``run_key``.
        Raises StoreUnavailable when the server is still away after the last delay.
        """
        for delay in (*self.retry_delays, None):
            try:
                return work()
            except StoreUnavailable:
                if delay is None:
                    raise
            time.sleep(delay)
            try:
                self._db.reconnect()
            except StoreUnavailable:
                continue
        raise AssertionError("unreachable")  # pragma: no cover

    # -- identity ---------------------------------------------------------------------------------

    @property
    def dialect(self) -> Dialect:
        return self._db.dialect

    @property
    def url(self) -> str:
        """Where the store lives, without any password (safe to show)."""
        return self._db.url.display

    @property
    def database(self) -> Database:
        """The underlying connection (for driftctl.store.lock)."""
        return self._db

    @property
    def state_dir(self) -> Path | None:
        """The directory of a SQLite store (where lock files go); None for PostgreSQL."""
        return Path(self._db.url.target).parent if self.dialect == "sqlite" else None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- runs ---------------------------------------------------------------------------------------

    def save_run(self, report: dict[str, Any], run_key: str | None = None,
                 baselines: Iterable[BaselineWrite] = (), checked: bool = False) -> int:
        """Store one report document and everything derived from it, in one transaction.

        On a drift run this fills ``since`` and ``runs`` of every drifted resource and unmanaged entry
        **in the given document** (and in the stored copy). Returns the run id.
        ``run_key`` (any unique text, e.g. a uuid) makes the save idempotent: a run whose key is stored
        already is not stored again (its id is returned). ``baselines`` are written in the same
        transaction (a run's watch baselines move with the run, or not at all).
        A lost connection is retried (``retrying``). Raises StoreError for a document that breaks the
        schema's essentials (``checked``: the caller has checked it), StoreUnavailable when the server
        stays away.
        """
        if not checked:
            check(report)
        inventory = inventory_key(report["inventory"])
        writes = list(baselines)

        def work() -> int:
            with self._db.transaction() as cur:
                if self.dialect == "postgresql":
                    # One saver per inventory at a time: episodes are read then written. (SQLite's
                    # BEGIN IMMEDIATE already serializes all writers.)
                    cur.execute("SELECT pg_advisory_xact_lock(?)", (ingest.advisory_key("save:" + inventory),))
                if run_key is not None:
                    stored = cur.scalar("SELECT id FROM runs WHERE run_key = ?", (run_key,))
                    if stored is not None:  # the commit of an earlier attempt did go through
                        return int(stored)
                run_id = ingest.save(cur, report, run_key)
                for w in writes:
                    self._write_baseline(cur, w)
                return run_id

        return self.retrying(work)

    # -- pull mode: reports collected from hosts' outboxes ------------------------------------------

    def pull_cursor(self, inventory: str, host: str) -> tuple[str, int] | None:
        """(outbox id, last report number) collected from ``host``'s pull outbox, or None."""
        row = self._reading(lambda cur: cur.one(
            "SELECT outbox, seq FROM pull_cursors WHERE inventory = ? AND host = ?", (inventory_key(inventory), host)))
        return (str(row["outbox"]), int(row["seq"])) if row is not None else None

    def save_pulled(self, inventory: str, host: str, outbox: str, seq: int,
                    report: dict[str, Any] | None, key: tuple[str, int] | None = None) -> int | None:
        """Store one report collected from ``host``'s pull outbox (None: a report refused, only passed
        over) and move that host's cursor to ``seq``, in one transaction: the host removes the report
        only when the next probe names it collected. Returns the run id (None when refused).
        Idempotent: the same outbox and number are stored once; ``key`` (the outbox id and number the
        report was written under, default ``outbox`` and ``seq``) names it."""
        written = key or (outbox, seq)
        inv = inventory_key(inventory)
        if report is not None:
            check(report)
        run_key = f"pull:{written[0]}:{written[1]}:{host}:{inv}"[:400]

        def work() -> int | None:
            with self._db.transaction() as cur:
                if self.dialect == "postgresql":
                    cur.execute("SELECT pg_advisory_xact_lock(?)", (ingest.advisory_key("save:" + inv),))
                run_id: int | None = None
                if report is not None:
                    stored = cur.scalar("SELECT id FROM runs WHERE run_key = ?", (run_key,))
                    run_id = int(stored) if stored is not None else ingest.save(cur, report, run_key)
                cur.execute(
                    "INSERT INTO pull_cursors (inventory, host, outbox, seq, collected) VALUES (?, ?, ?, ?, ?)"
                    " ON CONFLICT (inventory, host) DO UPDATE SET outbox = excluded.outbox, seq = excluded.seq,"
                    " collected = excluded.collected", (inv, host, outbox, int(seq), time.time()))
                return run_id

        return self.retrying(work)

    def runs(self, inventory: str, limit: int = 20, command: str | None = None) -> list[RunInfo]:
        """The latest runs of an inventory, newest first."""
        sql = "SELECT * FROM runs WHERE inventory = ?"
        params: list[Any] = [inventory_key(inventory)]
        if command:
            sql += " AND command = ?"
            params.append(command)
        sql += " ORDER BY started DESC, id DESC LIMIT ?"
        params.append(int(limit))
        return self._reading(lambda cur: [self._run_info(row) for row in cur.all(sql, params)])

    def run_document(self, run_id: int) -> dict[str, Any] | None:
        """The report document of a run as it was stored (with ``since``/``runs`` filled)."""
        def read(cur: Cursor) -> tuple[Row, dict[str, Row]] | None:
            row = cur.one("SELECT encoding, body FROM run_documents WHERE run_id = ?", (int(run_id),))
            if row is None:
                return None
            parts = {r["hash"]: r for r in cur.all(
                "SELECT p.hash AS hash, p.encoding AS encoding, p.body AS body FROM host_results x"
                " JOIN document_parts p ON p.hash = x.part WHERE x.run_id = ?", (int(run_id),))}
            return row, parts

        found = self._reading(read)
        if found is None:
            return None
        row, parts = found
        try:
            states = {h: ingest.decode_part(p["encoding"], p["body"]) for h, p in parts.items()}
            return ingest.decode_document(row["encoding"], row["body"], states)
        except UNREADABLE as e:
            raise StoreError(f"run {run_id}: the stored report cannot be read ({type(e).__name__})") from e

    def latest_run(self, inventory: str, command: str | None = None) -> dict[str, Any] | None:
        """The report document of the inventory's latest run (of ``command``, if given), or None."""
        latest = self.runs(inventory, limit=1, command=command)
        return self.run_document(latest[0].id) if latest else None

    @staticmethod
    def _run_info(row: Row) -> RunInfo:
        return RunInfo(
            id=int(row["id"]), command=row["command"], inventory=row["inventory"], started=to_dt(row["started"]),
            finished=to_dt(row["finished"]) if row["finished"] is not None else None, exit_code=row["exit_code"],
            user=row["username"], controller=row["controller"], driftctl_version=row["version"],
            argv=json.loads(row["argv"]), summary=json.loads(row["summary"]),
            mode=row["mode"] or "push", commit=row["source_commit"],
        )

    # -- converged state ------------------------------------------------------------------------

    def converged(self, inventory: str, host: str) -> dict[str, ConvergedState]:
        """resource id -> the state its last successful apply left on the host."""
        inv = inventory_key(inventory)

        def read(cur: Cursor) -> dict[str, ConvergedState]:
            return converged.public(cur, converged.load(cur, inv, host)).get(host, {})

        with converged.readable(host):
            return self._reading(read)

    def converged_fingerprints(self, inventory: str, host: str) -> dict[str, str]:
        """resource id -> the fingerprint its last successful apply left (``converged`` without the
        observed values: what a drift run compares with)."""
        inv = inventory_key(inventory)

        def read(cur: Cursor) -> dict[str, str]:
            stored = converged.read(cur, inv, host).get(host)
            return {} if stored is None else converged.fingerprints(stored)

        with converged.readable(host):
            return self._reading(read)

    # -- drift ----------------------------------------------------------------------------------

    def episodes(
        self,
        inventory: str,
        host: str | None = None,
        subject: str | None = None,
        open_only: bool = False,
        since: datetime | date | None = None,
    ) -> list[DriftEpisode]:
        """Drift episodes, oldest first; ``since`` keeps those still open or closed after it."""
        sql = "SELECT * FROM drift_episodes WHERE inventory = ?"
        params: list[Any] = [inventory_key(inventory)]
        if host is not None:
            sql += " AND host = ?"
            params.append(host)
        if subject is not None:
            sql += " AND subject = ?"
            params.append(subject)
        if open_only:
            sql += " AND closed IS NULL"
        if since is not None:
            sql += " AND (closed IS NULL OR closed >= ?)"
            params.append(_epoch(since))
        sql += " ORDER BY first_seen, host, subject, id"
        return self._reading(lambda cur: [timeline.episode_from_row(r) for r in cur.all(sql, params)])

    def open_drift(self, inventory: str, host: str | None = None) -> list[DriftEpisode]:
        """The drift that is open now (as of the latest drift run of each host)."""
        return self.episodes(inventory, host, open_only=True)

    def drift_since(self, inventory: str, host: str) -> dict[str, DriftEpisode]:
        """subject (resource id or watched path) -> its open episode: "since when, for how many runs".

        For showing drift before a run is saved; ``save_run`` fills the document's ``since``/``runs``.
        """
        return {e.subject: e for e in self.open_drift(inventory, host)}

    def drift_series(self, inventory: str, since: datetime | date | None = None) -> list[SeriesPoint]:
        """Per drift run and host, how many subjects of each class drifted, leaving out what an ignore
        rule covered (a host with none is absent: read it as 0)."""
        where = "r.inventory = ? AND r.command = 'drift' AND r.started >= ?"
        params = [inventory_key(inventory), _epoch(since) or 0.0]
        sql = (
            "SELECT r.id AS run_id, r.started AS started, x.host AS host, x.drift AS drift, COUNT(*) AS n"  # noqa: S608
            f" FROM resource_results x JOIN runs r ON r.id = x.run_id WHERE {where} AND x.drift IS NOT NULL"
            " AND x.ignored IS NULL"
            " GROUP BY r.id, r.started, x.host, x.drift"
            " UNION ALL"
            " SELECT r.id AS run_id, r.started AS started, u.host AS host, 'unmanaged' AS drift, COUNT(*) AS n"
            f" FROM unmanaged_results u JOIN runs r ON r.id = u.run_id WHERE {where} AND u.ignored IS NULL"
            " GROUP BY r.id, r.started, u.host"
            " ORDER BY started, run_id, host, drift"
        )
        rows = self._reading(lambda cur: cur.all(sql, params + params))
        return [
            SeriesPoint(time=to_dt(r["started"]), run_id=int(r["run_id"]), host=r["host"],
                        drift_class=r["drift"], count=int(r["n"]))
            for r in rows
        ]

    # -- history --------------------------------------------------------------------------------

    def history(
        self,
        inventory: str,
        host: str | None = None,
        resource: str | None = None,
        since: datetime | date | None = None,
        limit: int = 100,
    ) -> list[HistoryEvent]:
        """The latest ``limit`` events (applies, failures, drift found and resolved), oldest first.

        ``resource`` is a resource id or a watched path; with it, whole-host events are left out.
        """
        inv, start = inventory_key(inventory), _epoch(since) or 0.0
        return self._reading(lambda cur: timeline.events(cur, inv, host, resource, start, limit))

    # -- watch baseline -------------------------------------------------------------------------

    def baseline(self, inventory: str, host: str) -> dict[str, dict[str, Any]]:
        """path -> {type, sha256, mode, owner, group, size, target, accepted_at, accepted_by}.

        The file-state keys are those of the agent's watch scan; one it did not report is None.
        """
        rows = self._reading(lambda cur: cur.all(
            "SELECT * FROM baseline WHERE inventory = ? AND host = ? ORDER BY path",
            (inventory_key(inventory), host),
        ))
        return {
            r["path"]: {
                "type": r["type"], "sha256": r["sha256"], "mode": r["mode"], "owner": r["owner"],
                "group": r["grp"], "size": r["size"], "target": r["target"], "accepted_at": to_dt(r["accepted_at"]),
                "accepted_by": r["accepted_by"],
            }
            for r in rows
        }

    def set_baseline(
        self,
        inventory: str,
        host: str,
        entries: dict[str, dict[str, Any] | None],
        by: str,
        replace: bool = True,
        now: datetime | None = None,
    ) -> None:
        """Accept ``entries`` (path -> file state) as the host's baseline.

        ``replace=True``: they become the whole baseline. ``replace=False``: they are merged in, and a
        path mapped to None is dropped (an accepted removal).
        """
        write = BaselineWrite(inventory_key(inventory), host, entries, by, replace, _epoch(now or _now()) or 0.0)
        write.check()

        def work() -> None:
            with self._db.transaction() as cur:
                self._write_baseline(cur, write)

        self.retrying(work)

    @staticmethod
    def _write_baseline(cur: Cursor, w: BaselineWrite) -> None:
        w.check()
        inv, host, entries, by, when = inventory_key(w.inventory), w.host, w.entries, w.by, w.at
        if w.replace:
            cur.execute("DELETE FROM baseline WHERE inventory = ? AND host = ?", (inv, host))
        else:
            cur.executemany(
                "DELETE FROM baseline WHERE inventory = ? AND host = ? AND path = ?",
                [(inv, host, p) for p, e in entries.items() if e is None],
            )
        cur.executemany(
            "INSERT INTO baseline (inventory, host, path, type, sha256, mode, owner, grp, size, target,"
            " accepted_at, accepted_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (inventory, host, path) DO UPDATE SET type = excluded.type,"
            " sha256 = excluded.sha256, mode = excluded.mode, owner = excluded.owner, grp = excluded.grp,"
            " size = excluded.size, target = excluded.target, accepted_at = excluded.accepted_at,"
            " accepted_by = excluded.accepted_by",
            [
                (inv, host, p, *(e.get(f) for f in _BASELINE_FIELDS), when, by)
                for p, e in sorted(entries.items())
                if e is not None
            ],
        )

    # -- ignore rules ---------------------------------------------------------------------------

    def add_ignore(
        self,
        inventory: str,
        host_pattern: str,
        target: str,
        reason: str,
        expires: date | str,
        by: str,
        now: datetime | None = None,
    ) -> IgnoreRule:
        """Ignore drift of ``target`` (resource id or path glob) on hosts matching ``host_pattern``
        until ``expires`` (a date, inclusive). A reason and an expiry are required: an ignore rule is a
        decision someone must be able to read and revisit."""
        if not reason or not reason.strip():
            raise InputError("an ignore rule needs a reason")
        if isinstance(expires, str):
            try:
                expires = date.fromisoformat(expires)
            except ValueError:
                raise InputError(f"expires must be a date (YYYY-MM-DD), not {expires!r}") from None
        if isinstance(expires, datetime):
            expires = expires.date()
        created = now or _now()
        if expires < created.astimezone(UTC).date():
            raise InputError(f"expires {expires.isoformat()} is in the past")
        if not host_pattern or not target:
            raise InputError("an ignore rule needs a host pattern and a target")
        with self._db.transaction() as cur:
            rule_id = int(cur.scalar(
                "INSERT INTO ignores (inventory, host_pattern, target, reason, expires, created_by, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (inventory_key(inventory), host_pattern, target, reason.strip(), expires.isoformat(), by,
                 _epoch(created)),
            ))
        return IgnoreRule(rule_id, inventory_key(inventory), host_pattern, target, reason.strip(), expires, by,
                          created.astimezone(UTC))

    def ignores(self, inventory: str, now: datetime | None = None, include_expired: bool = False) -> list[IgnoreRule]:
        """The rules in force at ``now`` (default: now), or all of them."""
        sql = "SELECT * FROM ignores WHERE inventory = ?"
        params: list[Any] = [inventory_key(inventory)]
        if not include_expired:
            sql += " AND expires >= ?"  # ISO dates compare as text
            params.append((now or _now()).astimezone(UTC).date().isoformat())
        rows = self._reading(lambda cur: cur.all(sql + " ORDER BY id", params))
        return [
            IgnoreRule(int(r["id"]), r["inventory"], r["host_pattern"], r["target"], r["reason"],
                       date.fromisoformat(r["expires"]), r["created_by"], to_dt(r["created_at"]))
            for r in rows
        ]

    def remove_ignore(self, rule_id: int, inventory: str | None = None) -> bool:
        """Delete a rule (of ``inventory`` only, when given); False if there was none with that id."""
        def work() -> Row | None:
            with self._db.transaction() as cur:
                if inventory is None:
                    return cur.one("DELETE FROM ignores WHERE id = ? RETURNING id", (int(rule_id),))
                return cur.one("DELETE FROM ignores WHERE id = ? AND inventory = ? RETURNING id",
                               (int(rule_id), inventory))

        return self.retrying(work) is not None

    # -- housekeeping ---------------------------------------------------------------------------

    def prune(self, inventory: str, before: datetime | date, dry_run: bool = False) -> PruneResult:
        """Delete runs started before ``before`` with their results and documents, and drift episodes
        closed before it; in one transaction. ``dry_run`` counts without deleting.

        Kept whatever their age, so "since when" and the latest state never break: converged state,
        baselines, ignore rules, open episodes, the latest run of each host, and the run where each open
        episode began (history links to it).
        """
        inv, cutoff = inventory_key(inventory), _epoch(before)
        when = to_dt(cutoff or 0.0)

        def work() -> PruneResult:
            with self._db.transaction() as cur:
                if self.dialect == "postgresql":  # not while a run of this inventory is being saved
                    cur.execute("SELECT pg_advisory_xact_lock(?)", (ingest.advisory_key("save:" + inv),))
                old = [int(r["id"]) for r in cur.all(
                    "SELECT id FROM runs WHERE inventory = ? AND started < ? ORDER BY id", (inv, cutoff))]
                keep = self._runs_to_keep(cur, inv)
                gone = [i for i in old if i not in keep]
                counts = dict.fromkeys(("host_results", "resource_results", "unmanaged_results", "documents"), 0)
                size = 0
                for chunk in _chunks(gone):
                    marks = ", ".join("?" * len(chunk))
                    for table, key in (("host_results", "host_results"), ("resource_results", "resource_results"),
                                       ("unmanaged_results", "unmanaged_results"), ("run_documents", "documents")):
                        counts[key] += int(cur.scalar(
                            f"SELECT COUNT(*) AS n FROM {table} WHERE run_id IN ({marks})", chunk))  # noqa: S608
                    size += int(cur.scalar(
                        f"SELECT COALESCE(SUM(LENGTH(body)), 0) AS n FROM run_documents WHERE run_id IN ({marks})",  # noqa: S608
                        chunk))
                    if not dry_run:  # results and documents go with their run (ON DELETE CASCADE)
                        cur.execute(f"DELETE FROM runs WHERE id IN ({marks})", chunk)  # noqa: S608
                if not dry_run:  # host states no run and no converged state refers to any more
                    cur.execute(
                        "DELETE FROM document_parts WHERE inventory = ? AND hash NOT IN"
                        " (SELECT x.part FROM host_results x WHERE x.part IS NOT NULL)"
                        " AND hash NOT IN (SELECT c.part FROM converged_hosts c WHERE c.part IS NOT NULL)", (inv,))
                closed_where = "inventory = ? AND closed IS NOT NULL AND closed < ?"
                episodes = int(cur.scalar(
                    f"SELECT COUNT(*) AS n FROM drift_episodes WHERE {closed_where}", (inv, cutoff)))  # noqa: S608
                if not dry_run:
                    cur.execute(f"DELETE FROM drift_episodes WHERE {closed_where}", (inv, cutoff))  # noqa: S608
                return PruneResult(
                    inventory=inv, cutoff=when, dry_run=dry_run, runs=len(gone), documents=counts["documents"],
                    host_results=counts["host_results"], resource_results=counts["resource_results"],
                    unmanaged_results=counts["unmanaged_results"], document_bytes=size, episodes=episodes,
                    kept_runs=len(old) - len(gone),
                )

        return self.retrying(work)

    @staticmethod
    def _runs_to_keep(cur: Cursor, inv: str) -> set[int]:
        # each host's latest run: the last started, and of runs started in the same second (times are
        # whole seconds) the one saved last
        rows = cur.all(
            "SELECT MAX(r.id) AS id FROM runs r JOIN host_results x ON x.run_id = r.id"
            " JOIN (SELECT x2.host AS host, MAX(r2.started) AS started FROM host_results x2"
            " JOIN runs r2 ON r2.id = x2.run_id WHERE r2.inventory = ? GROUP BY x2.host) m"
            " ON m.host = x.host AND m.started = r.started"
            " WHERE r.inventory = ? GROUP BY x.host"
            " UNION SELECT DISTINCT first_run AS id FROM drift_episodes WHERE inventory = ? AND closed IS NULL"
            " AND first_run IS NOT NULL",
            (inv, inv, inv),
        )
        return {int(r["id"]) for r in rows}

    def vacuum(self) -> None:
        """Give the space of deleted rows back to the file system (SQLite ``VACUUM``; PostgreSQL plain
        ``VACUUM``, which makes it reusable). Takes a while on a large store; needs no other writer."""
        def work() -> None:
            with self._db.autocommit() as cur:
                cur.execute("VACUUM")
                if self.dialect == "sqlite":  # in WAL mode the rewritten file is in the log until then
                    cur.execute("PRAGMA wal_checkpoint(TRUNCATE)")

        self.retrying(work)


def _chunks(ids: list[int]) -> Iterable[list[int]]:
    for i in range(0, len(ids), _CHUNK):
        yield ids[i:i + _CHUNK]
