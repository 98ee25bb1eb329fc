"""The agent that waits for the plan (D50), faulted on a real host: its connection cut, or its link
silenced, while the controller plans. Both ends notice, the agent leaves the host, and the apply is
never sent to it (the engine then starts an agent of its own, or reports the host unreachable).

The session is driven directly over the SSH transport through a TCP proxy of the test's own
(tests/e2e/netfault.py), so the fault lands exactly in the wait, not by timing.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import pytest
from e2ehelp import agent_processes, assert_nothing_left
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
