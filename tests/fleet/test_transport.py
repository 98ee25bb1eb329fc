"""The SSH transport against real sshd hosts: host keys, authentication, become, timeouts, big payloads.

Expected values come from inside the containers (``podman exec``), never from driftctl's own code.
HOME is a private temporary directory in every test, so the controller's ~/.ssh cannot make a test pass.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from driftctl import ship as agent
from driftctl.content import blob_of
from driftctl.errors import AuthError, CommandTimeout, ConnectError, HostKeyError, HostLockedError
from driftctl.model import ConnectionSpec, Host
from driftctl.transport import TransportOptions, get_transport
from driftctl.transport.ssh import SSHTransport

fleetlib = sys.modules["driftctl_test_fleet"]


def _nth(fleet: Any, i: int) -> Any:
    """The shared fleet's host ``i``: a smaller fleet (DRIFTCTL_TEST_FLEET_SIZE) skips the test, saying why."""
    if len(fleet.hosts) <= i:
        pytest.skip(f"needs {i + 1} fleet hosts, the fleet has {len(fleet.hosts)} (DRIFTCTL_TEST_FLEET_SIZE)")
    return fleet.hosts[i]


SUDO_PASSWORD = "c0rrect-h0rse"
SETUP_USERS = f"""
set -e
useradd -m -s /bin/bash deploy
echo 'deploy:{SUDO_PASSWORD}' | chpasswd
echo 'deploy ALL=(ALL:ALL) ALL' > /etc/sudoers.d/deploy
useradd -m -s /bin/bash relaxed
echo 'relaxed ALL=(ALL:ALL) NOPASSWD: ALL' > /etc/sudoers.d/relaxed
chmod 0440 /etc/sudoers.d/deploy /etc/sudoers.d/relaxed
for u in deploy relaxed; do
  install -d -o $u -g $u -m 0700 /home/$u/.ssh
  install -o $u -g $u -m 0600 /etc/ssh/fleet_authorized_keys/root /home/$u/.ssh/authorized_keys
done
# password logins for the password-auth test (the fleet turns them off; first value wins in sshd)
echo 'PasswordAuthentication yes' > /etc/ssh/sshd_config.d/00-driftctl-tr.conf
systemctl restart ssh
"""


@pytest.fixture(autouse=True)
def private_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return home


@pytest.fixture
def options(tmp_path: Path) -> TransportOptions:
    return TransportOptions(own_known_hosts=str(tmp_path / "state" / "known_hosts"), connect_retries=0)


@pytest.fixture(scope="module")
def sudo_host() -> Iterator[Any]:
    """A host of its own with a password-sudo user ``deploy`` and a NOPASSWD user ``relaxed``."""
    fleet_id = fleetlib.new_session_id("tr")
    state = fleetlib.STATE_DIR / "sessions" / fleet_id
    try:
        fleet = fleetlib.start_fleet(
            fleet_id,
            1,
            inventory_dir=state / "inventory",
            known_hosts=state / "known_hosts",
            owner=fleetlib.current_owner(),
            host_prefix="sudo",
        )
        fh = fleet.hosts[0]
        r = fh.sh(SETUP_USERS)
        assert r.ok, r.stderr_text
        yield fh
    finally:
        fleetlib.down(fleet_id)
        shutil.rmtree(state, ignore_errors=True)


def on(fh: Any, **overrides: Any) -> Host:
    """``fh.host()`` with ConnectionSpec fields replaced (FleetHost.host() cannot override its own fields)."""
    h = fh.host()
    return dataclasses.replace(h, connection=dataclasses.replace(h.connection, **overrides))


def host_fingerprints(fh: Any) -> dict[str, str]:
    """key type (ED25519, ECDSA, RSA) -> SHA256 fingerprint, computed inside the container by ssh-keygen."""
    r = fh.sh("for f in /etc/ssh/ssh_host_*_key.pub; do ssh-keygen -lf $f; done")
    assert r.ok, r.stderr_text
    out = {}
    for line in r.stdout_text.splitlines():
        parts = line.split()
        out[parts[-1].strip("()")] = parts[1]
    return out


def no_process(fh: Any, pattern: str) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if fh.exec(["pgrep", "-f", pattern]).rc == 1:
            return True
        time.sleep(0.1)
    return False


# ---- a known host


def test_known_host_runs_commands(fleet: Any, options: TransportOptions) -> None:
    fh = fleet.hosts[0]
    with get_transport(fh.host(), options) as t:
        r = t.run(["sh", "-c", 'hostname; id -un; printf "%s|" "$@"', "sh", "a b", "$(x)", "'q'"])
    assert r.rc == 0, r.stderr_text
    expected_hostname = fh.exec(["hostname"]).stdout_text.strip()
    assert r.stdout_text.splitlines() == [expected_hostname, "root", "a b|$(x)|'q'|"]


def test_exit_code_and_stderr(fleet: Any, options: TransportOptions) -> None:
    with get_transport(fleet.hosts[0].host(), options) as t:
        r = t.run(["sh", "-c", "echo out; echo err >&2; exit 7"])
    assert (r.rc, r.stdout, r.stderr) == (7, b"out\n", b"err\n")


def test_one_connection_serves_every_run(fleet: Any, options: TransportOptions) -> None:
    """SSH_CONNECTION holds the client's source port: one value over all runs means one TCP connection."""
    fh = fleet.hosts[0]
    with get_transport(fh.host(), options) as t:
        assert isinstance(t, SSHTransport)
        seen = {t.run(["sh", "-c", "echo $SSH_CONNECTION"]).stdout_text.strip() for _ in range(25)}
        facts = agent.call(t, {"op": "facts"})["facts"]
        seen.add(t.run(["sh", "-c", "echo $SSH_CONNECTION"]).stdout_text.strip())
    [connection] = seen  # "client-ip client-port server-ip 22": one client port, one TCP connection
    assert connection.split()[3] == "22"
    assert t.connects == 1
    assert facts["hostname"] == fh.exec(["hostname"]).stdout_text.strip()


def test_megabytes_both_ways(fleet: Any, options: TransportOptions) -> None:
    payload = os.urandom(8 * 1024 * 1024)
    script = (
        "import sys,hashlib; d=sys.stdin.buffer.read(); sys.stderr.buffer.write(hashlib.sha256(d).hexdigest().encode()"
        " + d[:3*1024*1024]); sys.stdout.buffer.write(d[::-1])"
    )
    with get_transport(fleet.hosts[1].host(), options) as t:
        r = t.run(["python3", "-c", script], stdin=payload, timeout=180)
    assert r.rc == 0
    assert r.stdout == payload[::-1]
    assert r.stderr[:64].decode() == hashlib.sha256(payload).hexdigest()
    assert r.stderr[64:] == payload[: 3 * 1024 * 1024]


def test_hanging_command_is_cut_and_killed(fleet: Any, options: TransportOptions) -> None:
    fh = fleet.hosts[1]
    with get_transport(fh.host(), options) as t:
        with pytest.raises(CommandTimeout) as caught:
            t.run(["sh", "-c", "sleep 613 & sleep 614"], timeout=2)
        assert caught.value.host == fh.name
        assert "timed out after 2s" in caught.value.message
        assert t.run(["true"]).ok  # the connection survives a timeout
    assert no_process(fh, "sleep 61[34]"), "the timed-out command is still running on the host"


def test_background_child_holding_stdout_does_not_hang_the_run(fleet: Any, options: TransportOptions) -> None:
    """The command exits but leaves a child with its stdout open: no EOF ever comes until that child ends."""
    fh = fleet.hosts[1]
    with get_transport(fh.host(), options) as t:
        r = t.run(["sh", "-c", "sleep 631 & echo started"], timeout=20)  # a hang would be a CommandTimeout
    assert (r.rc, r.stdout) == (0, b"started\n")
    fh.exec(["pkill", "-f", "sleep 631"])


# ---- host keys


def test_unknown_host_key_is_refused_with_its_fingerprint(fleet: Any, options: TransportOptions) -> None:
    fh = fleet.hosts[0]
    with pytest.raises(HostKeyError) as caught:
        get_transport(on(fh, known_hosts=None), options).connect()
    err = caught.value
    assert err.host == fh.name
    assert err.fingerprint in host_fingerprints(fh).values()
    assert err.fingerprint in err.message
    assert "--accept-new-host-keys" in err.message
    assert not Path(options.own_known_hosts or "").exists()


def test_accept_new_host_keys_records_the_key(fleet: Any, options: TransportOptions) -> None:
    fh = _nth(fleet, 2)
    accept = TransportOptions(own_known_hosts=options.own_known_hosts, accept_new_host_keys=True, connect_retries=0)
    with get_transport(on(fh, known_hosts=None), accept) as t:
        assert t.run(["true"]).ok
        assert isinstance(t, SSHTransport) and len(t.accepted_host_keys) == 1
    own = Path(options.own_known_hosts or "")
    assert oct(own.stat().st_mode & 0o777) == "0o600"
    found = subprocess.run(
        ["ssh-keygen", "-l", "-F", f"[127.0.0.1]:{fh.port}", "-f", str(own)], capture_output=True, text=True
    )
    assert found.returncode == 0
    recorded = [ln.split()[2] for ln in found.stdout.splitlines() if not ln.startswith("#")]
    assert recorded and recorded[0] in host_fingerprints(fh).values()
    # recorded: the next run trusts it without being asked to
    with get_transport(on(fh, known_hosts=None), options) as t:
        assert t.run(["true"]).ok


@pytest.mark.parametrize("kind", ["ecdsa-sha2-nistp256", "ssh-rsa"])
def test_host_known_by_one_key_type_only(fleet: Any, options: TransportOptions, tmp_path: Path, kind: str) -> None:
    """Only the host's ECDSA (or RSA) key on record: key exchange must ask for that type, not fail as unknown."""
    fh = _nth(fleet, 2)
    only = tmp_path / "only_one_type"
    only.write_text("".join(ln + "\n" for ln in fh.known_hosts_lines() if ln.split()[1] == kind))
    assert only.read_text().count("\n") == 1
    with get_transport(on(fh, known_hosts=str(only)), options) as t:
        assert t.run(["true"]).ok


def test_changed_host_key_is_refused_even_when_accepting_new_keys(fresh_host: Any, tmp_path: Path) -> None:
    before = host_fingerprints(fresh_host)
    r = fresh_host.sh("rm -f /etc/ssh/ssh_host_*; ssh-keygen -A >/dev/null && systemctl restart ssh")
    assert r.ok, r.stderr_text
    after = host_fingerprints(fresh_host)
    assert set(before.values()).isdisjoint(after.values())
    own = tmp_path / "own_known_hosts"
    accept = TransportOptions(own_known_hosts=str(own), accept_new_host_keys=True, connect_retries=0)
    with pytest.raises(HostKeyError) as caught:
        get_transport(fresh_host.host(), accept).connect()
    msg = caught.value.message
    assert "CHANGED" in msg and "man-in-the-middle" in msg
    assert caught.value.fingerprint in after.values()
    assert caught.value.fingerprint in msg
    assert any(old in msg for old in before.values())
    assert not own.exists() or fresh_host.name not in own.read_text()


# ---- authentication


def test_wrong_key_fails_with_a_clear_message(fleet: Any, options: TransportOptions, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    fh = fleet.hosts[0]
    with pytest.raises(AuthError) as caught:
        get_transport(on(fh, key_file=str(stranger)), options).connect()
    assert caught.value.host == fh.name
    assert f"root@127.0.0.1:{fh.port}" in caught.value.message
    assert f"key {stranger} (rejected)" in caught.value.message


def test_missing_key_file_is_named(fleet: Any, options: TransportOptions, tmp_path: Path) -> None:
    with pytest.raises(AuthError, match="file not found"):
        get_transport(on(fleet.hosts[0], key_file=str(tmp_path / "nope")), options).connect()


def test_ssh_agent_authentication(
    fleet: Any, options: TransportOptions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sock = tmp_path / "agent.sock"
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", "-q", str(fleet.key.private)], env=env, check=True, capture_output=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        with get_transport(on(fleet.hosts[0], key_file=None), options) as t:
            assert t.run(["id", "-un"]).stdout == b"root\n"
        monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "no-agent"))
        with pytest.raises(AuthError):
            get_transport(on(fleet.hosts[0], key_file=None), options).connect()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_home_ssh_config_default_key_and_hashed_known_hosts(fleet: Any, private_home: Path) -> None:
    """Only what a user keeps in ~/.ssh: config (HostName/Port/User), id_ed25519, hashed known_hosts."""
    fh = fleet.hosts[1]
    ssh = private_home / ".ssh"
    ssh.mkdir(mode=0o700)
    shutil.copy(fleet.key.private, ssh / "id_ed25519")
    (ssh / "id_ed25519").chmod(0o600)
    (ssh / "config").write_text(f"Host box\n  HostName 127.0.0.1\n  Port {fh.port}\n  User root\n")
    (ssh / "known_hosts").write_text("".join(line + "\n" for line in fh.known_hosts_lines()))
    subprocess.run(["ssh-keygen", "-H", "-f", str(ssh / "known_hosts")], check=True, capture_output=True)
    assert "127.0.0.1" not in (ssh / "known_hosts").read_text()
    host = Host("box", {}, (), ConnectionSpec(address="box"))
    with get_transport(host, TransportOptions(connect_retries=0)) as t:
        assert t.run(["hostname"]).stdout_text.strip() == fh.exec(["hostname"]).stdout_text.strip()


def test_password_authentication(sudo_host: Any, options: TransportOptions) -> None:
    spec = {"user": "deploy", "key_file": None, "password": SUDO_PASSWORD}
    with get_transport(on(sudo_host, **spec), options) as t:
        assert t.run(["id", "-un"]).stdout == b"deploy\n"
    with pytest.raises(AuthError, match=r"password \(rejected\)"):
        get_transport(on(sudo_host, **{**spec, "password": "nope"}), options).connect()


def test_password_through_keyboard_interactive(sudo_host: Any, options: TransportOptions) -> None:
    """A server that takes passwords only through PAM's keyboard-interactive method."""
    conf = "/etc/ssh/sshd_config.d/00-driftctl-tr.conf"
    r = sudo_host.sh(
        f"printf 'PasswordAuthentication no\\nKbdInteractiveAuthentication yes\\n' > {conf} && systemctl restart ssh"
    )
    assert r.ok, r.stderr_text
    try:
        spec = {"user": "deploy", "key_file": None, "password": SUDO_PASSWORD}
        with get_transport(on(sudo_host, **spec), options) as t:
            assert t.run(["id", "-un"]).stdout == b"deploy\n"
        with pytest.raises(AuthError, match=r"keyboard-interactive\) \(rejected\)"):
            get_transport(on(sudo_host, **{**spec, "password": "nope"}), options).connect()
    finally:
        sudo_host.sh(f"echo 'PasswordAuthentication yes' > {conf} && systemctl restart ssh")


def test_proxy_jump_through_another_host(fleet: Any, options: TransportOptions, tmp_path: Path) -> None:
    jump, target = fleet.hosts[0], _nth(fleet, 3)
    ip = {
        h.name: h.exec(["sh", "-c", "ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1"]).stdout_text.strip()
        for h in (jump, target)
    }
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host jumpbox\n  HostName 127.0.0.1\n  Port {jump.port}\n  User root\n  IdentityFile {fleet.key.private}\n"
    )
    target_known = tmp_path / "target_known_hosts"
    target_known.write_text("".join(f"{ip[target.name]} {key}\n" for key in target.host_keys))
    spec = ConnectionSpec(
        address=ip[target.name],
        user="root",
        key_file=str(fleet.key.private),
        known_hosts=str(target_known),
        proxy_jump="jumpbox",
    )
    opts = TransportOptions(known_hosts=[str(fleet.known_hosts)], ssh_config=str(config), connect_retries=0)
    with get_transport(Host("behind", {}, (), spec), opts) as t:
        r = t.run(["sh", "-c", "hostname; echo $SSH_CONNECTION"])
    name, conn = r.stdout_text.splitlines()
    assert name == target.exec(["hostname"]).stdout_text.strip()
    assert conn.split()[0] == ip[jump.name]  # the target saw the jump host as its client


# ---- connect failures


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_refused_connection_names_host_and_cause(options: TransportOptions) -> None:
    port = _free_port()
    host = Host("nobody-home", {}, (), ConnectionSpec(address="127.0.0.1", port=port, user="root"))
    retrying = TransportOptions(connect_retries=1)
    with pytest.raises(ConnectError) as caught:
        get_transport(host, retrying).connect()
    assert caught.value.host == "nobody-home"
    assert f"connection refused by 127.0.0.1:{port}" in caught.value.message
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)


def test_server_that_never_says_hello_times_out(options: TransportOptions) -> None:
    """A TCP peer that accepts and stays silent (no SSH banner): the banner timeout ends the wait."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(server.accept()[0]), daemon=True).start()
    try:
        spec = ConnectionSpec(address="127.0.0.1", port=server.getsockname()[1], user="root", connect_timeout=1)
        with pytest.raises(ConnectError) as caught:
            get_transport(Host("mute", {}, (), spec), options).connect()
        assert caught.value.host == "mute"
        assert "handshake" in caught.value.message
    finally:
        for s in held:
            s.close()
        server.close()


# ---- become


def become_host(fh: Any, user: str, password: str | None) -> Host:
    return on(fh, user=user, become=True, become_password=password, command_timeout=60)


def test_become_with_sudo_password(sudo_host: Any, options: TransportOptions) -> None:
    payload = os.urandom(2 * 1024 * 1024) + b"\nlast line without newline"
    with get_transport(become_host(sudo_host, "deploy", SUDO_PASSWORD), options) as t:
        assert t.run(["id", "-un"]).stdout == b"root\n"
        assert t.run(["id", "-un"], become=False).stdout == b"deploy\n"
        echoed = t.run(["cat"], stdin=payload)
        facts = agent.call(t, {"op": "facts"})["facts"]
        ps = t.run(["ps", "-eo", "args"], become=False)
    assert echoed.stdout == payload  # the password line was consumed by sudo, the payload intact
    assert echoed.stderr == b""  # sudo's prompt is not shown as the command's stderr
    assert facts["uid"] == 0
    assert SUDO_PASSWORD not in ps.stdout_text


def test_wrong_sudo_password_is_an_auth_error(sudo_host: Any, options: TransportOptions) -> None:
    with get_transport(become_host(sudo_host, "deploy", "wrong-password"), options) as t:
        with pytest.raises(AuthError) as caught:
            t.run(["id", "-un"])
        assert caught.value.host == sudo_host.name
        assert "sudo refused the become password" in caught.value.message
        assert t.run(["id", "-un"], become=False).stdout == b"deploy\n"  # only become is refused


def test_become_without_password_when_sudo_wants_one(sudo_host: Any, options: TransportOptions) -> None:
    with get_transport(become_host(sudo_host, "deploy", None), options) as t, pytest.raises(AuthError) as caught:
        t.run(["true"])
    assert "password" in caught.value.message


def test_nopasswd_sudo_never_receives_the_password(sudo_host: Any, options: TransportOptions) -> None:
    payload = b"first line\nsecond line\n"
    with get_transport(become_host(sudo_host, "relaxed", "unused-secret"), options) as t:
        r = t.run(["cat"], stdin=payload)
        who = t.run(["id", "-un"])
    assert r.stdout == payload  # a password line here would be a leak into the command's stdin
    assert who.stdout == b"root\n"


def sudo_session_item(path: str) -> dict[str, Any]:
    """An empty root-owned file, as a raw agent request's item (no content: no frames to send)."""
    return {"id": f"file:{path}", "type": "file", "params": {"path": path, "ensure": "present"}}


def test_a_session_through_sudo_probes_waits_and_applies_as_root(sudo_host: Any, options: TransportOptions) -> None:
    """D50 through password sudo: the probe's agent (root) waits for the plan, then takes the apply."""
    target = "/root/driftctl-sudo-session"
    sudo_host.sh(f"rm -f {target}")
    item = sudo_session_item(target)
    with get_transport(become_host(sudo_host, "deploy", SUDO_PASSWORD), options) as t, agent.Session(t) as session:
        seen = session.call({"op": "probe", "facts": False, "resources": [item]})
        assert seen["resources"][item["id"]]["observed"]["ensure"] == "absent"
        # no_process gives it 5 s to leave: still there after them, it waits
        assert session.open and not no_process(sudo_host, "driftctl-agent"), "the agent should wait"
        applied = session.apply({"op": "apply", "resources": [{**item, "changes": ["ensure"]}]}, [])
    assert applied is not None and applied.cut is None, applied
    assert applied.done[item["id"]]["status"] == "changed"
    assert sudo_host.sh(f"stat -c %U {target}").stdout_text == "root\n"
    assert no_process(sudo_host, "driftctl-agent") and no_process(sudo_host, "sudo")
    assert SUDO_PASSWORD not in sudo_host.sh("ps -eo args").stdout_text


@pytest.mark.parametrize("end", ["bye", "connection closed"])
def test_a_session_through_sudo_that_ends_while_the_agent_waits_leaves_nothing(
        sudo_host: Any, options: TransportOptions, end: str) -> None:
    """The engine's abort says bye; a killed controller closes the connection: the root agent under sudo
    leaves either way, and nothing is written."""
    target = "/root/driftctl-sudo-session-end"
    sudo_host.sh(f"rm -f {target}")
    item = sudo_session_item(target)
    t = get_transport(become_host(sudo_host, "deploy", SUDO_PASSWORD), options)
    with t:
        session = agent.Session(t)
        session.call({"op": "probe", "facts": False, "resources": [item]})
        assert session.open and not no_process(sudo_host, "driftctl-agent")
        if end == "bye":
            session.close()
    # "connection closed": the transport's own close, as when the controller dies, with the agent waiting
    assert no_process(sudo_host, "driftctl-agent") and no_process(sudo_host, "sudo")
    assert sudo_host.sh(f"test -e {target}").rc != 0


def hold(sh: Callable[[str], int], lock: str, user: str | None = None) -> None:
    """A process holds the flock ``lock`` for 30 s (or until ``pkill -f 'flock -o LOCK'``), as a running
    apply would: started by ``sh`` (a shell line -> its exit status) as ``user`` (default: as ``sh``
    runs)."""
    as_user = f"runuser -u {user} -- " if user else ""
    sh(f"setsid {as_user}flock -o {lock} sleep 30 >/dev/null 2>&1 < /dev/null &")  # -o: flock holds it
    deadline = time.monotonic() + 10
    while sh(f"flock -n {lock} true") == 0:
        assert time.monotonic() < deadline, f"{user or 'the holder'} never took {lock}"
        time.sleep(0.1)


def on_host(fh: Any) -> Callable[[str], int]:
    """``hold``'s ``sh`` through the container, as root."""
    return lambda line: fh.sh(line).rc


def on_login(t: Any) -> Callable[[str], int]:
    """``hold``'s ``sh`` through a transport's connection, as its login (in its login session)."""
    return lambda line: t.run(["sh", "-c", line]).rc


def user_file(fh: Any, user: str, text: str) -> tuple[dict[str, Any], Any]:
    """(an apply request as the engine makes it, its blob): ~user/app.conf, which holds "old" now."""
    home = f"/home/{user}"
    fh.sh(f"rm -rf {home}/.local {home}/app.conf; printf 'old\\n' > {home}/app.conf; chown {user}: {home}/app.conf")
    blob = blob_of(text)
    item = {"id": f"file:{home}/app.conf", "type": "file", "changes": ["content"], "depends": [], "notify": [],
            "params": {"path": f"{home}/app.conf", "ensure": "present", "content_sha256": blob.sha256,
                       "content_size": blob.size, "_sensitive": False}}
    return {"op": "apply", "resources": [item], "backup_dir": "/var/lib/driftctl/backup"}, blob


def new_login(fh: Any, user: str) -> str:
    """A user that has never logged in, who may log in with the fleet's key; its uid. (A user whose last
    session just ended can wait a minute for logind at its next login, in a container: its user manager
    is still stopping.)"""
    r = fh.sh(f"useradd -m -s /bin/sh {user} && install -d -o {user} -g {user} -m 0700 /home/{user}/.ssh && "
              f"install -o {user} -g {user} -m 0600 /etc/ssh/fleet_authorized_keys/root "
              f"/home/{user}/.ssh/authorized_keys && id -u {user}")
    assert r.ok, r.stderr_text
    return r.stdout_text.strip()


def test_a_login_that_is_not_root_applies_with_its_own_lock_and_backups(
        sudo_host: Any, options: TransportOptions) -> None:
    """Without become the agent runs as the login, which cannot use root's lock (/run/driftctl) or backups
    (/var/lib/driftctl/backup): its lock is in its runtime directory (/run/user/UID, which logind makes
    for the login session: the host's own), its backups in ~/.local/state/driftctl. Root holding its own
    lock does not stop it; another apply as the same user does."""
    user = "plain1"
    home, state = f"/home/{user}", f"/home/{user}/.local/state/driftctl"
    run_lock = f"/run/user/{new_login(sudo_host, user)}/driftctl/apply.lock"
    sudo_host.sh("install -d -m 0700 /run/driftctl")
    request, blob = user_file(sudo_host, user, "new\n")
    rid = request["resources"][0]["id"]
    hold(on_host(sudo_host), "/run/driftctl/apply.lock")
    try:
        with get_transport(on(sudo_host, user=user, become=False), options) as t:
            applied = agent.apply(t, request, [(rid, blob)])
            lock_text = t.run(["cat", run_lock]).stdout_text  # the same login session: its runtime dir is there
            seen = agent.call(t, {"op": "probe", "facts": False, "resources": [], "watch": [{"path": home}]})
            # another apply of the same user holds its lock: refused
            hold(on_login(t), run_lock)
            with pytest.raises(HostLockedError, match="being changed"):
                agent.apply(t, request, [(rid, blob)])
            t.run(["pkill", "-f", f"flock -o {run_lock}"])
    finally:
        sudo_host.sh("pkill -f 'flock -o /run/driftctl/apply.lock' || true")
    assert applied.cut is None and applied.done[rid]["status"] == "changed", applied
    assert lock_text.startswith("driftctl apply pid "), lock_text
    assert sudo_host.sh(f"cat {home}/app.conf").stdout_text == "new\n"
    kept = sudo_host.sh(f"stat -c '%U %a' {state} {state}/backup; cat {state}/backup/*/*Z-*")
    assert kept.stdout_text == f"{user} 700\n{user} 700\nold\n", kept.stdout_text + kept.stderr_text
    assert sudo_host.sh("ls -A /var/lib/driftctl/backup 2>/dev/null | wc -l").stdout_text == "0\n"
    assert f"{home}/app.conf" in seen["watch"]["entries"]  # its own directory is not drift
    assert not [p for p in seen["watch"]["entries"] if p.startswith(state)]


def test_become_to_a_user_without_a_runtime_directory_locks_in_its_state_directory(
        sudo_host: Any, options: TransportOptions) -> None:
    """Root logs in and becomes a user that never logged in (sudo opens no login session for it): no
    /run/user/UID, so its lock is ~/.local/state/driftctl/apply.lock."""
    user, state = "nologin1", "/home/nologin1/.local/state/driftctl"
    sudo_host.sh(f"id {user} >/dev/null 2>&1 || useradd -m -s /bin/sh {user}")
    uid = sudo_host.sh(f"id -u {user}").stdout_text.strip()
    request, blob = user_file(sudo_host, user, "become\n")
    rid = request["resources"][0]["id"]
    become = on(sudo_host, become=True, become_user=user)
    sudo_host.sh(f"install -d -o {user} -g {user} -m 0700 /home/{user}/.local /home/{user}/.local/state {state}")
    hold(on_host(sudo_host), f"{state}/apply.lock", user)
    try:
        with get_transport(become, options) as t, pytest.raises(HostLockedError, match="being changed"):
            agent.apply(t, request, [(rid, blob)])
    finally:
        sudo_host.sh(f"pkill -f 'flock -o {state}/apply.lock' || true")
    with get_transport(become, options) as t:
        applied = agent.apply(t, request, [(rid, blob)])
    assert applied.cut is None and applied.done[rid]["status"] == "changed", applied
    owned = sudo_host.sh(f"stat -c %U /home/{user}/app.conf; cat /home/{user}/app.conf").stdout_text
    assert owned == f"{user}\nbecome\n"
    assert sudo_host.sh(f"test -e /run/user/{uid}").rc != 0


def test_become_timeout_kills_the_root_command(sudo_host: Any, options: TransportOptions) -> None:
    with get_transport(become_host(sudo_host, "deploy", SUDO_PASSWORD), options) as t, pytest.raises(CommandTimeout):
        t.run(["sh", "-c", "sleep 615 & sleep 616"], timeout=2)
    assert no_process(sudo_host, "sleep 61[56]")
