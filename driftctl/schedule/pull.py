"""Scheduled pulls on the host itself (pull mode, docs/pull-setup.md): ``driftctl pull SOURCE ...`` every
``every``, each host ``splay`` apart at most, so a fleet does not fetch from the repository all at once.

systemd: ``driftctl-NAME.service`` (Type=oneshot, the pull) and ``driftctl-NAME.timer``: at the minutes
cron would use (``OnCalendar=``, ``Persistent=true``: a run missed while the machine was off happens at
boot) or, for intervals a calendar cannot repeat evenly, ``OnUnitActiveSec=``; ``RandomizedDelaySec=``
the splay (a new random delay each run, as Puppet's splay).

cron: ``/etc/cron.d/driftctl-NAME`` (the system crontab: a file per schedule, root's, no
read-modify-write of a table shared with people), at the same minutes, and a **stable** per-host
delay before the pull: ``sha256(host name) mod splay`` seconds (cron has no random delay of its own,
and a random one in the shell would change every run). Output is appended to
``/var/log/driftctl/NAME.log``.

The same text is written by ``driftctl schedule install --pull`` on a host and by ``driftctl bundle
install`` from the controller (as resources of a catalog), so ``schedule list`` and ``remove`` on the
host know both. Every file starts with the marker ``# driftctl-schedule: NAME every=.. splay=.. kind=pull``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from driftctl.errors import ConfigError, Location
from driftctl.schedule.job import (
    MARKER,
    PATH,
    Every,
    Scheduled,
    ScheduleError,
    cron_schedule,
    marker_name,
    parse_every,
    validate_name,
)

DEFAULT_NAME = "pull"
CRON_DIR = Path("/etc/cron.d")
LOG_DIR = Path("/var/log/driftctl")
# what the bundle installs (driftctl/bundle/install.py): the command a scheduled pull runs by default
WRAPPER = "/usr/local/bin/driftctl"
MODES = ("apply", "check", "drift")
# cron ignores /etc/cron.d files whose names hold a dot (run-parts rules)
_CRON_D_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def parse_splay(text: str | None) -> Every | None:
    """``--splay 10m``; ``0`` or nothing is no splay."""
    if text is None or text.strip() in ("0", "0m", "0s", ""):
        return None
    try:
        return parse_every(text)
    except ConfigError:
        raise ConfigError(f"{text!r}: write a number and a unit, like 5m or 1h (or 0 for no splay)",
                          Location("--splay")) from None


@dataclass(frozen=True)
class PullJob:
    """One scheduled pull, everything resolved: what ``install`` writes into systemd or cron."""

    name: str
    every: Every
    source: str
    executable: tuple[str, ...] = (WRAPPER,)
    splay: Every | None = None
    ref: str | None = None
    host: str | None = None  # --host NAME for the pull (None: the pull finds this machine in the inventory)
    inventory: str | None = None  # paths inside the repository
    manifests: str | None = None
    mode: str = "apply"
    only_if_changed: bool = False
    verify_keys: tuple[str, ...] = ()  # absolute paths on the host
    cache_dir: str | None = None
    vault_password_file: tuple[str, ...] = ()
    vault_ids: tuple[str, ...] = ()
    log_dir: Path = LOG_DIR

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    @property
    def cron_file(self) -> str:
        return f"driftctl-{self.name}"

    def argv(self) -> list[str]:
        """The pull command line (executable first)."""
        argv = [*self.executable, "pull", self.source]
        if self.ref:
            argv += ["--ref", self.ref]
        if self.host:
            argv += ["--host", self.host]
        if self.inventory:
            argv += ["-i", self.inventory]
        if self.manifests:
            argv += ["-m", self.manifests]
        if self.mode != "apply":
            argv.append(f"--{self.mode}")
        if self.only_if_changed:
            argv.append("--only-if-changed")
        for key in self.verify_keys:
            argv += ["--verify-commit", key]
        if self.cache_dir:
            argv += ["--cache-dir", self.cache_dir]
        for path in self.vault_password_file:
            argv += ["--vault-password-file", path]
        for vault_id in self.vault_ids:
            argv += ["--vault-id", vault_id]
        return argv

    def marker(self) -> str:
        splay = self.splay.text if self.splay else "0"
        return f"{MARKER} {self.name} every={self.every.text} splay={splay} kind=pull\n"


def _absolute(path: str, what: str) -> str:
    p = os.path.normpath(os.path.abspath(os.path.expanduser(path)))
    if "\n" in p or "\r" in p:
        raise ConfigError(f"{what} {path!r}: a path with a newline cannot be scheduled", Location(what))
    return p


def _one_line(value: str | None, what: str) -> None:
    if value is not None and ("\n" in value or "\r" in value or "\0" in value):
        raise ConfigError(f"{what} {value!r}: one line, please", Location(what))


def make_pull_job(source: str, every: str, splay: str | None = None, *, name: str | None = None,
                  ref: str | None = None, host: str | None = None, inventory: str | None = None,
                  manifests: str | None = None, mode: str = "apply", only_if_changed: bool = False,
                  verify_keys: Sequence[str] = (), cache_dir: str | None = None,
                  vault_password_file: Sequence[str] = (), vault_ids: Sequence[str] = (),
                  executable: tuple[str, ...] = (WRAPPER,), log_dir: Path = LOG_DIR) -> PullJob:
    """Resolve a scheduled pull from the command line; every mistake is a ConfigError (exit 1)."""
    if not source or not source.strip():
        raise ConfigError("--pull needs the repository to pull from (a git URL or path)", Location("--pull"))
    for value, what in ((source, "--pull"), (ref, "--ref"), (host, "--host"), (inventory, "-i"),
                        (manifests, "-m")):
        _one_line(value, what)
    if source.startswith("-"):
        raise ConfigError(f"--pull {source!r}: a repository, not an option", Location("--pull"))
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/@]*:[^/@]*@", source):
        raise ConfigError("--pull: the URL holds a password or token, which the schedule's files would show "
                          "(a cron file or unit anyone on the host can read)", Location("--pull"),
                          "give git its credentials another way: a credential helper, root's ~/.netrc or a "
                          "deploy key in root's ~/.ssh")
    if mode not in MODES:
        raise ConfigError(f"unknown pull mode {mode!r}", Location("--check/--drift"))
    if only_if_changed and mode != "apply":
        raise ConfigError(f"--only-if-changed and --{mode} exclude each other", Location("--only-if-changed"),
                          "--only-if-changed decides whether to apply; --check and --drift never do")
    local = not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", source) and not re.match(r"^[^/]+@[^/]+:", source)
    ids = []
    for vault_id in vault_ids:
        label, at, src = vault_id.rpartition("@")
        if src == "prompt":
            raise ConfigError(f"--vault-id {vault_id}: a scheduled run has nobody to answer a prompt",
                              Location("--vault-id"), "give a password file or a script that prints the password")
        ids.append(f"{(label or 'default') if at else 'default'}@{_absolute(src, '--vault-id')}")
    job = PullJob(
        name=validate_name(name) if name else DEFAULT_NAME,
        every=parse_every(every),
        splay=parse_splay(splay),
        # a local repository is pinned by absolute path: the timer does not run where you typed this
        source=_absolute(source, "--pull") if local else source,
        executable=executable,
        ref=ref, host=host, inventory=inventory, manifests=manifests, mode=mode,
        only_if_changed=only_if_changed,
        verify_keys=tuple(_absolute(k, "--verify-commit") for k in verify_keys),
        cache_dir=_absolute(cache_dir, "--cache-dir") if cache_dir else None,
        vault_password_file=tuple(_absolute(f, "--vault-password-file") for f in vault_password_file),
        vault_ids=tuple(ids),
        log_dir=log_dir,
    )
    if job.splay is not None and job.splay.seconds > job.every.seconds:
        raise ConfigError(f"{job.splay.text} is longer than --every {job.every.text}", Location("--splay"),
                          "runs would overlap; a splay of at most the interval spreads the hosts over it")
    return job


# -- the per-host delay (cron) -------------------------------------------------------------------


def this_host() -> str:
    return socket.gethostname()


def host_delay(host: str, splay: Every | None) -> int:
    """Seconds a host waits before its pull: stable per host name (re-installing keeps it), spread
    evenly over ``[0, splay)`` across names."""
    if splay is None:
        return 0
    return int(hashlib.sha256(host.encode()).hexdigest()[:12], 16) % splay.seconds


# -- systemd -------------------------------------------------------------------------------------


def pull_unit_files(job: PullJob) -> dict[str, str]:
    """File name -> text of the service and the timer."""
    from driftctl.schedule.systemd import exec_start, timer_when

    marker = job.marker()
    service = (
        f"{marker}[Unit]\nDescription=driftctl pull from {job.source.replace('%', '%%')} (schedule {job.name})\n"
        "Wants=network-online.target\nAfter=network-online.target\n\n"
        "[Service]\nType=oneshot\nWorkingDirectory=/\n"
        f"Environment=NO_COLOR=1 TERM=dumb LANG=C.UTF-8 PATH={PATH}\n"
        f"{exec_start(job.argv())}"
        "# 2: changes made (or, read-only, pending or drift found): the run did its job;\n"
        "# 75: another run (a push apply, a manual pull) holds this host's lock: this one gave way\n"
        "SuccessExitStatus=2 75\n"
    )
    when = timer_when(job.every, job.name)
    if job.splay is not None:
        when += f"RandomizedDelaySec={job.splay.seconds}s\n"
    splay = f" (splay {job.splay.text})" if job.splay else ""
    timer = (
        f"{marker}[Unit]\nDescription=driftctl pull every {job.every.text}{splay} (schedule {job.name})\n\n"
        f"[Timer]\n{when}Unit=driftctl-{job.name}.service\n\n[Install]\nWantedBy=timers.target\n"
    )
    return {f"driftctl-{job.name}.service": service, f"driftctl-{job.name}.timer": timer}


# -- cron ----------------------------------------------------------------------------------------


def pull_shell_command(job: PullJob, delay: int) -> str:
    """The /bin/sh command line: output to the log, the host's delay, plain-text environment, the pull's
    exit code."""
    q = shlex.quote
    env = f"NO_COLOR=1 TERM=dumb LANG=C.UTF-8 PATH={q(PATH)}"
    wait = f"sleep {delay}; " if delay else ""
    return (
        f"exec >>{q(str(job.log_file))} 2>&1 </dev/null; cd / || exit 1; {wait}"
        f"date -u '+=== %Y-%m-%dT%H:%M:%SZ driftctl-schedule {job.name}'; "
        f"{env} {shlex.join(job.argv())}; rc=$?; echo \"=== exit $rc\"; exit $rc"
    )


def pull_cron_file(job: PullJob, host: str) -> str:
    """The text of ``/etc/cron.d/driftctl-NAME`` for ``host`` (its delay is part of the line)."""
    from driftctl.schedule.cron import CRON_MAX_COMMAND, cron_escape

    if not _CRON_D_NAME.match(job.name):
        raise ConfigError(f"--name {job.name!r}: cron ignores /etc/cron.d files with dots in their name",
                          Location("--name"), "use letters, digits, '-' and '_'")
    delay = host_delay(host, job.splay)
    line = cron_escape(pull_shell_command(job, delay))
    if len(line.encode()) > CRON_MAX_COMMAND:
        raise ConfigError(f"the scheduled command is {len(line.encode())} bytes; cron accepts at most "
                          f"{CRON_MAX_COMMAND}", Location("--pull"), "use shorter paths, or systemd")
    return (f"{job.marker()}# host {host}: {delay}s after the minute (splay "
            f"{job.splay.text if job.splay else '0'})\n"
            f"{cron_schedule(job.every, job.name)} root {line}\n")


def install_pull_cron(job: PullJob, host: str, cron_dir: Path = CRON_DIR) -> Path:
    """Write (replace) the job's cron file, root's and 0644 as cron wants it; make the log directory."""
    from driftctl.fileio import write_atomic

    text = pull_cron_file(job, host)
    job.log_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    return write_atomic(cron_dir / job.cron_file, text, mode=0o644)


def remove_pull_cron(name: str, cron_dir: Path = CRON_DIR) -> Path | None:
    """Delete ``driftctl-NAME`` from the cron directory when it is one of ours (its marker names it)."""
    path = cron_dir / f"driftctl-{name}"
    try:
        first = path.read_bytes().split(b"\n", 1)[0]
    except OSError:
        return None
    if marker_name(first) != name:
        return None
    try:
        path.unlink()
    except OSError as e:
        raise ScheduleError(f"cannot remove {path}: {e.strerror or e}") from e
    return path


def list_pull_cron(cron_dir: Path = CRON_DIR) -> list[Scheduled]:
    """The pull schedules in the cron directory (files with our marker)."""
    out: list[Scheduled] = []
    if not cron_dir.is_dir():
        return out
    for path in sorted(cron_dir.glob("driftctl-*")):
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        name = marker_name(lines[0].encode()) if lines else None
        if name is None:
            continue
        every = re.search(r"every=(\S+)", lines[0])
        entry = next((ln for ln in lines[1:] if ln.strip() and not ln.startswith("#")), "")
        parts = entry.split(None, 6)
        when, command = (" ".join(parts[:5]), parts[6]) if len(parts) == 7 else ("", entry or "(entry missing)")
        splay = re.search(r"splay=(\S+)", lines[0])
        out.append(Scheduled(name, "cron", every.group(1) if every else None, when, command, str(path),
                             extra={"splay": splay.group(1) if splay else "0", "pull": "true"}))
    return out


def pull_executable() -> tuple[str, ...]:
    """What a scheduled pull runs: the bundle's wrapper when it is installed; else this copy of driftctl
    (the archive with its python3 when it runs from one; else its console script or ``python -m``)."""
    import sys

    if os.access(WRAPPER, os.X_OK):
        return (WRAPPER,)
    archive = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if archive.endswith(".pyz") and os.path.isfile(archive):
        return (os.path.abspath(sys.executable), "-I", archive)
    from driftctl.schedule.job import executable

    return executable()
