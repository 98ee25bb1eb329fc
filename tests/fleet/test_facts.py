"""Facts gathering on real hosts, checked against what testinfra (paramiko backend) sees on the same hosts."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from driftctl import ship as agent
from driftctl.errors import CommandTimeout
from driftctl.facts import gather
from driftctl.model import ConnectionSpec, Host, RunResult
from driftctl.transport import TransportOptions, get_transport

fleetlib = sys.modules["driftctl_test_fleet"]


@pytest.fixture(scope="module")
def four_hosts() -> Iterator[Any]:
    """Four hosts of our own (the shared fleet is never stopped); the test stops one of them."""
    fleet_id = fleetlib.new_session_id("trf")
    state = fleetlib.STATE_DIR / "sessions" / fleet_id
    try:
        yield fleetlib.start_fleet(
            fleet_id,
            4,
            inventory_dir=state / "inventory",
            known_hosts=state / "known_hosts",
            owner=fleetlib.current_owner(),
            host_prefix="node",
        )
    finally:
        fleetlib.down(fleet_id)
        shutil.rmtree(state, ignore_errors=True)


def test_facts_agree_with_testinfra(fleet: Any) -> None:
    results = gather([fh.host() for fh in fleet.hosts], TransportOptions(connect_retries=0), parallel=8)
    assert [r.host for r in results] == [fh.name for fh in fleet.hosts]
    for fh, r in zip(fleet.hosts, results, strict=True):
        assert r.status == "ok", r.error
        assert r.round_trips == 1
        ti = fh.testinfra()
        f = r.facts
        assert f["distribution"] == ti.system_info.distribution
        assert f["distribution_version"] == ti.system_info.release
        assert f["distribution_codename"] == ti.system_info.codename
        assert f["architecture"] == ti.system_info.arch
        assert f["kernel"] == ti.check_output("uname -r")
        assert f["hostname"] == ti.check_output("hostname")
        assert "Python " + f["python"] == ti.check_output("python3 --version")
        assert f["init"] == ("systemd" if ti.file("/run/systemd/system").is_directory else "?")
        assert f["package_manager"] == "apt" and ti.exists("apt-get")
        assert f["uid"] == 0


def test_one_stopped_host_does_not_stop_the_others(four_hosts: Any) -> None:
    stopped = four_hosts.hosts[2]
    subprocess.run(["podman", "stop", "-t", "0", stopped.container], check=True, capture_output=True)
    results = gather([fh.host() for fh in four_hosts.hosts], TransportOptions(connect_retries=1), parallel=4)
    by_name = {r.host: r for r in results}
    assert [r.host for r in results] == [fh.name for fh in four_hosts.hosts]
    for fh in four_hosts.hosts:
        r = by_name[fh.name]
        if fh is stopped:
            assert r.status == "unreachable"
            assert r.error and f"127.0.0.1:{fh.port}" in r.error
            assert not r.facts
        else:
            assert r.status == "ok", r.error
            assert r.facts["hostname"] == fh.exec(["hostname"]).stdout_text.strip()
    assert RunResult("facts", results).exit_code == 8


def test_podman_transport_sees_the_same_facts(fleet: Any) -> None:
    fh = fleet.hosts[0]
    via_podman = Host(fh.name, {}, (), ConnectionSpec(address=fh.container, transport="podman"))
    [podman_result] = gather([via_podman], TransportOptions())
    [ssh_result] = gather([fh.host()], TransportOptions())
    assert podman_result.status == "ok", podman_result.error
    for key in ("distribution", "distribution_version", "kernel", "architecture", "hostname", "python", "init"):
        assert podman_result.facts[key] == ssh_result.facts[key]


def test_podman_transport_become_stdin_and_timeout(fleet: Any) -> None:
    fh = fleet.hosts[1]
    spec = ConnectionSpec(address=fh.container, transport="podman", user="nobody", become=True)
    with get_transport(Host(fh.name, {}, (), spec), TransportOptions()) as t:
        assert t.run(["id", "-un"]).stdout == b"root\n"
        assert t.run(["id", "-un"], become=False).stdout == b"nobody\n"
        assert t.run(["cat"], stdin=b"x" * 3_000_000).stdout == b"x" * 3_000_000
        with pytest.raises(CommandTimeout):
            t.run(["sh", "-c", "sleep 623 & sleep 624"], timeout=2)
    r = fh.exec(["pgrep", "-f", "sleep 62[34]"])
    assert r.rc == 1, f"still running in the container: {r.stdout_text}"


def test_agent_timeout_is_a_failed_host_not_an_unreachable_one(fleet: Any) -> None:
    fh = fleet.hosts[0]
    with get_transport(fh.host(), TransportOptions()) as t, pytest.raises(CommandTimeout):
        agent.call(t, {"op": "facts"}, timeout=0.001)
