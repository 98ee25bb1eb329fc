"""A scheduled drift run resolved from the command line: its interval (as cron fields and as a systemd
calendar), its NAME, and the drift command with absolute paths and pinned settings."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from driftctl.config import Settings
from driftctl.errors import ConfigError, DriftctlError, Location

MARKER = "# driftctl-schedule:"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
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
    vault_password_file: tuple[str, ...] = ()  # absolute paths
    vault_ids: tuple[str, ...] = ()  # label@/absolute/path

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
        for path in self.vault_password_file:
            argv += ["--vault-password-file", path]
        for vault_id in self.vault_ids:
            argv += ["--vault-id", vault_id]
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


def _vault_ids(ids: Sequence[str], base: Path) -> tuple[str, ...]:
    """Each ``label@source`` with an absolute source; ``prompt`` cannot be answered by a scheduled run."""
    out = []
    for vault_id in ids:
        label, at, source = vault_id.rpartition("@")
        if not at:
            label, source = "default", vault_id
        if source == "prompt":
            raise ConfigError(f"--vault-id {vault_id}: a scheduled run has nobody to answer a prompt",
                              Location("--vault-id"), "give a password file or a script that prints the password")
        out.append(f"{label}@{_absolute(source, base)}")
    return tuple(out)


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
        vault_password_file=tuple(str(_absolute(f, base)) for f in settings.vault_password_file),
        vault_ids=_vault_ids(settings.vault_ids, base),
    )



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


def marker_name(line: bytes) -> str | None:
    """NAME of a ``# driftctl-schedule: NAME ...`` line, else None."""
    text = line.decode("utf-8", "replace").rstrip("\r")
    if not text.startswith(MARKER):
        return None
    rest = text[len(MARKER):].split()
    return rest[0] if rest else None


def run(argv: Sequence[str], stdin: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    """A tool (crontab, systemctl, systemd-analyze) by argv; its messages in English (we parse some)."""
    env = dict(os.environ, LC_ALL="C")
    try:
        return subprocess.run(list(argv), input=stdin, capture_output=True, timeout=timeout, env=env, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ScheduleError(f"{Path(argv[0]).name} failed: {e}") from e
