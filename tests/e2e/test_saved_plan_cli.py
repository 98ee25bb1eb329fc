"""Saved plans end to end on the fleet (issue 11 point 6): ``driftctl plan -o plan.json`` and
``driftctl apply plan.json``, checked on the hosts through podman exec, not through driftctl.

- apply of the saved plan converges exactly the planned changes (resource ids and fields), and the
  plan itself changed nothing;
- a hand change on one host between plan and apply: that host is refused (named resource, nothing
  applied on it), the other host is applied (hosts are judged one by one: docs/plans.md);
- a manifest edited after the plan: refused before any connection (exit 1, no store, hosts untouched);
- an edited plan file: an error, exit 1, hosts untouched;
- a canary secret is in no plan file, no output; the plan file is 0600.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2ehelp import changes_of, driftctl, write_inventory

pytestmark = pytest.mark.fleet

CANARY = "CANARY-" + secrets.token_hex(12)


@pytest.fixture
def work(fleet: Any) -> Iterator[tuple[list[Any], str]]:
    """Two fleet hosts and a directory of this test's own on each (removed afterwards)."""
    hosts = fleet.hosts[:2]
    assert len(hosts) == 2, "DRIFTCTL_TEST_FLEET_SIZE must be at least 2"
    root = f"/var/tmp/savedplan-{uuid.uuid4().hex[:10]}"
    for h in hosts:
        assert h.sh(f"mkdir -p {root} && printf 'old\\n' > {root}/b.txt").rc == 0
    yield hosts, root
    for h in hosts:
        h.sh(f"rm -rf {root}")


def setup(tmp_path: Path, hosts: list[Any], root: str) -> tuple[Path, Path]:
    inv = write_inventory(tmp_path / "inv", hosts, all_vars=f"token: !secret {CANARY}\n")
    m = tmp_path / "manifests"
    (m / "roles" / "r").mkdir(parents=True)
    (m / "site.yaml").write_text("- hosts: all\n  roles: [r]\n")
    (m / "roles" / "r" / "resources.yaml").write_text(
        "resources:\n"
        f"  - file: {root}/a.txt\n"
        "    content: \"a on {{ inventory_hostname }}\\n\"\n"
        f"  - file: {root}/b.txt\n"
        "    content: \"b\\n\"\n"
        "    mode: \"0640\"\n"
        f"  - file: {root}/token.conf\n"
        "    content: \"token={{ token }}\\n\"\n"
        f"  - file: {root}/key\n"
        "    content: \"{{ token }}\\n\"\n"
        "    sensitive: true\n"
    )
    return inv, m


def files(host: Any, root: str) -> str:
    """The directory as the host has it: name, mode and content of each file (read through podman)."""
    r = host.sh(f"cd {root} && for f in $(ls); do echo \"$f $(stat -c %a $f)\"; cat $f; done")
    assert r.rc == 0, r.stderr_text
    return str(r.stdout_text)


def planned_changes(plan: Path) -> dict[tuple[str, str], list[str]]:
    doc = json.loads(plan.read_text())
    return {(h["name"], r["id"]): sorted(c["field"] for c in r["changes"])
            for h in doc["hosts"] for r in h["resources"] if r["status"] == "changed"}


def test_apply_of_a_saved_plan_converges_exactly_what_was_planned(work: Any, tmp_path: Path) -> None:
    hosts, root = work
    inv, m = setup(tmp_path, hosts, root)
    state, plan = tmp_path / "state", tmp_path / "plan.json"
    before = [files(h, root) for h in hosts]

    made = driftctl("plan", "--detailed-exitcode", inv, "-m", m, "-o", plan, state_dir=state)
    assert made.rc == 2, made.output
    assert [files(h, root) for h in hosts] == before  # the plan changed nothing
    assert stat.S_IMODE(os.stat(plan).st_mode) == 0o600
    assert CANARY not in plan.read_text() and CANARY not in made.output
    planned = planned_changes(plan)
    assert {rid for _, rid in planned} == {f"file:{root}/{n}" for n in ("a.txt", "b.txt", "token.conf", "key")}

    applied = driftctl("apply", plan, "--json", state_dir=state)
    assert applied.rc == 2, applied.output
    assert CANARY not in applied.output
    assert changes_of(applied.json()) == planned  # exactly the planned changes, nothing else
    for h in hosts:
        assert files(h, root) == (f"a.txt 644\na on {h.name}\nb.txt 640\nb\nkey 600\n{CANARY}\n"
                                  f"token.conf 600\ntoken={CANARY}\n")  # secret content: 0600 by default
    # recorded as an apply: the next check is in sync
    check = driftctl("check", inv, "-m", m, state_dir=state)
    assert check.rc == 0, check.output


def test_a_hand_change_between_plan_and_apply_refuses_that_host_only(work: Any, tmp_path: Path) -> None:
    hosts, root = work
    inv, m = setup(tmp_path, hosts, root)
    state, plan = tmp_path / "state", tmp_path / "plan.json"
    assert driftctl("plan", "--detailed-exitcode", inv, "-m", m, "-o", plan, state_dir=state).rc == 2
    stale, other = hosts
    assert stale.sh(f"printf 'by hand\\n' > {root}/b.txt").rc == 0
    untouched = files(stale, root)

    applied = driftctl("apply", plan, "--json", state_dir=state)
    assert applied.rc == 2 | 4, applied.output
    by_host = {h["name"]: h for h in applied.json()["hosts"]}
    assert by_host[stale.name]["status"] == "failed"
    assert "stale plan" in by_host[stale.name]["error"] and f"file:{root}/b.txt" in by_host[stale.name]["error"]
    assert files(stale, root) == untouched  # nothing applied there, not even the unchanged resources
    assert by_host[other.name]["status"] == "changed"
    assert f"a on {other.name}" in files(other, root)


def test_a_manifest_edited_after_the_plan_is_refused_before_any_connection(work: Any, tmp_path: Path) -> None:
    hosts, root = work
    inv, m = setup(tmp_path, hosts, root)
    state, plan = tmp_path / "state", tmp_path / "plan.json"
    assert driftctl("plan", "--detailed-exitcode", inv, "-m", m, "-o", plan, state_dir=state).rc == 2
    before = [files(h, root) for h in hosts]
    resources = m / "roles" / "r" / "resources.yaml"
    resources.write_text(resources.read_text().replace('"b\\n"', '"b2\\n"'))

    applied = driftctl("apply", plan, state_dir=state)
    assert applied.rc == 1, applied.output
    assert "roles/r/resources.yaml (changed)" in applied.stderr and str(plan) in applied.stderr
    assert [files(h, root) for h in hosts] == before
    # the store holds the lock every apply takes before connecting: it was never opened
    assert not (state / "driftctl.sqlite").exists()


@pytest.mark.parametrize("how", ["edited", "truncated"])
def test_an_edited_plan_file_is_an_error(work: Any, tmp_path: Path, how: str) -> None:
    hosts, root = work
    inv, m = setup(tmp_path, hosts, root)
    state, plan = tmp_path / "state", tmp_path / "plan.json"
    assert driftctl("plan", "--detailed-exitcode", inv, "-m", m, "-o", plan, state_dir=state).rc == 2
    before = [files(h, root) for h in hosts]
    text = plan.read_text()
    if how == "edited":  # a hand edit: drop one host's resource from the plan
        doc = json.loads(text)
        doc["hosts"][0]["resources"].pop()
        plan.write_text(json.dumps(doc, indent=1))
    else:
        plan.write_text(text[: len(text) // 3])

    applied = driftctl("apply", plan, state_dir=state)
    assert applied.rc == 1, applied.output
    assert ("modified after it was written" if how == "edited" else "truncated") in applied.stderr
    assert [files(h, root) for h in hosts] == before
    assert not (state / "driftctl.sqlite").exists()


def test_what_a_plan_fixes_cannot_be_given_again_on_the_command_line(tmp_path: Path) -> None:
    """--limit, -m and --tags with a plan, and -o into the inventory: errors through the CLI (the local
    transport: the controller itself, a file in a temp directory)."""
    inv = tmp_path / "inv"
    inv.mkdir()
    (inv / "hosts.yaml").write_text("all:\n  hosts:\n    ctl:\n      driftctl_transport: local\n")
    m = tmp_path / "manifests"
    (m / "roles" / "r").mkdir(parents=True)
    (m / "site.yaml").write_text("- hosts: all\n  roles: [r]\n")
    (m / "roles" / "r" / "resources.yaml").write_text(
        f"resources:\n  - file: {tmp_path}/out.txt\n    content: \"x\\n\"\n    tags: [web]\n")
    state, plan = tmp_path / "state", tmp_path / "plan.json"
    assert driftctl("plan", "--detailed-exitcode", inv, "-m", m, "-o", plan, state_dir=state).rc == 2
    for extra, says in ((["--limit", "ctl"], "--limit cannot be used with a saved plan"),
                        (["--tags", "web"], "--tags/--skip-tags cannot be used with a saved plan"),
                        (["-m", tmp_path], "differs from the plan's manifest tree")):
        refused = driftctl("apply", plan, *extra, state_dir=state)
        assert refused.rc == 1 and says in refused.stderr, refused.output
    assert not (tmp_path / "out.txt").exists()
    inside = driftctl("plan", "--detailed-exitcode", inv, "-m", m, "-o", inv / "plan.json", state_dir=state)
    assert inside.rc == 1 and "inside the inventory" in inside.stderr, inside.output
    assert not (inv / "plan.json").exists()
    applied = driftctl("apply", plan, state_dir=state)
    assert applied.rc == 2, applied.output
    assert (tmp_path / "out.txt").read_text() == "x\n"
