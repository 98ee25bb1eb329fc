"""The controller collects a host's pull runs in its next probe (drift), as runs of that host only.

The "host" is this machine (local transport); its pull cache is in a temp dir, named to the controller
by ``driftctl_pull_outbox``. Both sides run as a user types them."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_pull import commit, git, resources

pytestmark = pytest.mark.applies_here  # its host lock is this machine's (tests/conftest.py)

HERE_ENV = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTCTL_")} | {"NO_COLOR": "1"}


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = HERE_ENV | {"DRIFTCTL_BACKUP_DIR": str(cwd / "backup")}  # not this machine's /var/lib/driftctl
    return subprocess.run([sys.executable, "-m", "driftctl", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


@pytest.fixture
def two_sides(tmp_path: Path) -> dict[str, Path]:
    src, target, ctl = tmp_path / "src", tmp_path / "target", tmp_path / "ctl"
    src.mkdir()
    target.mkdir()
    git(src, "init", "-q", "-b", "main")
    commit(src, {
        "inventory/hosts.yaml": "all:\n  hosts:\n    web1:\n      ansible_host: 10.9.9.9\n",
        "manifests/site.yaml": "- hosts: all\n  roles: [r]\n",
        "manifests/roles/r/resources.yaml": resources(target),
    })
    (ctl / "inv").mkdir(parents=True)
    shutil.copytree(src / "manifests", ctl / "manifests")
    (ctl / "inv" / "hosts.yaml").write_text(
        "all:\n  hosts:\n    web1:\n      driftctl_transport: local\n"
        f"      driftctl_pull_outbox: {tmp_path / 'cache' / 'outbox'}\n")
    return {"src": src, "target": target, "ctl": ctl, "cache": tmp_path / "cache", "state": tmp_path / "state",
            "tmp": tmp_path}


def pull(s: dict[str, Path], *args: str) -> subprocess.CompletedProcess[str]:
    return run("pull", s["src"], "--cache-dir", s["cache"], "--host", "web1", *args, cwd=s["tmp"])


def controller(s: dict[str, Path], *args: str) -> subprocess.CompletedProcess[str]:
    return run(*args, "--state-dir", s["state"], cwd=s["ctl"])


def outbox(s: dict[str, Path]) -> list[str]:
    return sorted(p.name for p in (s["cache"] / "outbox").glob("*.json"))


def test_pull_runs_show_in_history_and_report_and_push_drift_agrees(two_sides: dict[str, Path]) -> None:
    s = two_sides
    assert pull(s).returncode == 2  # the pull apply converged the host
    head = git(s["src"], "rev-parse", "HEAD")
    drift = controller(s, "drift", "inv", "--json")
    # the pull apply moved the converged state as a push apply does: no false pending/corrective drift
    assert drift.returncode == 0, drift.stdout + drift.stderr
    r = json.loads(drift.stdout)["hosts"][0]["resources"][0]
    assert r["drift"] is None and r["converged_fingerprint"] == r["observed_fingerprint"]
    history = json.loads(controller(s, "history", "inv", "--json").stdout)
    applied = [e for e in history["events"] if e["kind"] == "applied"]
    assert [e["detail"] for e in applied] == [f"pull {head[:12]}: applied: ensure, content"]
    assert outbox(s) == ["000000000001.json"]  # collected, not yet acknowledged
    # a hand change found by the host's own pull --drift ...
    (s["target"] / "motd").write_text("hand edit\n")
    assert pull(s, "--drift").returncode == 2
    # ... shows on the controller after its next probe, beside its own runs
    drift = controller(s, "drift", "inv", "--json")
    assert drift.returncode == 2
    r = json.loads(drift.stdout)["hosts"][0]["resources"][0]
    assert (r["drift"], r["runs"]) == ("corrective", 2)  # the pull drift run opened the episode
    assert outbox(s) == ["000000000002.json"]  # the first was acknowledged by this probe
    events = json.loads(controller(s, "history", "inv", "--json").stdout)["events"]
    found = [e for e in events if e["kind"] == "drift-found"]
    assert found and found[0]["detail"].startswith(f"pull {head[:12]}: corrective drift")
    runs = sqlite3.connect(s["state"] / "driftctl.sqlite").execute(
        "SELECT id, command, mode, source_commit FROM runs ORDER BY id").fetchall()
    assert [(c, m) for _, c, m, _ in runs] == [("apply", "pull"), ("drift", None), ("drift", "pull"), ("drift", None)]
    pulled_drift = runs[2][0]
    for fmt in ("json", "markdown", "html", "junit", "prometheus"):
        out = controller(s, "report", "inv", "-f", fmt, "--run", str(pulled_drift))
        assert out.returncode == 0, out.stderr
        if fmt == "json":
            doc = json.loads(out.stdout)
            assert (doc["mode"], doc["commit"], doc["inventory"]) == ("pull", head, "inv")
            assert doc["pull"]["collected"]
    assert controller(s, "drift", "inv").returncode == 2
    assert outbox(s) == []


def test_a_report_naming_another_host_is_refused_and_said(two_sides: dict[str, Path]) -> None:
    s = two_sides
    assert pull(s).returncode == 2
    box = s["cache"] / "outbox"
    forged: dict[str, Any] = json.loads((box / "000000000001.json").read_text())
    forged["hosts"][0]["name"] = "db1"
    (box / "000000000002.json").write_text(json.dumps(forged))
    os.chmod(box / "000000000002.json", 0o600)
    drift = controller(s, "drift", "inv")
    assert drift.returncode == 0, drift.stdout + drift.stderr
    assert "pull report 2 refused: it names db1, not web1" in drift.stderr
    history = json.loads(controller(s, "history", "inv", "--json").stdout)
    assert {e["host"] for e in history["events"]} == {"web1"}
    assert controller(s, "drift", "inv").returncode == 0
    assert outbox(s) == []  # passed over, and acknowledged with the rest


def test_no_outbox_on_the_host_is_nothing_to_collect(two_sides: dict[str, Path]) -> None:
    s = two_sides
    assert controller(s, "apply", "inv").returncode == 2
    drift = controller(s, "drift", "inv")
    assert drift.returncode == 0 and "pull" not in drift.stderr


def test_an_outbox_others_could_write_is_refused(two_sides: dict[str, Path]) -> None:
    s = two_sides
    assert pull(s).returncode == 2
    os.chmod(s["cache"] / "outbox", 0o777)
    drift = controller(s, "drift", "inv")
    assert "its pull reports were not collected: refusing the pull outbox" in drift.stderr
    assert "applied" not in controller(s, "history", "inv").stdout


def test_a_pull_applys_own_changes_under_watched_paths_move_the_controllers_baseline(
        two_sides: dict[str, Path]) -> None:
    s = two_sides
    watched = s["target"] / "w"
    watched.mkdir()
    head = f"watch:\n  - {watched}\n"
    first = head + resources(s["target"])
    second = first + (f"  - exec: make-it\n    command: touch {watched}/made-by-apply\n"
                      f"    creates: {watched}/made-by-apply\n")
    commit(s["src"], {"manifests/roles/r/resources.yaml": first})
    (s["ctl"] / "manifests/roles/r/resources.yaml").write_text(first)
    assert pull(s).returncode == 2
    assert controller(s, "drift", "inv").returncode == 0  # the controller's first look: its baseline
    commit(s["src"], {"manifests/roles/r/resources.yaml": second})
    (s["ctl"] / "manifests/roles/r/resources.yaml").write_text(second)
    (watched / "by-hand").write_text("x\n")  # a hand change before the apply: stays reported
    assert pull(s).returncode == 2
    assert (watched / "made-by-apply").exists()
    drift = controller(s, "drift", "inv", "--json")
    unmanaged = json.loads(drift.stdout)["hosts"][0]["unmanaged"]
    assert [(u["path"], u["change"]) for u in unmanaged] == [(f"{watched}/by-hand", "added")], drift.stderr


def test_every_report_format_says_a_run_was_a_pull_and_of_which_commit() -> None:
    from driftctl.model import HostResult, ResourceResult, RunResult
    from driftctl.report import document, render

    doc = document.build(RunResult("apply", [HostResult("web1", "ok", [ResourceResult("file:/etc/a", "ok",
                                                                                      type="file")])]), "inv")
    doc.update(mode="pull", source="https://git.example.com/infra.git", commit="1a2b3c4d5e6f7a8b9c0d",
               pull={"fallback": "the source could not be reached: the last good checkout was used"})
    note = "Pull run on the host (driftctl pull): commit 1a2b3c4d5e6f of https://git.example.com/infra.git"
    for fmt in ("markdown", "html", "junit"):
        text = render(doc, fmt)
        assert note in text and "the last good checkout was used" in text, fmt
    doc.pop("mode")
    assert "Pull run" not in render(doc, "markdown")


def test_a_reset_host_state_neither_overwrites_nor_duplicates_a_waiting_report(two_sides: dict[str, Path]) -> None:
    """state.json removed (to force an apply, or lost) while reports wait in the outbox: the next pull
    numbered from 1 again, over a waiting report, under a new outbox id, and the controller stored the
    waiting ones a second time under that id."""
    s = two_sides
    assert pull(s).returncode == 2
    (s["target"] / "motd").write_text("hand edit\n")
    assert pull(s, "--drift").returncode == 2
    assert controller(s, "drift", "inv").returncode == 2  # stores 1 and 2; acknowledged by the next probe
    (s["cache"] / "state.json").unlink()
    assert pull(s).returncode == 2  # corrects the hand edit: a third run
    assert outbox(s) == ["000000000001.json", "000000000002.json", "000000000003.json"]
    assert controller(s, "drift", "inv").returncode == 0
    runs = sqlite3.connect(s["state"] / "driftctl.sqlite").execute(
        "SELECT command FROM runs WHERE mode = 'pull' ORDER BY id").fetchall()
    assert [c for (c,) in runs] == ["apply", "drift", "apply"]
    assert controller(s, "drift", "inv").returncode == 0
    assert outbox(s) == []


def test_a_push_apply_collects_the_pull_runs_too(two_sides: dict[str, Path]) -> None:
    """An apply's probe asks the outbox as a drift's does: the pull run is stored before the apply's own,
    and the next drift finds nothing to collect and nothing drifted."""
    s = two_sides
    assert pull(s).returncode == 2
    head = git(s["src"], "rev-parse", "HEAD")
    applied = controller(s, "apply", "inv")
    assert applied.returncode == 0, applied.stdout + applied.stderr  # the pull already converged it
    runs = sqlite3.connect(s["state"] / "driftctl.sqlite").execute(
        "SELECT command, mode, source_commit FROM runs ORDER BY id").fetchall()
    assert runs == [("apply", "pull", head), ("apply", None, None)]
    assert controller(s, "drift", "inv").returncode == 0
    assert outbox(s) == []  # acknowledged by the drift's probe
