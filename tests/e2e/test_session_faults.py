"""The agent that waits for the plan (D50), faulted on a real host: its connection cut, or its link
silenced, while the controller plans; or the controller signalled (SIGINT, SIGTERM) or killed while
the agent waits. Both ends notice, the agent leaves the host, and the apply is never sent to it (the
engine then starts an agent of its own, or reports the host unreachable or aborted).

The session is driven directly over the SSH transport through a TCP proxy of the test's own
(tests/e2e/netfault.py), so the fault lands exactly in the wait, not by timing. The signals go to a
real `driftctl apply` whose other hosts' catalogs take seconds to render: the first host's agent has
probed early (read-only, D43) and waits for them.
"""

from __future__ import annotations

import hashlib
import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from e2ehelp import agent_processes, assert_nothing_left, driftctl, one_role_site, started, write_inventory
from netfault import TcpProxy, proxied_host

from driftctl import ship
from driftctl.content import blob_of
from driftctl.transport import get_transport

pytestmark = pytest.mark.slow

LINK = 8  # seconds: the link timeout, and so the waiting agent's lease
TARGET = "/root/driftctl-session-fault.txt"


def probe_request() -> dict[str, Any]:
    return {"op": "probe", "facts": False, "resources": [{"id": f"file:{TARGET}", "type": "file", "params": {
        "path": TARGET, "ensure": "present", "_want_content": True, "_sensitive": False}}]}


def apply_request() -> tuple[dict[str, Any], list[Any]]:
    data = b"should never be written\n"
    params = {"path": TARGET, "ensure": "present", "content_sha256": hashlib.sha256(data).hexdigest(),
              "content_size": len(data), "_want_content": True, "_sensitive": False}
    item = {"id": f"file:{TARGET}", "type": "file", "params": params, "changes": ["content"], "depends": [],
            "notify": []}
    return {"op": "apply", "resources": [item]}, [(f"file:{TARGET}", blob_of(data))]


def wait_until(what: Any, timeout: float) -> float:
    """Seconds until ``what()`` held; fails after ``timeout``."""
    started = time.monotonic()
    while not what():
        assert time.monotonic() - started < timeout, f"not within {timeout} s"
        time.sleep(0.1)
    return time.monotonic() - started


@pytest.fixture
def proxied(fleet: Any, tmp_path: Path) -> Any:
    fh = fleet.hosts[0]
    fh.sh(f"rm -f {TARGET}")
    proxy = TcpProxy(fh.port)
    host, options = proxied_host(fh, proxy, tmp_path, float(LINK))
    try:
        yield fh, proxy, host, options
    finally:
        proxy.close()


def test_a_connection_cut_while_the_agent_waits_ends_both_ends_and_sends_nothing(proxied: Any) -> None:
    fh, proxy, host, options = proxied
    with get_transport(host, options) as transport, ship.Session(transport) as session:
        answer = session.call(probe_request())
        assert answer["resources"][f"file:{TARGET}"]["observed"]["ensure"] == "absent"
        assert session.open and agent_processes(fh), "the agent should wait for the plan"
        proxy.cut()
        wait_until(lambda: not session.open, 30)  # the controller: connection lost
        assert_nothing_left(fh)  # the host: sshd ended the session, the agent left with it
        request, blobs = apply_request()
        assert session.apply(request, blobs) is None  # never sent to an agent that is gone
    assert fh.sh(f"test -e {TARGET}").rc != 0, "nothing may be written"


def test_a_link_silent_while_the_agent_waits_ends_both_ends_within_the_link_timeout(proxied: Any) -> None:
    fh, proxy, host, options = proxied
    with get_transport(host, options) as transport, ship.Session(transport) as session:
        session.call(probe_request())
        assert session.open and agent_processes(fh)
        proxy.silence()  # no FIN, no RST: sshd on the host notices nothing, only the lease can
        agent_left = wait_until(lambda: not agent_processes(fh), LINK + 15)
        controller_left = wait_until(lambda: not session.open, LINK + 15)
        print(f"silent wait: the agent left after {agent_left:.1f} s, the controller gave up "
              f"{controller_left:.1f} s later (link_timeout {LINK} s)")
        assert agent_left >= LINK - 2  # its pings kept it until the silence, not less
        request, blobs = apply_request()
        assert session.apply(request, blobs) is None
    assert fh.sh(f"test -e {TARGET}").rc != 0, "nothing may be written"


WAITED = "/root/driftctl-session-wait.txt"
SPUN = "/root/driftctl-session-spin.txt"
SPIN = 60000  # thousands of empty loop turns in a catalog that takes its time: ~3 s of rendering here


def slow_site(directory: Path) -> Path:
    """Every host: a file whose content is the version asked for, and one whose template loops ``spin``
    thousand times before it says so (CPU only: the rendering of that host's catalog takes its time).
    The loop's text names its host: a manifest string rendered with the same values is rendered once
    per run (D53), and every spinning host must spin."""
    return one_role_site(directory, "resources:\n"
                         f"  - file: {WAITED}\n"
                         "    content: \"version {{ version }}\\n\"\n"
                         f"  - file: {SPUN}\n"
                         "    content: \"{% for i in range(spin) %}{% for j in range(1000) %}{% endfor %}{% endfor %}"
                         "spun on {{ inventory_hostname }}\\n\"\n")


def waiting_inventory(directory: Path, hosts: list[Any], version: int, spin: int) -> Path:
    """The first host renders at once; the others spin ``spin`` (the first is probed while they render)."""
    first, *others = hosts
    return write_inventory(directory, hosts, all_vars=f"version: {version}\nspin: {spin}\n",
                           host_vars={first.name: "spin: 0\n"} | {h.name: f"spin: {spin}\n" for h in others})


@pytest.fixture
def waiting(fleet: Any, tmp_path: Path) -> Any:
    """The fleet converged at version 1 (so each host's agent cache holds the program: the early probe
    needs it), the manifests, and a cleanup of what the tests wrote."""
    hosts = list(fleet.hosts)
    site = slow_site(tmp_path)
    state = tmp_path / "state"
    warm = driftctl("apply", waiting_inventory(tmp_path / "inv1", hosts, 1, 0), "-m", site, state_dir=state)
    assert warm.rc == 2, warm.output
    try:
        yield hosts, site, state
    finally:
        for h in hosts:
            h.sh(f"rm -f {WAITED} {SPUN}")


def first_agent_waits(first: Any, proc: Any) -> None:
    """The first host's agent has probed and stays (the others still render): it is there for a second,
    the run has not ended, and the change is not made."""
    wait_until(lambda: agent_processes(first) or proc.poll() is not None, 60)
    time.sleep(1)
    assert proc.poll() is None, "the run ended before the test could see the agent wait"
    assert agent_processes(first), "the first host's agent should wait for the other catalogs"
    assert first.sh(f"cat {WAITED}").stdout_text == "version 1\n"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_the_agent_waits_sends_bye_reports_aborted_and_unlocks(
        waiting: Any, tmp_path: Path, sig: signal.Signals) -> None:
    hosts, site, state = waiting
    first = hosts[0]
    inv = waiting_inventory(tmp_path / "inv2", hosts, 2, SPIN)
    proc = started(["apply", inv, "-m", site, "--json"], state)
    try:
        first_agent_waits(first, proc)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode & 16 and proc.returncode != 75, f"exit {proc.returncode}\n{err}"
    doc = json.loads(out)
    assert {h["name"]: h["interrupted"] for h in doc["hosts"]} == {h.name: "aborted" for h in hosts}, out
    assert_nothing_left(first, timeout=5)
    assert first.sh(f"cat {WAITED}").stdout_text == "version 1\n"  # the apply was never sent
    # stored as aborted, and every lock released: the next apply converges
    history = driftctl("history", inv, "--json", state_dir=state)
    assert history.rc == 0 and "aborted" in history.stdout, history.output
    again = driftctl("apply", waiting_inventory(tmp_path / "inv3", hosts, 2, 0), "-m", site, state_dir=state)
    assert again.rc == 2, again.output
    assert first.sh(f"cat {WAITED}").stdout_text == "version 2\n"


def test_the_controller_killed_while_the_agent_waits_leaves_nothing(waiting: Any, tmp_path: Path) -> None:
    hosts, site, state = waiting
    first = hosts[0]
    proc = started(["apply", waiting_inventory(tmp_path / "inv2", hosts, 2, 99_999), "-m", site], state)
    try:
        first_agent_waits(first, proc)
        proc.kill()
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert_nothing_left(first, timeout=10)  # its connection closed with the controller: the agent left
    time.sleep(2)
    assert first.sh(f"cat {WAITED}").stdout_text == "version 1\n"
