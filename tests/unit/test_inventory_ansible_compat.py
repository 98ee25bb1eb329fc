"""driftctl reads inventories exactly as Ansible does: the same variables and groups for every host.

The oracle is the real ``ansible-inventory`` (ansible-core, a dev dependency) run on the same
fixture files. Without it these tests fail, so that a missing oracle is seen; set
DRIFTCTL_SKIP_ANSIBLE=1 to skip them on purpose.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from driftctl.inventory import load_inventory

DATA = Path(__file__).parent / "data" / "inventory"
pytestmark = pytest.mark.slow  # ansible-inventory takes a few seconds per call


def _ansible_inventory() -> str:
    if os.environ.get("DRIFTCTL_SKIP_ANSIBLE"):
        pytest.skip("DRIFTCTL_SKIP_ANSIBLE=1")
    search = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    found = shutil.which("ansible-inventory", path=search)
    if found is None:
        pytest.fail("ansible-inventory not found: pip install ansible-core (or set DRIFTCTL_SKIP_ANSIBLE=1)")
    return found


def tmp_home() -> Path:
    """Ansible writes to ~/.ansible by default: keep it out of the user's home."""
    import tempfile

    home = Path(tempfile.gettempdir()) / "driftctl-test-ansible-home"
    home.mkdir(exist_ok=True)
    return home


def _ansible(path: Path) -> dict[str, Any]:
    env = {**os.environ, "ANSIBLE_HOME": str(tmp_home()), "ANSIBLE_LOCAL_TEMP": str(tmp_home() / "tmp")}
    r = subprocess.run([_ansible_inventory(), "-i", str(path), "--list"], capture_output=True, text=True,
                       timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _membership(doc: dict[str, Any]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}

    def walk(group: str, above: set[str]) -> None:
        node = doc.get(group, {})
        for h in node.get("hosts", []):
            out.setdefault(h, set()).update(above | {group})
        for child in node.get("children", []):
            walk(child, above | {group})

    walk("all", set())
    return out


@pytest.mark.parametrize(
    "inventory",
    ["precedence", "equiv/hosts.ini", "equiv/hosts.yaml", "patterns.yaml", "aliases.yaml", "prod"],
)
def test_same_vars_and_groups_as_ansible(inventory, tmp_path):
    path = DATA / inventory
    if inventory == "prod":  # Ansible cannot read driftctl's !secret tag: compare without that file
        shutil.copytree(Path(__file__).parents[2] / "inventory" / "prod", tmp_path / "prod")
        (tmp_path / "prod" / "group_vars" / "db" / "secrets.yaml").unlink()
        path = tmp_path / "prod"
    ours = load_inventory(path)
    theirs = _ansible(path)
    hostvars = theirs["_meta"]["hostvars"]
    membership = _membership(theirs)
    assert set(ours.hosts) == set(membership)
    for name, host in ours.hosts.items():
        assert host.vars == hostvars.get(name, {}), name
        assert set(host.groups) == membership[name], name
