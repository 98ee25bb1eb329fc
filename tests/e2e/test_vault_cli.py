"""Ansible Vault through the CLI, as a user types it.

Input errors (no password, a wrong one, an untrusted password file, a damaged value): exit 1 with the
file, the line and the vault id, before any host is contacted (the host is 127.0.0.1 on a closed
port: trying it would exit 8).

Then three vaulted canaries on a real host: a ``!vault`` value in group_vars (used in a template, a
file's content and an exec's title), a whole vault-encrypted host_vars file (used in a line's title
and text), and a ``!vault`` value in the manifest's own ``vars:`` (a file's path and content). They
reach the host, and no piece of any of them is in any sink: stdout and stderr of plan, check, apply,
drift, history and report, the reports directory and the store (SQLite, binary columns decompressed).
"""

from __future__ import annotations

import secrets
import textwrap
from pathlib import Path
from typing import Any

import pytest
from e2ehelp import CLIResult, driftctl, write_inventory
from test_input_errors_cli import closed_port

from driftctl import vault

PASSWORD = "e2e-vault-" + secrets.token_hex(8)
CANARIES = {name: f"VAULT{name.upper()}-" + secrets.token_hex(10) for name in ("inv", "whole", "manifest")}
WINDOW = 10  # any 10 characters of a canary in a row are a leak (as in test_canary_secret)


def vaulted(name: str, value: str, vault_id: str | None = "prod", password: str = PASSWORD) -> str:
    return vault.encrypt_string(name, value, password, vault_id)


def password_file(tmp_path: Path, text: str = PASSWORD, mode: int = 0o600) -> Path:
    p = tmp_path / f"pw-{secrets.token_hex(3)}"
    p.write_text(text + "\n")
    p.chmod(mode)
    return p


def offline_inventory(tmp_path: Path, group_vars: str) -> Path:
    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "hosts.yaml").write_text(f"all:\n  hosts:\n    web1:\n      ansible_host: 127.0.0.1\n"
                                    f"      ansible_port: {closed_port()}\n")
    (inv / "group_vars" / "all.yaml").write_text(group_vars)
    return inv


MOTD = "resources:\n  - file: /etc/motd\n    content: '{{ token }}'\n"


def simple_manifests(root: Path, resources: str = MOTD) -> Path:
    (root / "roles" / "r").mkdir(parents=True)
    (root / "site.yaml").write_text("- hosts: all\n  roles: [r]\n")
    (root / "roles" / "r" / "resources.yaml").write_text(resources)
    return root


def plan(tmp_path: Path, inv: Path, tree: Path, *args: Any) -> CLIResult:
    return driftctl("plan", inv, "-m", tree, *args, "--connect-timeout", "5", state_dir=tmp_path / "state")


def test_vault_input_errors_exit_1_before_any_host(tmp_path: Path) -> None:
    inv = offline_inventory(tmp_path, "plain: 1\n" + vaulted("token", "t0k3n-value"))
    tree = simple_manifests(tmp_path / "m")
    where = f"{inv / 'group_vars' / 'all.yaml'}:2:"

    r = plan(tmp_path, inv, tree)
    assert r.rc == 1 and f"{where} vault-encrypted data (vault id 'prod') but no vault password was given" in r.stderr

    r = plan(tmp_path, inv, tree, "--vault-password-file", password_file(tmp_path, "not-it"))
    assert r.rc == 1 and f"{where} cannot decrypt vault data with vault id 'prod'" in r.stderr, r.output
    assert "not-it" not in r.output

    shared = password_file(tmp_path, mode=0o666)
    r = plan(tmp_path, inv, tree, "--vault-id", f"prod@{shared}")
    assert r.rc == 1 and f"vault id 'prod' ({shared}): refused: the password file is writable by every user" \
        in r.stderr, r.output

    r = plan(tmp_path, inv, tree, "--vault-id", f"prod@{tmp_path / 'missing'}")
    assert r.rc == 1 and "the password file does not exist" in r.stderr, r.output

    damaged = offline_inventory(tmp_path / "d", "a: 1\nb: 2\ntoken: !vault |\n  $ANSIBLE_VAULT;1.2;AES256;prod\n  3g\n")
    r = plan(tmp_path, damaged, tree, "--vault-password-file", password_file(tmp_path))
    assert r.rc == 1 and f"{damaged / 'group_vars' / 'all.yaml'}:3: damaged vault data" in r.stderr, r.output

    # the right password: the run goes on to the host (closed port: unreachable, exit 8)
    r = plan(tmp_path, inv, tree, "--vault-id", f"prod@{password_file(tmp_path)}")
    assert r.rc == 8, r.output
    assert "t0k3n-value" not in r.output


def hits(data: bytes) -> list[str]:
    found = []
    for canary in CANARIES.values():
        for i in range(len(canary) - WINDOW + 1):
            piece = canary[i:i + WINDOW].encode()
            if piece in data or piece.hex().encode() in data:
                found.append(canary[i:i + WINDOW])
    return found


@pytest.mark.fleet
@pytest.mark.slow
def test_vaulted_canaries_reach_the_host_and_no_sink(fresh_host: Any, tmp_path: Path) -> None:
    from test_canary_secret import sqlite_sinks

    inputs = tmp_path / "in"
    pw = password_file(inputs.parent)
    inv = write_inventory(inputs / "inv", [fresh_host], all_vars=vaulted("canary", CANARIES["inv"]))
    (inv / "host_vars").mkdir()
    (inv / "host_vars" / f"{fresh_host.name}.yaml").write_text(
        vault.encrypt(f"whole: {CANARIES['whole']}\n", PASSWORD, "prod"))
    tree = inputs / "m"
    (tree / "roles" / "v" / "templates").mkdir(parents=True)
    (tree / "site.yaml").write_text("- hosts: all\n  roles: [v]\n")
    (tree / "roles" / "v" / "templates" / "app.conf.j2").write_text("# managed\ntoken = {{ canary }}\n")
    resources = "vars:\n" + textwrap.indent(vaulted("mine", CANARIES["manifest"], None), "  ") + """
resources:
  - directory: /etc/vault-canary
  - file: /etc/vault-canary/app.conf
    template: app.conf.j2
  - file: "/etc/vault-canary/m-{{ mine }}"
    content: "mine={{ mine }}\\n"
  - exec: "/usr/bin/touch /var/tmp/vault-{{ canary }}"
    unless: "/usr/bin/test -e /var/tmp/vault-{{ canary }}"
  - exec: touch-edits
    command: ["/usr/bin/touch", "/etc/vault-canary/edits"]
    unless: "/usr/bin/test -e /etc/vault-canary/edits"
  - line: "whole-{{ whole }}"
    path: /etc/vault-canary/edits
    text: "WHOLE={{ whole }}"
    match: "^WHOLE="
    require: [exec:touch-edits]
"""
    (tree / "roles" / "v" / "resources.yaml").write_text(resources)
    out = tmp_path / "out"
    state, reports = out / "state", out / "reports"
    args = (inv, "-m", tree, "--vault-password-file", pw)
    runs: dict[str, CLIResult] = {}

    def run(label: str, *argv: Any) -> CLIResult:
        result = driftctl(*argv, state_dir=state)
        runs[label] = result
        assert result.rc != 1, f"{label}: {result.output}"
        return result

    run("plan", "plan", *args, "-v", "--diff")
    planned = run("plan --json", "plan", *args, "--json")
    run("check", "check", *args, "-v", "--diff")
    applied = run("apply", "apply", *args, "-v", "--diff")
    assert applied.rc == 2, applied.output
    run("apply --json (again)", "apply", *args, "--json", "-v")

    assert fresh_host.sh("cat /etc/vault-canary/app.conf").stdout_text == f"# managed\ntoken = {CANARIES['inv']}\n"
    assert fresh_host.sh(f"cat '/etc/vault-canary/m-{CANARIES['manifest']}'").stdout_text == \
        f"mine={CANARIES['manifest']}\n"
    assert fresh_host.sh(f"test -e /var/tmp/vault-{CANARIES['inv']}").rc == 0
    assert fresh_host.sh("cat /etc/vault-canary/edits").stdout_text == f"WHOLE={CANARIES['whole']}\n"
    assert hits(fresh_host.sh("cat /etc/vault-canary/app.conf /etc/vault-canary/edits").stdout)  # the grep works
    ids = [r["id"] for r in planned.json()["hosts"][0]["resources"]]
    assert sorted(i.partition(":")[0] for i in ids if ":secret-" in i) == ["exec", "file", "line"], ids

    fresh_host.sh("echo tampered > /etc/vault-canary/app.conf && echo WHOLE=x > /etc/vault-canary/edits")
    drift = run("drift", "drift", *args, "-v", "--diff")
    assert drift.rc & 2, drift.output
    run("drift --json", "drift", *args, "--json")
    run("drift --report-dir", "drift", *args, "--report-dir", reports)
    run("history --json", "history", inv, "--json")
    for fmt in ("json", "junit", "markdown", "html", "prometheus"):
        run(f"report -f {fmt}", "report", inv, "-f", fmt)
    run("inventory --host", "inventory", inv, "--host", fresh_host.name, "--vault-password-file", pw)
    run("drift --remediate", "drift", *args, "--remediate", "-v")

    sinks: dict[str, bytes] = {}
    for label, result in runs.items():
        sinks[f"{label}: stdout"] = result.stdout.encode()
        sinks[f"{label}: stderr"] = result.stderr.encode()
    for path in sorted(out.rglob("*")):
        if path.is_file():
            sinks[str(path)] = path.read_bytes()
    stores = list(out.rglob("*.sqlite"))
    assert stores
    for p in stores:
        sinks.update(sqlite_sinks(p))
    leaks = {where: found for where, data in sinks.items() if (found := hits(data))}
    assert leaks == {}, f"{len(leaks)} of {len(sinks)} sinks hold a canary: {sorted(leaks)}"
    assert "********" in runs["inventory --host"].stdout, runs["inventory --host"].output
