"""The apply guarantees, end to end on a real host, for every resource type (issue: plan/apply/check).

- check and plan write nothing to the host (a snapshot taken through podman, not through driftctl);
- plan predicts exactly the changes apply makes (same resource ids, same fields);
- a second apply changes nothing and exits 0; drift on the converged host finds nothing, repeatedly;
- the converged host is right as testinfra sees it (which does not use driftctl's code);
- secrets never appear in output or in the state store; sensitive files show hashes only.
"""

from __future__ import annotations

import difflib
import hashlib
from pathlib import Path

import pytest
from e2ehelp import DATA, changes_of, driftctl, snapshot, write_inventory

from driftctl.agent._core import backup_key

SECRET = "s3cr3t-T0ken-4f9a"
MANIFESTS = DATA / "allkinds"


def assert_same_snapshot(before: str, after: str) -> None:
    if before != after:
        diff = "\n".join(difflib.unified_diff(before.splitlines(), after.splitlines(), "before", "after", lineterm=""))
        pytest.fail(f"the host changed:\n{diff[:4000]}")


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text


@pytest.mark.fresh_host(net_sysctls=True)
def test_every_type_plan_apply_idempotent_and_verified(fresh_host, tmp_path: Path) -> None:
    inv = write_inventory(tmp_path / "inv", [fresh_host], host_vars={fresh_host.name: f"app_token: !secret {SECRET}\n"})
    state = tmp_path / "state"
    args = (inv, "-m", MANIFESTS)

    before = snapshot(fresh_host)
    check = driftctl("check", *args, state_dir=state)
    assert check.rc == 2, check.output
    plan = driftctl("plan", "--detailed-exitcode", *args, "--json", state_dir=state)
    assert plan.rc == 2, plan.output
    plan_text = driftctl("plan", "--detailed-exitcode", *args, state_dir=state)
    assert_same_snapshot(before, snapshot(fresh_host))

    apply = driftctl("apply", *args, "--json", state_dir=state)
    assert apply.rc == 2, apply.output
    planned, applied = changes_of(plan.json()), changes_of(apply.json())
    # a resource that cannot be observed before its dependency exists is "known after apply" in the plan
    deferred = {key for key, fields in planned.items() if fields == ["pending"]}
    assert (fresh_host.name, "authorized_key:alice-laptop") in deferred  # alice does not exist yet
    assert applied[(fresh_host.name, "authorized_key:alice-laptop")] == ["ensure"]
    assert {k: v for k, v in applied.items() if k not in deferred} == {
        k: v for k, v in planned.items() if k not in deferred
    }
    ids = {rid for _, rid in applied}
    # a fresh host: everything but the already running cron service changes, and the notified exec refreshes
    assert "service:cron" not in ids
    assert {"file:/etc/driftctl-test/app.conf", "user:alice", "package:tree", "sysctl:net.ipv4.ip_forward",
            "exec:app-reload", "exec:make-marker", "cron:nightly-report", "block:app-env"} <= ids
    assert planned[(fresh_host.name, "exec:app-reload")] == ["refresh"]
    host_doc = apply.json()["hosts"][0]
    assert host_doc["round_trips"] <= 3  # facts, probe, apply: never one per resource

    again = driftctl("apply", *args, "--json", state_dir=state)
    assert again.rc == 0, again.output
    assert {r["status"] for r in again.json()["hosts"][0]["resources"]} == {"ok"}

    t = fresh_host.testinfra()
    conf = t.file("/etc/driftctl-test/app.conf")
    assert (conf.mode, conf.user, conf.group) == (0o640, "root", "dcops")
    assert "listen = 8080" in conf.content_string
    assert "distribution = debian 12" in conf.content_string  # facts reached the template
    alice = t.user("alice")
    assert (alice.uid, alice.shell, alice.group) == (4242, "/bin/bash", "dcops")
    assert "adm" in alice.groups
    assert t.group("dcops").gid == 4242
    keys = t.file("/home/alice/.ssh/authorized_keys")
    assert (keys.mode, keys.user) == (0o600, "alice")
    assert "alice@laptop" in keys.content_string
    assert t.package("tree").is_installed
    cron = t.service("cron")
    assert cron.is_running and cron.is_enabled
    link = t.file("/etc/driftctl-test/current")
    assert link.is_symlink and link.linked_to == "/etc/driftctl-test/app.conf"
    assert t.file("/etc/ssh/sshd_config").contains("^ClientAliveInterval 300$")
    assert t.file("/etc/driftctl-test/env").contains("^APP_PORT=8080$")
    assert t.sysctl("net.ipv4.ip_forward") == 1
    assert t.file("/etc/sysctl.d/99-driftctl.conf").contains("net.ipv4.ip_forward")
    assert "15 3 * * * /usr/bin/true nightly" in t.check_output("crontab -l -u alice")
    assert t.file("/etc/cron.d/driftctl-cleanup").contains("@daily root find /tmp")
    logo = hashlib.sha256((MANIFESTS / "roles/all/files/logo.bin").read_bytes()).hexdigest()
    assert t.file("/etc/driftctl-test/logo.bin").sha256sum == logo
    assert t.file("/var/tmp/driftctl-marker").exists
    assert len(t.file("/var/tmp/app-reloads").content_string.splitlines()) == 1  # refreshed once
    token = t.file("/etc/driftctl-test/token")
    assert token.mode == 0o600 and token.content_string == f"token={SECRET}\n"

    # secrets: never in any output nor in the store. A file whose content holds a secret is sensitive
    # even when the manifest forgot to say so: hashes only, no diff
    leaky = next(r for r in plan.json()["hosts"][0]["resources"] if r["id"] == "file:/etc/driftctl-test/leaky.txt")
    content = next(c for c in leaky["changes"] if c["field"] == "content")
    assert content["diff"] is None and content["after"].startswith("sha256:")
    assert_no_secret(check.output, plan.output, plan_text.output, apply.output, again.output)
    for db in state.glob("driftctl.sqlite*"):
        assert SECRET.encode() not in db.read_bytes()

    # drift on the converged host: nothing, run after run (no false positives)
    for _ in range(3):
        drift = driftctl("drift", *args, state_dir=state)
        assert drift.rc == 0, drift.output
        assert_no_secret(drift.output)


@pytest.mark.fresh_host
def test_purge_backup_and_a_hand_edit_are_converged(fresh_host, tmp_path: Path) -> None:
    inv = write_inventory(tmp_path / "inv", [fresh_host], host_vars={fresh_host.name: f"app_token: !secret {SECRET}\n"})
    state = tmp_path / "state"
    args = (inv, "-m", MANIFESTS, "-l", fresh_host.name)
    # only the file-like part: the sysctl needs a host with writable network sysctls
    first = driftctl("apply", *args, state_dir=state)
    assert first.rc in (2, 6), first.output  # sysctl fails on this host (read-only /proc/sys): 2|4
    hand = "edited by hand\n"
    fresh_host.sh(f"printf '{hand}' > /etc/driftctl-test/app.conf; touch /etc/driftctl-test/stray")
    plan = driftctl("plan", "--detailed-exitcode", *args, "--json", state_dir=state)
    assert plan.rc in (2, 6), plan.output
    changes = changes_of(plan.json())
    assert changes[(fresh_host.name, "file:/etc/driftctl-test/app.conf")] == ["content"]
    assert (fresh_host.name, "directory:/etc/driftctl-test") in changes  # the stray file is purged
    second = driftctl("apply", *args, state_dir=state)
    assert second.rc in (2, 6), second.output
    t = fresh_host.testinfra()
    assert not t.file("/etc/driftctl-test/stray").exists
    assert "listen = 8080" in t.file("/etc/driftctl-test/app.conf").content_string
    # the replaced file is kept under its path's backup directory, named by time and checksum, 0600
    sub = f"/var/lib/driftctl/backup/{backup_key('/etc/driftctl-test/app.conf')}"
    [entry] = [n for n in fresh_host.sh(f"ls {sub}").stdout_text.split()
               if n.endswith("-" + hashlib.sha256(hand.encode()).hexdigest()[:12])]
    assert t.file(f"{sub}/{entry}").content_string == hand
    assert t.file(f"{sub}/{entry}").mode == 0o600


def test_bad_manifest_exits_1_before_any_connection(tmp_path: Path) -> None:
    """A mistake in the manifest is reported with file:line and no host is contacted (port 1 is closed:
    a connection attempt would make it exit 8)."""
    inv = tmp_path / "inv"
    inv.mkdir()
    (inv / "hosts.yaml").write_text(
        "all:\n  hosts:\n    ghost:\n      ansible_host: 127.0.0.1\n      ansible_port: 1\n"
    )
    site = tmp_path / "manifests"
    (site / "roles" / "r").mkdir(parents=True)
    (site / "site.yaml").write_text("- hosts: all\n  roles: [r]\n")
    (site / "roles" / "r" / "resources.yaml").write_text(
        "resources:\n  - file: /etc/motd\n    content: hi\n    mdoe: '0644'\n"
    )
    result = driftctl("plan", "--detailed-exitcode", inv, "-m", site, state_dir=tmp_path / "state")
    assert result.rc == 1, result.output
    assert "resources.yaml:4" in result.stderr and "mode" in result.stderr  # did-you-mean
    (site / "roles" / "r" / "resources.yaml").write_text("resources:\n  - file: /etc/motd\n    content: hi\n")
    reachable = driftctl("plan", "--detailed-exitcode", inv, "-m", site, state_dir=tmp_path / "state")
    assert reachable.rc == 8, reachable.output  # the same inventory with a valid manifest does connect
