"""Weak SSH algorithms are refused unless a setting allows them (then: a warning on every run).

A fresh host's sshd is reconfigured to offer only weak algorithms (a drop-in that sorts before the
fleet's own, so its lines win), then ``driftctl facts`` runs as a user types it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from e2ehelp import CLIResult, driftctl, write_inventory

from driftctl.errors import ExitCode
from driftctl.transport import sshpolicy

DROP_IN = "/etc/ssh/sshd_config.d/00-weak.conf"


def offer_only(host: Any, config: str) -> str:
    """Make ``host``'s sshd offer only what ``config`` says; returns what sshd -T now reports."""
    r = host.sh(f"cat > {DROP_IN} && sshd -t && systemctl restart ssh", stdin=config.encode())
    assert r.rc == 0, r.stderr_text
    r = host.sh("sshd -T | grep -E '^(ciphers|macs|kexalgorithms|hostkeyalgorithms) '")
    assert r.rc == 0, r.stderr_text
    return r.stdout_text


def facts(host: Any, tmp_path: Path, env: dict[str, str] | None = None, host_vars: str | None = None,
          cwd: Path | None = None) -> CLIResult:
    runs = sorted(tmp_path.glob("inv*"))
    inv = write_inventory(tmp_path / f"inv{len(runs)}", [host], {host.name: host_vars} if host_vars else None)
    kwargs: dict[str, Any] = {"cwd": cwd} if cwd else {}
    return driftctl("facts", inv, state_dir=tmp_path / "state", env=env, **kwargs)


def assert_refused(r: CLIResult, host: Any, offered: list[str], value: str | None) -> None:
    assert r.rc == ExitCode.UNREACHABLE, r.output
    assert f"{host.name}: unreachable" in r.stdout, r.output
    assert "offers only SSH algorithms driftctl refuses" in r.output, r.output
    for name in offered:
        assert name in r.output, (name, r.output)
    if value is not None:
        assert f'ssh_algorithms: "{value}"' in r.output, r.output
        assert "DRIFTCTL_SSH_ALGORITHMS" in r.output and "driftctl_ssh_algorithms" in r.output


def assert_accepted_with_warning(r: CLIResult, host: Any, weak: list[str]) -> None:
    assert r.rc == ExitCode.OK, r.output
    assert "1 host(s): 1 ok" in r.stdout, r.output
    warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("warning:") and "weak SSH algorithms" in ln]
    assert len(warnings) == 1, r.stderr
    assert host.name in warnings[0]
    for name in weak:
        assert name in warnings[0], (name, warnings[0])


def test_3des_and_md5_only_is_refused_and_allowed_by_setting_with_a_warning(
    fresh_host: Any, tmp_path: Path
) -> None:
    print(offer_only(fresh_host, "Ciphers 3des-cbc\nMACs hmac-md5\n"))
    r = facts(fresh_host, tmp_path)
    assert_refused(r, fresh_host, ["3des-cbc", "hmac-md5"], "ciphers=+3des-cbc,macs=+hmac-md5")

    allow = {"DRIFTCTL_SSH_ALGORITHMS": "ciphers=+3des-cbc,macs=+hmac-md5"}
    for _ in range(2):  # warned about on every run, not only the first
        assert_accepted_with_warning(facts(fresh_host, tmp_path, env=allow), fresh_host, ["3des-cbc", "hmac-md5"])

    # the same for this host only, from the inventory
    own = 'driftctl_ssh_algorithms: "ciphers=+3des-cbc,macs=+hmac-md5"\n'
    r = facts(fresh_host, tmp_path, host_vars=own)
    assert_accepted_with_warning(r, fresh_host, ["3des-cbc", "hmac-md5", "driftctl_ssh_algorithms"])

    # allowing only half of it is still a refusal, naming the other half
    r = facts(fresh_host, tmp_path, env={"DRIFTCTL_SSH_ALGORITHMS": "ciphers=+3des-cbc"})
    assert_refused(r, fresh_host, ["hmac-md5"], "macs=+hmac-md5")


def test_cbc_with_sha1_is_refused_and_allowed_by_driftctl_yaml(fresh_host: Any, tmp_path: Path) -> None:
    print(offer_only(fresh_host, "Ciphers aes128-cbc\nMACs hmac-sha1\n"))
    assert_refused(facts(fresh_host, tmp_path), fresh_host, ["aes128-cbc", "hmac-sha1"],
                   "ciphers=+aes128-cbc,macs=+hmac-sha1")
    project = tmp_path / "project"
    project.mkdir()
    (project / "driftctl.yaml").write_text('ssh_algorithms: "ciphers=+aes128-cbc,macs=+hmac-sha1"\n')
    r = facts(fresh_host, tmp_path, cwd=project)
    assert_accepted_with_warning(r, fresh_host, ["aes128-cbc", "hmac-sha1", "ssh_algorithms"])


@pytest.mark.parametrize(
    ("config", "category", "name"),
    [
        ("HostKeyAlgorithms ssh-rsa\nPubkeyAcceptedAlgorithms +ssh-rsa\n", "hostkeys", "ssh-rsa"),
        ("KexAlgorithms diffie-hellman-group14-sha1\n", "kex", "diffie-hellman-group14-sha1"),
    ],
    ids=["ssh-rsa-host-key", "sha1-kex"],
)
def test_sha1_signatures_or_kex_only_is_refused(
    fresh_host: Any, tmp_path: Path, config: str, category: str, name: str
) -> None:
    print(offer_only(fresh_host, config))
    r = facts(fresh_host, tmp_path)
    why = sshpolicy.weakness(category, name)
    if name in sshpolicy.supported(category):  # older paramiko still implements it: the setting allows it
        assert_refused(r, fresh_host, [f"{name} ({why})"], f"{category}=+{name}")
        r = facts(fresh_host, tmp_path, env={"DRIFTCTL_SSH_ALGORITHMS": f"{category}=+{name}"})
        assert_accepted_with_warning(r, fresh_host, [name])
    else:  # refused, and no setting can bring back what paramiko no longer implements
        assert_refused(r, fresh_host, [f"{name} ({why})"], None)
        assert "no setting can allow it" in r.output
        r = facts(fresh_host, tmp_path, env={"DRIFTCTL_SSH_ALGORITHMS": f"{category}=+{name}"})
        assert r.rc == ExitCode.INPUT, r.output
        assert "ssh_algorithms" in r.stderr and f"'{name}' ({why}) is not implemented by paramiko" in r.stderr


def test_a_bad_setting_is_an_input_error_before_any_host_is_contacted(fleet: Any, tmp_path: Path) -> None:
    r = driftctl("facts", fleet.inventory_dir, state_dir=tmp_path / "state",
                 env={"DRIFTCTL_SSH_ALGORITHMS": "ciphers=+aes128-cbx"})
    assert r.rc == ExitCode.INPUT, r.output
    assert "ssh_algorithms" in r.stderr and "unknown algorithm 'aes128-cbx'" in r.stderr
    assert "host(s)" not in r.stdout


@pytest.mark.parametrize("where", ["env", "inventory"])
def test_modern_servers_get_no_warning_even_when_weak_ones_are_allowed(
    fleet: Any, tmp_path: Path, where: str
) -> None:
    value = "ciphers=+aes128-cbc,macs=+hmac-sha1"
    fh = fleet.hosts[0]
    if where == "env":
        r = facts(fh, tmp_path, env={"DRIFTCTL_SSH_ALGORITHMS": value})
    else:
        r = facts(fh, tmp_path, host_vars=f'driftctl_ssh_algorithms: "{value}"\n')
    assert r.rc == ExitCode.OK, r.output
    assert "weak SSH algorithms" not in r.stderr
