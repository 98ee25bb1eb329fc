"""The run lock as a user meets it: a stale lock left by a dead run is taken over, and the person running
driftctl is told so on stderr, as every other warning (``warning: ...``), never on stdout."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from e2ehelp import driftctl

from driftctl.store import inventory_key
from driftctl.store.lock import _lock_path


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("command", ["drift", "apply"])
def test_a_stale_lock_taken_over_is_a_warning_on_stderr(tmp_path: Path, command: str) -> None:
    inv = tmp_path / "inventory" / "prod"
    inv.mkdir(parents=True)
    # the host is 127.0.0.1 on a closed port: the run takes the lock, then finds the host unreachable
    (inv / "hosts.yaml").write_text(f"all:\n  hosts:\n    web1:\n      ansible_host: 127.0.0.1\n"
                                    f"      ansible_port: {closed_port()}\n")
    tree = tmp_path / "m"
    (tree / "roles" / "r").mkdir(parents=True)
    (tree / "site.yaml").write_text("- hosts: all\n  roles: [r]\n")
    (tree / "roles" / "r" / "resources.yaml").write_text("resources: []\n")
    state = tmp_path / "state"
    # what a run killed with SIGKILL leaves: its record in a lock file nobody holds any more
    lock_file = _lock_path(state, f"inventory:{inventory_key(inv)}")
    lock_file.parent.mkdir(parents=True, mode=0o700)
    dead = {"pid": 999999, "hostname": "ctl-gone", "user": "alice", "command": "drift inventory/prod",
            "started": "2026-11-28T07:00:00Z"}
    lock_file.write_text(json.dumps(dead))
    os.chmod(lock_file, 0o600)

    r = driftctl(command, inv, "-m", tree, "--json", "--connect-timeout", "5", state_dir=state)

    assert r.rc == 8, r.stderr  # the host is unreachable: the run itself went ahead under the lock
    assert (f"warning: recovered stale lock 'inventory:{inventory_key(inv)}' from pid 999999 on ctl-gone "
            "(alice: drift inventory/prod) since 2026-11-28T07:00:00Z (no longer running)") in r.stderr
    assert r.stderr.count("recovered stale lock") == 1
    assert r.json()["hosts"][0]["status"] == "unreachable"  # stdout is the JSON document alone
    assert "recovered stale lock" not in r.stdout
