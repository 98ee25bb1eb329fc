"""Unit-test fixtures: a throwaway PostgreSQL cluster (once per session) and store URLs per backend.

The cluster is a real PostgreSQL server: initdb as the ``postgres`` user (through runuser when the
tests run as root), listening only on a Unix socket in its own temporary directory. If the server
binaries are missing, every postgres test FAILS (a store test that silently skips proves nothing);
set DRIFTCTL_SKIP_POSTGRES=1 to skip them on purpose.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_PORT = 54329  # only names the socket file: the cluster listens on no TCP port


def _pg_bindir() -> Path | None:
    """DRIFTCTL_PG_BINDIR if set (and only it), else the newest /usr/lib/postgresql/*/bin, else PATH."""
    explicit = os.environ.get("DRIFTCTL_PG_BINDIR")
    candidates = [explicit] if explicit else sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for c in candidates:
        if (Path(c) / "initdb").is_file() and (Path(c) / "pg_ctl").is_file():
            return Path(c)
    if explicit:
        return None
    found = shutil.which("pg_ctl")
    return Path(found).parent if found and (Path(found).parent / "initdb").is_file() else None


@dataclass
class PgCluster:
    socket_dir: Path
    port: int
    user: str

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@/{dbname}?host={self.socket_dir}&port={self.port}"


def _as_postgres(argv: list[str]) -> list[str]:
    # initdb refuses to run as root; as another user it runs as that user.
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    if os.environ.get("DRIFTCTL_SKIP_POSTGRES") == "1":
        pytest.skip("DRIFTCTL_SKIP_POSTGRES=1")
    bindir = _pg_bindir()
    if bindir is None:
        pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql, "
                    "or set DRIFTCTL_SKIP_POSTGRES=1 to skip the postgres tests", pytrace=False)
    base = Path(tempfile.mkdtemp(prefix="driftctl-store-pg-"))
    base.chmod(0o755)
    data = base / "data"
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    user = "postgres" if os.geteuid() == 0 else os.environ.get("USER", "postgres")
    log = base / "server.log"
    try:
        subprocess.run(
            _as_postgres([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", user, "--no-sync",
                          "-E", "UTF8", "--locale=C"]),
            check=True, capture_output=True, timeout=120,
        )
        options = f"-k {base} -p {PG_PORT} -c listen_addresses='' -c fsync=off -c max_connections=100"
        subprocess.run(
            _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w",
                          "-t", "60", "start"]),
            check=True, capture_output=True, timeout=120,
        )
    except subprocess.CalledProcessError as e:
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {e.stderr.decode(errors='replace')}\n{tail}", pytrace=False)
    try:
        yield PgCluster(base, PG_PORT, user)
    finally:
        subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                       capture_output=True, timeout=120, check=False)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> Iterator[str]:
    """A new, empty database on the session's cluster; dropped afterwards."""
    import psycopg

    name = "driftctl_store_" + uuid.uuid4().hex[:12]
    with psycopg.connect(pg_cluster.url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield pg_cluster.url(name)
    finally:
        with psycopg.connect(pg_cluster.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a new, empty store on each backend."""
    if request.param == "sqlite":
        return str(tmp_path / "state" / "driftctl.sqlite")
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs (a full disk, made to happen); needs root to mount."""
    if os.geteuid() != 0:
        pytest.skip("needs root: mount a tmpfs")
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
