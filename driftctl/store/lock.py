"""Run locks: two drift runs at once, or a drift run during an apply, never interleave their writes.

    with lock(store, "inventory/prod", holder_info("drift inventory/prod"), wait=None) as held:
        ...                      # held.recovered is the dead holder whose stale lock was taken over

``lock(target, name, holder, wait)``:

- ``target`` a Store on PostgreSQL -> a session-level advisory lock (key = sha256 of the name) on a
  connection of its own, plus a row in the ``locks`` table naming the holder. The server drops the
  lock when the holder's connection dies.
- ``target`` a Store on SQLite, or a state directory -> an ``fcntl.flock`` on
  ``<state_dir>/locks/<name>.lock``, the holder written in the file as JSON. The kernel drops the lock
  when the holder dies, unless a child that inherited the descriptor outlives it.
- ``wait=None`` -> LockedError (exit 75) naming the holder at once; a number -> retry for that many
  seconds first.
- Stale locks: a holder record left behind (the holder died without releasing) is taken over; a lock
  still held for a holder whose pid is dead on this machine (an orphan inherited it, or a PostgreSQL
  session outlived its client) is broken. Either way ``held.recovered`` names the dead holder and a
  warning is logged on ``driftctl.store.lock`` (the core never prints: the CLI shows every ``driftctl.*``
  warning on stderr, driftctl/cli/ui.py ``core_warnings``).
- PostgreSQL going away: connecting is retried for a few seconds, then StoreUnavailable (exit 32).
  A server that stops or restarts while the lock is held ends the lock with the session; releasing
  then never raises: the holder row is removed through a new connection if the server is back (only
  if it still names this holder), else the next run takes the row over as a stale record.

Names: the engine locks ``inventory:<inventory_key>`` for apply and drift alike, so a drift run never
reads a host halfway through an apply.
"""

from __future__ import annotations

import errno
import fcntl
import getpass
import json
import logging
import os
import re
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftctl.errors import LockedError, StoreError

if TYPE_CHECKING:
    from driftctl.store import Store

log = logging.getLogger(__name__)

POLL = 0.2  # seconds between attempts while waiting


@dataclass
class Held:
    """A lock this process holds."""

    name: str
    holder: dict[str, Any]
    where: str  # the lock file, or "postgresql advisory lock <key>"
    recovered: dict[str, Any] | None = None  # the dead holder whose stale lock was taken over

    @property
    def recovered_from(self) -> str | None:
        return describe(self.recovered) if self.recovered else None


def holder_info(command: str, **extra: Any) -> dict[str, Any]:
    """Who holds a lock: this process, on this machine, doing ``command``."""
    pid = os.getpid()
    info: dict[str, Any] = {
        "pid": pid,
        "hostname": socket.gethostname(),
        "user": _user(),
        "command": command,
        "started": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "pid_start": _proc_start(pid),
    }
    info.update(extra)
    return info


def describe(holder: dict[str, Any] | None) -> str:
    """``pid 4242 on ctl1 (alice: driftctl drift inventory/prod) since 2026-11-28T07:00:00Z``."""
    if not holder:
        return "an unknown holder"
    who = f"pid {holder.get('pid', '?')} on {holder.get('hostname', '?')}"
    what = holder.get("command")
    user = holder.get("user")
    if what or user:
        who += f" ({user + ': ' if user else ''}{what or 'unknown command'})"
    started = holder.get("started")
    if isinstance(started, (int, float)) and not isinstance(started, bool):
        started = datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    if started:
        who += f" since {started}"
    return who


@contextmanager
def lock(
    target: Store | str | os.PathLike[str],
    name: str,
    holder: dict[str, Any] | None = None,
    wait: float | None = None,
) -> Iterator[Held]:
    """Hold the lock ``name`` for the duration of the ``with`` block (see the module docstring)."""
    record = dict(holder or {})
    for key, value in holder_info(str(record.get("command") or "driftctl")).items():
        record.setdefault(key, value)
    store = None if isinstance(target, (str, os.PathLike)) else target
    if store is not None and store.dialect == "postgresql":
        with _pg_lock(store, name, record, wait) as held:
            yield held
        return
    state_dir = Path(target) if store is None else store.state_dir  # type: ignore[arg-type]
    assert state_dir is not None
    with _file_lock(state_dir, name, record, wait) as held:
        yield held


# -- processes ---------------------------------------------------------------------------------------


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


def _proc_stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    return text[text.rfind(")") + 2:].split()


def _proc_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot: tells a reused pid from the original."""
    fields = _proc_stat(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def _alive(pid: int, start: int | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    fields = _proc_stat(pid)
    if fields is None:
        return True  # no /proc: trust kill(0)
    if fields[0] in ("Z", "X"):
        return False  # exited, not yet reaped
    return start is None or len(fields) <= 19 or int(fields[19]) == start


def _dead_here(holder: dict[str, Any] | None) -> bool:
    """The holder ran on this machine and its process is gone."""
    if not holder or holder.get("hostname") != socket.gethostname():
        return False
    try:
        pid = int(holder["pid"])
    except (KeyError, TypeError, ValueError):
        return False
    start = holder.get("pid_start")
    return not _alive(pid, int(start) if isinstance(start, int) else None)


def _locked(name: str, holder: dict[str, Any] | None) -> LockedError:
    return LockedError(f"lock {name!r}", describe(holder))


def _recovered(name: str, stale: dict[str, Any]) -> None:
    """Tell whoever runs driftctl that a dead run's lock was taken over (a warning, shown by the UI)."""
    log.warning("recovered stale lock %r from %s (no longer running)", name, describe(stale))


# -- lock files --------------------------------------------------------------------------------------


def _lock_path(state_dir: Path, name: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "lock"
    return state_dir / "locks" / f"{safe}.lock"


def _read(fd: int) -> dict[str, Any] | None:
    data = os.pread(fd, 65536, 0)
    if not data.strip():
        return None
    try:
        value = json.loads(data)
    except ValueError:
        return {"command": "unreadable lock file"}
    return value if isinstance(value, dict) else None


def _same_holder(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    keys = ("pid", "hostname", "started", "pid_start")
    return bool(a and b) and all(a.get(k) == b.get(k) for k in keys)  # type: ignore[union-attr]


def _break_stale(path: Path, stale: dict[str, Any]) -> bool:
    """Unlink a lock file whose lock an orphan keeps but whose holder is dead; True if done.

    Under a guard lock, and only if the file still names that dead holder, so two processes
    recovering at once cannot unlink each other's fresh lock.
    """
    guard = os.open(f"{path}.guard", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(guard, fcntl.LOCK_EX)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return True  # someone else already broke it
        try:
            if not _same_holder(_read(fd), stale):
                return False
            os.unlink(path)
            return True
        finally:
            os.close(fd)
    finally:
        os.close(guard)


@contextmanager
def _file_lock(state_dir: Path, name: str, holder: dict[str, Any], wait: float | None) -> Iterator[Held]:
    path = _lock_path(state_dir, name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        raise StoreError(f"cannot create lock directory {path.parent}: {e.strerror or e}") from e
    deadline = None if wait is None else time.monotonic() + max(0.0, wait)
    recovered: dict[str, Any] | None = None
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise StoreError(f"cannot open lock file {path}: {e.strerror or e}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            current = _read(fd)
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StoreError(f"cannot lock {path}: {e.strerror}") from e
            if _dead_here(current) and _break_stale(path, current or {}):
                recovered = current
                continue
            if deadline is None or time.monotonic() >= deadline:
                raise _locked(name, current) from None
            time.sleep(min(POLL, max(0.0, deadline - time.monotonic())))
            continue
        try:
            same_file = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same_file = False
        if not same_file:  # broken as stale while we waited for it: lock the file now at the path
            os.close(fd)
            continue
        break
    try:
        left = _read(fd)
        if left is not None and recovered is None:
            recovered = left  # the holder died without releasing: the kernel freed the lock, not it
        data = json.dumps(holder, sort_keys=True).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)
        if recovered is not None:
            _recovered(name, recovered)
        yield Held(name, holder, str(path), recovered)
    finally:
        # Empty the file before unlocking: a record found in an unlocked file means a crash.
        with suppress(OSError):
            os.ftruncate(fd, 0)
        with suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# -- PostgreSQL advisory locks -------------------------------------------------------------------


def _split_key(key: int) -> tuple[int, int]:
    """pg_locks shows a bigint advisory key as classid (high 32 bits) and objid (low 32 bits)."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    return unsigned >> 32, unsigned & 0xFFFFFFFF


def _pg_connect(store: Store, psycopg: Any) -> Any:
    """The lock's own connection; a server that is away is tried again for a few seconds."""
    from psycopg.rows import dict_row

    from driftctl.store.db import RETRY_DELAYS, StoreUnavailable, _pg_message, _server_away

    for delay in (*RETRY_DELAYS, None):
        try:
            return psycopg.connect(store.database.url.target, autocommit=True, row_factory=dict_row)
        except psycopg.Error as e:
            message = f"cannot connect to store {store.url} to lock: {_pg_message(e)}"
            if not _server_away(e, psycopg):
                raise StoreError(message) from e
            if delay is None:
                raise StoreUnavailable(message) from e
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _pg_release(store: Store, psycopg: Any, conn: Any, name: str, key: int, holder: dict[str, Any]) -> None:
    """Release, never raising: a lock must not turn a finished run into an error.

    If the server went away during the run (stopped, restarted), the session and with it the advisory
    lock are gone already; only the holder row may be left. It is removed through a new connection when
    the server is back, and only if it is still ours; if the server is still away, the next run finds
    the row without a lock behind it and takes over (a warning names this run as the stale holder).
    """
    mine = json.dumps(holder, sort_keys=True)
    try:
        conn.execute("DELETE FROM locks WHERE name = %s AND holder = %s", (name, mine))
        conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        return
    except psycopg.Error:
        pass
    with suppress(psycopg.Error), \
            psycopg.connect(store.database.url.target, autocommit=True, connect_timeout=2) as again:
        again.execute("DELETE FROM locks WHERE name = %s AND holder = %s", (name, mine))


@contextmanager
def _pg_lock(store: Store, name: str, holder: dict[str, Any], wait: float | None) -> Iterator[Held]:
    from driftctl.store.db import StoreUnavailable, _connection_lost, _import_psycopg, _pg_message
    from driftctl.store.ingest import advisory_key

    psycopg = _import_psycopg()
    key = advisory_key("lock:" + name)
    classid, objid = _split_key(key)
    # A connection of its own: the lock lives exactly as long as this session.
    conn = _pg_connect(store, psycopg)
    try:
        try:
            held = _pg_acquire(conn, name, key, classid, objid, holder, wait)
        except psycopg.Error as e:
            kind = StoreUnavailable if _connection_lost(e, psycopg, conn) else StoreError
            raise kind(f"lock {name!r} on {store.url}: {_pg_message(e)}") from e
        try:
            yield held
        finally:
            _pg_release(store, psycopg, conn, name, key, holder)
    finally:
        with suppress(Exception):
            conn.close()


def _pg_acquire(conn: Any, name: str, key: int, classid: int, objid: int, holder: dict[str, Any],
                wait: float | None) -> Held:
    deadline = None if wait is None else time.monotonic() + max(0.0, wait)
    recovered: dict[str, Any] | None = None
    while True:
        if conn.execute("SELECT pg_try_advisory_lock(%s) AS got", (key,)).fetchone()["got"]:
            break
        row = conn.execute("SELECT holder FROM locks WHERE name = %s", (name,)).fetchone()
        current = json.loads(row["holder"]) if row else None
        backend = current.get("backend_pid") if current else None
        if backend and _dead_here(current):
            # Its client is gone but the session lingers: end the session that holds our key.
            ended = conn.execute(
                "SELECT pg_terminate_backend(pid) AS ended FROM pg_locks WHERE locktype = 'advisory'"
                " AND granted AND classid::bigint = %s AND objid::bigint = %s AND objsubid = 1"
                " AND pid = %s AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                (classid, objid, backend),
            ).fetchall()
            if any(r["ended"] for r in ended):
                recovered = current
                time.sleep(0.05)
                continue
        if deadline is None or time.monotonic() >= deadline:
            raise _locked(name, current)
        time.sleep(min(POLL, max(0.0, deadline - time.monotonic())))
    row = conn.execute("SELECT holder FROM locks WHERE name = %s", (name,)).fetchone()
    if row is not None and recovered is None:
        recovered = json.loads(row["holder"])  # its holder died (or lost the server) without releasing
    holder["backend_pid"] = conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"]
    conn.execute(
        "INSERT INTO locks (name, holder, acquired) VALUES (%s, %s, %s)"
        " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, acquired = excluded.acquired",
        (name, json.dumps(holder, sort_keys=True), time.time()),
    )
    if recovered is not None:
        _recovered(name, recovered)
    return Held(name, holder, f"postgresql advisory lock {key}", recovered)
