"""systemd: ``driftctl-NAME.service`` (Type=oneshot) and ``driftctl-NAME.timer`` (Persistent=true), in
``/etc/systemd/system`` for root or ``~/.config/systemd/user`` for others, checked with
``systemd-analyze verify`` when installed, enabled with ``systemctl enable --now`` when systemd runs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from driftctl.errors import ConfigError
from driftctl.schedule.job import (
    MARKER,
    PATH,
    Every,
    Job,
    Scheduled,
    ScheduleError,
    calendar_spec,
    marker_name,
    run,
)
from driftctl.schedule.pull import PullJob, pull_unit_files


def default_unit_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/etc/systemd/system")
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "systemd" / "user"


def systemd_running() -> bool:
    """sd_booted(): systemd is the init of this machine."""
    return os.path.isdir("/run/systemd/system")


_SYSTEMD_SAFE = re.compile(r"^[A-Za-z0-9_@+=:,./-]+$")


def systemd_quote(arg: str, executable: bool = False) -> str:
    """One ExecStart= word: specifiers (%) doubled, variables ($) doubled in arguments, quoted when needed.

    systemd substitutes no variables in the executable's path (``$`` stays as written) and refuses an
    executable path with quotes or backslashes at all.
    """
    if "\n" in arg or "\r" in arg:
        raise ConfigError("a scheduled command cannot contain a newline (check the paths)")
    if executable and any(c in arg for c in "\"'\\"):
        raise ConfigError(f"systemd refuses an executable path with quotes or backslashes: {arg}", None,
                          "install driftctl under a plainer path, or schedule with cron")
    text = arg.replace("%", "%%") if executable else arg.replace("%", "%%").replace("$", "$$")
    if _SYSTEMD_SAFE.match(arg):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unit_path_value(path: Path) -> str:
    # WorkingDirectory= takes the rest of the line (no quoting); only specifiers need escaping
    return str(path).replace("%", "%%")


def exec_start(argv: Sequence[str]) -> str:
    """A service's ExecStart line for ``argv``, each word quoted as systemd reads it."""
    return f"ExecStart={' '.join(systemd_quote(a, executable=i == 0) for i, a in enumerate(argv))}\n"


def timer_when(every: Every, name: str) -> str:
    """A timer's schedule lines: a calendar rhythm (caught up after downtime), else every N after the last
    start (the first one a minute after enabling)."""
    calendar = calendar_spec(every, name)
    if calendar is not None:
        return f"OnCalendar={calendar}\nPersistent=true\n"
    return f"OnActiveSec=1min\nOnUnitActiveSec={every.seconds}s\n"


def unit_files(job: Job, user_mode: bool) -> dict[str, str]:
    """file name -> text of the service and the timer."""
    marker = f"{MARKER} {job.name} every={job.every.text}\n"
    after = "" if user_mode else "Wants=network-online.target\nAfter=network-online.target\n"
    service = (
        f"{marker}[Unit]\nDescription=driftctl drift {job.name} ({job.inventory.replace('%', '%%')})\n{after}\n"
        "[Service]\nType=oneshot\n"
        f"WorkingDirectory={_unit_path_value(job.project_dir)}\n"
        f"Environment=NO_COLOR=1 TERM=dumb LANG=C.UTF-8 PATH={PATH}\n"
        f"{exec_start(job.argv())}"
        "# exit 2 means drift was found and reported: the run itself succeeded\n"
        "SuccessExitStatus=2\n"
    )
    when = timer_when(job.every, job.name)
    timer = (
        f"{marker}[Unit]\nDescription=driftctl drift {job.name} every {job.every.text}\n\n"
        f"[Timer]\n{when}Unit=driftctl-{job.name}.service\n\n[Install]\nWantedBy=timers.target\n"
    )
    return {f"driftctl-{job.name}.service": service, f"driftctl-{job.name}.timer": timer}


@dataclass
class SystemdResult:
    units: list[Path]
    verified: bool  # systemd-analyze verify ran and passed
    enabled: bool
    note: str  # why not enabled / not verified, for the user


def _verify(directory: Path, names: Sequence[str], user_mode: bool) -> bool:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        return False
    argv = [exe, *(["--user"] if user_mode else []), "verify", *(str(directory / n) for n in names)]
    proc = run(argv, timeout=120)
    output = (proc.stdout + proc.stderr).decode("utf-8", "replace").strip()
    # verify also complains about unrelated units of the machine; only lines about ours count
    ours = [line for line in output.splitlines() if any(n in line for n in names)]
    if proc.returncode != 0 and ours:
        raise ScheduleError("systemd-analyze verify rejected the units:\n" + "\n".join(ours))
    return True


def _systemctl(user_mode: bool, *args: str) -> subprocess.CompletedProcess[bytes]:
    exe = shutil.which("systemctl")
    if exe is None:
        raise ScheduleError("systemctl is not installed")
    return run([exe, *(["--user"] if user_mode else []), *args], timeout=120)


def install_systemd(job: Job | PullJob, unit_dir: Path | None = None) -> SystemdResult:
    """Write (replace) the two units, verify them, and enable the timer when systemd runs here.

    With ``unit_dir`` (tests, or a directory systemd does not read) the units are only written.
    A scheduled pull's output goes to the journal; a drift run's log directory is made here.
    """
    user_mode = os.geteuid() != 0
    directory = unit_dir or default_unit_dir()
    if isinstance(job, PullJob):
        files = pull_unit_files(job)
    else:
        files = unit_files(job, user_mode)
        job.log_file.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="driftctl-units-") as tmp:
        for name, text in files.items():
            (Path(tmp) / name).write_text(text, encoding="utf-8")
        verified = _verify(Path(tmp), list(files), user_mode)
    from driftctl.fileio import write_atomic

    paths = [write_atomic(directory / name, text) for name, text in files.items()]
    timer = f"driftctl-{job.name}.timer"
    if unit_dir is not None:
        return SystemdResult(paths, verified, False, f"written to {directory} only (--unit-dir): not enabled")
    if not systemd_running():
        return SystemdResult(paths, verified, False, "systemd is not running on this machine: not enabled")
    for args in (("daemon-reload",), ("enable", "--now", timer)):
        proc = _systemctl(user_mode, *args)
        if proc.returncode != 0:
            raise ScheduleError(f"systemctl {' '.join(args)} failed: {proc.stderr.decode('utf-8', 'replace').strip()}")
    return SystemdResult(paths, verified, True, f"{timer} enabled and started")


def remove_systemd(name: str, unit_dir: Path | None = None) -> list[Path]:
    """Stop and disable the timer (when systemd runs and the units are where it reads them), delete both."""
    user_mode = os.geteuid() != 0
    directory = unit_dir or default_unit_dir()
    paths = [p for p in (directory / f"driftctl-{name}.timer", directory / f"driftctl-{name}.service")
             if p.is_file() and marker_name(p.read_bytes().split(b"\n", 1)[0]) == name]
    if not paths:
        return []
    if unit_dir is None and systemd_running():
        _systemctl(user_mode, "disable", "--now", f"driftctl-{name}.timer")  # absent or stopped is fine
    for p in paths:
        p.unlink()
    if unit_dir is None and systemd_running():
        _systemctl(user_mode, "daemon-reload")
    return paths


def _unit_value(text: str, key: str) -> str:
    m = re.search(rf"^{key}=(.*)$", text, re.MULTILINE)
    return m.group(1).strip() if m else ""


def list_systemd(unit_dir: Path | None = None) -> list[Scheduled]:
    directory = unit_dir or default_unit_dir()
    if not directory.is_dir():
        return []
    out = []
    for timer in sorted(directory.glob("driftctl-*.timer")):
        text = timer.read_text(encoding="utf-8", errors="replace")
        name = marker_name(text.split("\n", 1)[0].encode())
        if name is None:
            continue
        service = timer.with_suffix(".service")
        stext = service.read_text(encoding="utf-8", errors="replace") if service.is_file() else ""
        first = text.split("\n", 1)[0]
        every = re.search(r"every=(\S+)", first)
        when = _unit_value(text, "OnCalendar") or f"every {_unit_value(text, 'OnUnitActiveSec')}"
        enabled = (directory / "timers.target.wants" / timer.name).exists()
        splay = re.search(r"splay=(\S+)", first)
        extra = {"splay": splay.group(1), "pull": "true"} if "kind=pull" in first and splay else {}
        out.append(Scheduled(name, "systemd", every.group(1) if every else None, when,
                             _unit_value(stext, "ExecStart") or "(service missing)", str(timer), enabled, extra))
    return out
