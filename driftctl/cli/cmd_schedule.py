"""``driftctl schedule install|list|remove``: drift runs from cron (default) or systemd timers."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from driftctl import schedule
from driftctl.cli import ui
from driftctl.cli.common import inventory_argument, settings_from
from driftctl.cli.options import (
    crontab_user_option,
    json_option,
    manifests_option,
    remediate_option,
    report_dir_option,
    state_dir_option,
    state_option,
    unit_dir_option,
    vault_options,
)
from driftctl.errors import ConfigError


def _check_user(user: str | None, systemd: bool) -> None:
    if user is None:
        return
    if systemd:
        raise ConfigError("--user is for crontabs; systemd units go to the system or your own user manager")
    if os.geteuid() != 0:
        raise ConfigError("--user needs root (crontab -u)")


@click.group("schedule")
def schedule_group() -> None:
    """Run drift on a schedule: crontab entries (default) or systemd timers (--systemd).

    Scheduled runs are plain text, non-interactive, and append to <state-dir>/logs/NAME.log (cron).
    """


@schedule_group.command("install")
@inventory_argument
@click.option("--every", required=True, metavar="INTERVAL",
              help="15m, 30m, 1h, 6h, 1d, 1w... (cron runs only intervals that divide an hour or a day evenly).")
@remediate_option
@report_dir_option
@click.option("--name", help="Name of the schedule (default: drift-<inventory directory name>).")
@click.option("--systemd", is_flag=True, help="A systemd service and timer instead of a crontab entry.")
@unit_dir_option
@manifests_option
@state_option
@state_dir_option
@crontab_user_option
@vault_options
def install_cmd(inventory: Path, every: str, remediate: bool, report_dir: Path | None, name: str | None,
                systemd: bool, unit_dir: Path | None, manifests: Path | None, state: str | None,
                state_dir: str | None, user: str | None, **vault: Any) -> int:
    """Install (or replace) a scheduled drift run of INVENTORY.

    The command is fixed at install time with absolute paths and the settings in force now;
    re-installing the same NAME replaces it.
    """
    _check_user(user, systemd)
    settings = settings_from(manifests=str(manifests) if manifests else None, state=state, state_dir=state_dir,
                             **vault)
    job = schedule.make_job(inventory, every, settings, name=name, remediate=remediate, report_dir=report_dir)
    if systemd:
        result = schedule.install_systemd(job, unit_dir)
        for path in result.units:
            ui.out.print(f"wrote {path}", markup=False, highlight=False)
        if not result.verified:
            ui.warn("systemd-analyze is not installed: the units were not verified")
        note = result.note
        if not result.enabled:
            ui.warn(note)
        else:
            ui.out.print(note, markup=False, highlight=False)
        when = schedule.calendar_spec(job.every, job.name) or f"every {job.every.text} after the last start"
        ui.out.print(f"schedule {job.name}: {when}", markup=False, highlight=False)
        return 0
    replaced = schedule.install_cron(job, user, lock_dir=Path(settings.state_dir) / "locks")
    where = f"the crontab of {user}" if user else "your crontab"
    ui.out.print(f"{'replaced' if replaced else 'installed'} schedule {job.name} in {where}: "
                 f"{schedule.cron_schedule(job.every, job.name)} (every {job.every.text})", markup=False,
                 highlight=False)
    ui.out.print(f"log: {job.log_file}", markup=False, highlight=False)
    return 0


@schedule_group.command("list")
@unit_dir_option
@crontab_user_option
@json_option
def list_cmd(unit_dir: Path | None, user: str | None, as_json: bool) -> int:
    """The installed schedules: crontab entries and systemd timers."""
    _check_user(user, False)
    found = schedule.list_cron(user) if _has_crontab() else []
    found += schedule.list_systemd(unit_dir)
    if as_json:
        ui.print_json([asdict(s) for s in found])
        return 0
    if not found:
        ui.out.print("no driftctl schedules", markup=False)
    for s in found:
        state = "" if s.enabled is None else (" (enabled)" if s.enabled else " (not enabled)")
        ui.out.print(f"{s.name}  {s.kind}  every {s.every or '?'}  [{s.when}]{state}  {s.where}\n    {s.command}",
                     markup=False, highlight=False)
    return 0


def _has_crontab() -> bool:
    import shutil

    return shutil.which("crontab") is not None


@schedule_group.command("remove")
@click.argument("name")
@unit_dir_option
@crontab_user_option
@state_dir_option
def remove_cmd(name: str, unit_dir: Path | None, user: str | None, state_dir: str | None) -> int:
    """Remove the schedule NAME (its crontab entry and/or systemd units). Exit 1 if there is none."""
    _check_user(user, False)
    schedule.validate_name(name)
    removed = []
    lock_dir = Path(settings_from(state_dir=state_dir).state_dir) / "locks"
    if _has_crontab() and schedule.remove_cron(name, user, lock_dir=lock_dir):
        removed.append(f"crontab entry of {user}" if user else "crontab entry")
    removed += [str(p) for p in schedule.remove_systemd(name, unit_dir)]
    if not removed:
        raise ConfigError(f"no schedule named {name}", None, "see driftctl schedule list")
    for what in removed:
        ui.out.print(f"removed {what}", markup=False, highlight=False)
    return 0


def register(group: click.Group) -> None:
    group.add_command(schedule_group)
