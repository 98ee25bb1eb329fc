"""ssh_config merging: inventory values win, ProxyJump parsing and resolution, config errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from driftctl.errors import ConfigError
from driftctl.model import ConnectionSpec
from driftctl.transport.sshconfig import Hop, load_config, parse_jump, resolve

CONFIG = """
Host web1
    HostName 10.1.0.11
    Port 2222
    User deploy
    IdentityFile ~/.ssh/web_key
    ProxyJump bastion

Host bastion
    HostName bastion.example.com
    User jumper
    Port 2200
    IdentityFile /keys/bastion
    IdentitiesOnly yes

Host pinned
    HostKeyAlias pinned-alias
    UserKnownHostsFile /etc/pinned_known_hosts
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "ssh_config"
    path.write_text(CONFIG)
    return path


def test_ssh_config_fills_what_the_inventory_leaves_open(config: Path) -> None:
    ep = resolve(ConnectionSpec(address="web1"), load_config(str(config)))
    assert (ep.hostname, ep.port, ep.user) == ("10.1.0.11", 2222, "deploy")
    assert ep.identity_files == [str(Path("~/.ssh/web_key").expanduser())]
    assert ep.key_names == ["[10.1.0.11]:2222", "[web1]:2222"]
    [hop] = ep.jumps
    assert (hop.hostname, hop.port, hop.user, hop.identities_only) == ("bastion.example.com", 2200, "jumper", True)
    assert hop.identity_files == ["/keys/bastion"]


def test_inventory_values_win(config: Path) -> None:
    spec = ConnectionSpec(address="web1", port=2022, user="root", key_file="/keys/fleet", proxy_jump="none")
    ep = resolve(spec, load_config(str(config)))
    assert (ep.port, ep.user) == (2022, "root")
    assert ep.identity_files[0] == "/keys/fleet"
    assert ep.jumps == []


def test_inventory_proxy_jump_chain_and_key_offered_to_hops(config: Path) -> None:
    spec = ConnectionSpec(address="10.9.9.9", key_file="/keys/fleet", proxy_jump="ops@gw1:2201,bastion")
    ep = resolve(spec, load_config(str(config)))
    assert [(h.user, h.hostname, h.port) for h in ep.jumps] == [
        ("ops", "gw1", 2201),
        ("jumper", "bastion.example.com", 2200),
    ]
    assert ep.jumps[0].identity_files == ["/keys/fleet"]
    assert ep.jumps[1].identity_files == ["/keys/bastion", "/keys/fleet"]


def test_host_key_alias_and_extra_known_hosts(config: Path) -> None:
    ep = resolve(ConnectionSpec(address="pinned", port=2201), load_config(str(config)))
    assert ep.key_names == ["[pinned-alias]:2201"]
    assert ep.known_hosts == ["/etc/pinned_known_hosts"]


def test_no_config_at_all(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_config(None) is None
    ep = resolve(ConnectionSpec(address="10.0.0.1", user="root"), None)
    assert (ep.hostname, ep.port, ep.user, ep.jumps) == ("10.0.0.1", 22, "root", [])
    assert ep.key_names == ["10.0.0.1"]


def test_default_config_is_read_from_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "config").write_text(CONFIG)
    assert resolve(ConnectionSpec(address="web1"), load_config(None)).hostname == "10.1.0.11"


def test_explicit_missing_config_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(tmp_path / "nope"))


@pytest.mark.parametrize(
    ("text", "hops"),
    [
        ("bastion", [Hop(None, "bastion", None)]),
        ("me@bastion:2200", [Hop("me", "bastion", 2200)]),
        ("ssh://me@bastion:2200", [Hop("me", "bastion", 2200)]),
        ("a, b@c", [Hop(None, "a", None), Hop("b", "c", None)]),
        ("[fd00::1]:2222", [Hop(None, "fd00::1", 2222)]),
        ("fd00::1", [Hop(None, "fd00::1", None)]),
    ],
)
def test_parse_jump(text: str, hops: list[Hop]) -> None:
    assert parse_jump(text) == hops


@pytest.mark.parametrize("text", ["bastion:http", "bastion:0", "a,,b"])
def test_parse_jump_rejects_nonsense(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_jump(text)


def test_include_relative_to_home_ssh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    ssh = tmp_path / ".ssh"
    (ssh / "config.d").mkdir(parents=True)
    (ssh / "config.d" / "10-web.conf").write_text("Host web9\n  HostName 10.9.0.9\n  Port 2209\n")
    (ssh / "config").write_text("Include config.d/*.conf\n\nHost *\n  User fallback\n")
    ep = resolve(ConnectionSpec(address="web9"), load_config(None))
    assert (ep.hostname, ep.port, ep.user) == ("10.9.0.9", 2209, "fallback")


def test_include_loop_is_an_input_error(tmp_path: Path) -> None:
    loop = tmp_path / "loop"
    loop.write_text(f"Include {loop}\n")
    with pytest.raises(ConfigError, match="Include"):
        load_config(str(loop))
