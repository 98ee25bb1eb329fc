"""Scheduled drift runs: an entry in the user's crontab (default), or a systemd service + timer.

The scheduled command is built once, at install time, with everything a non-interactive run needs:
absolute paths (the driftctl executable of this installation, the project directory to ``cd`` into,
manifests, state directory, report directory), the settings pinned that came from this shell's
environment (cron passes none of it), ``NO_COLOR=1`` and a sane ``PATH``. Nothing assumes a TTY.

cron: one entry per NAME, found by its marker line ``# driftctl-schedule: NAME``; read with
``crontab -l`` and written with ``crontab -`` (stdin, argv only; no shell of ours). Every other line
of the crontab is kept byte for byte. Output is appended to ``<state-dir>/logs/NAME.log``.

systemd: ``driftctl-NAME.service`` (Type=oneshot) and ``driftctl-NAME.timer`` (Persistent=true), in
``/etc/systemd/system`` for root or ``~/.config/systemd/user`` for others, checked with
``systemd-analyze verify`` when installed, enabled with ``systemctl enable --now`` when systemd runs.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from driftctl.config import Settings
from driftctl.errors import ConfigError, DriftctlError, Location

MARKER = "# driftctl-schedule:"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Vixie cron's MAX_COMMAND is 1000 bytes including the newline and NUL: crontab refuses longer lines.
CRON_MAX_COMMAND = 998
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_EVERY_RE = re.compile(r"^\s*(\d+)\s*(m|min|h|d|w)\s*$")
_UNIT_SECONDS = {"m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_CRON_DOW = (1, 2, 3, 4, 5, 6, 0)  # cron counts Sunday as 0


class ScheduleError(DriftctlError):
    """crontab, systemctl or systemd-analyze refused or failed; the message carries their words."""


# -- intervals -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Every:
    """An interval as the user wrote it (``30m``) and in seconds."""

    text: str
    seconds: int

    @property
    def minutes(self) -> int:
        return self.seconds // 60


def parse_every(text: str) -> Every:
    m = _EVERY_RE.match(text or "")
    if not m or int(m.group(1)) == 0:
        raise ConfigError(f"{text!r}: write a number and a unit, like 15m, 1h, 1d or 1w", Location("--every"))
    n, unit = int(m.group(1)), m.group(2)
    return Every(f"{n}{'m' if unit == 'min' else unit}", n * _UNIT_SECONDS[unit])


def _offset(name: str) -> int:
    # A stable spread (like Jenkins' H): many schedules of one controller do not all start at :00,
    # and re-installing a NAME keeps its minute.
    return int(hashlib.sha256(name.encode()).hexdigest()[:12], 16)


def _even_minutes() -> str:
    return ", ".join(str(n) for n in range(1, 61) if 60 % n == 0) + " minutes"


def cron_schedule(every: Every, name: str) -> str:
    """The five cron fields that run every ``every`` exactly; ConfigError when cron cannot.

    cron steps restart at each hour, day and month (``*/7`` runs at :56 then :00), so only intervals
    dividing an hour, dividing a day, a day or a week are even.
    """
    minutes, h = every.minutes, _offset(name)
    if every.seconds % 60 == 0 and minutes < 60 and 60 % minutes == 0:
        if minutes == 1:
            return "* * * * *"
        start = h % minutes
        return f"{start}-59/{minutes} * * * *" if start else f"*/{minutes} * * * *"
    minute = h % 60
    if minutes % 60 == 0 and minutes < 1440 and 1440 % minutes == 0:
        hours = minutes // 60
        if hours == 1:
            return f"{minute} * * * *"
        start = (h // 60) % hours
        return f"{minute} {start}-23/{hours} * * *" if start else f"{minute} */{hours} * * *"
    hour = (h // 60) % 24
    if minutes == 1440:
        return f"{minute} {hour} * * *"
    if minutes == 10080:
        return f"{minute} {hour} * * {_CRON_DOW[(h // 1440) % 7]}"
    raise ConfigError(
        f"{every.text}: cron cannot run that evenly (its steps restart every hour, day and month)",
        Location("--every"),
        f"use {_even_minutes()}, hours dividing 24, 1d or 1w; or --systemd, whose timers run any interval",
    )


def calendar_spec(every: Every, name: str) -> str | None:
    """A systemd OnCalendar= for intervals cron could express too; None for the others."""
    try:
        fields = cron_schedule(every, name).split()
    except ConfigError:
        return None
    minute, hour, _, _, dow = fields

    def part(value: str) -> str:
        if value == "*":
            return "*"
        if value.startswith("*/"):
            return f"00/{value[2:]}"
        if "-" in value:  # start-top/step
            start, step = value.split("/")[0].split("-")[0], value.split("/")[1]
            return f"{int(start):02d}/{step}"
        return f"{int(value):02d}"

    day = "" if dow == "*" else _DAYS[_CRON_DOW.index(int(dow))] + " "
    return f"{day}*-*-* {part(hour)}:{part(minute)}:00"


# -- the scheduled command ---------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One scheduled drift run, everything resolved: what ``install`` writes into cron or systemd."""

    name: str
    every: Every
    inventory: str  # as the user typed it: the store keys runs by it (run from project_dir)
    project_dir: Path
    state_dir: Path
    manifests: Path
    executable: tuple[str, ...]
    state: str | None = None
    report_dir: Path | None = None
    remediate: bool = False
    known_hosts: tuple[str, ...] = ()
    ssh_config: str | None = None

    @property
    def log_file(self) -> Path:
        return self.state_dir / "logs" / f"{self.name}.log"

    def argv(self) -> list[str]:
        """The drift command line (executable first)."""
        argv = [*self.executable, "drift", self.inventory, "--manifests", str(self.manifests),
                "--state-dir", str(self.state_dir)]
        if self.state:
            argv += ["--state", self.state]
        for path in self.known_hosts:
            argv += ["--known-hosts", path]
        if self.ssh_config:
            argv += ["--ssh-config", self.ssh_config]
        if self.remediate:
            argv.append("--remediate")
        if self.report_dir is not None:
            argv += ["--report-dir", str(self.report_dir)]
        return argv


def executable() -> tuple[str, ...]:
    """How to start this installation of driftctl: its console script, else its Python with -m."""
    python = os.path.abspath(sys.executable)  # not resolved: a venv's python is a symlink that must stay one
    script = Path(python).with_name("driftctl")
    if script.is_file() and os.access(script, os.X_OK):
        return (str(script),)
    return (python, "-m", "driftctl")


def validate_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ConfigError(f"--name {name!r}: use letters, digits, '.', '_' and '-' (at most 64, no leading '.'/'-')",
                          Location("--name"))
    return name


def default_name(inventory: Path) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(os.path.abspath(inventory)).name).strip(".-")
    return f"drift-{base or 'inventory'}"[:64]


def _absolute(path: str | os.PathLike[str], base: Path) -> Path:
    p = Path(os.path.expanduser(os.fspath(path)))
    return Path(os.path.normpath(p if p.is_absolute() else base / p))


def _absolute_store(url: str, base: Path) -> str:
    if url.startswith(("postgresql://", "postgres://")):
        return url
    path = url[len("sqlite://"):] if url.startswith("sqlite://") else url
    return str(_absolute(path, base))


def make_job(inventory: Path, every: str, settings: Settings, name: str | None = None, remediate: bool = False,
             report_dir: Path | None = None, project_dir: Path | None = None) -> Job:
    """Resolve a schedule from the command line and the settings in force now (files, env, flags)."""
    base = Path(os.path.abspath(project_dir or Path.cwd()))
    inv_path = _absolute(inventory, base)
    if not inv_path.exists():
        raise ConfigError(f"inventory {inventory} not found (looked in {inv_path})", Location(str(inventory)))
    manifests = _absolute(settings.manifests, base)
    if not manifests.is_dir():
        raise ConfigError(f"manifest tree {manifests} not found", Location("--manifests"),
                          "pass --manifests DIR or run from the project directory")
    return Job(
        name=validate_name(name) if name else default_name(inventory),
        every=parse_every(every),
        # Relative inventories stay as typed: the store keys runs by that text, so scheduled runs and
        # the ones a person types share one history; the command cds into project_dir first.
        inventory=os.path.normpath(os.fspath(inventory)) if not Path(inventory).is_absolute() else str(inv_path),
        project_dir=base,
        state_dir=_absolute(settings.state_dir, base),
        manifests=manifests,
        executable=executable(),
        state=_absolute_store(settings.state, base) if settings.state else None,
        report_dir=_absolute(report_dir, base) if report_dir is not None else None,
        remediate=remediate,
        known_hosts=tuple(str(_absolute(k, base)) for k in settings.known_hosts),
        ssh_config=str(_absolute(settings.ssh_config, base)) if settings.ssh_config else None,
    )


def shell_command(job: Job) -> str:
    """The /bin/sh command line: output to the log, cd, plain-text environment, exit with drift's code."""
    q = shlex.quote
    env = f"NO_COLOR=1 TERM=dumb LANG=C.UTF-8 PATH={q(PATH)}"
    return (
        f"exec >>{q(str(job.log_file))} 2>&1 </dev/null; cd {q(str(job.project_dir))} || exit 1; "
        f"date -u '+=== %Y-%m-%dT%H:%M:%SZ driftctl-schedule {job.name}'; "
        f"{env} {shlex.join(job.argv())}; rc=$?; echo \"=== exit $rc\"; exit $rc"
    )


def cron_escape(command: str) -> str:
    """crontab(5): an unescaped % ends the command (the rest is stdin); cron turns \\% back into %."""
    if "\n" in command or "\r" in command:
        raise ConfigError("a scheduled command cannot contain a newline (check the paths)")
    return command.replace("%", "\\%")


def cron_entry(job: Job) -> bytes:
    """The marker line and the entry line, newline-terminated."""
    line = cron_escape(shell_command(job))
    if len(line.encode()) > CRON_MAX_COMMAND:
        raise ConfigError(
            f"the scheduled command is {len(line.encode())} bytes; cron accepts at most {CRON_MAX_COMMAND}",
            Location("--every"), "use shorter paths (a symlink to the project), or --systemd",
        )
    text = f"{MARKER} {job.name} every={job.every.text}\n{cron_schedule(job.every, job.name)} {line}\n"
    return text.encode()


# -- crontab -------------------------------------------------------------------------------------


@dataclass
class Scheduled:
    """One installed schedule, as ``schedule list`` shows it."""

    name: str
    kind: str  # "cron" or "systemd"
    every: str | None
    when: str  # cron fields, or the timer's OnCalendar=/OnUnitActiveSec=
    command: str
    where: str  # "crontab of USER" or the unit file
    enabled: bool | None = None
    extra: dict[str, str] = field(default_factory=dict)


def _crontab_argv(user: str | None, *args: str) -> list[str]:
    exe = shutil.which("crontab")
    if exe is None:
        raise ConfigError("the crontab command is not installed", None,
                          "install cron (apt-get install cron), or use --systemd")
    return [exe, *(["-u", user] if user else []), *args]


def _run(argv: Sequence[str], stdin: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, LC_ALL="C")  # messages we parse ("no crontab for") in English
    try:
        return subprocess.run(list(argv), input=stdin, capture_output=True, timeout=timeout, env=env, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ScheduleError(f"{Path(argv[0]).name} failed: {e}") from e


def read_crontab(user: str | None = None) -> bytes:
    """The crontab as ``crontab -l`` prints it (empty when there is none)."""
    proc = _run(_crontab_argv(user, "-l"))
    if proc.returncode == 0:
        return proc.stdout
    err = proc.stderr.decode("utf-8", "replace").strip()
    if "no crontab for" in err:
        return b""
    raise ScheduleError(f"crontab -l failed: {err}")


def write_crontab(content: bytes, user: str | None = None) -> None:
    proc = _run(_crontab_argv(user, "-"), stdin=content)
    if proc.returncode != 0:
        raise ScheduleError(f"crontab refused the new table: {proc.stderr.decode('utf-8', 'replace').strip()}")


def _marker_name(line: bytes) -> str | None:
    text = line.decode("utf-8", "replace").rstrip("\r")
    if not text.startswith(MARKER):
        return None
    rest = text[len(MARKER):].split()
    return rest[0] if rest else None


def _split(content: bytes) -> list[bytes]:
    lines = content.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def _is_entry(line: bytes) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith(b"#") and b"driftctl" in stripped


def without_entry(content: bytes, name: str) -> tuple[bytes, bool]:
    """The crontab without NAME's marker and entry lines; every other line kept byte for byte."""
    lines, out, found, i = _split(content), [], False, 0
    while i < len(lines):
        if _marker_name(lines[i]) == name:
            found = True
            i += 2 if i + 1 < len(lines) and _is_entry(lines[i + 1]) else 1
            continue
        out.append(lines[i])
        i += 1
    return (b"".join(line + b"\n" for line in out), found)


def install_cron(job: Job, user: str | None = None) -> bool:
    """Add or replace NAME's entry (idempotent). Returns True when an entry was replaced."""
    entry = cron_entry(job)
    job.log_file.parent.mkdir(parents=True, exist_ok=True)
    current = read_crontab(user)
    rest, replaced = without_entry(current, job.name)
    write_crontab(rest + entry, user)
    # crontab may rewrite what it is given; check the entry is there as written
    if entry not in read_crontab(user):
        raise ScheduleError("crontab accepted the table but the entry is not in it")
    return replaced


def remove_cron(name: str, user: str | None = None) -> bool:
    current = read_crontab(user)
    rest, found = without_entry(current, name)
    if found:
        write_crontab(rest, user)
    return found


def list_cron(user: str | None = None) -> list[Scheduled]:
    lines = _split(read_crontab(user))
    who = user or _login()
    out = []
    for i, line in enumerate(lines):
        name = _marker_name(line)
        if name is None:
            continue
        every = re.search(r"every=(\S+)", line.decode("utf-8", "replace"))
        entry = lines[i + 1].decode("utf-8", "replace") if i + 1 < len(lines) and _is_entry(lines[i + 1]) else ""
        parts = entry.split(None, 5)
        when, command = (" ".join(parts[:5]), parts[5]) if len(parts) == 6 else ("", entry or "(entry missing)")
        out.append(Scheduled(name, "cron", every.group(1) if every else None, when, command, f"crontab of {who}"))
    return out


def _login() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


# -- systemd -------------------------------------------------------------------------------------


def default_unit_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/etc/systemd/system")
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "systemd" / "user"


def systemd_running() -> bool:
    """sd_booted(): systemd is the init of this machine."""
    return os.path.isdir("/run/systemd/system")


_SYSTEMD_SAFE = re.compile(r"^[A-Za-z0-9_@+=:,./-]+$")


def systemd_quote(arg: str) -> str:
    """One ExecStart= argument: specifiers (%) and variables ($) doubled, quoted when needed."""
    if "\n" in arg or "\r" in arg:
        raise ConfigError("a scheduled command cannot contain a newline (check the paths)")
    text = arg.replace("%", "%%").replace("$", "$$")
    if _SYSTEMD_SAFE.match(arg):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unit_path_value(path: Path) -> str:
    # WorkingDirectory= takes the rest of the line (no quoting); only specifiers need escaping
    return str(path).replace("%", "%%")


def unit_files(job: Job, user_mode: bool) -> dict[str, str]:
    """file name -> text of the service and the timer."""
    marker = f"{MARKER} {job.name} every={job.every.text}\n"
    after = "" if user_mode else "Wants=network-online.target\nAfter=network-online.target\n"
    service = (
        f"{marker}[Unit]\nDescription=driftctl drift {job.name} ({job.inventory.replace('%', '%%')})\n{after}\n"
        "[Service]\nType=oneshot\n"
        f"WorkingDirectory={_unit_path_value(job.project_dir)}\n"
        f"Environment=NO_COLOR=1 TERM=dumb LANG=C.UTF-8 PATH={PATH}\n"
        f"ExecStart={' '.join(systemd_quote(a) for a in job.argv())}\n"
        "# exit 2 means drift was found and reported: the run itself succeeded\n"
        "SuccessExitStatus=2\n"
    )
    calendar = calendar_spec(job.every, job.name)
    if calendar is not None:
        when = f"OnCalendar={calendar}\nPersistent=true\n"
    else:  # not a calendar rhythm: every N after the last start (the first one a minute after enabling)
        when = f"OnActiveSec=1min\nOnUnitActiveSec={job.every.seconds}s\n"
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
    proc = _run(argv, timeout=120)
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
    return _run([exe, *(["--user"] if user_mode else []), *args], timeout=120)


def install_systemd(job: Job, unit_dir: Path | None = None) -> SystemdResult:
    """Write (replace) the two units, verify them, and enable the timer when systemd runs here.

    With ``unit_dir`` (tests, or a directory systemd does not read) the units are only written.
    """
    user_mode = os.geteuid() != 0
    directory = unit_dir or default_unit_dir()
    files = unit_files(job, user_mode)
    job.log_file.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="driftctl-units-") as tmp:
        for name, text in files.items():
            (Path(tmp) / name).write_text(text, encoding="utf-8")
        verified = _verify(Path(tmp), list(files), user_mode)
    from driftctl.report.atomic import write_atomic

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
             if p.is_file() and _marker_name(p.read_bytes().split(b"\n", 1)[0]) == name]
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
        name = _marker_name(text.split("\n", 1)[0].encode())
        if name is None:
            continue
        service = timer.with_suffix(".service")
        stext = service.read_text(encoding="utf-8", errors="replace") if service.is_file() else ""
        every = re.search(r"every=(\S+)", text.split("\n", 1)[0])
        when = _unit_value(text, "OnCalendar") or f"every {_unit_value(text, 'OnUnitActiveSec')}"
        enabled = (directory / "timers.target.wants" / timer.name).exists()
        out.append(Scheduled(name, "systemd", every.group(1) if every else None, when,
                             _unit_value(stext, "ExecStart") or "(service missing)", str(timer), enabled))
    return out
