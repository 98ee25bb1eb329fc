"""The ``--json`` outputs of a real run history on a fleet host, validated against the published schemas:
apply (with a failed resource), then history, drift (clean, then with hand-made drift and an unmanaged
file), ``report -f json``, ``ignore list`` with a rule, and the edge cases of an empty store. The schemas
of outputs that need no host on tests/unit/test_json_schemas.py's synthetic store; this file feeds them
what driftctl itself wrote."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from e2ehelp import driftctl, write_inventory

from driftctl.schemas import REPORT, validator

pytestmark = pytest.mark.fleet

RESOURCES = """\
watch:
  - /etc/driftctl-watched
resources:
  - file: /etc/driftctl-schema-runs
    content: "one\\n"
    mode: "0644"
  - unit: schema-bad.service
    content: "[Service]\\nType=oneshot\\nRemainAfterExit=yes\\nExecStart=/bin/false\\n"
    state: started
"""


def valid(name: str, text: str) -> Any:
    try:
        doc = json.loads(text)
    except ValueError:
        raise AssertionError(f"not JSON: {text[:500]}") from None
    errors = sorted(validator(name).iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message[:300]}" for e in errors[:5])
    return doc


def test_a_real_run_history_fits_the_schemas(fresh_host: Any, tmp_path: Path) -> None:
    host = fresh_host
    site = tmp_path / "manifests"
    (site / "roles" / "demo").mkdir(parents=True)
    (site / "site.yaml").write_text("- hosts: all\n  roles: [demo]\n")
    (site / "roles" / "demo" / "resources.yaml").write_text(RESOURCES)
    host.sh("mkdir -p /etc/driftctl-watched")
    inv = write_inventory(tmp_path / "inv", [host])
    with (inv / "hosts.yaml").open("a") as f:  # and a host that is down: unreachable in every run
        f.write("    gone:\n      ansible_host: 127.0.0.1\n      ansible_port: 1\n")
    state = tmp_path / "state"

    def run(*argv: str) -> Any:
        return driftctl(*argv, state_dir=state)

    # an empty store: history has no events, report has no run (an error, not JSON), ignore list is []
    empty = run("history", inv, "--json")
    assert empty.rc == 0, empty.output
    assert valid("history", empty.stdout)["events"] == []
    assert run("report", inv, "-f", "json").rc == 1
    assert valid("ignore-list", run("ignore", "list", inv, "--json").stdout) == []

    applied = run("apply", inv, "-m", site, "--json")
    assert applied.rc == 2 | 4 | 8, applied.output  # changes, a failed resource (the unit's start), unreachable
    doc = valid(REPORT, applied.stdout)
    assert [h["status"] for h in doc["hosts"]] == ["failed", "unreachable"], applied.output
    statuses = {r["id"]: r["status"] for r in doc["hosts"][0]["resources"]}
    assert statuses["file:/etc/driftctl-schema-runs"] == "changed"
    assert statuses["unit:schema-bad.service"] == "failed"

    kinds = {e["kind"] for e in valid("history", run("history", inv, "--json").stdout)["events"]}
    assert {"applied", "failed", "unreachable"} <= kinds, kinds
    clean = run("drift", inv, "-m", site, "--json")
    valid(REPORT, clean.stdout)

    # drift by hand: the managed file edited, a new file in the watched directory
    host.sh("echo two > /etc/driftctl-schema-runs; echo new > /etc/driftctl-watched/extra")
    drifted = run("drift", inv, "-m", site, "--json")
    assert drifted.rc == 2 | 8, drifted.output
    doc = valid(REPORT, drifted.stdout)
    got = {r["id"]: r for r in doc["hosts"][0]["resources"]}
    assert got["file:/etc/driftctl-schema-runs"]["drift"] == "corrective", got
    assert "/etc/driftctl-watched/extra" in json.dumps(doc["hosts"][0]["unmanaged"])  # the schema saw one
    report = valid(REPORT, run("report", inv, "-f", "json").stdout)
    assert report["command"] == "drift"
    events = valid("history", run("history", inv, "--json").stdout)["events"]
    assert "drift-found" in {e["kind"] for e in events}, events
    added = run("ignore", "add", inv, "--target", "file:/etc/driftctl-schema-runs", "--reason", "test",
                "--expires", "2099-12-31")
    assert added.rc == 0, added.output
    rules = valid("ignore-list", run("ignore", "list", inv, "--json").stdout)
    assert [r["target"] for r in rules] == ["file:/etc/driftctl-schema-runs"]
    ignored = run("drift", inv, "-m", site, "--json")
    valid(REPORT, ignored.stdout)
    valid("history", run("history", inv, "--json", "--host", host.name, "--since", "1d").stdout)
