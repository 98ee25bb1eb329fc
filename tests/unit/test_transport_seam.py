"""The transport seam: the name table, run()/stream() as template methods, per-transport options.

A fake transport records what its hooks receive; the real ones run on the controller (local).
"""

from __future__ import annotations

import inspect
import sys
import types
from collections.abc import Callable
from pathlib import Path

import pytest

from driftctl.errors import InventoryError, Location
from driftctl.model import ConnectionSpec, Host
from driftctl.transport import TRANSPORTS, Feed, SSHOptions, Transport, TransportOptions, get_transport
from driftctl.transport.base import CommandResult, transport_class
from driftctl.transport.local import LocalTransport
from driftctl.transport.ssh import SSHTransport

FAKE_MODULE = "driftctl_test_fake_transport"


class Recorder(Transport):
    """Records each hook call; answers with a result whose argv is what a real transport would send."""

    name = "fake"

    def __init__(self, host: Host, options: TransportOptions | None = None) -> None:
        super().__init__(host, options)
        self.calls: list[tuple[object, ...]] = []

    def connect(self) -> None:
        """Nothing to open."""

    def close(self) -> None:
        """Nothing to close."""

    def _run(self, argv: list[str], stdin: bytes, timeout: float, become_user: str | None) -> CommandResult:
        self.calls.append(("run", argv, stdin, timeout, become_user))
        return CommandResult(["sudo", "-n", "--", *argv], 0, b"out")

    def _stream(self, argv: list[str], feed: Feed, on_output: Callable[[bytes], None], timeout: float,
                become_user: str | None) -> CommandResult:
        self.calls.append(("stream", argv, feed, on_output, timeout, become_user))
        on_output(b"out")
        return CommandResult(["env", "DRIFTCTL_RUN=x", *argv], 0)


def fake_host(**spec: object) -> Host:
    return Host("h1", {}, (), ConnectionSpec(address="x", transport="fake", **spec))  # type: ignore[arg-type]


@pytest.fixture
def fake_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType(FAKE_MODULE)
    module.Recorder = Recorder  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, FAKE_MODULE, module)
    monkeypatch.setitem(TRANSPORTS, "fake", f"{FAKE_MODULE}:Recorder")


# ---- the name table


def test_every_name_in_the_table_is_a_transport_class_of_that_name() -> None:
    assert set(TRANSPORTS) == {"ssh", "local", "podman"}
    for name in TRANSPORTS:
        cls = transport_class(name)
        assert cls is not None and issubclass(cls, Transport) and cls.name == name, name
    assert transport_class("telnet") is None


def test_a_name_added_to_the_table_is_what_get_transport_builds(fake_registered: None) -> None:
    options = TransportOptions(connect_retries=0)
    t = get_transport(fake_host(), options)
    assert isinstance(t, Recorder) and t.options is options


def test_unknown_name_is_an_inventory_error_naming_the_host_and_every_known_name(fake_registered: None) -> None:
    host = Host("t", {}, (), ConnectionSpec(address="x", transport="telnet"), source=Location("hosts.yaml", 7))
    with pytest.raises(InventoryError) as caught:
        get_transport(host)
    assert caught.value.message == "host t: unknown transport 'telnet' (use ssh, local, podman or fake)"
    assert caught.value.location == Location("hosts.yaml", 7)


# ---- run() and stream(): defaults resolved once, then the transport's own hooks


def test_run_resolves_the_hosts_timeout_and_become_user(fake_registered: None) -> None:
    t = get_transport(fake_host(command_timeout=42.0, become=True, become_user="deploy"))
    assert isinstance(t, Recorder)
    r = t.run(["id", "-u"], stdin=b"in")
    assert t.calls == [("run", ["id", "-u"], b"in", 42.0, "deploy")]
    assert r.argv == ["id", "-u"] and r.stdout == b"out"  # the command asked for, not what was wrapped round it


@pytest.mark.parametrize(
    ("host_become", "timeout", "become", "want"),
    [
        (True, 5.0, False, (5.0, None)),  # explicit values win over the host's
        (False, None, True, (300.0, "root")),  # become asked for one command on a host that does not become
        (False, None, None, (300.0, None)),
    ],
)
def test_explicit_arguments_win_over_the_hosts_settings(
    fake_registered: None, host_become: bool, timeout: float | None, become: bool | None,
    want: tuple[float, str | None],
) -> None:
    t = get_transport(fake_host(become=host_become))
    assert isinstance(t, Recorder)
    t.run(["true"], timeout=timeout, become=become)
    assert t.calls[0][3:] == want


def test_stream_resolves_the_same_way_and_hands_over_feed_and_output(fake_registered: None) -> None:
    t = get_transport(fake_host(command_timeout=7.0, become=True, become_user="app"))
    assert isinstance(t, Recorder)
    feed, got = Feed([b"x"]), []
    r = t.stream([Path("/bin/echo"), "hi"], feed=feed, on_output=got.append)  # type: ignore[list-item]
    assert t.calls == [("stream", ["/bin/echo", "hi"], feed, got.append, 7.0, "app")]
    assert got == [b"out"] and r.argv == [Path("/bin/echo"), "hi"]


def test_no_transport_resolves_the_defaults_itself() -> None:
    for name in TRANSPORTS:
        cls = transport_class(name)
        assert cls is not None
        source = inspect.getsource(cls)
        assert "command_timeout" not in source and "conn.become" not in source, name
        assert "run" not in vars(cls) and "stream" not in vars(cls), name  # the base's template methods


def test_local_stream_result_names_the_command_not_its_mark() -> None:
    """Before the template, a streamed local command's result carried ``env DRIFTCTL_RUN=...`` in front."""
    host = Host("ctl", {}, (), ConnectionSpec(address="localhost", transport="local"))
    with get_transport(host) as t:
        assert isinstance(t, LocalTransport)
        got: list[bytes] = []
        r = t.stream(["sh", "-c", "echo hi; echo oops >&2"], feed=Feed([]), on_output=got.append)
    assert (r.argv, r.rc, b"".join(got), r.stderr) == (["sh", "-c", "echo hi; echo oops >&2"], 0, b"hi\n", b"oops\n")


# ---- options: one group per transport; the old keywords still work


def test_old_keywords_fill_the_ssh_group() -> None:
    options = TransportOptions(known_hosts=["/k"], use_agent=False, connect_retries=0, ssh_algorithms="macs=+hmac-sha1")
    assert options.ssh == SSHOptions(known_hosts=["/k"], use_agent=False, connect_retries=0,
                                     ssh_algorithms="macs=+hmac-sha1")
    assert options == TransportOptions(ssh=options.ssh)
    assert (options.connect_retries, options.use_agent) == (0, False)  # read through the old names
    options.accept_new_host_keys = True
    assert options.ssh.accept_new_host_keys is True and "accept_new_host_keys" not in vars(options)
    with pytest.raises(TypeError, match="telnet_port"):
        TransportOptions(telnet_port=23)
    with pytest.raises(AttributeError):
        _ = options.telnet_port  # type: ignore[attr-defined]


def test_the_ssh_transport_reads_its_own_group(tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text("Host web\n  HostName 10.9.8.7\n  Port 2200\n")
    ssh = SSHOptions(ssh_config=str(config), ssh_algorithms="ciphers=+aes128-cbc")
    t = SSHTransport(Host("web", {}, (), ConnectionSpec(address="web")), TransportOptions(ssh=ssh))
    assert t.ssh.options is ssh
    assert (t.endpoint.hostname, t.endpoint.port) == ("10.9.8.7", 2200)
    assert ("ciphers", "aes128-cbc") in t.policy.allowed_by
