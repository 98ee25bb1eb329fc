"""The live progress view at a real terminal (issue 12, "Live progress"), watched in tmux.

``driftctl apply`` and ``driftctl drift`` run in a detached tmux session (160x40) against two fleet hosts;
the pane is captured over and over while they run. One host is slow on purpose (an exec that sleeps, on it
only; its guard sleeps as well, so drift is slow on it too). Seen in the captures: each running host's
phase and elapsed time, resources done of total during the apply, the fast host's result while the slow
one still runs; after the view closes, the normal host sections and summary, and nothing of the view.
The view is drawn on stderr only: a drift with stdout in a file leaves no trace of it there.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from e2ehelp import REPO, write_inventory

FILES = 30
SLOW = 5  # seconds the slow host's exec (and its guard) sleep

PHASES = "connect|facts|render|probe|apply|start"


class Tmux:
    """A tmux server of the test's own (its own socket), one session of 160x40 running ``script``."""

    def __init__(self, tmp: Path) -> None:
        self.socket = f"driftctl-lp-{uuid.uuid4().hex[:8]}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTCTL_") and k != "CI"}
        self.env.update({"LANG": "C.UTF-8", "TERM": "xterm-256color"})
        self.tmp = tmp

    def tmux(self, *args: str) -> str:
        proc = subprocess.run(["tmux", "-u", "-L", self.socket, *args], env=self.env, capture_output=True,
                              text=True, timeout=30, check=False)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def run(self, command: str, rc_file: Path, timeout: float = 300) -> list[str]:
        """Run ``command`` in the session's pane; the pane's text every ~0.2 s until it ends, and after."""
        script = self.tmp / f"run-{uuid.uuid4().hex[:6]}.sh"
        script.write_text(f"cd {shlex.quote(str(REPO))}\n{command}\necho $? > {shlex.quote(str(rc_file))}\n"
                          "sleep 600\n")
        name = f"s{uuid.uuid4().hex[:6]}"
        self.tmux("new-session", "-d", "-x", "160", "-y", "40", "-s", name, f"sh {shlex.quote(str(script))}")
        frames = []
        deadline = time.monotonic() + timeout
        while not rc_file.exists():
            assert time.monotonic() < deadline, "the run did not end:\n" + (frames[-1] if frames else "")
            frames.append(self.tmux("capture-pane", "-p", "-t", name))
            time.sleep(0.2)
        time.sleep(0.3)
        frames.append(self.tmux("capture-pane", "-p", "-S", "-200", "-t", name))  # the final pane, with history
        self.tmux("kill-session", "-t", name)
        return frames

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], env=self.env, capture_output=True, check=False,
                       timeout=30)


@pytest.fixture
def tmux(tmp_path: Path) -> Any:
    t = Tmux(tmp_path)
    yield t
    t.close()


def manifests(root: Path, target: str) -> Path:
    (root / "roles" / "lp").mkdir(parents=True)
    (root / "site.yaml").write_text("- hosts: all\n  roles: [lp]\n")
    lines = ["resources:", f"  - directory: {target}"]
    for i in range(FILES):
        lines += [f"  - file: {target}/f{i:02d}", f"    content: \"{{{{ inventory_hostname }}}} {i}\\n\""]
    # last in the list: the slow host sits in its apply with every file done (and then in sync: creates)
    lines += ["  - exec: slow-step", "    shell: true", f"    creates: {target}/slow-done",
              f"    command: \"sleep {{{{ slow }}}} && touch {target}/slow-done\""]
    # in sync after its guard, which makes every probe (so drift) slow on the slow host
    lines += ["  - exec: slow-guard", "    command: \"true\"", "    unless: \"sleep {{ slow }}\""]
    (root / "roles" / "lp" / "resources.yaml").write_text("\n".join(lines) + "\n")
    return root


def driftctl_line(*args: str | Path, state: Path) -> str:
    env = f"DRIFTCTL_STATE_DIR={shlex.quote(str(state))} DRIFTCTL_CONNECT_TIMEOUT=60 NO_COLOR=1"
    return f"env {env} {shlex.quote(sys.executable)} -m driftctl " + " ".join(shlex.quote(str(a)) for a in args)


def host_line(frame: str, host: str) -> str | None:
    """The view's line of ``host`` in a capture (a running host's starts with its name, a finished one's
    with a mark), or None."""
    for line in frame.splitlines():
        if re.match(rf"^(  |[✓✗!-] ){re.escape(host)}\s", line):
            return line
    return None


def running(line: str | None) -> re.Match[str] | None:
    return re.search(rf"^  \S+\s+({PHASES})\b.*\s(\d+)s$", line.rstrip()) if line else None


def test_apply_and_drift_live_at_a_terminal(fleet: Any, tmux: Tmux, tmp_path: Path) -> None:
    slow, fast = fleet.hosts[:2]
    target = f"/var/tmp/lp-{uuid.uuid4().hex[:8]}"
    inv = write_inventory(tmp_path / "inv", [slow, fast], host_vars={slow.name: f"slow: {SLOW}\n",
                                                                        fast.name: "slow: 0\n"})
    root = manifests(tmp_path / "manifests", target)
    state = tmp_path / "state"
    total = FILES + 2  # the directory, the files, slow-step; slow-guard is in sync
    try:
        frames = tmux.run(driftctl_line("apply", inv, "-m", root, state=state), tmp_path / "apply.rc")
        assert (tmp_path / "apply.rc").read_text().strip() == "2", frames[-1]
        live, final = frames[:-1], frames[-1]

        # each running host: its phase and elapsed time
        assert any(running(host_line(f, slow.name)) for f in live), "\n---\n".join(live[-5:])
        phases = {m.group(1) for f in live for m in [running(host_line(f, slow.name))] if m}
        assert "apply" in phases, phases
        # resources done of total during the apply: the slow host with every file done, its exec running
        progress = [m for f in live if (line := host_line(f, slow.name))
                    for m in re.finditer(r"(\d+)/(\d+) resources", line)]
        assert progress, "\n---\n".join(live[-5:])
        assert {int(m.group(2)) for m in progress} == {total}
        assert any(0 < int(m.group(1)) < total for m in progress), [m.group(0) for m in progress]
        # the fast host's result while the slow one still runs
        both = [f for f in live if (line := host_line(f, fast.name)) and line.startswith("✓ ")
                and f"changed {total}" in line and running(host_line(f, slow.name))]
        assert both, "\n---\n".join(live[-5:])
        assert re.search(r"1/2 hosts done\s+\d+s elapsed", both[-1]), both[-1]
        assert "finished: 1 changed" in both[-1]

        # the view is gone; the normal output is what is left
        (tmp_path / "apply.frames").write_text("\n=====\n".join(frames))
        assert not re.search(r"hosts done|\d+/\d+ resources|finished: ", final), final
        assert re.search(rf"^{re.escape(slow.name)}\s+{total - 1} added, 1 changed, 0 removed, 1 in sync", final,
                         re.M), final
        assert f"Apply: {2 * (total - 1)} added, 2 changed, 0 removed." in final
        assert re.search(r"^apply: 2 host\(s\), \d+ resource\(s\) changed in [\d.]+s \(exit 2\)$", final, re.M), final

        # drift, stdout into a file: the view on the terminal, nothing of it in the file
        out = tmp_path / "drift.out"
        frames = tmux.run(driftctl_line("drift", inv, "-m", root, state=state)
                          + f" > {shlex.quote(str(out))}; rc=$?; cat {shlex.quote(str(out))}; (exit $rc)",
                          tmp_path / "drift.rc")
        assert (tmp_path / "drift.rc").read_text().strip() == "0", frames[-1]
        live, final = frames[:-1], frames[-1]
        assert any(m and m.group(1) == "probe" for f in live for m in [running(host_line(f, slow.name))]), \
            "\n---\n".join(live[-5:])
        seen = [f for f in live if (line := host_line(f, fast.name)) and line.startswith("✓ ") and "in sync" in line
                and running(host_line(f, slow.name))]
        assert seen, "\n---\n".join(live[-5:])
        (tmp_path / "drift.frames").write_text("\n=====\n".join(frames))
        assert not re.search(r"hosts done|finished: ", final), final
        assert re.search(r"^drift: 2 host\(s\), 0 drifted resource\(s\)", final, re.M), final
        text = out.read_text()
        assert not re.search(r"hosts done|finished: ", text), text
        assert re.search(r"^drift: 2 host\(s\), 0 drifted resource\(s\)", text, re.M), text
    finally:
        for h in (slow, fast):
            h.sh(f"rm -rf {shlex.quote(target)}")
