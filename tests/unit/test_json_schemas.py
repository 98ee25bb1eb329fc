"""Every ``--json`` output has a published, versioned JSON Schema (draft 2020-12) and matches it.

The commands run as a user types them, on a local inventory and store (no host needed); the outputs
that need a host (facts, compare, prune of backups, plan) are validated in
tests/e2e/test_json_schemas_cli.py against the fleet.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest

from driftctl.cli import cli
from driftctl.cli.examples import command_paths
from driftctl.schemas import COMMAND_SCHEMAS, NAMES, REPORT, load, validator

REPO = Path(__file__).resolve().parents[2]


def driftctl(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None) -> Any:
    full = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTCTL_")}
    full.update({"NO_COLOR": "1", **(env or {})})
    proc = subprocess.run([sys.executable, "-m", "driftctl", *args], capture_output=True, text=True, env=full,
                          cwd=cwd, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def valid(name: str, doc: Any) -> Any:
    errors = sorted(validator(name).iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message[:300]}" for e in errors[:5])
    return doc


@pytest.mark.parametrize("name", [*NAMES, REPORT])
def test_each_schema_is_a_valid_2020_12_schema_with_a_versioned_id(name: str) -> None:
    schema = load(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    assert re.fullmatch(rf"urn:driftctl:{name}:v\d+", schema["$id"])
    assert schema.get("title") and schema.get("description")


def test_the_schemas_ship_as_package_data() -> None:
    """Each name is a file in driftctl/schemas/ and every file there is named (none forgotten either way)."""
    files = {p.name.removesuffix(".schema.json") for p in (REPO / "driftctl" / "schemas").glob("*.schema.json")}
    assert files == set(NAMES)


def test_every_command_with_json_output_has_a_schema() -> None:
    """Walk every command: one that takes --json (or prints the report with -f json) is in COMMAND_SCHEMAS."""
    with_json = {path for path, command in command_paths(cli)
                 if any(isinstance(p, click.Option) and "--json" in p.opts for p in command.params)}
    missing = with_json - {key.split(" -")[0] for key in COMMAND_SCHEMAS}
    assert not missing, f"--json without a schema: {sorted(missing)} (driftctl/schemas/)"
    for name in COMMAND_SCHEMAS.values():
        load(name)


def test_a_doc_that_breaks_the_schema_is_caught() -> None:
    """The schemas are strict: a producer's typo fails the tests."""
    doc = {"inventory": "i", "store": "s", "since": None, "events": [], "open_drift": [], "evnets": []}
    assert list(validator("history").iter_errors(doc))
    doc.pop("evnets")
    assert not list(validator("history").iter_errors(doc))
    assert list(validator("history").iter_errors({**doc, "since": "yesterday"}))  # formats are checked


# -- inventory ---------------------------------------------------------------------------------------


def test_inventory_json_outputs() -> None:
    doc = valid("inventory", driftctl("inventory", "inventory/prod", "--json"))
    assert len(doc["hosts"]) == 10
    valid("inventory", driftctl("inventory", "inventory/prod", "--json", "-l", "web:!web-canary*"))
    host = valid("inventory-host", driftctl("inventory", "inventory/prod", "--json", "--host", "db1.prod.example.com"))
    assert host["connection"]["become_password"] == "********"
    valid("inventory-graph", driftctl("inventory", "inventory/prod", "--json", "--graph"))


# -- the store: history, ignore list, report -f json, prune --store-only ------------------------------


@pytest.fixture
def store(tmp_path: Path) -> str:
    from test_store_history_cli import HOUR, motd, save, sshd

    from driftctl.model import Change, HostResult

    url = str(tmp_path / "store.sqlite")
    now = time.time()
    save(url, "apply", now - 50 * HOUR, [
        HostResult("web1", "changed", [motd("changed", changes=[Change("mode", "0600", "0644")]), sshd()]),
        HostResult("web2", "unreachable", error="connection refused"),
    ])
    save(url, "drift", now - 3 * HOUR, [HostResult("web1", "ok", [motd(drift="corrective"), sshd()])])
    save(url, "drift", now - 1 * HOUR, [HostResult("web1", "ok", [motd(), sshd("failed", error="timed out")])])
    return url


def test_history_json(store: str) -> None:
    doc = valid("history", driftctl("history", "inventory/prod", "--state", store, "--json"))
    assert {e["kind"] for e in doc["events"]} == {"applied", "unreachable", "drift-found", "drift-resolved", "failed"}
    valid("history", driftctl("history", "inventory/prod", "--state", store, "--json", "--since", "2d",
                              "--host", "web1"))


def test_ignore_list_json(store: str) -> None:
    assert valid("ignore-list", driftctl("ignore", "list", "inventory/prod", "--state", store, "--json")) == []
    subprocess.run([sys.executable, "-m", "driftctl", "ignore", "add", "inventory/prod", "--state", store,
                    "--target", "file:/etc/motd", "--reason", "INC-42", "--expires", "2099-12-31"], check=True,
                   capture_output=True)
    rules = valid("ignore-list", driftctl("ignore", "list", "inventory/prod", "--state", store, "--json"))
    assert rules[0]["target"] == "file:/etc/motd" and rules[0]["active"] is True


def test_report_json_is_the_report_document(store: str) -> None:
    doc = valid(REPORT, driftctl("report", "inventory/prod", "--state", store, "-f", "json"))
    assert doc["command"] == "drift"


@pytest.mark.parametrize("argv", [["--dry-run"], ["--keep-days", "0"], ["--keep-days", "0.05", "--vacuum"]])
def test_prune_store_only_json(store: str, argv: list[str]) -> None:
    doc = valid("prune", driftctl("prune", "inventory/prod", "--store-only", "--state", store, "--json", *argv))
    assert doc["backups"] is None


def test_prune_dry_run_json_with_hosts_not_examined(store: str) -> None:
    """--dry-run contacts no host: the backups part says so (examined false)."""
    doc = valid("prune", driftctl("prune", "inventory/prod", "--dry-run", "--state", store, "--json"))
    assert doc["backups"]["examined"] is False and doc["store"]["dry_run"] is True


# -- schedule list ------------------------------------------------------------------------------------


def test_schedule_list_json(tmp_path: Path) -> None:
    """A crontab entry and a systemd timer. The crontab is a file behind a stand-in `crontab` program on PATH
    (the real user's crontab is never touched); the units go to --unit-dir."""
    fake = tmp_path / "bin"
    fake.mkdir()
    table = tmp_path / "crontab.txt"
    (fake / "crontab").write_text(
        "#!/bin/sh\n"
        f'f="{table}"\n'
        'case "$1" in\n'
        '  -l) if [ -f "$f" ]; then cat "$f"; else echo "no crontab for $(id -un)" >&2; exit 1; fi ;;\n'
        '  -) cat > "$f" ;;\n'
        '  *) echo "unexpected: $*" >&2; exit 2 ;;\n'
        'esac\n')
    (fake / "crontab").chmod(0o755)
    env = {"PATH": f"{fake}:{os.environ['PATH']}"}
    units = tmp_path / "units"
    common = [str(REPO / "inventory/prod"), "-m", str(REPO / "manifests"), "--state-dir", str(tmp_path / "state")]
    for extra in (["--every", "30m"], ["--every", "1h", "--systemd", "--unit-dir", str(units), "--name", "hourly"]):
        proc = subprocess.run([sys.executable, "-m", "driftctl", "schedule", "install", *common, *extra],
                              capture_output=True, text=True, cwd=tmp_path, env={**os.environ, **env}, timeout=120)
        assert proc.returncode == 0, proc.stderr
    assert "driftctl-schedule: drift-prod" in table.read_text()
    found = valid("schedule-list", driftctl("schedule", "list", "--unit-dir", str(units), "--json", env=env))
    assert [(s["name"], s["kind"], s["every"]) for s in found] == [("drift-prod", "cron", "30m"),
                                                                   ("hourly", "systemd", "1h")]


# -- bake, bake-verify (an image needs no host) ---------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Path:
    from test_bake_support import make_tiny_base

    make_tiny_base(tmp_path / "base")
    (tmp_path / "inv").mkdir()
    (tmp_path / "inv" / "hosts.yaml").write_text("all:\n  hosts:\n    web1:\n      ansible_host: 192.0.2.1\n")
    role = tmp_path / "manifests" / "roles" / "demo"
    role.mkdir(parents=True)
    (tmp_path / "manifests" / "site.yaml").write_text("- hosts: all\n  roles: [demo]\n")
    (role / "resources.yaml").write_text('resources:\n  - file: /etc/motd\n    content: "hello\\n"\n    mode: "0644"\n')
    return tmp_path


def test_bake_and_bake_verify_json(project: Path) -> None:
    env = {"SOURCE_DATE_EPOCH": "1700000000", "DRIFTCTL_STATE_DIR": str(project / "state")}
    baked = valid("bake", driftctl("bake", "inv", "--host", "web1", "--base", "base", "-o", "out",
                                   "--no-build-container", "--json", cwd=project, env=env))
    assert baked["resources"] == [{"id": "file:/etc/motd", "status": "changed", "reason": "baked"}]
    verified = valid("bake-verify", driftctl("bake-verify", "inv", "out", "--host", "web1", "--json",
                                             cwd=project, env=env))
    assert verified["status"] == "ok" and verified["exit"] == 0
    # the older form (-i INVENTORY) gives the same answer
    assert driftctl("bake-verify", "out", "-i", "inv", "--host", "web1", "--json", cwd=project, env=env) == verified
    # an image that differs: exit 2, and still the schema
    (project / "manifests" / "roles" / "demo" / "resources.yaml").write_text(
        'resources:\n  - file: /etc/motd\n    content: "bye\\n"\n    mode: "0600"\n')
    full = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTCTL_")}
    proc = subprocess.run([sys.executable, "-m", "driftctl", "bake-verify", "inv", "out", "--host", "web1", "--json"],
                          capture_output=True, text=True, cwd=project, env={**full, **env}, timeout=120)
    assert proc.returncode == 2, proc.stderr
    differs = valid("bake-verify", json.loads(proc.stdout))
    assert differs["status"] == "changed"
    assert {c["field"] for c in differs["resources"][0]["changes"]} >= {"mode"}
