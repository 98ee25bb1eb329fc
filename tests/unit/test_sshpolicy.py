"""The SSH algorithm policy: safe defaults, the ssh_algorithms setting's syntax, and the refusal message."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from driftctl.cli.common import transport_options
from driftctl.config import Settings
from driftctl.errors import ConfigError, ConnectError, Location
from driftctl.model import ConnectionSpec, Host
from driftctl.transport import sshpolicy
from driftctl.transport.base import TransportOptions
from driftctl.transport.ssh import SSHTransport
from driftctl.transport.sshpolicy import Offer, parse, policy, weakness

WEAK = {
    "ciphers": ["3des-cbc", "aes128-cbc", "aes256-cbc", "blowfish-cbc", "arcfour256", "cast128-cbc"],
    "macs": ["hmac-md5", "hmac-sha1", "hmac-sha1-96", "hmac-md5-96", "hmac-sha1-etm@openssh.com"],
    "kex": ["diffie-hellman-group1-sha1", "diffie-hellman-group14-sha1", "diffie-hellman-group-exchange-sha1"],
    "hostkeys": ["ssh-rsa", "ssh-dss", "ssh-rsa-cert-v01@openssh.com"],
    "pubkeys": ["ssh-rsa", "ssh-dss"],
}
STRONG = {
    "ciphers": ["aes128-ctr", "aes256-ctr", "aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com"],
    "macs": ["hmac-sha2-256", "hmac-sha2-512", "hmac-sha2-256-etm@openssh.com", "umac-128-etm@openssh.com"],
    "kex": ["curve25519-sha256@libssh.org", "diffie-hellman-group14-sha256", "ecdh-sha2-nistp256",
            "diffie-hellman-group-exchange-sha256", "mlkem768x25519-sha256"],
    "hostkeys": ["ssh-ed25519", "rsa-sha2-256", "rsa-sha2-512", "ecdsa-sha2-nistp256"],
    "pubkeys": ["rsa-sha2-512", "ssh-ed25519"],
}


@pytest.mark.parametrize("category", list(WEAK))
def test_weak_and_strong_algorithms(category: str) -> None:
    for name in WEAK[category]:
        assert weakness(category, name), (category, name)
    for name in STRONG[category]:
        assert weakness(category, name) is None, (category, name)


def test_defaults_have_nothing_weak_and_something_in_every_category() -> None:
    pol = policy()
    for category in sshpolicy.CATEGORIES:
        assert pol.get(category), category
        assert not [a for a in pol.get(category) if weakness(category, a)], category
    assert "3des-cbc" not in pol.get("ciphers")
    assert "hmac-md5" not in pol.get("macs") and "hmac-sha1" not in pol.get("macs")
    assert "aes128-ctr" in pol.get("ciphers")
    assert pol.allowed_by == {}


def test_paramiko_defaults_included_weak_algorithms() -> None:
    """Why the policy exists: the installed paramiko offers CBC ciphers and MD5/SHA-1 MACs by default."""
    t = paramiko.Transport
    assert "3des-cbc" in t._preferred_ciphers and "hmac-md5" in t._preferred_macs  # type: ignore[attr-defined]


def test_append_puts_weak_algorithms_last_and_records_who_allowed_them() -> None:
    pol = policy(parse("ciphers=+aes128-cbc,aes256-cbc,macs=+hmac-sha1"))
    ciphers = pol.get("ciphers")
    assert ciphers[-2:] == ("aes128-cbc", "aes256-cbc")
    assert ciphers[0] == sshpolicy.defaults("ciphers")[0]
    assert pol.get("macs")[-1] == "hmac-sha1"
    assert pol.allowed_by == {
        ("ciphers", "aes128-cbc"): "ssh_algorithms",
        ("ciphers", "aes256-cbc"): "ssh_algorithms",
        ("macs", "hmac-sha1"): "ssh_algorithms",
    }


def test_prepend_remove_replace_and_openssh_names() -> None:
    pol = policy(parse("Ciphers=^aes256-ctr; MACs=-hmac-sha2-512 KexAlgorithms=ecdh-sha2-nistp256"))
    assert pol.get("ciphers")[0] == "aes256-ctr"
    assert pol.get("ciphers").count("aes256-ctr") == 1
    assert "hmac-sha2-512" not in pol.get("macs")
    assert pol.get("kex") == ("ecdh-sha2-nistp256",)


def test_the_hosts_value_applies_after_the_global_one() -> None:
    glob = parse("ciphers=+aes128-cbc")
    own = parse("ciphers=-aes128-cbc,macs=+hmac-sha1", "driftctl_ssh_algorithms for host 'a'")
    pol = policy(glob, own)
    assert "aes128-cbc" not in pol.get("ciphers")
    assert pol.allowed_by == {("macs", "hmac-sha1"): "driftctl_ssh_algorithms for host 'a'"}


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("cipherz=+aes128-cbc", "unknown category 'cipherz'"),
        ("ciphers=+aes128-cbd", "unknown algorithm 'aes128-cbd'"),
        ("macs=+hmac-sha1,aes128-cbc", "unknown algorithm 'aes128-cbc'"),  # a cipher is not a MAC
        ("aes128-cbc", "has no category"),
        ("ciphers=", "names no algorithm"),
        ("hostkeys=+ssh-ed25519-cert-v01@openssh.com", "certificate"),
        ("ciphers=+arcfour256", "'arcfour256' (RC4) is not implemented by paramiko"),
    ],
)
def test_bad_values_are_config_errors_naming_the_setting(value: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(value)
    assert "ssh_algorithms" in str(caught.value)
    assert says in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_a_policy_with_an_empty_category_is_refused() -> None:
    everything = ",".join(sshpolicy.defaults("ciphers"))
    with pytest.raises(ConfigError, match="leaves no ciphers"):
        policy(parse(f"ciphers=-{everything}"))


def test_empty_setting_changes_nothing() -> None:
    assert parse(None) == () and parse("  ") == ()


def test_cli_settings_are_validated_and_passed_through() -> None:
    opts = transport_options(Settings(ssh_algorithms="ciphers=+aes128-cbc"))
    assert opts.ssh_algorithms == "ciphers=+aes128-cbc"
    with pytest.raises(ConfigError, match="ssh_algorithms"):
        transport_options(Settings(ssh_algorithms="ciphers=+rot13"))


def _host(vars: dict[str, object] | None = None, port: int = 22) -> Host:
    """A host as the inventory builds it: driftctl_ssh_algorithms lands in its connection spec."""
    vars = dict(vars or {})
    algorithms = vars.get("driftctl_ssh_algorithms")
    spec = ConnectionSpec(address="127.0.0.1", port=port, user="root", connect_timeout=5,
                          ssh_algorithms=None if algorithms is None else str(algorithms))
    return Host("h1", vars, (), spec, Location("hosts.yaml", 3))


def test_the_inventory_variable_is_read_and_validated_without_contacting_the_host() -> None:
    options = TransportOptions(ssh_algorithms="ciphers=+aes128-cbc")
    t = SSHTransport(_host({"driftctl_ssh_algorithms": "macs=+hmac-sha1"}), options)
    assert set(t.policy.allowed_by) == {("ciphers", "aes128-cbc"), ("macs", "hmac-sha1")}
    with pytest.raises(ConfigError) as caught:
        SSHTransport(_host({"driftctl_ssh_algorithms": "macs=+hmac-sha3"}))
    assert "driftctl_ssh_algorithms for host 'h1'" in str(caught.value)
    assert "hosts.yaml:3" in str(caught.value)


def _kexinit(kex: list[str], keys: list[str], ciphers: list[str], macs: list[str]) -> bytes:
    m = paramiko.Message()
    m.add_bytes(os.urandom(16))
    for names in (kex, keys, ciphers, ciphers, macs, macs, ["none"], ["none"], [], []):
        m.add_list(names)
    m.add_boolean(False)
    m.add_int(0)
    return m.asbytes()


def test_offer_parses_a_kexinit_and_notes_strict_kex() -> None:
    offer = Offer.from_kexinit(
        _kexinit(["curve25519-sha256", "ext-info-s", "kex-strict-s-v00@openssh.com"], ["ssh-ed25519"],
                 ["3des-cbc"], ["hmac-md5"])
    )
    assert offer == Offer(("curve25519-sha256",), ("ssh-ed25519",), ("3des-cbc",), ("hmac-md5",), True)
    assert not Offer.from_kexinit(_kexinit(["curve25519-sha256"], ["ssh-ed25519"], ["aes128-ctr"], ["x"])).strict_kex


KEX = ("curve25519-sha256@libssh.org",)


def test_refusal_names_what_was_offered_and_the_setting_that_allows_it() -> None:
    offer = Offer(KEX, ("ssh-ed25519",), ("3des-cbc",), ("hmac-md5", "umac-64@openssh.com"), True)
    missing = sshpolicy.mismatches(offer, policy())
    assert [(m.category, m.allow) for m in missing] == [("ciphers", ("3des-cbc",)), ("macs", ("hmac-md5",))]
    text = sshpolicy.refusal_message("root@10.0.0.1:22", offer, missing)
    assert "root@10.0.0.1:22 offers only SSH algorithms driftctl refuses" in text
    assert "ciphers 3des-cbc (3DES)" in text and "MACs hmac-md5 (MD5), umac-64@openssh.com" in text
    assert 'ssh_algorithms: "ciphers=+3des-cbc,macs=+hmac-md5"' in text
    assert "DRIFTCTL_SSH_ALGORITHMS=ciphers=+3des-cbc,macs=+hmac-md5" in text
    assert "driftctl_ssh_algorithms" in text
    # once allowed, nothing is missing
    allowed = policy(parse("ciphers=+3des-cbc,macs=+hmac-md5"))
    assert sshpolicy.mismatches(offer, allowed) == []


def test_refusal_of_something_paramiko_cannot_do_offers_no_setting() -> None:
    offer = Offer(KEX, ("ssh-ed25519",), ("chacha20-poly1305@openssh.com",), ("hmac-sha2-256",), True)
    missing = sshpolicy.mismatches(offer, policy())
    assert [(m.category, m.allow) for m in missing] == [("ciphers", ())]
    text = sshpolicy.refusal_message("h", offer, missing)
    assert "no setting can allow it" in text and "ssh_algorithms:" not in text


def test_host_certificates_count_as_their_key_algorithm() -> None:
    offer = Offer(KEX, ("ssh-ed25519-cert-v01@openssh.com",), ("aes128-ctr",), ("hmac-sha2-256",), True)
    assert sshpolicy.mismatches(offer, policy()) == []


# ---- a real SSH server (paramiko's, in this process) that offers only what it is told to


class _Server(paramiko.ServerInterface):
    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        return paramiko.AUTH_SUCCESSFUL

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"


@pytest.fixture
def weak_server(tmp_path: Path) -> Iterator[tuple[int, Path, Path]]:
    """(port, client key, known_hosts) of a loopback SSH server offering only 3des-cbc and hmac-md5."""
    host_key = paramiko.Ed25519Key.generate() if hasattr(paramiko.Ed25519Key, "generate") else None
    if host_key is None:
        host_key = paramiko.ECDSAKey.generate()
    client_key = paramiko.ECDSAKey.generate()
    key_file = tmp_path / "id"
    client_key.write_private_key_file(str(key_file))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {host_key.get_name()} {host_key.get_base64()}\n")
    servers: list[paramiko.Transport] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            t = paramiko.Transport(conn)
            t._preferred_ciphers = ("3des-cbc",)  # type: ignore[attr-defined]
            t._preferred_macs = ("hmac-md5",)  # type: ignore[attr-defined]
            t.add_server_key(host_key)
            servers.append(t)
            with contextlib.suppress(paramiko.SSHException, EOFError, OSError):
                t.start_server(server=_Server())

    threading.Thread(target=serve, daemon=True).start()
    yield port, key_file, known
    listener.close()
    for t in servers:
        t.close()


def _weak_host(port: int, key: Path, known: Path, algorithms: str | None = None) -> Host:
    spec = ConnectionSpec(address="127.0.0.1", port=port, user="root", key_file=str(key), known_hosts=str(known),
                          connect_timeout=20, ssh_algorithms=algorithms)
    return Host("weak", {"driftctl_ssh_algorithms": algorithms} if algorithms else {}, (), spec)


def test_a_server_offering_only_3des_and_md5_is_refused(weak_server: tuple[int, Path, Path]) -> None:
    port, key, known = weak_server
    t = SSHTransport(_weak_host(port, key, known), TransportOptions(use_agent=False, connect_retries=0))
    with pytest.raises(ConnectError) as caught:
        t.connect()
    assert caught.value.host == "weak"
    assert "3des-cbc" in caught.value.message and "hmac-md5" in caught.value.message
    assert 'ssh_algorithms: "ciphers=+3des-cbc,macs=+hmac-md5"' in caught.value.message


def test_allowed_weak_algorithms_connect_with_a_warning(
    weak_server: tuple[int, Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    port, key, known = weak_server
    host = _weak_host(port, key, known, "ciphers=+3des-cbc,macs=+hmac-md5")
    t = SSHTransport(host, TransportOptions(use_agent=False, connect_retries=0))
    with caplog.at_level("WARNING", logger="driftctl.transport"):
        t.connect()
    try:
        assert t.weak_algorithms and "3des-cbc" in t.weak_algorithms[0]
        [record] = [r for r in caplog.records if "weak SSH algorithms" in r.getMessage()]
        text = record.getMessage()
        assert text.startswith("weak: ") and "cipher 3des-cbc (3DES)" in text and "MAC hmac-md5 (MD5)" in text
        assert "driftctl_ssh_algorithms for host 'weak'" in text
    finally:
        t.close()


def test_the_inventory_variable_becomes_the_hosts_connection_setting(tmp_path: Path) -> None:
    from driftctl.inventory import load_inventory

    (tmp_path / "hosts.yaml").write_text(
        "all:\n  hosts:\n    legacy:\n      ansible_host: 127.0.0.1\n"
        "      driftctl_ssh_algorithms: \"ciphers=+aes128-cbc\"\n    modern: {ansible_host: 127.0.0.2}\n")
    hosts = {h.name: h for h in load_inventory(tmp_path).select(None)}
    assert hosts["legacy"].connection.ssh_algorithms == "ciphers=+aes128-cbc"
    assert hosts["modern"].connection.ssh_algorithms is None


def test_a_bad_setting_in_driftctl_yaml_names_the_file(tmp_path: Path) -> None:
    from driftctl import config

    (tmp_path / "driftctl.yaml").write_text("ssh_algorithms: \"ciphers=+rot13\"\n")
    with pytest.raises(ConfigError) as caught:
        config.load(cwd=tmp_path)
    assert "driftctl.yaml" in str(caught.value) and "rot13" in str(caught.value)
    assert "invalid value" not in str(caught.value)  # the policy's own words: what is unknown, and why
