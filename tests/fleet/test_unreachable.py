"""Black-holed hosts: each costs one connect timeout (the whole budget, retries included), not three.

Three ways a host can be a black hole, side by side with working fleet hosts in one inventory:
- ``mute``: a TCP listener of the test's own on 127.0.0.1 that accepts and never says a word (no SSH
  banner ever arrives);
- ``dropped``: a loopback port whose SYNs an nftables rule (a table of the test's own) drops, so the
  TCP connect itself never completes;
- a fresh fleet host frozen with ``podman pause``.

Wall time is not asserted (see bench/bench_unreachable.py for the numbers); the listener counts the
connections it was given instead: one attempt, not three.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from e2ehelp import driftctl, write_inventory

from driftctl.errors import ExitCode

pytestmark = pytest.mark.slow


class MuteServer:
    """Accepts TCP connections on loopback and never answers; counts them."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port: int = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.accepted:
            c.close()


@pytest.fixture
def mute() -> Iterator[MuteServer]:
    server = MuteServer()
    yield server
    server.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def dropped_port() -> Iterator[int]:
    """A loopback port whose incoming SYNs are dropped by a nftables table of this test's own."""
    nft = shutil.which("nft")
    if nft is None:
        pytest.fail("this test needs nft (apt-get install -y nftables)")
    port = _free_port()
    table = f"driftctl_test_{os.getpid()}_{port}"
    rules = (
        f"table inet {table} {{\n  chain input {{\n    type filter hook input priority -10; policy accept;\n"
        f"    ip daddr 127.0.0.1 tcp dport {port} drop\n  }}\n}}\n"
    )
    subprocess.run([nft, "-f", "-"], input=rules, text=True, check=True)
    try:
        yield port
    finally:
        subprocess.run([nft, "delete", "table", "inet", table], check=False)


@pytest.fixture
def paused(fresh_host: Any) -> Iterator[Any]:
    subprocess.run(["podman", "pause", fresh_host.container], check=True, capture_output=True)
    try:
        yield fresh_host
    finally:
        subprocess.run(["podman", "unpause", fresh_host.container], check=False, capture_output=True)


def fake(name: str, port: int, like: Any) -> Any:
    return SimpleNamespace(name=name, address="127.0.0.1", port=port, key_file=like.key_file,
                           known_hosts=like.known_hosts)


def test_black_holed_hosts_are_unreachable_within_one_timeout_and_the_others_succeed(
    fleet: Any, mute: MuteServer, dropped_port: int, paused: Any, tmp_path: Path
) -> None:
    good = list(fleet.hosts)
    holes = [fake("mute", mute.port, good[0]), fake("dropped", dropped_port, good[0]), paused]
    inv = write_inventory(tmp_path / "inv", good + holes)
    r = driftctl("facts", inv, "--connect-timeout", "3", state_dir=tmp_path / "state")
    assert r.rc & ExitCode.UNREACHABLE, r.output
    assert r.rc == ExitCode.UNREACHABLE, r.output  # nothing else went wrong
    lines = r.stdout.splitlines()
    for fh in good:
        [row] = [ln for ln in lines if ln.split("│")[0].strip() == fh.name]
        assert row.split("│")[1].strip() == "ok", r.output
    for h in holes:
        [reason] = [ln for ln in lines if ln.startswith(f"{h.name}: unreachable: ")]
        assert "connect timeout (3s)" in reason, reason
    assert f"{len(good) + 3} host(s): {len(good)} ok, 3 unreachable" in r.stdout
    # the silent server was tried once: a timeout spends the whole budget, so there is no retry
    assert len(mute.accepted) == 1, len(mute.accepted)



def test_an_input_error_ends_the_run_at_once_while_hosts_connect_and_no_host_is_touched(
    fleet: Any, mute: MuteServer, dropped_port: int, tmp_path: Path
) -> None:
    """Catalogs are rendered while the hosts connect; one host's template error ends the run with that
    error and exit 1, without waiting for black holes (connect timeout 600 s) and with no host's work
    done (the reachable host ran no agent: its agent cache is never even created)."""
    good = fleet.hosts[0]
    good.sh("rm -rf /var/cache/driftctl")
    holes = [fake("mute", mute.port, good), fake("dropped", dropped_port, good)]
    inv = write_inventory(tmp_path / "inv", [good, *holes], host_vars={"dropped": "broken: true\n"})
    site = tmp_path / "manifests"
    (site / "roles" / "r" / "templates").mkdir(parents=True)
    (site / "site.yaml").write_text("- hosts: all\n  roles: [r]\n")
    (site / "roles" / "r" / "templates" / "t.j2").write_text(
        "{% for i in range(300) %}line {{ i }}\n{% endfor %}{{ nothing.here if broken is defined else 'ok' }}\n")
    (site / "roles" / "r" / "resources.yaml").write_text(
        "resources:\n" + "".join(f"  - file: /tmp/t{i}\n    template: t.j2\n" for i in range(50)))
    for command in ("plan", "apply", "drift"):
        r = driftctl(command, inv, "-m", site, "--connect-timeout", "600", state_dir=tmp_path / "state", timeout=120)
        assert r.rc == ExitCode.INPUT, r.output
        assert "t.j2" in r.output and "nothing" in r.output, r.output
        assert "unreachable" not in r.output, r.output
        assert good.sh("test -e /var/cache/driftctl").rc == 1, command
