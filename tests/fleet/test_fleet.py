"""The test fleet itself is right: distinct real hosts, reachable only the way the inventory says.

Checked with testinfra (over SSH, host keys verified), podman and paramiko directly; no driftctl code
is involved except the agent fixture's own check.
"""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import paramiko
import pytest
import yaml

# Tests that use the fleet fixtures are marked `fleet` by tests/conftest.py.


def _podman_keys(container: str) -> set[str]:
    out = subprocess.run(
        ["podman", "exec", container, "sh", "-c", "cat /etc/ssh/ssh_host_*_key.pub"],
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    return {" ".join(line.split()[:2]) for line in out.splitlines() if line.strip()}


def _podman_labels(container: str) -> dict[str, str]:
    out = subprocess.run(
        ["podman", "inspect", "--format", "json", container], capture_output=True, check=True, text=True
    ).stdout
    return dict(json.loads(out)[0]["Config"]["Labels"])


def _known_hosts_keys(path: Path, port: int) -> set[str]:
    keys = set()
    for line in path.read_text().splitlines():
        marker, _, key = line.partition(" ")
        if marker == f"[127.0.0.1]:{port}":
            keys.add(key.strip())
    return keys


def test_every_host_has_its_own_host_keys(fleet: Any) -> None:
    ed25519 = [h.testinfra().file("/etc/ssh/ssh_host_ed25519_key.pub").content_string.split()[1] for h in fleet.hosts]
    assert len(ed25519) == len(fleet.hosts) >= 2
    assert len(set(ed25519)) == len(ed25519)


def test_systemd_and_sshd_run_on_every_host(fleet: Any) -> None:
    for h in fleet.hosts:
        t = h.testinfra()
        state = t.run("systemctl is-system-running").stdout.strip()
        assert state in ("running", "degraded"), (h.name, state, t.run("systemctl --failed").stdout)
        assert t.service("ssh").is_running
        assert t.process.get(pid=1).comm == "systemd"
        assert t.socket("tcp://22").is_listening


def test_python3_is_present_and_recent_enough_for_the_agent(fleet: Any) -> None:
    for h in fleet.hosts:
        version = h.testinfra().run("python3 -c 'import sys; print(sys.version_info[:2] >= (3, 8))'")
        assert version.rc == 0 and version.stdout.strip() == "True", h.name


def test_hostname_is_the_inventory_name(fleet: Any) -> None:
    for h in fleet.hosts:
        assert h.testinfra().run("hostname").stdout.strip() == h.name


def test_known_hosts_lists_exactly_each_hosts_keys(fleet: Any) -> None:
    for h in fleet.hosts:
        inside = _podman_keys(h.container)
        assert inside, h.name
        assert _known_hosts_keys(fleet.known_hosts, h.port) == inside, h.name


def test_inventory_is_ansible_yaml_with_the_published_ports(fleet: Any) -> None:
    inventory = yaml.safe_load((fleet.inventory_dir / "hosts.yaml").read_text())
    common = yaml.safe_load((fleet.inventory_dir / "group_vars" / "all.yaml").read_text())
    groups = inventory["all"]["children"]
    assert set(groups) == {"web", "db"}
    listed = {name: (group, v) for group, g in groups.items() for name, v in (g["hosts"] or {}).items()}
    assert sorted(listed, key=lambda n: int(n.removeprefix("fleet"))) == [
        f"fleet{i}" for i in range(1, len(fleet.hosts) + 1)
    ]
    for h in fleet.hosts:
        published = subprocess.run(
            ["podman", "port", h.container, "22/tcp"], capture_output=True, check=True, text=True
        ).stdout.strip()
        group, hostvars = listed[h.name]
        assert published == f"127.0.0.1:{hostvars['ansible_port']}"
        assert hostvars["ansible_host"] == "127.0.0.1"
        assert (group,) == h.groups
    assert [n for n, (g, _) in listed.items() if g == "web"] == [
        f"fleet{i}" for i in range(1, (len(fleet.hosts) + 1) // 2 + 1)
    ]
    assert common["ansible_user"] == "root"
    assert Path(common["driftctl_known_hosts"]) == fleet.known_hosts.resolve()
    key = Path(common["ansible_ssh_private_key_file"])
    assert key.is_absolute() and stat.S_IMODE(key.stat().st_mode) == 0o600


def _connect(port: int, known_hosts: Path, key: paramiko.PKey) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        "127.0.0.1", port=port, username="root", pkey=key, allow_agent=False, look_for_keys=False, timeout=10
    )
    return client


def test_another_hosts_key_is_refused(fleet: Any, tmp_path: Path) -> None:
    first, second = fleet.hosts[0], fleet.hosts[1]
    key = paramiko.Ed25519Key.from_private_key_file(str(first.key_file))
    # known_hosts that pins host 2's keys under host 1's address: host 1 must not be accepted
    wrong = tmp_path / "known_hosts"
    wrong.write_text(
        "".join(f"[127.0.0.1]:{first.port} {k}\n" for k in _known_hosts_keys(fleet.known_hosts, second.port))
    )
    with pytest.raises(paramiko.BadHostKeyException):
        _connect(first.port, wrong, key)
    _connect(first.port, fleet.known_hosts, key).close()


def test_root_logs_in_with_the_project_key_only(fleet: Any) -> None:
    h = fleet.hosts[0]
    with pytest.raises(paramiko.AuthenticationException):
        _connect(h.port, fleet.known_hosts, paramiko.ECDSAKey.generate())
    config = h.testinfra().run("sshd -T").stdout
    assert "passwordauthentication no" in config
    assert "permitrootlogin without-password" in config


def test_exec_runs_in_the_container(fleet: Any) -> None:
    h = fleet.hosts[-1]
    result = h.exec(["sh", "-c", "cat > /tmp/fleet-exec-probe; cat /etc/hostname"], stdin=b"abc")
    assert result.ok and result.stdout_text.strip() == h.name
    assert h.testinfra().file("/tmp/fleet-exec-probe").content_string == "abc"
    assert h.exec(["false"]).rc == 1


def test_agent_answers_facts_through_podman_exec(fleet: Any) -> None:
    answer = fleet.hosts[0].agent({"op": "facts"})
    assert answer["v"] == 1 and answer["ok"] is True, answer


def test_session_containers_carry_this_sessions_owner(fleet: Any) -> None:
    if os.environ.get("DRIFTCTL_TEST_REUSE_FLEET") == "1":
        pytest.skip("a reused fleet belongs to no session")
    for h in fleet.hosts:
        labels = _podman_labels(h.container)
        assert labels["driftctl.owner"].split(":")[0] == str(os.getpid())
        assert h.container.startswith("driftctl-fleet-")


def test_fresh_host_is_a_new_machine(fleet: Any, fresh_host: Any) -> None:
    fleet_keys = set().union(*(_podman_keys(h.container) for h in fleet.hosts))
    fresh_keys = _podman_keys(fresh_host.container)
    assert fresh_keys and not (fresh_keys & fleet_keys)
    assert fresh_host.port not in {h.port for h in fleet.hosts}
    assert fresh_host.testinfra().run("systemctl is-system-running").stdout.strip() in ("running", "degraded")


@pytest.mark.slow
def test_apt_installs_a_package_from_the_mirror(fresh_host: Any) -> None:
    t = fresh_host.testinfra()
    assert not t.package("hello").is_installed
    result = fresh_host.exec(["apt-get", "install", "-y", "--no-install-recommends", "hello"], timeout=600)
    assert result.ok, result.stderr_text
    assert t.package("hello").is_installed
    assert t.run("hello").stdout.strip() == "Hello, world!"


@pytest.mark.fresh_host(net_sysctls=True)
def test_net_sysctls_are_writable_on_request_and_stay_in_the_container(fresh_host: Any) -> None:
    host_ttl = Path("/proc/sys/net/ipv4/ip_default_ttl").read_text().strip()
    wanted = "99" if host_ttl != "99" else "98"
    result = fresh_host.exec(["sysctl", "-w", f"net.ipv4.ip_default_ttl={wanted}"])
    assert result.ok, result.stderr_text
    assert fresh_host.testinfra().sysctl("net.ipv4.ip_default_ttl") == int(wanted)
    assert Path("/proc/sys/net/ipv4/ip_default_ttl").read_text().strip() == host_ttl
    # the machine-wide tables are out of reach
    assert not fresh_host.exec(["sysctl", "-w", "vm.swappiness=60"]).ok
    assert not fresh_host.exec(["sysctl", "-w", "kernel.panic=0"]).ok
    # logind cannot run here: masked, so logins do not wait 25 s for it (fleet._without_logind)
    assert fresh_host.exec(["systemctl", "is-enabled", "systemd-logind"]).stdout_text.strip() == "masked-runtime"


def test_net_sysctls_are_read_only_by_default(fleet: Any) -> None:
    result = fleet.hosts[0].exec(["sysctl", "-w", "net.ipv4.ip_default_ttl=64"])
    assert not result.ok
    assert "read-only" in result.stderr_text or "denied" in result.stderr_text


# Captured from `vagrant ssh-config` on this fleet's Vagrantfile (docker provider, podman API).
VAGRANT_SSH_CONFIG = """\
Host fleet1
  HostName 127.0.0.1
  User root
  Port 2201
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  PasswordAuthentication no
  IdentityFile /work/main/.fleet/id_ed25519
  IdentitiesOnly yes
  LogLevel FATAL

Host fleet2
  HostName 127.0.0.1
  User root
  Port 2222
  IdentityFile "/work/main/.fleet/id_ed25519"

Host fleet3
  HostName=127.0.0.1
  User vagrant
  Port 22
"""


def _vagrant_inventory() -> Any:
    path = Path(__file__).resolve().parents[2] / "tools" / "vagrant_inventory.py"
    spec = importlib.util.spec_from_file_location("vagrant_inventory", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["vagrant_inventory"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_vagrant_ssh_config_becomes_an_inventory(tmp_path: Path) -> None:
    vi = _vagrant_inventory()
    hosts = vi.parse_ssh_config(VAGRANT_SSH_CONFIG)
    assert [(h.name, h.hostname, h.port, h.user) for h in hosts] == [
        ("fleet1", "127.0.0.1", 2201, "root"),
        ("fleet2", "127.0.0.1", 2222, "root"),
        ("fleet3", "127.0.0.1", 22, "vagrant"),
    ]
    assert hosts[1].identity_files == ["/work/main/.fleet/id_ed25519"]
    hosts[0].host_keys = ["ssh-ed25519 AAAAfirst"]
    hosts[2].host_keys = ["ssh-ed25519 AAAAthird"]
    assert vi.known_hosts_text(hosts) == "[127.0.0.1]:2201 ssh-ed25519 AAAAfirst\n127.0.0.1 ssh-ed25519 AAAAthird\n"
    inventory, common = vi.inventory_documents(hosts, tmp_path / "kh")
    groups = inventory["all"]["children"]
    assert list(groups["web"]["hosts"]) == ["fleet1", "fleet2"] and list(groups["db"]["hosts"]) == ["fleet3"]
    assert groups["web"]["hosts"]["fleet1"]["ansible_port"] == 2201
    assert groups["db"]["hosts"]["fleet3"]["ansible_become"] is True
    assert "ansible_become" not in groups["web"]["hosts"]["fleet2"]
    assert common == {"driftctl_known_hosts": str((tmp_path / "kh").resolve())}


def test_roots_user_manager_lingers(fleet: Any) -> None:
    """A logout must not stop root's user manager: in a container that stop hangs for two minutes and
    every login in the meantime waits for it (pam_systemd: "Failed to create session")."""
    t = fleet.hosts[0].testinfra()
    assert t.run("loginctl show-user root --property=Linger --value").stdout.strip() == "yes"
    assert t.service("user@0").is_running
