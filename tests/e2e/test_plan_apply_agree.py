"""Plan never promises what apply will refuse (issue 15 §4): a property test over random pre-states.

Thirteen resources under /srv/agree (files, directories, symlinks with and without force, a line,
a block, an exec depending on a file, an absent file, and resources inside directories). Before each
round every one of their paths is put into a random state — missing, a regular file, an empty
directory, a directory with something in it, a symlink to a file, a dangling symlink — and then
`plan --json` and `apply --json` run. For every resource the plan's status (changed / failed with the
reason apply will give / skipped as a dependent of a failure / ok) must be apply's. The seed of each
round is in the failure message, so a failing case can be replayed.
"""

from __future__ import annotations

import random
import shlex
from pathlib import Path
from typing import Any

import pytest
from e2ehelp import driftctl, write_inventory

pytestmark = pytest.mark.slow

ROOT = "/srv/agree"
ROUNDS = 20
SITE = f"""resources:
  - directory: {ROOT}
  - file: {ROOT}/f1
    content: "one\\n"
  - file: {ROOT}/f2
    content: "two\\n"
    mode: "0600"
  - directory: {ROOT}/d1
  - file: {ROOT}/d1/inner
    content: "inner\\n"
  - symlink: {ROOT}/l1
    target: {ROOT}/f1
  - symlink: {ROOT}/l2
    target: /etc/hostname
    force: true
  - line: agree-line
    path: {ROOT}/lines.txt
    text: "key = value"
  - block: agree-block
    path: {ROOT}/block.txt
    content: "managed"
  - directory: {ROOT}/d2
    mode: "0750"
  - file: {ROOT}/d2/x
    content: "x\\n"
  - exec: mark
    command: touch {ROOT}/marker
    creates: {ROOT}/marker
    require: file:{ROOT}/f1
  - file: {ROOT}/f3
    ensure: absent
"""
PATHS = ["f1", "f2", "d1", "l1", "l2", "lines.txt", "block.txt", "d2", "f3"]
STATES = ["missing", "file", "empty-dir", "full-dir", "link-to-file", "dangling-link"]


def pre_state(rng: random.Random) -> tuple[str, dict[str, str]]:
    """A shell script that lays out one random pre-state, and the states chosen."""
    chosen = {p: rng.choice(STATES) for p in PATHS}
    lines = [f"rm -rf {ROOT}", f"mkdir -p {ROOT}"]
    for name, state in chosen.items():
        path = shlex.quote(f"{ROOT}/{name}")
        lines.append({
            "missing": "true",
            "file": f"printf 'hand %s\\n' {rng.randint(0, 3)} > {path}",
            "empty-dir": f"mkdir {path}",
            "full-dir": f"mkdir {path} && echo in > {path}/something",
            "link-to-file": f"ln -s /etc/passwd {path}",
            "dangling-link": f"ln -s /nonexistent {path}",
        }[state])
    return "\n".join(lines) + "\n", chosen


def outcome(doc: dict[str, Any]) -> dict[str, str]:
    out = {}
    for r in doc["hosts"][0]["resources"]:
        status = r["status"]
        out[r["id"]] = status
    return out


def test_plan_and_apply_agree_on_random_pre_states(fresh_host: Any, tmp_path: Path) -> None:
    inv = write_inventory(tmp_path / "inv", [fresh_host])
    site = tmp_path / "manifests"
    (site / "roles" / "a").mkdir(parents=True)
    (site / "site.yaml").write_text("- hosts: all\n  roles: [a]\n")
    (site / "roles" / "a" / "resources.yaml").write_text(SITE)
    state = tmp_path / "state"
    mismatches = []
    refused_seen = 0
    for seed in range(ROUNDS):
        script, chosen = pre_state(random.Random(seed))
        r = fresh_host.sh(script)
        assert r.rc == 0, r.stderr_text
        plan = driftctl("plan", inv, "-m", site, "--json", state_dir=state)
        assert plan.rc in (0, 2, 4, 6), plan.output
        apply = driftctl("apply", inv, "-m", site, "--json", state_dir=state)
        assert apply.rc in (0, 2, 4, 6), apply.output
        planned, applied = outcome(plan.json()), outcome(apply.json())
        refused_seen += sum(s == "failed" for s in planned.values())
        for rid in planned:
            if planned[rid] != applied.get(rid):
                mismatches.append(f"seed {seed} {chosen}: {rid} planned {planned[rid]}, applied {applied.get(rid)}")
    assert not mismatches, "\n".join(mismatches)
    assert refused_seen > 0  # the random pre-states did put things in the way
