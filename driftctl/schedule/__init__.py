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

Scheduled pulls (``--pull SOURCE``, run on the host itself): see driftctl/schedule/pull.py.
"""

from __future__ import annotations

from driftctl.schedule.cron import (
    CRON_MAX_COMMAND,
    cron_entry,
    cron_escape,
    install_cron,
    list_cron,
    read_crontab,
    remove_cron,
    shell_command,
    without_entry,
    write_crontab,
)
from driftctl.schedule.job import (
    MARKER,
    NAME_RE,
    PATH,
    Every,
    Job,
    Scheduled,
    ScheduleError,
    calendar_spec,
    cron_schedule,
    default_name,
    executable,
    make_job,
    parse_every,
    validate_name,
)
from driftctl.schedule.pull import (
    PullJob,
    host_delay,
    install_pull_cron,
    list_pull_cron,
    make_pull_job,
    parse_splay,
    pull_cron_file,
    pull_unit_files,
    remove_pull_cron,
)
from driftctl.schedule.systemd import (
    SystemdResult,
    default_unit_dir,
    install_systemd,
    list_systemd,
    remove_systemd,
    systemd_quote,
    systemd_running,
    unit_files,
)

__all__ = [
    "CRON_MAX_COMMAND",
    "MARKER",
    "NAME_RE",
    "PATH",
    "Every",
    "Job",
    "PullJob",
    "ScheduleError",
    "Scheduled",
    "SystemdResult",
    "calendar_spec",
    "cron_entry",
    "cron_escape",
    "cron_schedule",
    "default_name",
    "default_unit_dir",
    "executable",
    "host_delay",
    "install_cron",
    "install_pull_cron",
    "install_systemd",
    "list_cron",
    "list_pull_cron",
    "list_systemd",
    "make_job",
    "make_pull_job",
    "parse_every",
    "parse_splay",
    "pull_cron_file",
    "pull_unit_files",
    "read_crontab",
    "remove_cron",
    "remove_pull_cron",
    "remove_systemd",
    "shell_command",
    "systemd_quote",
    "systemd_running",
    "unit_files",
    "validate_name",
    "without_entry",
    "write_crontab",
]
