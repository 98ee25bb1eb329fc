"""LocalTransport and PodmanTransport error paths, and facts gathering through the local transport.

Real processes on the controller; no host needed.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import pytest

from driftctl import ship as agent
from driftctl.errors import AuthError, CommandTimeout, ConnectError, InventoryError
from driftctl.facts import gather
from driftctl.model import ConnectionSpec, Host
from driftctl.transport import TransportOptions, get_transport
from driftctl.transport.container import PodmanTransport
from driftctl.transport.local import LocalTransport


def local_host(name: str = "ctl", **spec: object) -> Host:
    return Host(name, {}, (), ConnectionSpec(address="localhost", transport="local", **spec))  # type: ignore[arg-type]


def test_get_transport_picks_by_name() -> None:
    assert isinstance(get_transport(local_host()), LocalTransport)
    podman_host = Host("c", {}, (), ConnectionSpec(address="x", transport="podman"))
    assert isinstance(get_transport(podman_host), PodmanTransport)
    with pytest.raises(InventoryError, match="unknown transport 'telnet'"):
        get_transport(Host("t", {}, (), ConnectionSpec(address="x", transport="telnet")))


def test_argv_is_not_interpreted_by_a_shell(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("still here")
    with get_transport(local_host()) as t:
        r = t.run(["echo", f"$HOME; rm {victim}", "*"])
    assert r.ok
    assert r.stdout == f"$HOME; rm {victim} *\n".encode()
    assert victim.read_text() == "still here"


def test_exit_code_stderr_and_missing_command() -> None:
    with get_transport(local_host()) as t:
        r = t.run(["sh", "-c", "echo oops >&2; exit 3"])
        missing = t.run(["driftctl-no-such-command"])
    assert (r.rc, r.stdout, r.stderr, r.ok) == (3, b"", b"oops\n", False)
    assert missing.rc == 127
    assert "driftctl-no-such-command" in missing.stderr_text


def test_megabytes_both_ways_do_not_deadlock() -> None:
    """stdin is written while stdout and stderr are read: a pipe-buffer deadlock would hang here."""
    payload = os.urandom(6 * 1024 * 1024)
    script = (
        "import sys; d = sys.stdin.buffer.read(); sys.stderr.buffer.write(d[::-1]); sys.stdout.buffer.write(d)"
    )
    with get_transport(local_host()) as t:
        r = t.run(["python3", "-c", script], stdin=payload, timeout=120)
    assert r.rc == 0
    assert r.stdout == payload
    assert r.stderr == payload[::-1]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    host = local_host("slowbox")
    with get_transport(host) as t, pytest.raises(CommandTimeout) as caught:
        t.run(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; sleep 60"], timeout=1)
    assert caught.value.host == "slowbox"
    assert "timed out after 1s" in str(caught.value)
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the background child of a timed-out command survived"


def test_default_timeout_comes_from_the_host() -> None:
    with get_transport(local_host(command_timeout=0.5)) as t, pytest.raises(CommandTimeout):
        t.run(["sleep", "30"])


def test_become_to_the_current_user_needs_no_sudo() -> None:
    import getpass

    host = local_host(become=True, become_user=getpass.getuser())
    with get_transport(host) as t:
        r = t.run(["id", "-un"])
    assert r.stdout_text.strip() == getpass.getuser()


def test_become_without_sudo_is_an_auth_error_naming_the_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # An empty PATH directory: the controller has no sudo reachable, as on a minimal machine.
    monkeypatch.setenv("PATH", str(tmp_path))
    host = local_host("nosudo", become=True, become_user="nobody")
    with get_transport(host) as t, pytest.raises(AuthError) as caught:
        t.run(["id", "-un"])
    assert caught.value.host == "nosudo"
    assert "sudo" in caught.value.message


def test_agent_round_trip_on_the_controller() -> None:
    with get_transport(local_host()) as t:
        facts = agent.call(t, {"op": "facts"})["facts"]
    assert facts["kernel"] == platform.release()
    assert facts["architecture"] == platform.machine()
    assert facts["hostname"] == platform.node()
    assert facts["uid"] == os.getuid()
    os_release = dict(
        line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line
    )
    assert facts["distribution"] == os_release["ID"].strip('"')


def test_modules_planted_in_the_working_directory_are_never_imported_by_the_agent(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A root run started in a directory others can write (/tmp, a shared checkout) runs the agent with
    # that working directory: `python3 -c` would put it first on sys.path, and a planted zlib.py or
    # json.py would run as root. The stdlib modules the launcher and the agent import are all planted.
    marker = tmp_path / "ran"
    planted = tmp_path / "shared"
    planted.mkdir()
    for name in ("zlib", "marshal", "stat", "json", "hashlib", "re", "subprocess", "contextlib", "socket",
                 "signal", "threading", "select", "fcntl", "binascii", "pwd", "grp", "time", "sitecustomize"):
        (planted / f"{name}.py").write_text(f"open({str(marker)!r}, 'a').write({name!r} + ' ')\n")
    monkeypatch.chdir(planted)
    monkeypatch.setenv("PYTHONPATH", str(planted))  # and what an environment variable would add
    with get_transport(local_host()) as t:
        facts = agent.call(t, {"op": "facts"})["facts"]
    assert facts["uid"] == os.getuid()
    assert not marker.exists(), f"planted modules ran: {marker.read_text()}"


def test_podman_transport_missing_container_is_unreachable() -> None:
    host = Host("ghost", {}, (), ConnectionSpec(address="driftctl-tr-does-not-exist", transport="podman"))
    with pytest.raises(ConnectError) as caught:
        get_transport(host).connect()
    assert caught.value.host == "ghost"
    assert "driftctl-tr-does-not-exist" in caught.value.message


def test_gather_reports_every_host_even_when_one_is_unreachable() -> None:
    hosts = [
        local_host("ctl1"),
        Host("ghost", {}, (), ConnectionSpec(address="driftctl-tr-does-not-exist", transport="podman")),
        local_host("ctl2"),
    ]
    results = gather(hosts, TransportOptions(), parallel=3)
    assert [r.host for r in results] == ["ctl1", "ghost", "ctl2"]
    assert [r.status for r in results] == ["ok", "unreachable", "ok"]
    assert results[0].facts["kernel"] == platform.release()
    assert results[0].round_trips == 1
    assert results[1].error and "driftctl-tr-does-not-exist" in results[1].error
    assert results[1].exit_code == 8


def test_gather_raises_input_errors_before_contacting_any_host() -> None:
    hosts = [local_host("ctl1"), Host("bad", {}, (), ConnectionSpec(address="x", transport="rsh"))]
    with pytest.raises(InventoryError):
        gather(hosts, TransportOptions())
