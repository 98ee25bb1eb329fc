"""Baked units as a user checks them: a role with a unit (its file and a drop-in), a timer and its
service is baked with the CLI onto the Debian base, loaded and booted with sshd; then, over SSH,
`check` finds nothing to change, `bake-verify` says in sync and `compare` finds the host and its image
the same, until the timer is disabled by hand. The booted container is read with podman exec."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from test_bake_cli import ROLE, booted, driftctl  # noqa: F401 - booted is a fixture
from test_bake_podman import debian_base, podman  # noqa: F401 - debian_base is a fixture

pytestmark = [pytest.mark.fleet, pytest.mark.podman, pytest.mark.slow]

UNITS = """\
  - unit: app.service
    content: "[Service]\\nExecStart=/usr/bin/sleep infinity\\n\\n[Install]\\nWantedBy=multi-user.target\\n"
    dropins:
      10-nice.conf: "[Service]\\nNice=5\\n"
    enabled: true
    state: started
  - unit: tick.service
    content: "[Service]\\nType=oneshot\\nExecStart=/bin/true\\n"
  - unit: tick.timer
    content: "[Timer]\\nOnCalendar=hourly\\n\\n[Install]\\nWantedBy=timers.target\\n"
    enabled: true
    state: started
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """test_bake_cli's project (one host, web1), its role with the units too."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "key")], check=True)
    (tmp_path / "manifests" / "roles" / "app").mkdir(parents=True)
    (tmp_path / "manifests" / "site.yaml").write_text("- hosts: all\n  roles: [app]\n")
    (tmp_path / "manifests" / "roles" / "app" / "resources.yaml").write_text(ROLE + UNITS)
    (tmp_path / "inventory" / "host_vars").mkdir(parents=True)
    public = (tmp_path / "key.pub").read_text().strip()
    (tmp_path / "inventory" / "host_vars" / "web1.yaml").write_text(f"app_port: 8080\nci_key: {json.dumps(public)}\n")
    (tmp_path / "inventory" / "hosts.yaml").write_text("all:\n  hosts:\n    web1:\n      ansible_host: 127.0.0.1\n")
    return tmp_path


def test_a_baked_unit_boots_and_verify_compare_and_check_agree(booted: tuple[Path, str]) -> None:  # noqa: F811
    project, container = booted
    shown = podman("exec", container, "systemctl", "show", "-p", "ActiveState,UnitFileState,Nice,NeedDaemonReload",
                   "app.service").stdout.decode()
    assert sorted(shown.split()) == ["ActiveState=active", "NeedDaemonReload=no", "Nice=5", "UnitFileState=enabled"]
    timer = podman("exec", container, "systemctl", "is-active", "tick.timer", check=False).stdout.decode()
    assert timer.strip() == "active"

    check = driftctl("check", "inventory", "-m", "manifests", cwd=project)
    assert check.returncode == 0, check.stdout + check.stderr
    verified = driftctl("bake-verify", "inventory", "out", "--host", "web1", "-m", "manifests", cwd=project)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    same = driftctl("compare", "inventory", "--host", "web1", "--image", "out", "-m", "manifests", cwd=project)
    assert same.returncode == 0, same.stdout + same.stderr
    assert "0 of 13 resource(s) differ between the host and the image" in same.stdout, same.stdout

    podman("exec", container, "systemctl", "disable", "--now", "tick.timer")
    drifted = driftctl("compare", "inventory", "--host", "web1", "--image", "out", "-m", "manifests", "--json",
                       cwd=project)
    assert drifted.returncode == 2, drifted.stdout + drifted.stderr
    rows = {r["id"]: r for r in json.loads(drifted.stdout)["resources"] if r["differs"]}
    assert list(rows) == ["unit:tick.timer"], rows
    assert sorted(rows["unit:tick.timer"]["differs"]) == ["enabled: host False, image True",
                                                         "running: host False, image True"], rows
