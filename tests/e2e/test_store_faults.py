"""The store's PostgreSQL server stops or restarts while driftctl runs (issue 8 §7), end to end.

A real PostgreSQL cluster of this module's own (initdb/pg_ctl as the postgres user, a Unix socket only,
as tests/unit/conftest.py starts one) is stopped with ``pg_ctl stop -m fast`` while a drift run is in
flight. The run is held at a known point without timing: the host is this machine (the local
transport), and an exec's ``unless`` guard, which the drift probe runs, waits for a file the test
creates after it has stopped the server.

Wanted: a clear error naming the store (no password) and where the results were kept, no traceback,
exit bit 32; the results in the spool; the next run (server back) stores them first, and history
shows both runs. A restart between the run's first and last store access is invisible. A server down
before the run starts: the run refuses to start (exit 32), as Terraform refuses without its backend.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2ehelp import REPO, driftctl

from driftctl.store import open_store

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.applies_here]

PORT = 54331  # names the socket file only: no TCP


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


class PgServer:
    """A throwaway cluster this test may stop and start at will."""

    def __init__(self, base: Path) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
        bindir = Path(os.environ.get("DRIFTCTL_PG_BINDIR") or (found[0] if found else ""))
        if not (bindir / "pg_ctl").is_file():
            pytest.fail("PostgreSQL server binaries not found (apt-get install postgresql)", pytrace=False)
        self.bin, self.base, self.data = bindir, base, base / "data"
        self.user = "postgres" if os.geteuid() == 0 else os.environ.get("USER", "postgres")
        base.chmod(0o755)
        if os.geteuid() == 0:
            shutil.chown(base, "postgres", "postgres")
        subprocess.run(_as_postgres([str(bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", self.user,
                                     "--no-sync", "-E", "UTF8", "--locale=C"]),
                       check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = f"-k {self.base} -p {PORT} -c listen_addresses='' -c fsync=off"
        subprocess.run(_as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options,
                                     "-l", str(self.base / "server.log"), "-w", "-t", "60", "start"]),
                       check=True, capture_output=True, timeout=120)

    def stop(self) -> None:
        subprocess.run(_as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]),
                       check=True, capture_output=True, timeout=120)

    def url(self, db: str, password: str | None = None) -> str:
        cred = f"{self.user}:{password}" if password else self.user
        return f"postgresql://{cred}@/{db}?host={self.base}&port={PORT}"

    def new_database(self) -> str:
        import psycopg

        name = "faults_" + uuid.uuid4().hex[:10]
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer]:
    base = Path(tempfile.mkdtemp(prefix="driftctl-faults-pg-"))
    server = PgServer(base)
    server.start()
    try:
        yield server
    finally:
        subprocess.run(_as_postgres([str(server.bin / "pg_ctl"), "-D", str(server.data), "-m", "immediate", "-w",
                                     "stop"]), capture_output=True, timeout=120, check=False)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def server(pg: PgServer) -> Iterator[PgServer]:
    """The module's server, running again after each test whatever the test did to it."""
    yield pg
    if subprocess.run(_as_postgres([str(pg.bin / "pg_ctl"), "-D", str(pg.data), "status"]),
                      capture_output=True, check=False).returncode != 0:
        pg.start()


class Scene:
    """This machine as the one host; a file under management; a gate in the drift probe."""

    def __init__(self, tmp: Path, store_url: str) -> None:
        self.target, self.gate, self.state = tmp / "target", tmp / "gate", tmp / "state"
        self.target.mkdir()
        self.gate.mkdir()
        self.inventory = tmp / "inv"
        self.inventory.mkdir()
        (self.inventory / "hosts.yaml").write_text("all:\n  hosts:\n    ctl:\n      driftctl_transport: local\n")
        self.manifests = tmp / "manifests"
        (self.manifests / "roles" / "r").mkdir(parents=True)
        (self.manifests / "site.yaml").write_text("- hosts: all\n  roles: [r]\n")
        wait = (f"touch {self.gate}/entered; while [ ! -e {self.gate}/go ]; do sleep 0.05; done; true")
        (self.manifests / "roles" / "r" / "resources.yaml").write_text(
            "resources:\n"
            f"  - file: {self.target}/motd\n"
            "    content: \"managed\\n\"\n"
            "    mode: \"0644\"\n"
            "  - exec: gate\n"
            "    command: [\"true\"]\n"
            f"    unless: [\"/bin/sh\", \"-c\", \"{wait}\"]\n"
        )
        self.url = store_url
        self.env = {"DRIFTCTL_STATE": store_url}

    def run(self, *args: str) -> tuple[int, str, str]:
        result = driftctl(*args, self.inventory, "-m", self.manifests, state_dir=self.state, env=self.env,
                          timeout=300)
        return result.rc, result.stdout, result.stderr

    def start(self, *args: str) -> subprocess.Popen[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTCTL_")}
        env.update({"DRIFTCTL_STATE_DIR": str(self.state), "NO_COLOR": "1", **self.env})
        return subprocess.Popen([sys.executable, "-m", "driftctl", *args, str(self.inventory), "-m",
                                 str(self.manifests)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)

    def open_gate(self) -> None:
        (self.gate / "go").touch()

    def close_gate(self) -> None:
        for name in ("go", "entered"):
            (self.gate / name).unlink(missing_ok=True)

    def wait_entered(self, proc: subprocess.Popen[str]) -> None:
        """Until the run is inside the probe (no timing asserted: it waits for the run, or its end)."""
        while not (self.gate / "entered").exists():
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"the run ended before the gate (rc {proc.returncode}): {out}\n{err}")
            time.sleep(0.05)

    def spooled(self) -> list[Path]:
        return sorted((self.state / "spool").glob("*.json.xz")) if (self.state / "spool").is_dir() else []

    def converge(self) -> None:
        self.open_gate()
        rc, out, err = self.run("apply")
        assert rc == 2, out + err
        self.close_gate()


def test_server_stopped_mid_run_keeps_the_results_and_the_next_run_stores_them(
        server: PgServer, tmp_path: Path) -> None:
    scene = Scene(tmp_path, server.url(server.new_database(), password="s3cret-pw"))
    scene.converge()
    (scene.target / "motd").write_text("edited by hand\n")  # drift for the run to find

    proc = scene.start("drift")
    scene.wait_entered(proc)
    server.stop()  # the run has read the store and holds its lock there; now the server is gone
    scene.open_gate()
    out, err = proc.communicate(timeout=300)

    assert proc.returncode == 2 | 32, out + err  # drift found, and the store failed
    assert "Traceback" not in out + err
    assert "s3cret-pw" not in out + err
    [kept] = scene.spooled()
    assert f"store postgresql://{server.user}:***@/" in err  # the store, named without its password
    assert str(kept) in err and "go into the store with the next run" in err
    assert kept.stat().st_mode & 0o777 == 0o600 and kept.parent.stat().st_mode & 0o777 == 0o700
    assert "file:" in out and "drift" in out  # the run's own report was shown all the same

    server.start()
    rc, out2, err2 = scene.run("drift")
    assert rc == 2, out2 + err2  # the drift is still there; nothing else is wrong (no stale lock: not 75)
    assert "Traceback" not in out2 + err2
    assert "kept in the spool" in err2
    assert scene.spooled() == []

    history = driftctl("history", scene.inventory, "--json", state_dir=scene.state, env=scene.env)
    assert history.rc == 0, history.output
    doc = history.json()
    [motd] = [e for e in doc["open_drift"] if e["subject"] == f"file:{scene.target}/motd"]
    assert motd["runs"] == 2  # both drift runs count: the spooled one first
    with open_store(scene.url) as store:
        drift_runs = store.runs(str(scene.inventory), command="drift")
        assert len(drift_runs) == 2
        found = [e for e in doc["events"] if e["kind"] == "drift-found"]
        assert [e["run_id"] for e in found] == [drift_runs[-1].id]  # found by the spooled (older) run
        assert drift_runs[-1].started < drift_runs[0].started


def test_server_restarted_during_a_run_is_invisible(server: PgServer, tmp_path: Path) -> None:
    scene = Scene(tmp_path, server.url(server.new_database()))
    scene.converge()
    proc = scene.start("drift")
    scene.wait_entered(proc)
    server.stop()
    server.start()  # between the run's reads (and lock) and its save
    scene.open_gate()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, out + err
    assert "Traceback" not in out + err
    assert scene.spooled() == []
    with open_store(scene.url) as store:
        assert len(store.runs(str(scene.inventory), command="drift")) == 1
    scene.close_gate()
    scene.open_gate()
    rc, out, err = scene.run("drift")  # and the lock it held did not outlive the restart
    assert rc == 0, out + err


def test_server_down_before_the_run_refuses_to_start(server: PgServer, tmp_path: Path) -> None:
    scene = Scene(tmp_path, server.url(server.new_database(), password="s3cret-pw"))
    scene.open_gate()
    server.stop()
    for command in ("drift", "apply"):
        rc, out, err = scene.run(command)
        assert rc == 32, out + err
        assert "Traceback" not in out + err and "s3cret-pw" not in out + err
        assert f"cannot connect to store postgresql://{server.user}:***@/" in err
        assert not (scene.target / "motd").exists()  # nothing ran: no host was changed
        assert scene.spooled() == []  # and there is nothing to keep
    rc, out, err = scene.run("drift")
    assert "nothing was run" in err


def test_apply_whose_store_stops_mid_run_keeps_the_converged_state(server: PgServer, tmp_path: Path) -> None:
    """An apply changes the host, then cannot save: its run (and the converged state drift needs) is
    spooled, exit 2|32; the next apply stores it first and finds the host in sync."""
    scene = Scene(tmp_path, server.url(server.new_database(), password="s3cret-pw"))
    scene.converge()
    (scene.target / "motd").write_text("edited by hand\n")
    proc = scene.start("apply")
    scene.wait_entered(proc)
    server.stop()
    scene.open_gate()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 | 32, out + err
    assert "Traceback" not in out + err and "s3cret-pw" not in out + err
    assert (scene.target / "motd").read_text() == "managed\n"  # the apply itself went through
    [kept] = scene.spooled()
    assert str(kept) in err

    server.start()
    rc, out2, err2 = scene.run("apply")
    assert rc == 0, out2 + err2
    assert "kept in the spool" in err2 and scene.spooled() == []
    with open_store(scene.url) as store:
        assert len(store.runs(str(scene.inventory), command="apply")) == 3
    rc, out3, err3 = scene.run("drift")
    assert rc == 0, out3 + err3  # the spooled apply's converged state is the reference now
