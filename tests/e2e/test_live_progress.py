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
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from e2ehelp import REPO, write_inventory

from driftctl.errors import ExitCode

FILES = 30
SLOW = 5  # seconds the slow host's exec (and its guard, which runs in every probe) sleep

PHASES = "connect|facts|render|probe|apply|start"


class Tmux:
    """A tmux server of the test's own (its own socket): a session per command run."""

    def __init__(self, tmp: Path) -> None:
        self.socket = f"driftctl-lp-{uuid.uuid4().hex[:8]}"
        # LINES and COLUMNS go too: pytest-xdist sets them in its workers (24x80), and rich takes them over
        # the pane's real size, so a view sized for 24 lines would scroll a pane of 20
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("DRIFTCTL_") and k not in ("CI", "LINES", "COLUMNS")}
        self.env.update({"LANG": "C.UTF-8", "TERM": "xterm-256color"})
        self.tmp = tmp
        self.conf = tmp / "tmux.conf"  # read when the server starts: history enough for a whole run's output
        self.conf.write_text("set -g history-limit 20000\n")

    def tmux(self, *args: str) -> str:
        proc = subprocess.run(["tmux", "-u", "-f", str(self.conf), "-L", self.socket, *args], env=self.env,
                              capture_output=True, text=True, timeout=30, check=False)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def run(self, command: str, rc_file: Path, size: tuple[int, int] = (160, 40), timeout: float = 300,
            interrupt_when: str | None = None) -> list[str]:
        """Run ``command`` in a pane of ``size`` (columns, lines); the pane's text every ~0.2 s until it ends,
        then the final pane with its history. ``interrupt_when``: once a capture matches this pattern, Ctrl-C
        is typed into the pane, as a person would."""
        script = self.tmp / f"run-{uuid.uuid4().hex[:6]}.sh"
        # the shell outlives a Ctrl-C meant for the command (a trap is reset to the default in the command)
        script.write_text(f"trap : INT\ncd {shlex.quote(str(REPO))}\n{command}\n"
                          f"echo $? > {shlex.quote(str(rc_file))}\nsleep 600\n")
        name = f"s{uuid.uuid4().hex[:6]}"
        self.tmux("new-session", "-d", "-x", str(size[0]), "-y", str(size[1]), "-s", name,
                  f"sh {shlex.quote(str(script))}")
        frames = []
        deadline = time.monotonic() + timeout
        while not rc_file.exists():
            assert time.monotonic() < deadline, "the run did not end:\n" + (frames[-1] if frames else "")
            frames.append(self.tmux("capture-pane", "-p", "-t", name))
            if interrupt_when is not None and re.search(interrupt_when, frames[-1], re.M):
                self.tmux("send-keys", "-t", name, "C-c")
                interrupt_when = None
            time.sleep(0.2)
        time.sleep(0.3)
        frames.append(self.tmux("capture-pane", "-p", "-S", "-", "-t", name))  # the final pane, with history
        self.tmux("kill-session", "-t", name)
        (self.tmp / f"{rc_file.stem}.frames").write_text("\n=====\n".join(frames))  # to look at, when one fails
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
    lines += ["  - exec: slow-guard", "    command: \"true\"", "    unless: \"sleep {{ guard }}\""]
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
    inv = write_inventory(tmp_path / "inv", [slow, fast], host_vars={slow.name: f"slow: {SLOW}\nguard: {SLOW}\n",
                                                                        fast.name: "slow: 0\nguard: 0\n"})
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
        assert not re.search(r"hosts done|finished: ", final), final
        assert re.search(r"^drift: 2 host\(s\), 0 drifted resource\(s\)", final, re.M), final
        text = out.read_text()
        assert not re.search(r"hosts done|finished: ", text), text
        assert re.search(r"^drift: 2 host\(s\), 0 drifted resource\(s\)", text, re.M), text
    finally:
        for h in (slow, fast):
            h.sh(f"rm -rf {shlex.quote(target)}")


def closed_ports(n: int) -> list[int]:
    """``n`` different loopback ports nobody listens on (one machine under several names is refused)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def test_a_fleet_taller_than_the_terminal_fits_it_and_leaves_nothing_behind(fleet: Any, tmux: Tmux,
                                                                            tmp_path: Path) -> None:
    """60 hosts (58 that refuse connections, 10 at a time) in a terminal of 20 lines: the view keeps to it,
    with the running hosts, the latest finished, counts and how many wait; when it closes, not one of its
    lines is left in the terminal's history above the normal output."""
    slow, fast = fleet.hosts[:2]
    dead = [SimpleNamespace(name=f"dead{i:02d}", address="127.0.0.1", port=port, key_file=slow.key_file,
                            known_hosts=slow.known_hosts) for i, port in enumerate(closed_ports(58))]
    target = f"/var/tmp/lp-{uuid.uuid4().hex[:8]}"
    inv = write_inventory(tmp_path / "inv", [slow, fast, *dead],
                          host_vars={slow.name: f"slow: {SLOW}\nguard: {SLOW}\n"}, all_vars="slow: 0\nguard: 0\n")
    root = manifests(tmp_path / "manifests", target)
    try:
        frames = tmux.run(driftctl_line("apply", inv, "-m", root, state=tmp_path / "state"), tmp_path / "rc",
                          size=(120, 20))
        assert int((tmp_path / "rc").read_text()) & ExitCode.UNREACHABLE, frames[-1]
        live, final = frames[:-1], frames[-1]
        shown = [f for f in live if "hosts done" in f]
        assert shown
        for f in shown:
            lines = f.rstrip("\n").split("\n")
            assert len(lines) <= 20 and "hosts done" in lines[0], f  # the view starts at the top: it never scrolled
        text = "\n".join(shown)
        assert re.search(r"^  … \d+ earlier", text, re.M), text
        assert re.search(r"^waiting: \d+ host\(s\)", text, re.M), text
        assert re.search(r"^finished: .*\d+ unreachable", text, re.M), text
        assert re.search(r"^✗ dead\d\d\s+unreachable: ", text, re.M), text
        assert any(running(host_line(f, slow.name)) for f in shown)

        history = final.split("\n")
        assert re.search(rf"^{re.escape(slow.name)}\s+{FILES + 1} added", final, re.M), final  # the whole output
        assert not any(re.search(r"hosts done|^finished: |^waiting: |^  … \d+ (earlier|more running)|^✗ dead", line)
                       for line in history), final
        assert re.search(r"^apply: 60 host\(s\), \d+ resource\(s\) changed; 58 unreachable in", final, re.M), final
    finally:
        for h in (slow, fast):
            h.sh(f"rm -rf {shlex.quote(target)}")


def test_ctrl_c_closes_the_view_cleanly(fleet: Any, tmux: Tmux, tmp_path: Path) -> None:
    """Ctrl-C while the slow host's exec runs: the interrupt's warning is printed once, whole, with the view
    up; when the run has stopped, the normal output (the exec interrupted, exit bit 16) and nothing of the
    view."""
    slow, fast = fleet.hosts[:2]
    target = f"/var/tmp/lp-{uuid.uuid4().hex[:8]}"
    inv = write_inventory(tmp_path / "inv", [slow, fast], host_vars={slow.name: "slow: 30\nguard: 0\n",
                                                                        fast.name: "slow: 0\nguard: 0\n"})
    root = manifests(tmp_path / "manifests", target)
    try:
        frames = tmux.run(driftctl_line("apply", inv, "-m", root, state=tmp_path / "state"), tmp_path / "rc",
                          interrupt_when=rf"^  {re.escape(slow.name)}\s+apply .* {FILES + 1}/{FILES + 2} resources")
        rc = int((tmp_path / "rc").read_text())
        live, final = frames[:-1], frames[-1]
        assert rc & ExitCode.ABORTED, final
        assert any("hosts done" in f for f in live)
        warning = [line for line in final.split("\n") if "SIGINT: stopping" in line]
        assert len(warning) == 1 and warning[0].startswith("warning: SIGINT: stopping"), final
        assert not re.search(r"hosts done|^finished: |\d+/\d+ resources", final, re.M), final
        assert re.search(r"exec:slow-step failed", final), final
        assert re.search(r"^apply: 2 host\(s\), .*\(exit \d+\)$", final, re.M), final
    finally:
        for h in (slow, fast):
            h.sh(f"rm -rf {shlex.quote(target)}")
