"""``driftctl history`` as a user types it, on a store filled with the engine's own report documents."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from driftctl.model import Change, HostResult, ResourceResult, RunResult
from driftctl.report.document import build
from driftctl.store import open_store

INV = "inventory/prod"
HOUR = 3600.0


def fp(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def motd(status: str = "ok", drift: str | None = None, changes: list[Change] | None = None) -> ResourceResult:
    return ResourceResult("file:/etc/motd", status, changes=changes or [], type="file", drift=drift,
                          desired_fingerprint=fp("a"), observed_fingerprint=fp("b" if drift else "a"))


def sshd(status: str = "ok", error: str | None = None) -> ResourceResult:
    return ResourceResult("service:ssh", status, type="service", error=error, desired_fingerprint=fp("s"),
                          observed_fingerprint=fp("s"))


def save(url: str, command: str, started: float, hosts: list[HostResult]) -> None:
    with open_store(url) as store:
        store.save_run(build(RunResult(command, hosts, started=started, finished=started + 5), INV))


@pytest.fixture
def state(store_url: str) -> str:
    now = time.time()
    save(store_url, "apply", now - 50 * HOUR, [
        HostResult("web1", "changed", [motd("changed", changes=[Change("mode", "0600", "0644")]), sshd()]),
        HostResult("web2", "unreachable", error="connection refused"),
    ])
    save(store_url, "drift", now - 3 * HOUR, [HostResult("web1", "ok", [motd(drift="corrective"), sshd()])])
    save(store_url, "drift", now - 1 * HOUR, [
        HostResult("web1", "ok", [motd(drift="corrective"), sshd("failed", error="systemctl timed out")])])
    return store_url


def driftctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "driftctl", *args], capture_output=True, text=True, env=full,
                          timeout=120, cwd=Path(__file__).parent)


def events(result: subprocess.CompletedProcess[str]) -> list[tuple[str, str, str | None]]:
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return [(e["kind"], e["host"], e["subject"]) for e in doc["events"]]


def test_timeline_in_the_terminal(state: str) -> None:
    result = driftctl("history", INV, "--state", state)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any("web2" in line and "unreachable" in line and "connection refused" in line for line in lines)
    assert any("applied" in line and "file:/etc/motd" in line and "applied: mode" in line for line in lines)
    assert any("drift-found" in line and "corrective drift" in line for line in lines)
    assert any("failed" in line and "systemctl timed out" in line for line in lines)
    assert "Open drift: 1 on 1 host" in result.stdout and "2 drift runs" in result.stdout
    words = ("applied", "drift-found", "timed out")
    order = [next(i for i, line in enumerate(lines) if word in line) for word in words]
    assert order == sorted(order)  # oldest first


def test_json_and_filters(state: str) -> None:
    every = events(driftctl("history", "./inventory/prod/", "--state", state, "--json"))
    assert every == [
        ("unreachable", "web2", None), ("applied", "web1", "file:/etc/motd"),
        ("drift-found", "web1", "file:/etc/motd"), ("failed", "web1", "service:ssh"),
    ]
    assert events(driftctl("history", INV, "--state", state, "--json", "--host", "web2")) == [every[0]]
    assert events(driftctl("history", INV, "--state", state, "--json", "--resource", "service:ssh")) == [every[3]]
    assert events(driftctl("history", INV, "--state", state, "--json", "--since", "2d")) == every[2:]
    assert events(driftctl("history", INV, "--state", state, "--json", "--limit", "1")) == every[3:]
    doc = json.loads(driftctl("history", INV, "--state", state, "--json").stdout)
    assert [(d["subject"], d["runs"]) for d in doc["open_drift"]] == [("file:/etc/motd", 2)]


def test_store_chosen_by_settings(state: str, tmp_path: Path) -> None:
    assert len(events(driftctl("history", INV, "--json", env={"DRIFTCTL_STATE": state}))) == 4
    if not state.startswith("postgresql://"):
        state_dir = str(Path(state).parent)  # the default store of a state dir
        assert len(events(driftctl("history", INV, "--json", "--state-dir", state_dir))) == 4
    empty = driftctl("history", INV, "--state-dir", str(tmp_path / "new"))
    assert empty.returncode == 0 and "No history for inventory/prod" in empty.stdout


def test_bad_since_is_an_input_error(tmp_path: Path) -> None:
    result = driftctl("history", INV, "--state-dir", str(tmp_path), "--since", "last tuesday")
    assert result.returncode == 1
    assert "--since" in result.stderr and "7d" in result.stderr
