"""``driftctl schedule install --systemd`` as a user types it, into a unit directory of the test's own
(``--unit-dir``: the machine's /etc/systemd/system is never touched). The units are checked by the real
``systemd-analyze verify`` inside the command, and here by ``systemd-analyze calendar``."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from e2ehelp import driftctl


def test_systemd_units_install_list_remove(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    (project / "inv").mkdir(parents=True)
    (project / "inv" / "hosts.yaml").write_text("all:\n  hosts: {}\n")
    (project / "manifests").mkdir()
    units, state = tmp_path / "units", tmp_path / "state"

    r = driftctl("schedule", "install", "inv", "--every", "6h", "--systemd", "--unit-dir", units,
                 "--report-dir", "out", state_dir=state, cwd=project)
    assert r.rc == 0, r.output
    assert "not enabled" in r.stderr and "not verified" not in r.stderr
    timer = (units / "driftctl-drift-inv.timer").read_text()
    service = (units / "driftctl-drift-inv.service").read_text()
    calendar = re.search(r"^OnCalendar=(.+)$", timer, re.MULTILINE).group(1)
    out = subprocess.run(["systemd-analyze", "calendar", "--iterations=4", calendar], capture_output=True,
                         text=True, check=True, env={"TZ": "UTC", "PATH": "/usr/bin:/bin"}).stdout
    hours = [int(h) for h in re.findall(r"(?:Next elapse|Iter\. #\d): \w+ \S+ (\d\d):", out)]
    assert len(hours) == 4 and len({h % 6 for h in hours}) == 1  # every 6 hours, same minute
    assert f"--report-dir {project / 'out'}" in service and f"WorkingDirectory={project}" in service

    r = driftctl("schedule", "install", "inv", "--every", "7m", "--systemd", "--unit-dir", units,
                 state_dir=state, cwd=project)
    assert r.rc == 0, r.output  # systemd timers run any interval
    assert "OnUnitActiveSec=420s" in (units / "driftctl-drift-inv.timer").read_text()

    r = driftctl("schedule", "list", "--unit-dir", units, "--json", state_dir=state, cwd=project)
    assert r.rc == 0, r.output
    assert [(s["name"], s["kind"], s["every"], s["enabled"]) for s in r.json() if s["kind"] == "systemd"] == [
        ("drift-inv", "systemd", "7m", False)]
    r = driftctl("schedule", "remove", "drift-inv", "--unit-dir", units, state_dir=state, cwd=project)
    assert r.rc == 0, r.output
    assert sorted(p.name for p in units.iterdir()) == []


def test_systemd_refuses_user_option(tmp_path: Path) -> None:
    r = driftctl("schedule", "install", "inv", "--every", "1h", "--systemd", "--user", "nobody",
                 state_dir=tmp_path, cwd=tmp_path)
    assert r.rc == 1 and "--user is for crontabs" in r.stderr
