"""`driftctl facts` as a user types it, against the real fleet."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

fleetlib = sys.modules["driftctl_test_fleet"]
DRIFTCTL = str(Path(sys.executable).parent / "driftctl")


@pytest.fixture
def run(tmp_path: Path) -> Any:
    """Run driftctl in an empty directory, with private HOME and state (nothing of the controller leaks in)."""
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "XDG_STATE_HOME": str(tmp_path / "state"), "NO_COLOR": "1"}
    env.pop("SSH_AUTH_SOCK", None)
    env.pop("XDG_CONFIG_HOME", None)

    def _run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [DRIFTCTL, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )

    return _run


@pytest.fixture(scope="module")
def four_hosts() -> Iterator[Any]:
    fleet_id = fleetlib.new_session_id("tre")
    state = fleetlib.STATE_DIR / "sessions" / fleet_id
    try:
        yield fleetlib.start_fleet(
            fleet_id, 4, inventory_dir=state / "inventory", known_hosts=state / "known_hosts",
            owner=fleetlib.current_owner(), host_prefix="box",
        )
    finally:
        fleetlib.down(fleet_id)
        shutil.rmtree(state, ignore_errors=True)


def test_table_shows_every_host(fleet: Any, run: Any) -> None:
    r = run("facts", str(fleet.inventory_dir))
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    for fh in fleet.hosts:
        [row] = [ln for ln in lines if ln.split("│")[0].strip() == fh.name]
        cells = [c.strip() for c in row.split("│")]
        assert cells[1] == "ok"
        assert cells[2] == "debian 12 (bookworm)"
        assert cells[3] == fh.exec(["uname", "-r"]).stdout_text.strip()
        assert cells[5] == fh.exec(["hostname"]).stdout_text.strip()
        assert cells[7] == "systemd" and cells[8] == "apt"
    assert f"{len(fleet.hosts)} host(s): {len(fleet.hosts)} ok" in r.stdout


def test_json_is_one_document(fleet: Any, run: Any) -> None:
    r = run("facts", str(fleet.inventory_dir), "--json", "--parallel", "2")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["command"] == "facts" and doc["exit_code"] == 0
    assert [h["name"] for h in doc["hosts"]] == [fh.name for fh in fleet.hosts]
    for fh, h in zip(fleet.hosts, doc["hosts"], strict=True):
        assert h["status"] == "ok"
        assert h["facts"]["hostname"] == fh.exec(["hostname"]).stdout_text.strip()
        assert h["round_trips"] == 1


def test_limit(fleet: Any, run: Any) -> None:
    r = run("facts", str(fleet.inventory_dir), "--limit", fleet.hosts[1].name, "--json")
    assert r.returncode == 0, r.stderr
    assert [h["name"] for h in json.loads(r.stdout)["hosts"]] == [fleet.hosts[1].name]


def test_unreachable_host_exits_8_and_the_others_report(four_hosts: Any, run: Any) -> None:
    down = four_hosts.hosts[3]
    subprocess.run(["podman", "stop", "-t", "0", down.container], check=True, capture_output=True)
    r = run("facts", str(four_hosts.inventory_dir))
    assert r.returncode == 8, r.stdout + r.stderr
    assert f"{down.name}: unreachable: connection refused by 127.0.0.1:{down.port}" in r.stdout
    assert "4 host(s): 3 ok, 1 unreachable" in r.stdout
    j = run("facts", str(four_hosts.inventory_dir), "--json")
    assert j.returncode == 8
    hosts = {h["name"]: h for h in json.loads(j.stdout)["hosts"]}
    assert hosts[down.name]["status"] == "unreachable"
    assert [n for n, h in hosts.items() if h["status"] == "ok"] == [fh.name for fh in four_hosts.hosts[:3]]


def test_unknown_host_key_then_trust_on_first_use(fleet: Any, run: Any, tmp_path: Path) -> None:
    fh = fleet.hosts[0]
    inv = tmp_path / "inv"
    inv.mkdir()
    (inv / "hosts.yaml").write_text(
        "all:\n  hosts:\n    newbox:\n"
        f"      ansible_host: 127.0.0.1\n      ansible_port: {fh.port}\n      ansible_user: root\n"
        f"      ansible_ssh_private_key_file: {fleet.key.private}\n"
    )
    fingerprints = fh.sh("for f in /etc/ssh/ssh_host_*_key.pub; do ssh-keygen -lf $f; done").stdout_text.split()
    refused = run("facts", str(inv))
    assert refused.returncode == 8
    assert "unknown host key" in refused.stdout and "--accept-new-host-keys" in refused.stdout
    assert any(fp in refused.stdout for fp in fingerprints if fp.startswith("SHA256:"))
    accepted = run("facts", str(inv), "--accept-new-host-keys")
    assert accepted.returncode == 0, accepted.stdout
    assert "trusted new host key" in accepted.stderr and f"[127.0.0.1]:{fh.port}" in accepted.stderr
    # shown once, the way every warning is (the core logs it, the UI shows it)
    assert accepted.stderr.count("warning: newbox: trusted new host key") == 1
    own = tmp_path / "state" / "driftctl" / "known_hosts"
    assert f"[127.0.0.1]:{fh.port} " in own.read_text()
    again = run("facts", str(inv))
    assert again.returncode == 0, again.stdout
    assert "trusted new host key" not in again.stderr


def test_missing_inventory_is_an_input_error(run: Any, tmp_path: Path) -> None:
    r = run("facts", str(tmp_path / "no-such-inventory"))
    assert r.returncode == 1
    assert "no-such-inventory" in r.stderr
