"""--serial / --max-fail-percentage end to end (issue 11, point 4).

The first batch is a host that cannot be reached (a loopback port nobody listens on); past the
threshold, the fleet hosts of the later batches are never contacted: checked on the hosts themselves
(podman exec): the file the run would write is not there. Below the threshold every
batch runs, in order.
"""

from __future__ import annotations

import socket
import subprocess
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from e2ehelp import driftctl, write_inventory

from driftctl.errors import ExitCode
from driftctl.store import json_schema


def valid(doc: dict[str, Any]) -> dict[str, Any]:
    """The document, after checking it against the report's JSON Schema (strict: a new field must be in it)."""
    import jsonschema

    jsonschema.Draft202012Validator(json_schema()).validate(doc)
    return doc

def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def setup(fleet: Any, tmp_path: Path, dead_first: bool) -> tuple[tuple[Any, ...], str, list[Any]]:
    hosts = fleet.hosts[:2]
    dead = SimpleNamespace(name="dead", address="127.0.0.1", port=closed_port(), key_file=hosts[0].key_file,
                           known_hosts=hosts[0].known_hosts)
    marker = f"/var/tmp/serial-{uuid.uuid4().hex[:8]}"
    root = tmp_path / "manifests"
    (root / "roles" / "s").mkdir(parents=True)
    (root / "site.yaml").write_text("- hosts: all\n  roles: [s]\n")
    (root / "roles" / "s" / "resources.yaml").write_text(
        f"resources:\n  - file: {marker}\n    content: \"{{{{ inventory_hostname }}}}\\n\"\n")
    order = [dead, *hosts] if dead_first else [*hosts, dead]
    inv = write_inventory(tmp_path / "inv", order)
    return (inv, "-m", root), marker, hosts


def test_later_batches_never_start_past_the_threshold(fleet: Any, tmp_path: Path) -> None:
    args, marker, hosts = setup(fleet, tmp_path, dead_first=True)
    try:
        result = driftctl("apply", *args, "--serial", "1", "--max-fail-percentage", "0", "--json",
                          state_dir=tmp_path / "state")
        assert result.rc & ExitCode.ABORTED and result.rc & ExitCode.UNREACHABLE, result.output
        doc = valid(result.json())
        names = [h.name for h in hosts]
        assert doc["serial"]["batches"] == [["dead"], [names[0]], [names[1]]]
        assert doc["serial"]["stopped_after"] == 1 and doc["serial"]["not_started"] == names
        assert "1 of 1 hosts failed" in doc["serial"]["reason"]
        by_name = {h["name"]: h for h in doc["hosts"]}
        assert (by_name["dead"]["status"], by_name["dead"]["batch"]) == ("unreachable", 1)
        for k, name in enumerate(names, 2):
            h = by_name[name]
            assert (h["batch"], h["interrupted"], h["resources"]) == (k, "aborted", [])
            assert h["error"].startswith("not started: batch 1:")
        for h in hosts:  # untouched, as the hosts themselves say
            assert h.exec(["test", "-e", marker]).rc == 1
        assert doc["exit_code"] == result.rc

        text = driftctl("plan", *args, "--serial", "1", "--max-fail-percentage", "0", state_dir=tmp_path / "state")
        assert text.rc & ExitCode.ABORTED, text.output
        assert "batch 1/3: dead" in text.stderr and "batch 2/3" not in text.stderr
        assert f"{names[0]} [batch 2]  not started: batch 1:" in text.stdout
        assert "stopped after batch 1" in text.stdout and "2 not started" in text.stdout

        # the same without a threshold: a batch of one host that failed is every host of it (Ansible stops too)
        plain = driftctl("apply", *args, "--serial", "1", "--json", state_dir=tmp_path / "state")
        assert plain.json()["serial"]["stopped_after"] == 1
        for h in hosts:
            assert h.exec(["test", "-e", marker]).rc == 1
    finally:
        for h in hosts:
            h.exec(["rm", "-f", marker])


def test_every_batch_runs_below_the_threshold(fleet: Any, tmp_path: Path) -> None:
    args, marker, hosts = setup(fleet, tmp_path, dead_first=False)
    try:
        result = driftctl("apply", *args, "--serial", "1,2", "--max-fail-percentage", "50", "--json",
                          state_dir=tmp_path / "state")
        # batch 1 (one fleet host) ok, batch 2 (the other and the dead one): 50% is not more than 50%
        assert result.rc == ExitCode.CHANGES | ExitCode.UNREACHABLE, result.output
        doc = result.json()
        names = [h.name for h in hosts]
        assert doc["serial"]["batches"] == [[names[0]], [names[1], "dead"]]
        assert doc["serial"]["stopped_after"] is None and doc["serial"]["not_started"] == []
        assert [h["batch"] for h in doc["hosts"]] == [1, 2, 2]
        for h in hosts:
            assert h.exec(["cat", marker]).stdout_text == f"{h.name}\n"
    finally:
        for h in hosts:
            h.exec(["rm", "-f", marker])


@pytest.mark.slow
def test_a_black_holed_batch_stops_the_next(fleet: Any, fresh_host: Any, tmp_path: Path) -> None:
    """Batch 1 is a host frozen with ``podman pause`` (its TCP connect never completes: one connect
    timeout); past --max-fail-percentage 50 batch 2 never starts."""
    args, marker, hosts = setup(fleet, tmp_path, dead_first=True)
    inv = write_inventory(tmp_path / "inv2", [fresh_host, *hosts])
    subprocess.run(["podman", "pause", fresh_host.container], check=True, capture_output=True)
    try:
        result = driftctl("apply", inv, *args[1:], "--serial", "1,2", "--max-fail-percentage", "50",
                          "--connect-timeout", "3", "--json", state_dir=tmp_path / "state",
                          env={"DRIFTCTL_CONNECT_TIMEOUT": "3"})
        assert result.rc & ExitCode.ABORTED and result.rc & ExitCode.UNREACHABLE, result.output
        doc = valid(result.json())
        assert doc["serial"]["batches"] == [[fresh_host.name], [h.name for h in hosts]]
        assert doc["serial"]["not_started"] == [h.name for h in hosts]
        assert doc["hosts"][0]["status"] == "unreachable"
        for h in hosts:
            assert h.exec(["test", "-e", marker]).rc == 1
    finally:
        subprocess.run(["podman", "unpause", fresh_host.container], check=False, capture_output=True)
        for h in hosts:
            h.exec(["rm", "-f", marker])
