"""The ``--json`` outputs that need a host, against the fleet, validated against their published schemas
(driftctl/schemas/, docs/json.md): facts, plan (on the site ``driftctl init`` scaffolds), compare and
prune of the hosts' backups. The outputs that need no host: tests/unit/test_json_schemas.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from e2ehelp import REPO, driftctl, write_inventory

from driftctl.schemas import REPORT, validator

pytestmark = pytest.mark.fleet


def valid(name: str, doc: Any) -> Any:
    errors = sorted(validator(name).iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message[:300]}" for e in errors[:5])
    return doc


@pytest.fixture
def inventory(fleet: Any, tmp_path: Path) -> Path:
    return write_inventory(tmp_path / "inv", fleet.hosts[:2])


def test_facts_json(fleet: Any, inventory: Path, tmp_path: Path) -> None:
    result = driftctl("facts", inventory, "--json", state_dir=tmp_path / "state")
    assert result.rc == 0, result.output
    doc = valid("facts", result.json())
    assert [h["name"] for h in doc["hosts"]] == [h.name for h in fleet.hosts[:2]]
    assert all(h["facts"]["distribution"] for h in doc["hosts"])


def test_facts_json_with_an_unreachable_host(fleet: Any, tmp_path: Path) -> None:
    inv = write_inventory(tmp_path / "inv", fleet.hosts[:1])
    with (inv / "hosts.yaml").open("a") as f:
        f.write("    gone:\n      ansible_host: 127.0.0.1\n      ansible_port: 1\n")
    result = driftctl("facts", inv, "--json", state_dir=tmp_path / "state")
    assert result.rc == 8, result.output
    doc = valid("facts", result.json())
    assert [h["status"] for h in doc["hosts"]] == ["ok", "unreachable"]


def test_init_site_plans_against_a_fleet_host_and_its_plan_json_is_a_report(fleet: Any, tmp_path: Path) -> None:
    """`driftctl init`, the host's address put in, then inventory and plan succeed as docs/first-manifest.md says."""
    state = tmp_path / "state"
    assert driftctl("init", "site", state_dir=state, cwd=tmp_path).rc == 0
    site = tmp_path / "site"
    host = fleet.hosts[0]
    write_inventory(site / "inventory" / "dev", [host])  # the scaffold's hosts.yaml with a real address
    shown = driftctl("inventory", "inventory/dev", state_dir=state, cwd=site)
    assert shown.rc == 0, shown.output
    plan = driftctl("plan", "--detailed-exitcode", "inventory/dev", "--diff", state_dir=state, cwd=site)
    assert plan.rc == 2, plan.output  # /etc/motd would change
    assert "file:/etc/motd" in plan.stdout
    assert "ops team <ops@example.com>" in plan.stdout  # the template, with the inventory's group_vars
    doc = valid(REPORT, json.loads(driftctl("plan", "inventory/dev", "--json", state_dir=state, cwd=site).stdout))
    assert doc["command"] == "plan" and doc["hosts"][0]["name"] == host.name
    assert "ops team" not in host.sh("cat /etc/motd").stdout_text  # a plan changed nothing


def test_compare_json(fleet: Any, tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "tests" / "unit"))
    from test_bake_support import make_tiny_base

    project = tmp_path / "project"
    make_tiny_base(project / "base")
    write_inventory(project / "inv", fleet.hosts[:1])
    role = project / "manifests" / "roles" / "demo"
    role.mkdir(parents=True)
    (project / "manifests" / "site.yaml").write_text("- hosts: all\n  roles: [demo]\n")
    (role / "resources.yaml").write_text(
        'resources:\n  - file: /etc/driftctl-schema-test\n    content: "baked\\n"\n    mode: "0644"\n')
    name = fleet.hosts[0].name
    state = tmp_path / "state"
    baked = driftctl("bake", "inv", "--host", name, "--base", "base", "-o", "img", "--no-build-container", "--json",
                     state_dir=state, cwd=project, env={"SOURCE_DATE_EPOCH": "1700000000"})
    assert baked.rc == 0, baked.output
    valid("bake", baked.json())
    compared = driftctl("compare", "inv", "--host", name, "--image", "img", "--json", state_dir=state, cwd=project)
    assert compared.rc == 2, compared.output  # the image has the file, the host not
    doc = valid("compare", compared.json())
    assert doc["host_status"] == "changed"  # the host lacks the file: one change pending there
    assert doc["resources"][0]["host"].endswith("to change") and doc["resources"][0]["image"] == "in sync"


def test_prune_with_backups_json(fleet: Any, inventory: Path, tmp_path: Path) -> None:
    """Backups examined on the hosts; the policy keeps everything (the session fleet is shared)."""
    result = driftctl("prune", inventory, "--json", "--backup-keep", "100000", "--backup-max-age-days", "100000",
                      state_dir=tmp_path / "state")
    assert result.rc == 0, result.output
    doc = valid("prune", result.json())
    assert doc["backups"]["examined"] is True and len(doc["backups"]["hosts"]) == 2
