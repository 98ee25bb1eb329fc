"""`driftctl prune` as a user types it: old runs out of the store, old backups off the hosts.

The store side runs against this machine (the local transport) and a SQLite store; the backups side
against a fresh fleet host whose backups are made by real applies and checked through podman, not
through driftctl.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from e2ehelp import driftctl, write_inventory

from driftctl.store import open_store

BACKUP_DIR = "/var/lib/driftctl/backup"


def local_scene(tmp_path: Path) -> tuple[Path, Path, Path]:
    target = tmp_path / "target"
    target.mkdir()
    inv = tmp_path / "inv"
    inv.mkdir()
    (inv / "hosts.yaml").write_text("all:\n  hosts:\n    ctl:\n      driftctl_transport: local\n")
    manifests = tmp_path / "manifests"
    (manifests / "roles" / "r").mkdir(parents=True)
    (manifests / "site.yaml").write_text("- hosts: all\n  roles: [r]\n")
    (manifests / "roles" / "r" / "resources.yaml").write_text(
        f"resources:\n  - file: {target}/motd\n    content: \"managed\\n\"\n    backup: false\n")
    return inv, manifests, tmp_path / "state"


@pytest.mark.applies_here  # its host lock is this machine's (tests/conftest.py)
def test_prune_store_counts_then_removes_old_runs_and_keeps_the_latest(tmp_path: Path) -> None:
    inv, manifests, state = local_scene(tmp_path)
    assert driftctl("apply", inv, "-m", manifests, state_dir=state).rc == 2
    for _ in range(2):
        assert driftctl("drift", inv, "-m", manifests, state_dir=state).rc == 0
    time.sleep(1.0)  # every run is now older than the cutoff below (1e-5 days = 0.86 s)
    args = ("prune", inv, "--store-only", "--keep-days", "0.00001")

    dry = driftctl(*args, "--dry-run", "--json", state_dir=state)
    assert dry.rc == 0, dry.output
    counted = dry.json()
    assert counted["backups"] is None and counted["dry_run"] is True
    store = counted["store"]
    # the apply and the first drift run go; the last drift run is the host's latest: it stays
    assert (store["runs"], store["kept_runs"], store["documents"], store["host_results"]) == (2, 1, 2, 2)
    assert store["document_bytes"] > 0 and store["url"].endswith("driftctl.sqlite")
    with open_store(state / "driftctl.sqlite") as s:
        assert len(s.runs(str(inv))) == 3  # a dry run changes nothing

    done = driftctl(*args, "--vacuum", state_dir=state)
    assert done.rc == 0, done.output
    assert "removed 2 run(s)" in done.stdout and "kept 1 older run(s)" in done.stdout
    assert "vacuumed" in done.stdout
    with open_store(state / "driftctl.sqlite") as s:
        [kept] = s.runs(str(inv))
        assert kept.command == "drift"
        assert s.converged(str(inv), "ctl")  # the converged state outlives the apply that made it
    again = driftctl("drift", inv, "-m", manifests, state_dir=state)
    assert again.rc == 0, again.output  # in sync: converged state intact
    assert driftctl("history", inv, "--json", state_dir=state).rc == 0


@pytest.mark.applies_here  # its host lock is this machine's (tests/conftest.py)
def test_prune_input_errors_prune_nothing(tmp_path: Path) -> None:
    inv, manifests, state = local_scene(tmp_path)
    assert driftctl("apply", inv, "-m", manifests, state_dir=state).rc == 2
    both = driftctl("prune", inv, "--store-only", "--backups-only", state_dir=state)
    assert both.rc == 1 and "exclude each other" in both.stderr
    missing = driftctl("prune", tmp_path / "no-such-inventory", "--keep-days", "0.00001", state_dir=state)
    assert missing.rc == 1 and "Traceback" not in missing.output
    bad = driftctl("prune", inv, "--backup-keep", "0", state_dir=state)
    assert bad.rc == 1
    with open_store(state / "driftctl.sqlite") as s:
        assert len(s.runs(str(inv))) == 1


@pytest.mark.applies_here  # its host lock is this machine's (tests/conftest.py)
def test_prune_with_the_store_unreachable_is_a_clear_error(tmp_path: Path) -> None:
    inv, _manifests, state = local_scene(tmp_path)
    (tmp_path / "nosock").mkdir()
    url = f"postgresql://driftctl:pw-not-shown@/driftctl?host={tmp_path / 'nosock'}&port=5999"
    result = driftctl("prune", inv, "--store-only", "--state", url, state_dir=state)
    assert result.rc == 32, result.output
    assert "cannot connect to store postgresql://driftctl:***@/driftctl" in result.stderr
    assert "pw-not-shown" not in result.output and "Traceback" not in result.output


def _backups(host: Any) -> list[str]:
    return sorted(host.sh(f"find {BACKUP_DIR} -type f ! -name path 2>/dev/null || true").stdout_text.split())


@pytest.mark.fleet
def test_prune_backups_on_hosts_keeps_the_newest_and_reports_unreachable(fresh_host: Any, tmp_path: Path) -> None:
    inv = write_inventory(tmp_path / "inv", [fresh_host])
    # one more host that does not answer: pruning goes on for the others, exit 8
    (inv / "hosts.yaml").write_text((inv / "hosts.yaml").read_text()
                                    + "    gone:\n      ansible_host: 127.0.0.1\n      ansible_port: 1\n")
    manifests = tmp_path / "manifests"
    (manifests / "roles" / "r").mkdir(parents=True)
    (manifests / "site.yaml").write_text("- hosts: all\n  roles: [r]\n")
    state = tmp_path / "state"
    for version in range(4):  # each apply replaces the file: three backups of it
        (manifests / "roles" / "r" / "resources.yaml").write_text(
            f"resources:\n  - file: /etc/prune-me\n    content: \"secret version {version}\\n\"\n")
        applied = driftctl("apply", inv, "-m", manifests, "--limit", fresh_host.name, state_dir=state)
        assert applied.rc == 2, applied.output
    made = _backups(fresh_host)
    assert len(made) == 3, made
    # one more, from long ago (the agent reads a backup's age from its name), next to them
    sub = made[0].rsplit("/", 1)[0]
    fresh_host.sh(f"printf 'ancient secret' > {sub}/20200101T000000.000000Z-aaaaaaaaaaaa")

    result = driftctl("prune", inv, "--backups-only", "--backup-keep", "2", "--json", state_dir=state)
    assert result.rc == 8, result.output
    doc = result.json()
    assert doc["store"] is None
    hosts = {h["name"]: h for h in doc["backups"]["hosts"]}
    assert hosts["gone"]["status"] == "unreachable" and hosts["gone"]["error"]
    pruned = hosts[fresh_host.name]
    assert (pruned["status"], pruned["removed"], pruned["kept"]) == ("ok", 2, 2), pruned
    assert pruned["bytes_freed"] == len("ancient secret") + len("secret version 0\n")
    left = _backups(fresh_host)
    assert left == made[1:]  # the two newest stay; the oldest and the ancient one are gone
    assert "secret version 3" in fresh_host.sh("cat /etc/prune-me").stdout_text  # the managed file is untouched

    text = driftctl("prune", inv, "--backups-only", "--limit", fresh_host.name, state_dir=state)
    assert text.rc == 0, text.output
    assert f"{fresh_host.name}: backups: 0 removed, 2 kept" in text.stdout
