"""Plan never promises what apply will refuse (issue 15 §4): a property test over random pre-states.

Thirteen resources under /srv/agree<N> (files, directories, symlinks with and without force, a line,
a block, an exec depending on a file, an absent file, and resources inside directories). Before each
round every one of their paths is put into a random state — missing, a regular file, an empty
directory, a directory with something in it, a symlink to a file, a dangling symlink — and then
`plan --json` and `apply --json` run. For every resource the plan's status (changed / failed with the
reason apply will give / skipped as a dependent of a failure / ok) must be apply's. The seed of each
round is in the failure message, so a failing case can be replayed.

The rounds run LANES at a time: lane N's thirteen resources live under /srv/agree<N> (paths, names
and dependencies of their own, nothing shared between lanes), so one plan and one apply decide LANES
rounds at once, each resource from its own round's pre-state. The 20 seeds are the same; a plan and
an apply cost about 2.5 s of CLI start and SSH connect whatever the catalog's size, so 20 rounds one
by one took 50 s. Every lane runs two rounds in a row in the same state directory, so a second round
is planned over what the first one's apply stored, as every round after the first was before.
"""

from __future__ import annotations

import random
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from e2ehelp import driftctl, write_inventory

pytestmark = pytest.mark.slow

ROUNDS = 20
LANES = 10
SITE = """
  - directory: {root}
  - file: {root}/f1
    content: "one\\n"
  - file: {root}/f2
    content: "two\\n"
    mode: "0600"
  - directory: {root}/d1
  - file: {root}/d1/inner
    content: "inner\\n"
  - symlink: {root}/l1
    target: {root}/f1
  - symlink: {root}/l2
    target: /etc/hostname
    force: true
  - line: {lane}-line
    path: {root}/lines.txt
    text: "key = value"
  - block: {lane}-block
    path: {root}/block.txt
    content: "managed"
  - directory: {root}/d2
    mode: "0750"
  - file: {root}/d2/x
    content: "x\\n"
  - exec: {lane}-mark
    command: touch {root}/marker
    creates: {root}/marker
    require: file:{root}/f1
  - file: {root}/f3
    ensure: absent
"""
PATHS = ["f1", "f2", "d1", "l1", "l2", "lines.txt", "block.txt", "d2", "f3"]
STATES = ["missing", "file", "empty-dir", "full-dir", "link-to-file", "dangling-link"]


def root_of(lane: int) -> str:
    return f"/srv/agree{lane}"


def pre_state(rng: random.Random, root: str) -> tuple[str, dict[str, str]]:
    """A shell script that lays out one random pre-state under ``root``, and the states chosen."""
    chosen = {p: rng.choice(STATES) for p in PATHS}
    lines = [f"rm -rf {root}", f"mkdir -p {root}"]
    for name, state in chosen.items():
        path = shlex.quote(f"{root}/{name}")
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


def lane_of(rid: str) -> int:
    """The lane a resource id belongs to: every path and name of lane N has ``agree<N>`` in it."""
    m = re.search(r"agree(\d+)", rid)
    assert m, rid
    return int(m.group(1))


def test_plan_and_apply_agree_on_random_pre_states(fresh_host: Any, tmp_path: Path) -> None:
    inv = write_inventory(tmp_path / "inv", [fresh_host])
    site = tmp_path / "manifests"
    (site / "roles" / "a").mkdir(parents=True)
    (site / "site.yaml").write_text("- hosts: all\n  roles: [a]\n")
    (site / "roles" / "a" / "resources.yaml").write_text(
        "resources:" + "".join(SITE.format(root=root_of(n), lane=f"agree{n}") for n in range(LANES)))
    state = tmp_path / "state"
    mismatches = []
    refused_seen = 0
    for first in range(0, ROUNDS, LANES):
        seeds = {lane: first + lane for lane in range(LANES)}  # lane -> the seed of its round
        chosen = {}
        scripts = []
        for lane, seed in seeds.items():
            script, chosen[lane] = pre_state(random.Random(seed), root_of(lane))
            scripts.append(script)
        r = fresh_host.sh("".join(scripts))
        assert r.rc == 0, r.stderr_text
        plan = driftctl("plan", inv, "-m", site, "--json", state_dir=state)
        assert plan.rc in (0, 2, 4, 6), plan.output
        apply = driftctl("apply", inv, "-m", site, "--json", state_dir=state)
        assert apply.rc in (0, 2, 4, 6), apply.output
        planned, applied = outcome(plan.json()), outcome(apply.json())
        assert len(planned) == 13 * LANES, sorted(planned)
        refused_seen += sum(s == "failed" for s in planned.values())
        for rid in planned:
            if planned[rid] != applied.get(rid):
                lane = lane_of(rid)
                mismatches.append(f"seed {seeds[lane]} {chosen[lane]}: {rid} planned {planned[rid]}, "
                                  f"applied {applied.get(rid)}")
    assert not mismatches, "\n".join(mismatches)
    assert refused_seen > 0  # the random pre-states did put things in the way
