"""docs/first-manifest.md, step by step, on a real host: ``driftctl init``, only the connection lines of
the scaffold's hosts.yaml edited (its group ``dev`` and host name ``web1`` kept), then every command
the page shows, with the exit codes and outputs it promises."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from e2ehelp import driftctl

pytestmark = pytest.mark.fleet


def test_the_first_manifest_walkthrough(fresh_host: Any, tmp_path: Path) -> None:
    host = fresh_host
    state = tmp_path / "state"
    assert driftctl("init", "mysite", state_dir=state, cwd=tmp_path).rc == 0
    site = tmp_path / "mysite"

    def run(*argv: str) -> Any:
        return driftctl(*argv, state_dir=state, cwd=site)

    # 2. point the inventory at the host: the example address replaced, connection variables added
    hosts = site / "inventory" / "dev" / "hosts.yaml"
    text = hosts.read_text()
    old = "          ansible_host: 192.0.2.10   # an example address (TEST-NET-1): put your host's here\n"
    assert old in text
    hosts.write_text(text.replace(old, "".join(f"          {k}: {v}\n" for k, v in (
        ("ansible_host", host.address), ("ansible_port", host.port),
        ("ansible_ssh_private_key_file", host.key_file), ("driftctl_known_hosts", host.known_hosts)))))
    shown = run("inventory", "inventory/dev")
    assert shown.rc == 0 and "web1" in shown.stdout and "dev" in shown.stdout, shown.output
    where = run("inventory", "inventory/dev", "--host", "web1")
    assert where.rc == 0 and "group_vars/all.yml" in where.stdout, where.output
    assert run("facts", "inventory/dev").rc == 0

    # 3. plan: the rendered template's diff, exit 0 (a plan was made); check exits 2; a typo is an error
    # with file:line
    planned = run("plan", "inventory/dev")
    assert planned.rc == 0, planned.output
    assert run("plan", "inventory/dev", "--detailed-exitcode").rc == 2
    assert "file:/etc/motd" in planned.stdout and "ops team <ops@example.com>" in planned.stdout
    assert "host     web1" in planned.stdout
    assert run("check", "inventory/dev").rc == 2
    resources = site / "manifests" / "roles" / "base" / "resources.yaml"
    good = resources.read_text()
    resources.write_text(good.replace("template: motd.j2", "tempalte: motd.j2"))
    typo = run("plan", "inventory/dev")
    assert typo.rc == 1 and "manifests/roles/base/resources.yaml:4" in typo.output, typo.output
    resources.write_text(good)

    # 4. apply, then check finds nothing to change
    applied = run("apply", "inventory/dev")
    assert applied.rc == 2, applied.output
    assert "ops team <ops@example.com>" in host.sh("cat /etc/motd").stdout_text
    again = run("check", "inventory/dev")
    assert again.rc == 0, again.output

    # 5. drift: corrective after a hand edit; history; remediate; no drift
    host.sh("echo 'hand edit' >> /etc/motd")
    drifted = run("drift", "inventory/dev")
    assert drifted.rc == 2 and "corrective" in drifted.output, drifted.output
    history = run("history", "inventory/dev")
    assert history.rc == 0 and "file:/etc/motd" in history.stdout, history.output
    assert run("drift", "inventory/dev", "--remediate").rc == 2
    assert "hand edit" not in host.sh("cat /etc/motd").stdout_text
    clean = run("drift", "inventory/dev")
    assert clean.rc == 0, clean.output
