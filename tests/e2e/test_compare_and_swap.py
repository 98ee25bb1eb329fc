"""A hand edit made during an apply is never overwritten silently (issue 15 §1).

On a real host an exec sleeps before a file and a line in the graph; while it sleeps someone edits
both files by hand. The apply must fail those resources with "changed underneath since the plan",
write nothing over the edits, skip what depends on them, and drift must then report the hand edit
as it is.

The exec holds until the test has made its edits and creates /run/cas-go (8 s at most, as the fixed
`sleep 8` it replaces): the edits are always made while it runs, and no apply waits longer than that.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from e2ehelp import driftctl, write_inventory
from test_interrupts import start

pytestmark = pytest.mark.slow

SITE = """resources:
  - exec: slow
    command: >-
      touch /run/cas-holding; i=0; while [ ! -e /run/cas-go ] && [ $i -lt 80 ]; do sleep 0.1; i=$((i+1)); done;
      touch /run/cas-held
    shell: true
    unless: test -e /root/never
  - file: /etc/cas.conf
    content: "managed\\n"
    require: exec:slow
  - line: cas-line
    path: /etc/cas-lines.conf
    text: "managed = yes"
    require: exec:slow
  - file: /etc/cas-after.conf
    content: "after\\n"
    require: file:/etc/cas.conf
"""


def test_hand_edit_during_apply_is_kept_and_reported(fresh_host: Any, tmp_path: Path) -> None:
    fresh_host.sh("printf 'original\\n' > /etc/cas.conf; printf 'a = 1\\n' > /etc/cas-lines.conf")
    inv = write_inventory(tmp_path / "inv", [fresh_host])
    site = tmp_path / "manifests"
    (site / "roles" / "c").mkdir(parents=True)
    (site / "site.yaml").write_text("- hosts: all\n  roles: [c]\n")
    (site / "roles" / "c" / "resources.yaml").write_text(SITE)
    state = tmp_path / "state"
    fresh_host.sh("touch /run/cas-go")  # the first converge's exec does not hold
    assert driftctl("apply", inv, "-m", site, state_dir=state).rc in (2, 4)  # a first converge: baseline
    fresh_host.sh("printf 'original\\n' > /etc/cas.conf; printf 'a = 1\\n' > /etc/cas-lines.conf; "
                  "rm -f /etc/cas-after.conf /run/cas-go /run/cas-holding /run/cas-held")

    proc = start(["apply", str(inv), "-m", str(site), "--json"], state)
    deadline = time.monotonic() + 120
    while fresh_host.sh("test -e /run/cas-holding").rc != 0:
        assert time.monotonic() < deadline, "the slow exec never started"
        time.sleep(0.2)
    fresh_host.sh("printf 'edited by hand\\n' > /etc/cas.conf; printf 'b = 2\\n' >> /etc/cas-lines.conf")
    assert fresh_host.sh("test -e /run/cas-held").rc != 0, "the slow exec ended before the edits"
    fresh_host.sh("touch /run/cas-go")  # edited while it held: now the apply goes on
    out, err = proc.communicate(timeout=120)
    assert proc.returncode & 4, f"exit {proc.returncode}\n{err}"
    import json

    got = {r["id"]: r for r in json.loads(out)["hosts"][0]["resources"]}
    for rid in ("file:/etc/cas.conf", "line:cas-line"):
        assert got[rid]["status"] == "failed", got[rid]
        assert "changed underneath since the plan" in got[rid]["error"], got[rid]
    assert got["file:/etc/cas-after.conf"]["status"] == "skipped"
    # nothing was written over the hand edits, and the dependent was not created
    assert fresh_host.sh("cat /etc/cas.conf").stdout_text == "edited by hand\n"
    assert fresh_host.sh("cat /etc/cas-lines.conf").stdout_text == "a = 1\nb = 2\n"
    assert fresh_host.sh("test -e /etc/cas-after.conf").rc != 0
    # drift reports the file as it is now (content differs from the manifest)
    drift = driftctl("drift", inv, "-m", site, "--json", state_dir=state)
    assert drift.rc & 2, drift.output
    drifted = {r["id"] for r in drift.json()["hosts"][0]["resources"] if r.get("drift")}
    assert "file:/etc/cas.conf" in drifted
