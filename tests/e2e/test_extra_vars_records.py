"""-e values are variables, not records: a password given with -e never reaches the JSON report, the
run record in the store or the report files (D27)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from e2ehelp import driftctl, write_inventory

CANARY = "Xq7CanaryPass9z"


def test_an_extra_variable_value_is_in_no_record(fleet: Any, tmp_path: Path) -> None:
    host = fleet.hosts[0]
    inv = write_inventory(tmp_path / "inv", [host])
    manifests = tmp_path / "m"
    (manifests / "roles" / "r").mkdir(parents=True)
    (manifests / "site.yaml").write_text("- hosts: all\n  roles: [r]\n")
    (manifests / "roles" / "r" / "resources.yaml").write_text(
        "resources:\n  - file: /tmp/driftctl-e-records\n    content: \"{{ greeting }}\\n\"\n")
    state = tmp_path / "state"
    args = ["-m", manifests, "-l", host.name, "-e", f"greeting=hello ansible_become_password={CANARY}",
            "--extra-vars", f'{{"db_password": "{CANARY}"}}']
    plan = driftctl("plan", "--detailed-exitcode", inv, *args, "--json", state_dir=state)
    assert plan.rc == 2, plan.output  # the file would be created: the -e value did reach the catalog
    drift = driftctl("drift", inv, *args, "--json", "--report-dir", tmp_path / "reports", state_dir=state)
    assert drift.rc in (0, 2), drift.output
    for result in (plan, drift):
        assert CANARY not in result.output
        assert "ansible_become_password=********" in result.stdout  # the name stays, for the record
    for report in (tmp_path / "reports").iterdir():
        assert CANARY.encode() not in report.read_bytes(), report.name
    stored = driftctl("report", inv, "-f", "json", state_dir=state)  # the run document, decompressed
    assert stored.rc == 0 and "ansible_become_password=********" in stored.stdout, stored.output
    assert CANARY not in stored.output
    db = sqlite3.connect(state / "driftctl.sqlite")
    dump = "\n".join(db.iterdump())
    assert CANARY not in dump
