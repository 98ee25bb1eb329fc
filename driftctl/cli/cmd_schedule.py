"""``driftctl schedule install|list|remove``: drift runs from cron (default) or systemd timers; and, on a
host in pull mode, ``install --pull SOURCE``: scheduled pulls from a systemd timer (default) or cron."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from driftctl import schedule
from driftctl.cli import ui
from driftctl.cli.common import settings_from
from driftctl.cli.options import (
    crontab_user_option,
    json_option,
    manifests_option,
    options,
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


def pull_options(f: Any) -> Any:
    """The options of a scheduled pull (``--pull SOURCE``); the pull's own are passed on as given."""
    return options(
        click.option("--pull", "pull_source", metavar="SOURCE",
                     help="Schedule `driftctl pull SOURCE` on this host instead of a drift run (no INVENTORY): "
                          "a systemd timer, or a cron entry with --cron or without systemd. Needs root."),
        click.option("--splay", metavar="INTERVAL",
                     help="With --pull: each run waits up to this long (systemd: random each run; cron: a stable "
                          "delay per host name), so hosts do not all pull at once. Default 0."),
        click.option("--ref", metavar="REF", help="With --pull: the branch, tag or commit to pull."),
        click.option("--host", "pull_host", metavar="NAME",
                     help="With --pull: this machine's name in the repository's inventory."),
        click.option("-i", "pull_inventory", metavar="PATH",
                     help="With --pull: the inventory's path in the repository."),
        click.option("--check", "pull_mode", flag_value="check",
                     help="With --pull: scheduled read-only pulls (check)."),
        click.option("--drift", "pull_mode", flag_value="drift",
                     help="With --pull: scheduled read-only pulls (drift)."),
        click.option("--only-if-changed", is_flag=True,
                     help="With --pull: apply only when the commit or the facts changed since the last apply."),
        click.option("--verify-commit", "verify_keys", multiple=True, metavar="KEYFILE",
                     help="With --pull: refuse commits not signed by these keys (repeatable)."),
        click.option("--cache-dir", metavar="DIR", help="With --pull: the pull's private cache directory."),
        click.option("--cron", is_flag=True, help="With --pull: /etc/cron.d/driftctl-NAME instead of a systemd timer."),
    )(f)


_PULL_ONLY = {"splay": "--splay", "ref": "--ref", "pull_host": "--host", "pull_inventory": "-i",
              "pull_mode": "--check/--drift", "only_if_changed": "--only-if-changed",
              "verify_keys": "--verify-commit", "cache_dir": "--cache-dir", "cron": "--cron"}
_PUSH_ONLY = {"inventory": "INVENTORY", "remediate": "--remediate", "report_dir": "--report-dir",
              "state": "--state", "user": "--user"}


@schedule_group.command("install")
@click.argument("inventory", required=False, type=click.Path(path_type=Path))
@click.option("--every", required=True, metavar="INTERVAL",
              help="15m, 30m, 1h, 6h, 1d, 1w... (cron runs only intervals that divide an hour or a day evenly).")
@remediate_option
@report_dir_option
@click.option("--name", help="Name of the schedule (default: drift-<inventory directory name>; pull with --pull).")
@click.option("--systemd", is_flag=True, help="A systemd service and timer instead of a crontab entry.")
@unit_dir_option
@manifests_option
@state_option
@state_dir_option
@crontab_user_option
@vault_options
@pull_options
def install_cmd(inventory: Path | None, every: str, remediate: bool, report_dir: Path | None, name: str | None,
                systemd: bool, unit_dir: Path | None, manifests: Path | None, state: str | None,
                state_dir: str | None, user: str | None, pull_source: str | None, **rest: Any) -> int:
    """Install (or replace) a scheduled drift run of INVENTORY, or with --pull a scheduled pull of this host.

    The command is fixed at install time with absolute paths and the settings in force now;
    re-installing the same NAME replaces it.
    """
    pull = {k: rest.pop(k) for k in list(rest) if k in _PULL_ONLY}
    vault = rest
    if pull_source is not None:
        given = {"inventory": inventory, "remediate": remediate, "report_dir": report_dir, "state": state,
                 "user": user}
        wrong = [flag for key, flag in _PUSH_ONLY.items() if given[key]]
        if wrong:
            raise ConfigError(f"--pull schedules a pull of this host; {', '.join(wrong)}: only for scheduled drift "
                              "runs", None, "the pull's inventory is a path in the repository: -i PATH")
        return _install_pull(pull_source, every, name, systemd, unit_dir, manifests, pull, vault)
    wrong = [flag for key, flag in _PULL_ONLY.items() if pull[key]]
    if wrong:
        raise ConfigError(f"{', '.join(wrong)}: only for a scheduled pull (--pull SOURCE)", None,
                          "driftctl schedule install --pull URL --every 30m --splay 10m")
    if inventory is None:
        raise ConfigError("give the INVENTORY to run drift on, or --pull SOURCE on a host in pull mode", None,
                          "driftctl schedule install inventory/prod --every 30m")
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


def _install_pull(source: str, every: str, name: str | None, systemd: bool, unit_dir: Path | None,
                  manifests: Path | None, pull: dict[str, Any], vault: dict[str, Any]) -> int:
    """``schedule install --pull``: the units (or the cron file) that run ``driftctl pull`` on this host."""
    from driftctl.schedule.pull import pull_executable, this_host

    if systemd and pull["cron"]:
        raise ConfigError("--systemd and --cron exclude each other")
    if vault.get("ask_vault_pass"):
        raise ConfigError("--ask-vault-pass: a scheduled run has nobody to answer a prompt", None,
                          "give --vault-password-file")
    if pull["cron"] and unit_dir is not None:
        raise ConfigError("--unit-dir is for systemd units, not --cron")
    job = schedule.make_pull_job(
        source, every, pull["splay"], name=name, ref=pull["ref"], host=pull["pull_host"],
        inventory=pull["pull_inventory"], manifests=str(manifests) if manifests else None,
        mode=pull["pull_mode"] or "apply", only_if_changed=pull["only_if_changed"],
        verify_keys=pull["verify_keys"], cache_dir=pull["cache_dir"],
        vault_password_file=vault.get("vault_password_file") or (), vault_ids=vault.get("vault_id") or (),
        executable=pull_executable(),
    )
    use_cron = pull["cron"] or (not systemd and unit_dir is None and not schedule.systemd_running())
    if os.geteuid() != 0 and unit_dir is None:
        raise ConfigError("a pull converges this machine: install its schedule as root", None,
                          "sudo driftctl schedule install --pull ...")
    splay = f", splay {job.splay.text}" if job.splay else ""
    if use_cron:
        if not pull["cron"]:
            ui.warn("systemd is not running on this machine: a cron entry instead")
        host = job.host or this_host()
        path = schedule.install_pull_cron(job, host)
        delay = schedule.host_delay(host, job.splay)
        ui.out.print(f"wrote {path}: {schedule.cron_schedule(job.every, job.name)}, {delay}s later on this host "
                     f"(every {job.every.text}{splay})", markup=False, highlight=False)
        ui.out.print(f"log: {job.log_file}", markup=False, highlight=False)
        return 0
    result = schedule.install_systemd(job, unit_dir)
    for path in result.units:
        ui.out.print(f"wrote {path}", markup=False, highlight=False)
    if not result.verified:
        ui.warn("systemd-analyze is not installed: the units were not verified")
    if not result.enabled:
        ui.warn(result.note)
    else:
        ui.out.print(result.note, markup=False, highlight=False)
    when = schedule.calendar_spec(job.every, job.name) or f"every {job.every.text} after the last start"
    ui.out.print(f"schedule {job.name}: {' '.join(job.argv())}: {when}{splay}", markup=False, highlight=False)
    return 0


@schedule_group.command("list")
@unit_dir_option
@crontab_user_option
@json_option
def list_cmd(unit_dir: Path | None, user: str | None, as_json: bool) -> int:
    """The installed schedules: crontab entries and systemd timers."""
    _check_user(user, False)
    found = schedule.list_cron(user) if _has_crontab() else []
    found += schedule.list_pull_cron()
    found += schedule.list_systemd(unit_dir)
    if as_json:
        ui.print_json([asdict(s) for s in found])
        return 0
    if not found:
        ui.out.print("no driftctl schedules", markup=False)
    for s in found:
        state = "" if s.enabled is None else (" (enabled)" if s.enabled else " (not enabled)")
        splay = f" splay {s.extra['splay']}" if s.extra.get("pull") else ""
        ui.out.print(f"{s.name}  {s.kind}  every {s.every or '?'}{splay}  [{s.when}]{state}  {s.where}\n"
                     f"    {s.command}", markup=False, highlight=False)
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
    cron_file = schedule.remove_pull_cron(name) if user is None else None
    if cron_file is not None:
        removed.append(str(cron_file))
    removed += [str(p) for p in schedule.remove_systemd(name, unit_dir)]
    if not removed:
        raise ConfigError(f"no schedule named {name}", None, "see driftctl schedule list")
    for what in removed:
        ui.out.print(f"removed {what}", markup=False, highlight=False)
    return 0


def register(group: click.Group) -> None:
    group.add_command(schedule_group)
