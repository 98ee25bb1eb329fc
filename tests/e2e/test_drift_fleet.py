"""Drift detection end to end on real hosts (issue: drift detection).

A fleet of its own is converged, then each kind of drift is injected by hand (through podman, not
driftctl) on a different resource and host. Each must be found on exactly that resource with the
right class, and nothing else; an untouched converged fleet reports nothing run after run; a moved
manifest shows as pending, not corrective; an unreachable host is never "no drift"; --remediate
restores corrective drift only.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import driftctl_test_fleet as fleetlib
import pytest
from e2ehelp import DATA, driftctl, write_inventory

MANIFESTS = DATA / "drift"

pytestmark = pytest.mark.fleet


@pytest.fixture(scope="module")
def drift_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Four hosts of its own (drift tests break hosts on purpose), converged with the drift manifest."""
    fleet_id = fleetlib.new_session_id("drift")
    state = tmp_path_factory.mktemp("driftfleet")
    try:
        fleet = fleetlib.start_fleet(fleet_id, 4, inventory_dir=state / "fleetinv", known_hosts=state / "known_hosts",
                                     owner=fleetlib.current_owner(), host_prefix="d")
    except fleetlib.FleetError as e:
        fleetlib.down(fleet_id)
        pytest.fail(f"could not start the drift fleet: {e}")
    try:
        yield fleet
    finally:
        fleetlib.down(fleet_id)


def drift_set(doc: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(host, resource id or path, class) of everything a drift report found."""
    out = set()
    for h in doc["hosts"]:
        for r in h["resources"]:
            if r["drift"]:
                out.add((h["name"], r["id"], r["drift"]))
        for u in h["unmanaged"]:
            out.add((h["name"], u["path"], f"unmanaged-{u['change']}"))
    return out


def test_each_kind_of_drift_is_found_exactly(drift_fleet: Any, tmp_path: Path) -> None:
    hosts = drift_fleet.hosts
    inv = write_inventory(tmp_path / "inv", hosts)
    state = tmp_path / "state"
    manifests = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, manifests)
    args = (inv, "-m", manifests)

    applied = driftctl("apply", *args, state_dir=state)
    assert applied.rc == 2, applied.output
    # an untouched converged fleet: nothing, run after run (the first run records the watch baselines)
    for _ in range(3):
        quiet = driftctl("drift", *args, "--json", state_dir=state)
        assert quiet.rc == 0, quiet.output
        assert drift_set(quiet.json()) == set()

    d1, d2, d3, d4 = hosts
    d1.sh("echo 'edited by hand' >> /etc/motd && usermod -s /bin/sh alice")
    d2.sh("chmod 0666 /etc/driftctl-mode && chown nobody /etc/driftctl-owner"
          " && sed -i '/^ClientAliveInterval 300$/d' /etc/ssh/sshd_config")
    d3.sh("rm /etc/driftctl-deleted && systemctl disable --now cron"
          " && DEBIAN_FRONTEND=noninteractive apt-get remove -y -q tree >/dev/null")
    d4.sh("echo '* * * * * root true' > /etc/driftctl-watch/added-by-hand")

    found = driftctl("drift", *args, "--json", state_dir=state)
    assert found.rc == 2, found.output
    assert drift_set(found.json()) == {
        (d1.name, "file:/etc/motd", "corrective"),
        (d1.name, "user:alice", "corrective"),
        (d2.name, "file:/etc/driftctl-mode", "corrective"),
        (d2.name, "file:/etc/driftctl-owner", "corrective"),
        (d2.name, "line:sshd-client-alive", "corrective"),
        (d3.name, "file:/etc/driftctl-deleted", "corrective"),
        (d3.name, "service:cron", "corrective"),
        (d3.name, "package:tree", "corrective"),
        (d4.name, "/etc/driftctl-watch/added-by-hand", "unmanaged-added"),
    }
    by_id = {(h["name"], r["id"]): r for h in found.json()["hosts"] for r in h["resources"]}
    fields = {key: {c["field"] for c in r["changes"]} for key, r in by_id.items() if r["drift"]}
    assert fields[(d2.name, "file:/etc/driftctl-mode")] == {"mode"}
    assert fields[(d2.name, "file:/etc/driftctl-owner")] == {"owner"}
    assert fields[(d1.name, "user:alice")] == {"shell"}
    assert fields[(d3.name, "service:cron")] == {"enabled", "running"}
    mode = next(c for c in by_id[(d2.name, "file:/etc/driftctl-mode")]["changes"] if c["field"] == "mode")
    assert (mode["before"], mode["after"]) == ("0666", "0640")  # observed now, desired
    motd = next(c for c in by_id[(d1.name, "file:/etc/motd")]["changes"] if c["field"] == "content")
    assert "+edited by hand" in motd["diff"] or "-edited by hand" in motd["diff"]
    assert by_id[(d1.name, "file:/etc/motd")]["runs"] == 1

    # the terminal view says it too, and the drift lasts: a second run counts it
    again = driftctl("drift", *args, state_dir=state)
    assert again.rc == 2
    assert "corrective drift" in again.stdout and "mode 0640 -> 0666" in again.stdout
    second = driftctl("drift", *args, "--json", state_dir=state).json()
    runs = {(h["name"], r["id"]): r["runs"] for h in second["hosts"] for r in h["resources"] if r["drift"]}
    assert runs[(d1.name, "file:/etc/motd")] == 3

    # the manifest moves: pending, not corrective, on every host; d1's hand edit makes it both
    site = manifests / "roles" / "d" / "defaults.yaml"
    site.write_text('motd_banner: "a new banner"\n')
    moved = driftctl("drift", *args, "--json", state_dir=state).json()
    motd_class = {(h["name"]): r["drift"] for h in moved["hosts"] for r in h["resources"]
                  if r["id"] == "file:/etc/motd"}
    assert motd_class == {d1.name: "both", d2.name: "pending", d3.name: "pending", d4.name: "pending"}

    # remediate restores corrective drift only: the pending motd stays for apply to decide
    fixed = driftctl("drift", *args, "--remediate", "--json", state_dir=state)
    assert fixed.rc & 4 == 0, fixed.output
    after = driftctl("drift", *args, "--json", state_dir=state).json()
    left = {(h, rid, cls) for h, rid, cls in drift_set(after) if not rid.startswith("/")}
    # d1's motd is "both" (hand edit + moved manifest): not corrective alone, so it waits for apply too
    assert left == {(d1.name, "file:/etc/motd", "both")} | {(h.name, "file:/etc/motd", "pending") for h in hosts[1:]}
    t3 = d3.testinfra()
    assert t3.package("tree").is_installed and t3.service("cron").is_running
    assert t3.file("/etc/driftctl-deleted").exists

    # accept blesses the unmanaged file
    accepted = driftctl("accept", *args, "-l", d4.name, "--json", state_dir=state)
    assert accepted.rc == 0, accepted.output
    from driftctl.schemas import validator

    validator("accept").validate(accepted.json())
    assert [(h["host"], h["accepted"]) for h in accepted.json()["hosts"]] == [(d4.name, True)]
    final = driftctl("drift", *args, "-l", d4.name, "--json", state_dir=state).json()
    assert not final["hosts"][0]["unmanaged"]

    # for automation: the JSON report goes to a command when drift is found, report files are written
    notified, reports = tmp_path / "notified.json", tmp_path / "reports"
    hooked = driftctl("drift", *args, "--notify-command", f"sh -c 'cat > {notified}'", "--report-dir", reports,
                      state_dir=state)
    assert hooked.rc == 2, hooked.output
    told = json.loads(notified.read_text())
    assert told["schema"] == "driftctl.report/v1" and told["summary"]["resources_drifted"] == 4  # the motds
    assert {p.name for p in reports.iterdir()} >= {"driftctl-report.json", "driftctl.prom"}
    prom = (reports / "driftctl.prom").read_text()
    assert "driftctl_drifted_resources{" in prom and 'class="pending"' in prom


def test_unreachable_host_is_never_no_drift(drift_fleet: Any, tmp_path: Path) -> None:
    hosts = drift_fleet.hosts[:1]
    inv = write_inventory(tmp_path / "inv", hosts)
    text = (inv / "hosts.yaml").read_text()
    text += "    ghost:\n      ansible_host: 127.0.0.1\n      ansible_port: 1\n"
    (inv / "hosts.yaml").write_text(text)
    result = driftctl("drift", inv, "-m", MANIFESTS, "--json", state_dir=tmp_path / "state")
    assert result.rc & 8, result.output
    ghost = next(h for h in result.json()["hosts"] if h["name"] == "ghost")
    assert ghost["status"] == "unreachable" and ghost["error"]


@pytest.mark.fresh_host(net_sysctls=True)
def test_sysctl_drift(fresh_host: Any, tmp_path: Path) -> None:
    manifests = tmp_path / "m"
    (manifests / "roles" / "s").mkdir(parents=True)
    (manifests / "site.yaml").write_text("- hosts: all\n  roles: [s]\n")
    (manifests / "roles" / "s" / "resources.yaml").write_text(
        "resources:\n  - sysctl: net.ipv4.ip_forward\n    value: \"1\"\n"
    )
    inv = write_inventory(tmp_path / "inv", [fresh_host])
    state = tmp_path / "state"
    assert driftctl("apply", inv, "-m", manifests, state_dir=state).rc == 2
    assert driftctl("drift", inv, "-m", manifests, state_dir=state).rc == 0
    fresh_host.sh("sysctl -q -w net.ipv4.ip_forward=0")
    found = driftctl("drift", inv, "-m", manifests, "--json", state_dir=state)
    assert found.rc == 2
    assert drift_set(found.json()) == {(fresh_host.name, "sysctl:net.ipv4.ip_forward", "corrective")}
