"""cron: one entry per NAME in a user's crontab, found by its marker line ``# driftctl-schedule: NAME``.

Read with ``crontab -l``, written with ``crontab -`` (the table on stdin, argv only: no shell of ours).
Every other line of the crontab is kept byte for byte. The entry's command appends its output to
``<state-dir>/logs/NAME.log``.
"""

from __future__ import annotations

import fcntl
import os
import re
import shlex
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from driftctl.errors import ConfigError, Location
from driftctl.schedule.job import MARKER, PATH, Job, Scheduled, ScheduleError, cron_schedule, marker_name, run

# Vixie cron's MAX_COMMAND is 1000 bytes including the newline and NUL: crontab refuses longer lines.
CRON_MAX_COMMAND = 998


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



def _crontab_argv(user: str | None, *args: str) -> list[str]:
    exe = shutil.which("crontab")
    if exe is None:
        raise ConfigError("the crontab command is not installed", None,
                          "install cron (apt-get install cron), or use --systemd")
    return [exe, *(["-u", user] if user else []), *args]


def read_crontab(user: str | None = None) -> bytes:
    """The crontab as ``crontab -l`` prints it (empty when there is none)."""
    proc = run(_crontab_argv(user, "-l"))
    if proc.returncode == 0:
        return proc.stdout
    err = proc.stderr.decode("utf-8", "replace").strip()
    if "no crontab for" in err:
        return b""
    raise ScheduleError(f"crontab -l failed: {err}")


def write_crontab(content: bytes, user: str | None = None) -> None:
    proc = run(_crontab_argv(user, "-"), stdin=content)
    if proc.returncode != 0:
        raise ScheduleError(f"crontab refused the new table: {proc.stderr.decode('utf-8', 'replace').strip()}")

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
        if marker_name(lines[i]) == name:
            found = True
            i += 2 if i + 1 < len(lines) and _is_entry(lines[i + 1]) else 1
            continue
        out.append(lines[i])
        i += 1
    return (b"".join(line + b"\n" for line in out), found)


@contextmanager
def editing(user: str | None, lock_dir: Path | None) -> Iterator[None]:
    """Hold a lock over a read-modify-write of the crontab: two installs at once would otherwise
    each write back the table they read, and one entry would be lost. (crontab itself does not lock.)"""
    if lock_dir is None:
        yield
        return
    lock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = lock_dir / f"crontab-{user or _login()}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def install_cron(job: Job, user: str | None = None, lock_dir: Path | None = None) -> bool:
    """Add or replace NAME's entry (idempotent). Returns True when an entry was replaced.

    ``lock_dir``: where to take the lock that serializes edits by driftctl (the CLI uses
    ``<state-dir>/locks``).
    """
    entry = cron_entry(job)
    job.log_file.parent.mkdir(parents=True, exist_ok=True)
    with editing(user, lock_dir):
        current = read_crontab(user)
        rest, replaced = without_entry(current, job.name)
        write_crontab(rest + entry, user)
        # crontab may rewrite what it is given; check the entry is there as written
        if entry not in read_crontab(user):
            raise ScheduleError("crontab accepted the table but the entry is not in it")
    return replaced


def remove_cron(name: str, user: str | None = None, lock_dir: Path | None = None) -> bool:
    with editing(user, lock_dir):
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
        name = marker_name(line)
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
