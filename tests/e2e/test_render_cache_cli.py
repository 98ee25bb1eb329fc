"""The render cache through the CLI, on this machine (the local transport): kept, private, never stale.

A plan keeps the rendered texts; an apply after an edit of the template, and after a change of a
variable, writes the new text (read from the file applied, not from driftctl); a cache directory others
could write is not used (a warning says so, the run is as before); ``DRIFTCTL_RENDER_CACHE=0`` keeps
nothing.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from e2ehelp import driftctl

from driftctl.manifest import rendercache


def scene(tmp_path: Path, greeting: str = "hello") -> tuple[Path, Path, Path, Path]:
    target = tmp_path / "target"
    target.mkdir(exist_ok=True)
    inv = tmp_path / "inv"
    inv.mkdir(exist_ok=True)
    (inv / "hosts.yaml").write_text("all:\n  hosts:\n    ctl:\n      driftctl_transport: local\n"
                                    f"  vars:\n    greeting: {greeting}\n")
    manifests = tmp_path / "manifests"
    (manifests / "roles" / "r" / "templates").mkdir(parents=True, exist_ok=True)
    (manifests / "site.yaml").write_text("- hosts: all\n  roles: [r]\n")
    (manifests / "roles" / "r" / "resources.yaml").write_text(
        f"resources:\n  - file: {target}/motd\n    template: motd.j2\n    backup: false\n")
    (manifests / "roles" / "r" / "templates" / "motd.j2").write_text(
        "{{ greeting }} from {{ inventory_hostname }}\n{% for i in range(3) %}line {{ i }}\n{% endfor %}")
    return inv, manifests, tmp_path / "state", target / "motd"


def shards(state: Path) -> int:
    with sqlite3.connect(state / "render-cache" / rendercache.FILE_NAME) as db:
        return int(db.execute("SELECT count(*) FROM shard").fetchone()[0])


@pytest.mark.applies_here  # its host lock is this machine's (tests/conftest.py)
def test_a_plan_keeps_the_texts_and_an_edit_or_a_new_value_is_applied(tmp_path: Path) -> None:
    inv, manifests, state, motd = scene(tmp_path)
    plan = driftctl("plan", inv, "-m", manifests, state_dir=state)
    assert plan.rc == 0, plan.output
    assert (state / "render-cache").stat().st_mode & 0o777 == 0o700
    assert (state / "render-cache" / rendercache.FILE_NAME).stat().st_mode & 0o777 == 0o600
    assert shards(state) == 1
    assert driftctl("apply", inv, "-m", manifests, state_dir=state).rc == 2
    assert motd.read_text() == "hello from ctl\nline 0\nline 1\nline 2\n"
    assert driftctl("check", inv, "-m", manifests, state_dir=state).rc == 0

    template = manifests / "roles" / "r" / "templates" / "motd.j2"
    template.write_text(template.read_text().replace("from", "on"))
    applied = driftctl("apply", inv, "-m", manifests, state_dir=state)
    assert applied.rc == 2, applied.output
    assert motd.read_text() == "hello on ctl\nline 0\nline 1\nline 2\n"

    scene(tmp_path, greeting="goodbye")  # the template as it was first, a new value of greeting
    assert driftctl("apply", inv, "-m", manifests, state_dir=state).rc == 2
    assert motd.read_text() == "goodbye from ctl\nline 0\nline 1\nline 2\n"
    assert driftctl("check", inv, "-m", manifests, state_dir=state).rc == 0


def test_a_cache_others_can_write_is_not_used_and_the_run_says_so(tmp_path: Path) -> None:
    inv, manifests, state, _ = scene(tmp_path)
    (state / "render-cache").mkdir(parents=True, mode=0o700)
    (state / "render-cache").chmod(0o777)
    plan = driftctl("plan", inv, "-m", manifests, state_dir=state)
    assert plan.rc == 0, plan.output
    assert "render cache off" in plan.stderr and "writable by users other than you" in plan.stderr
    assert list((state / "render-cache").iterdir()) == []
    assert "motd" in plan.stdout


def test_turned_off_it_keeps_nothing(tmp_path: Path) -> None:
    inv, manifests, state, _ = scene(tmp_path)
    plan = driftctl("plan", inv, "-m", manifests, state_dir=state, env={"DRIFTCTL_RENDER_CACHE": "0"})
    assert plan.rc == 0, plan.output
    assert not (state / "render-cache").exists()
