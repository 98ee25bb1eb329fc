"""Opening stores: URLs, creation, versioned migrations, refusing a newer schema; on both backends."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from driftctl.errors import StoreError
from driftctl.store import open_store, parse_url
from driftctl.store.db import connect
from driftctl.store.migrations import LATEST, MIGRATIONS, Migration, migrate, version


def _raw_execute(url: str, sql: str) -> None:
    """Change a store behind driftctl's back, with the database's own client library."""
    if url.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql)
    else:
        with sqlite3.connect(url) as conn:
            conn.execute(sql)


def test_urls() -> None:
    assert parse_url("/var/lib/driftctl/state.sqlite").dialect == "sqlite"
    assert parse_url("sqlite:///var/lib/x.sqlite").target == "/var/lib/x.sqlite"
    assert parse_url("sqlite://rel/x.sqlite").target == "rel/x.sqlite"
    assert parse_url("~/x.sqlite").target == str(Path.home() / "x.sqlite")
    pg = parse_url("postgresql://drift:hunter2@db.example:5432/driftctl")
    assert pg.dialect == "postgresql"
    assert "hunter2" not in pg.display and "drift:***@db.example" in pg.display
    assert parse_url("postgres://db/x").dialect == "postgresql"
    with pytest.raises(StoreError, match="unknown store URL scheme"):
        parse_url("mysql://db/x")


def test_migrates_an_empty_store_and_reopens(store_url: str) -> None:
    with open_store(store_url) as store:
        assert store.schema_version == LATEST
        assert store.runs("inventory/prod") == []
        store.add_ignore("inventory/prod", "*", "file:/etc/motd", "banner managed elsewhere", "2999-01-01", "alice")
    with open_store(store_url) as store:  # reopening migrates nothing and keeps the data
        assert store.schema_version == LATEST
        assert [r.target for r in store.ignores("inventory/prod")] == ["file:/etc/motd"]
        assert version(store.database) == LATEST
        with store.database.read() as cur:
            rows = cur.all("SELECT version FROM schema_version ORDER BY version")
        assert [r["version"] for r in rows] == [m.version for m in MIGRATIONS]


def test_sqlite_store_is_created_with_its_directory_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "driftctl.sqlite"
    with open_store(f"sqlite://{path}") as store:
        assert store.state_dir == path.parent
    assert path.is_file()
    assert path.stat().st_mode & 0o777 == 0o600  # observed states describe the fleet: owner only
    assert path.parent.stat().st_mode & 0o777 == 0o700
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_newer_schema_is_refused_and_left_alone(store_url: str) -> None:
    open_store(store_url).close()
    _raw_execute(store_url, "INSERT INTO schema_version (version, applied, description) VALUES (99, 0, 'future')")
    with pytest.raises(StoreError, match=rf"schema version 99, newer than this driftctl knows \({LATEST}\)"):
        open_store(store_url)
    db = connect(store_url)
    try:
        assert version(db) == 99
    finally:
        db.close()


def test_pending_migrations_apply_in_order_from_an_older_version(store_url: str) -> None:
    extra = Migration(LATEST + 1, "a test table", ("CREATE TABLE extra (id {id}, note TEXT NOT NULL)",))
    db = connect(store_url)
    try:
        assert version(db) == 0
        assert migrate(db, MIGRATIONS) == LATEST
        assert migrate(db, (*MIGRATIONS, extra)) == LATEST + 1
        assert version(db) == LATEST + 1
        with db.transaction() as cur:
            cur.execute("INSERT INTO extra (note) VALUES (?)", ("x",))
            assert cur.scalar("SELECT COUNT(*) AS n FROM extra") == 1
        assert migrate(db, (*MIGRATIONS, extra)) == LATEST + 1  # idempotent
    finally:
        db.close()


def test_a_failing_migration_applies_nothing(store_url: str) -> None:
    broken = (
        Migration(1, "fine", ("CREATE TABLE first (id INTEGER)",)),
        Migration(2, "broken", ("CREATE TABLE second (id INTEGER)", "THIS IS NOT SQL")),
    )
    db = connect(store_url)
    try:
        with pytest.raises(StoreError):
            migrate(db, broken)
        assert version(db) == 0  # not even schema_version survived: one transaction
        with pytest.raises(StoreError), db.read() as cur:
            cur.execute("SELECT * FROM first")
        assert migrate(db, MIGRATIONS) == LATEST  # and the real migrations still apply
    finally:
        db.close()


def test_concurrent_first_opens_migrate_once(store_url: str) -> None:
    # Four controllers open the same new store at the same moment.
    script = "import sys; from driftctl.store import open_store; open_store(sys.argv[1]).close()"
    procs = [subprocess.Popen([sys.executable, "-c", script, store_url], stderr=subprocess.PIPE) for _ in range(4)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    with open_store(store_url) as store, store.database.read() as cur:
        assert cur.scalar("SELECT COUNT(*) AS n FROM schema_version") == len(MIGRATIONS)


def test_unreachable_postgresql_is_a_store_error_without_the_password(tmp_path: Path) -> None:
    url = f"postgresql://drift:hunter2@/driftctl?host={tmp_path}&port=1"
    with pytest.raises(StoreError) as caught:
        open_store(url)
    assert "cannot connect" in str(caught.value)
    assert "hunter2" not in str(caught.value)
