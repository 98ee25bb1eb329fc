"""One small database interface over sqlite3 and psycopg 3.

SQL is written once with ``?`` placeholders and dialect markers in DDL; the PostgreSQL side rewrites
``?`` to ``%s``. Every library error is translated here into StoreError, with the database's own
primary message only: the values of a statement (already redacted, but still the user's data) never
reach a message or a log.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn

from driftctl.errors import ExitCode, StoreError

Dialect = Literal["sqlite", "postgresql"]
Row = dict[str, Any]

SQLITE_BUSY_TIMEOUT = 30.0  # seconds a writer waits for another process's transaction
# Pauses before each new attempt when the server is gone (a restart, a failover): about 3.5 s in all,
# then the caller gives up (a run keeps its results in the spool, see driftctl/store/spool.py).
RETRY_DELAYS = (0.5, 1.0, 2.0)


class StoreUnavailable(StoreError):
    """The store's server could not be reached, or the connection to it was lost.

    Unlike other store errors this one may pass: callers retry (``Store`` does, reconnecting) and a
    run's results go to the local spool when it does not. Exit bit 32 (ExitCode.NOT_STORED).
    """

    exit_code = ExitCode.NOT_STORED


@dataclass(frozen=True)
class StoreURL:
    """Where a store lives. ``target`` is a file path (sqlite) or a libpq connection string."""

    dialect: Dialect
    target: str

    @property
    def display(self) -> str:
        """The URL without a password, safe to show."""
        if self.dialect == "sqlite":
            return self.target
        return _hide_password(self.target)


def parse_url(url: str | os.PathLike[str]) -> StoreURL:
    """A path or ``sqlite:///path`` -> SQLite; ``postgresql://...`` (or ``postgres://``) -> PostgreSQL.

    ``sqlite:///var/lib/driftctl/state.sqlite`` names ``/var/lib/driftctl/state.sqlite``: what follows
    ``sqlite://`` is the path as written (so ``sqlite://state.sqlite`` is relative).
    """
    text = os.fspath(url)
    if text.startswith(("postgresql://", "postgres://")):
        return StoreURL("postgresql", text)
    if text.startswith("sqlite://"):
        text = text[len("sqlite://"):]
    elif re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", text):
        raise StoreError(f"unknown store URL scheme in {_hide_password(text)!r} (use a path, sqlite:///path or postgresql://)")
    if not text:
        raise StoreError("empty store path")
    return StoreURL("sqlite", str(Path(text).expanduser()))


def _hide_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}{':***' if ':' in creds else ''}@{host}"


class Cursor:
    """A cursor that speaks ``?`` placeholders and returns dict rows, on either dialect."""

    def __init__(self, raw: Any, dialect: Dialect) -> None:
        self._raw = raw  # a sqlite3.Connection or a psycopg cursor: both execute() and return a cursor
        self._dialect = dialect
        self._last: Any = None

    def _sql(self, sql: str) -> str:
        return sql.replace("%", "%%").replace("?", "%s") if self._dialect == "postgresql" else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        self._last = self._raw.execute(self._sql(sql), tuple(params))
        return self

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = [tuple(r) for r in rows]
        if rows:
            self._raw.executemany(self._sql(sql), rows)

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        row = self.execute(sql, params)._last.fetchone()
        return dict(row) if row is not None else None

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return [dict(r) for r in self.execute(sql, params)._last.fetchall()]

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.one(sql, params)
        return None if row is None else next(iter(row.values()))


class Database(ABC):
    """A connection with write transactions and reads. Calls from several threads are serialized."""

    dialect: Dialect
    url: StoreURL

    def __init__(self, url: StoreURL) -> None:
        self.url = url
        self._mutex = threading.RLock()

    @abstractmethod
    def _begin(self) -> Any: ...

    @abstractmethod
    def _commit(self) -> None: ...

    @abstractmethod
    def _rollback(self) -> None: ...

    @abstractmethod
    def _cursor(self) -> Any: ...

    @abstractmethod
    def close(self) -> None: ...

    def reconnect(self) -> None:  # noqa: B027 - deliberately a no-op by default
        """Replace a lost connection (PostgreSQL); a no-op where there is no server (SQLite)."""

    @abstractmethod
    def _translate(self, e: BaseException) -> StoreError | None:
        """The StoreError for a library error, or None if ``e`` is not the library's."""

    @contextmanager
    def transaction(self) -> Iterator[Cursor]:
        """A write transaction: everything inside commits together or not at all."""
        with self._mutex:
            try:
                self._begin()
            except Exception as e:
                self._reraise(e)
            try:
                yield Cursor(self._cursor(), self.dialect)
            except BaseException as e:
                # The original error matters more than a failed rollback.
                with suppress(Exception):
                    self._rollback()
                err = self._translate(e)
                if err is not None:
                    raise err from e
                raise
            try:
                self._commit()
            except Exception as e:
                self._reraise(e)

    def _reraise(self, e: Exception) -> NoReturn:
        err = self._translate(e)
        if err is None:
            raise e
        raise err from e

    @contextmanager
    def autocommit(self) -> Iterator[Cursor]:
        """Statements outside any transaction (VACUUM cannot run inside one)."""
        with self._mutex:
            try:
                yield Cursor(self._cursor(), self.dialect)
            except Exception as e:
                self._reraise(e)

    @contextmanager
    def read(self) -> Iterator[Cursor]:
        """Reads in one consistent snapshot."""
        with self.transaction() if self.dialect == "postgresql" else self._sqlite_read() as cur:
            yield cur

    @contextmanager
    def _sqlite_read(self) -> Iterator[Cursor]:
        # A deferred transaction: a WAL snapshot that never blocks writers and is never blocked.
        with self._mutex:
            try:
                self._cursor().execute("BEGIN")
                try:
                    yield Cursor(self._cursor(), self.dialect)
                finally:
                    self._cursor().execute("COMMIT")
            except sqlite3.Error as e:
                self._reraise(e)


class SQLiteDatabase(Database):
    """SQLite in WAL mode: readers never wait, writers take the lock at BEGIN (no upgrade deadlocks)."""

    dialect: Dialect = "sqlite"

    def __init__(self, url: StoreURL) -> None:
        super().__init__(url)
        path = Path(url.target)
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Observed states are redacted but still describe the fleet: owner-only from the start.
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
            self._conn = sqlite3.connect(
                path, timeout=SQLITE_BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
            self._conn.row_factory = sqlite3.Row
            self._conn.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT * 1000)}")
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{path}: cannot switch the store to WAL mode (got {mode})")
            self._conn.execute("PRAGMA synchronous = NORMAL")  # safe with WAL: never corrupts
            self._conn.execute("PRAGMA foreign_keys = ON")
        except OSError as e:
            raise StoreError(f"cannot open store {path}: {e.strerror or e}") from e
        except sqlite3.Error as e:
            raise StoreError(f"cannot open store {path}: {e}") from e

    def _cursor(self) -> Any:
        return self._conn

    def _begin(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def _commit(self) -> None:
        self._conn.execute("COMMIT")

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    def close(self) -> None:
        with self._mutex:
            self._conn.close()

    def _translate(self, e: BaseException) -> StoreError | None:
        if isinstance(e, sqlite3.OperationalError) and any(w in str(e) for w in ("locked", "busy")):
            # Another process held the write lock past the busy timeout: it passes, like a server away.
            return StoreUnavailable(f"store {self.url.display}: {e}")
        if isinstance(e, sqlite3.Error):
            return StoreError(f"store {self.url.display}: {e}")
        return None


class PostgresDatabase(Database):
    """PostgreSQL through psycopg 3, in autocommit mode with explicit transactions."""

    dialect: Dialect = "postgresql"

    def __init__(self, url: StoreURL, connect_timeout: float = 10.0,
                 retry_delays: Sequence[float] = RETRY_DELAYS) -> None:
        super().__init__(url)
        self._psycopg = _import_psycopg()
        self._connect_timeout = max(1, int(connect_timeout))
        self._tx: Any = None
        self._conn = self._connect(retry_delays)

    def _connect(self, retry_delays: Sequence[float]) -> Any:
        """A new connection; a server that refuses (down, restarting) is tried again after each delay."""
        from psycopg.rows import dict_row

        for delay in (*retry_delays, None):
            try:
                return self._psycopg.connect(
                    self.url.target, autocommit=True, row_factory=dict_row, connect_timeout=self._connect_timeout
                )
            except self._psycopg.Error as e:
                message = f"cannot connect to store {self.url.display}: {_pg_message(e)}"
                if not _server_away(e, self._psycopg):
                    raise StoreError(message) from e  # refused on purpose: no such database, bad password
                if delay is None:
                    raise StoreUnavailable(message) from e
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def reconnect(self) -> None:
        with self._mutex:
            with suppress(Exception):
                self._conn.close()
            self._tx = None
            self._conn = self._connect(())

    def _cursor(self) -> Any:
        return self._conn.cursor()

    def _begin(self) -> None:
        self._tx = self._conn.transaction()
        self._tx.__enter__()

    def _commit(self) -> None:
        tx, self._tx = self._tx, None
        tx.__exit__(None, None, None)

    def _rollback(self) -> None:
        tx, self._tx = self._tx, None
        if tx is not None:
            tx.__exit__(StoreError, StoreError("rollback"), None)

    def close(self) -> None:
        with self._mutex:
            self._conn.close()

    def _translate(self, e: BaseException) -> StoreError | None:
        if isinstance(e, self._psycopg.Error) and _connection_lost(e, self._psycopg, self._conn):
            # The server went away (stopped, restarted, the network): worth another connection.
            return StoreUnavailable(f"store {self.url.display}: {_pg_message(e)}")
        if isinstance(e, self._psycopg.Error):
            return StoreError(f"store {self.url.display}: {_pg_message(e)}")
        return None


def _import_psycopg() -> Any:
    try:
        import psycopg
    except ImportError as e:
        raise StoreError("a postgresql:// store needs psycopg 3: pip install 'driftctl[postgres]'") from e
    return psycopg


# SQLSTATEs of a server that went away: class 08 (connection exception), admin and crash shutdown,
# "cannot connect now" (starting up or shutting down).
_GONE_STATES = ("57P01", "57P02", "57P03")


def _connection_lost(e: Any, psycopg: Any, conn: Any) -> bool:
    if isinstance(e, psycopg.InterfaceError) or getattr(conn, "closed", False):
        return True
    if not isinstance(e, psycopg.OperationalError):
        return False
    state = getattr(e, "sqlstate", None)
    # No SQLSTATE: the client lost the socket (server killed, network cut) before any answer.
    return state is None or state.startswith("08") or state in _GONE_STATES


# A server that answers FATAL at connect refuses on purpose (no such database, authentication), unless
# it says it is in the middle of starting or stopping.
_PASSING = ("starting up", "shutting down", "in recovery mode", "too many clients", "not yet accepting")


def _server_away(e: Any, psycopg: Any) -> bool:
    """A failed connect worth trying again: no server answered, or it is starting or stopping.

    libpq gives no SQLSTATE for a failed connect, only its message."""
    if not isinstance(e, psycopg.OperationalError):
        return False
    state = getattr(e, "sqlstate", None)
    if state is not None:
        return state.startswith("08") or state in _GONE_STATES or state == "53300"
    text = str(e)
    return "FATAL:" not in text or any(p in text for p in _PASSING)


def _pg_message(e: Any) -> str:
    # Only the primary message: DETAIL lines quote the values of the failing row.
    diag = getattr(e, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    if primary:
        return str(primary)
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def connect(url: str | os.PathLike[str]) -> Database:
    parsed = parse_url(url)
    if parsed.dialect == "postgresql":
        return PostgresDatabase(parsed)
    return SQLiteDatabase(parsed)
