"""The connect timeout is one budget for TCP, banner, key exchange and authentication (issue 8 §5).

A real SSH server (paramiko's, in this process, on loopback) that is slow at every step: each step
alone fits in the timeout, all of them together do not.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paramiko
import pytest

from driftctl.errors import ConnectError
from driftctl.model import ConnectionSpec, Host
from driftctl.transport.base import TransportOptions
from driftctl.transport.ssh import SSHTransport

BUDGET = 2.0


class _StallingAuth(paramiko.ServerInterface):
    def __init__(self, release: threading.Event) -> None:
        self.release = release

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        self.release.wait(30)  # never answers while the test runs
        return paramiko.AUTH_FAILED

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"


@dataclass
class SlowServer:
    port: int
    key_file: Path
    known_hosts: Path
    accepted: list[socket.socket]


@pytest.fixture
def slow_server(tmp_path: Path) -> Iterator[SlowServer]:
    """Sends its banner after 60 % of the budget, then never answers an authentication request."""
    host_key = paramiko.ECDSAKey.generate()
    client_key = paramiko.ECDSAKey.generate()
    key_file = tmp_path / "id"
    client_key.write_private_key_file(str(key_file))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = int(listener.getsockname()[1])
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {host_key.get_name()} {host_key.get_base64()}\n")
    release = threading.Event()
    accepted: list[socket.socket] = []
    servers: list[paramiko.Transport] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(conn)
            time.sleep(BUDGET * 0.6)
            t = paramiko.Transport(conn)
            t.add_server_key(host_key)
            servers.append(t)
            try:
                t.start_server(server=_StallingAuth(release))
            except (paramiko.SSHException, EOFError, OSError):
                continue

    threading.Thread(target=serve, daemon=True).start()
    yield SlowServer(port, key_file, known, accepted)
    release.set()
    listener.close()
    for t in servers:
        t.close()


def test_slow_banner_then_stalled_authentication_ends_at_the_one_deadline(slow_server: SlowServer) -> None:
    spec = ConnectionSpec(address="127.0.0.1", port=slow_server.port, user="root", key_file=str(slow_server.key_file),
                          known_hosts=str(slow_server.known_hosts), connect_timeout=BUDGET)
    t = SSHTransport(Host("slow", {}, (), spec), TransportOptions(use_agent=False, connect_retries=2))
    with pytest.raises(ConnectError) as caught:
        t.connect()
    assert caught.value.host == "slow"
    # not "authentication timed out" after a fresh timeout of its own: the connect budget ran out
    assert f"within the connect timeout ({BUDGET:g}s)" in caught.value.message, caught.value.message
    assert len(slow_server.accepted) == 1


def test_a_cancel_that_lands_between_the_tcp_connect_and_the_handshake_ends_the_connect(
    slow_server: SlowServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cancel() closes the handshakes it sees; one that arrives after the TCP connect and before the
    handshake is registered must not leave that handshake waiting out the whole budget (it did: a run
    ended by an input error then sat for the connect timeout on a server that never speaks)."""
    spec = ConnectionSpec(address="127.0.0.1", port=slow_server.port, user="root", key_file=str(slow_server.key_file),
                          known_hosts=str(slow_server.known_hosts), connect_timeout=BUDGET * 10)
    t = SSHTransport(Host("slow", {}, (), spec), TransportOptions(use_agent=False, connect_retries=0))
    connector = t.ssh
    dial = connector._dial

    def dial_then_cancelled(*args: object, **kwargs: object) -> socket.socket:
        sock = dial(*args, **kwargs)  # type: ignore[arg-type]
        t.cancel()  # the run ends right here, in another thread in real life
        return sock

    monkeypatch.setattr(connector, "_dial", dial_then_cancelled)
    with pytest.raises(ConnectError, match="connect cancelled"):  # not the budget's timeout, waited out
        t.connect()


def test_a_cancel_that_lands_after_the_handshake_is_registered_but_before_it_starts_ends_the_connect(
    slow_server: SlowServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """paramiko's close() does nothing to a transport whose handshake has not started: a cancel landing
    between the handshake's registration (and its check for a cancel) and start_client() left the
    handshake to wait out the whole budget on a server that never speaks (CI: a run ended by an input
    error hung). cancel() closes the socket too, so the handshake ends at once."""
    spec = ConnectionSpec(address="127.0.0.1", port=slow_server.port, user="root", key_file=str(slow_server.key_file),
                          known_hosts=str(slow_server.known_hosts), connect_timeout=BUDGET * 30)
    t = SSHTransport(Host("slow", {}, (), spec), TransportOptions(use_agent=False, connect_retries=0))
    connector = t.ssh
    files = connector._known_hosts_files  # called after the check for a cancel, before start_client

    def cancelled_meanwhile(*args: object, **kwargs: object) -> list[str]:
        t.cancel()  # the run ends right here, in another thread in real life
        return files(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(connector, "_known_hosts_files", cancelled_meanwhile)
    started = time.monotonic()
    with pytest.raises(ConnectError, match="connect cancelled"):
        t.connect()
    assert time.monotonic() - started < BUDGET * 10  # not the budget (60 s), waited out
