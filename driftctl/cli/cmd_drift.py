"""driftctl drift / accept / ignore."""

from __future__ import annotations

import shlex
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import click

from driftctl.cli import ui
from driftctl.cli.cmd_converge import prepare, show
from driftctl.cli.common import (
    executor_options,
    fleet_options,
    inventory_argument,
    pass_flags,
    recorded_argv,
    settings_from,
)
from driftctl.cli.opt_run import RunOptions, pass_run_options, run_options
from driftctl.cli.options import (
    diff_option,
    json_option,
    manifests_option,
    remediate_option,
    report_dir_option,
    state_option,
    verbose_option,
    wait_lock_option,
)
from driftctl.cli.render import Progress
from driftctl.cli.runstore import begin_run, open_run_store, say_saved
from driftctl.cli.signals import interruptible
from driftctl.drift import (
    DriftRun,
    accept,
    image_reference,
    inventory_key,
    open_store,
    record_run,
    run_lock,
    store_reference,
)
from driftctl.errors import ConfigError, ExitCode
from driftctl.model import RunResult
from driftctl.report.document import current_user
from driftctl.report.jsondoc import dumps


@click.command("drift")
@inventory_argument
@manifests_option
@fleet_options
@executor_options
@state_option
@wait_lock_option
@remediate_option
@click.option("--against", "image", type=click.Path(exists=True, path_type=Path),
              help="Compare with the state baked into this image (OCI layout or archive) instead of the last apply.")
@report_dir_option
@click.option("--notify-command", metavar="CMD",
              help="Run CMD with the JSON report on stdin when drift is found (argv split like a shell, no shell).")
@run_options
@diff_option
@verbose_option
@pass_flags
@pass_run_options
def drift_cmd(inventory: Path, limit: str | None, as_json: bool, manifests: Path | None, state: str | None,
              wait_lock: float | None, remediate: bool, image: Path | None, report_dir: Path | None,
              notify_command: str | None, diff: bool | None, verbose: bool, flags: dict[str, Any],
              run_opts: RunOptions) -> int:
    """Probe hosts (read-only) and report what drifted, how, and since when.

    Per resource: corrective (changed by hand since the last apply), pending (the manifest moved),
    both; and unmanaged changes under the manifests' watch: paths. Exit 0 no drift, 2 drift,
    4 a probe failed, 8 a host unreachable (never reported as "no drift"), 75 locked.
    """
    notify_argv = shlex.split(notify_command) if notify_command else None
    if notify_argv == []:
        raise ConfigError("--notify-command is empty")
    ctx, engine = prepare(inventory, limit, as_json, manifests, dict(flags, state=state), run_opts=run_opts)
    key = inventory_key(inventory)
    store = open_run_store(ctx.settings)
    try:
        with run_lock(ctx.settings, store, key, "drift", wait_lock):
            # Everything the run reads from the store is read here, before any host is contacted, and
            # everything it writes is written once at the end: a store lost meanwhile costs nothing.
            view = begin_run(store, ctx.settings.state_dir, key)
            reference = image_reference(image) if image else store_reference(view, key)
            runner = DriftRun(engine, view, key, reference, remediate=remediate, use_baselines=image is None)
            with Progress(ui.err, [h.name for h in ctx.hosts], ui.interactive() and not as_json) as progress:
                engine.on_event = progress
                with interruptible(engine):
                    run = runner.run(ctx.hosts)
            doc = record_run(ctx.settings, run, inventory, store=view, argv=recorded_argv(sys.argv[1:]))
            saved = view.finish()
    finally:
        store.close()
    show(run, inventory, as_json, diff, verbose)
    not_stored = say_saved(saved, store.url)
    if report_dir is not None:
        _write_reports(doc, report_dir, None if saved.spooled else ctx.settings.store_url)
    if notify_argv and run.exit_code & ExitCode.CHANGES:
        _notify(notify_argv, doc)
    return run.exit_code | not_stored


def _write_reports(doc: dict[str, Any], report_dir: Path, store_url: str | None) -> None:
    from driftctl.report import write_reports

    for path in write_reports(doc, report_dir, store=store_url):  # the store gives HTML its drift chart
        ui.err.print(f"wrote {path}", markup=False, highlight=False)


def _notify(argv: list[str], doc: dict[str, Any]) -> None:
    try:
        proc = subprocess.run(argv, input=dumps(doc).encode(), capture_output=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        ui.error(f"--notify-command failed: {e}")
        return
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip()[-300:]
        ui.error(f"--notify-command exited {proc.returncode}: {tail}")


@click.command("accept")
@inventory_argument
@manifests_option
@fleet_options
@state_option
@click.option("--path", "paths", multiple=True, metavar="PATH", help="Accept only this watched path and below.")
@pass_flags
def accept_cmd(inventory: Path, limit: str | None, as_json: bool, manifests: Path | None, state: str | None,
               paths: tuple[str, ...], flags: dict[str, Any]) -> int:
    """Take what is under the watch: paths now as the new baseline (unmanaged drift accepted)."""
    # accept looks at a few hosts to take their baselines: always on this machine
    ctx, engine = prepare(inventory, limit, as_json, manifests, dict(flags, state=state, executor="threads"))
    key = inventory_key(inventory)
    store = open_store(ctx.settings)
    code = ExitCode.OK
    try:
        with run_lock(ctx.settings, store, key, "accept", None):
            runner = DriftRun(engine, None, key, store_reference(store, key), use_baselines=False)
            run: RunResult = runner.run(ctx.hosts)
            hosts: list[dict[str, Any]] = []
            for h in run.hosts:
                if h.status in ("unreachable", "failed") and not h.watch:
                    hosts.append({"host": h.host, "accepted": False, "entries": 0, "error": h.error})
                    if not as_json:
                        ui.error(f"{h.host}: not accepted: {h.error}")
                    code |= h.exit_code
                    continue
                n = accept(store, key, h, list(paths) or None, by=current_user())
                hosts.append({"host": h.host, "accepted": True, "entries": n, "error": None})
                if not as_json:
                    ui.out.print(f"{h.host}: baseline accepted ({n} entries)", markup=False)
    finally:
        store.close()
    if as_json:
        ui.print_json({"inventory": str(inventory), "paths": list(paths), "hosts": hosts, "exit": int(code)})
    return code


@click.group("ignore")
def ignore_group() -> None:
    """Leave known drift out of reports for a while, with a reason (rules expire)."""


@ignore_group.command("add")
@inventory_argument
@click.option("--host", "host_pattern", default="*", show_default=True, help="Host glob.")
@click.option("--target", required=True, help="Resource id glob (file:/etc/motd, package:*) or path glob.")
@click.option("--reason", required=True, help="Why this drift is accepted for now.")
@click.option("--expires", required=True, type=click.DateTime(["%Y-%m-%d"]), help="Last day it applies (YYYY-MM-DD).")
@state_option
def ignore_add(inventory: Path, host_pattern: str, target: str, reason: str, expires: datetime,
               state: str | None) -> int:
    if expires.date() < date.today():
        raise ConfigError(f"--expires {expires.date()} is in the past")
    if not reason.strip():
        raise ConfigError("--reason must say why")
    settings = settings_from(state=state)
    store = open_store(settings)
    try:
        rule = store.add_ignore(inventory_key(inventory), host_pattern, target, reason, expires.date(), current_user())
    finally:
        store.close()
    ui.out.print(f"ignore rule {rule.id} added: {host_pattern} {target} until {expires.date()}", markup=False)
    return 0


@ignore_group.command("list")
@inventory_argument
@state_option
@json_option
def ignore_list(inventory: Path, state: str | None, as_json: bool) -> int:
    store = open_store(settings_from(state=state))
    try:
        rules = store.ignores(inventory_key(inventory), None)
    finally:
        store.close()
    now = datetime.now(UTC)
    if as_json:
        ui.print_json([{"id": r.id, "host": r.host_pattern, "target": r.target, "reason": r.reason,
                        "expires": r.expires.isoformat(), "active": r.active(now), "created_by": r.created_by}
                       for r in rules])
        return 0
    for r in rules:
        state_text = "active" if r.active(now) else "expired"
        ui.out.print(f"{r.id}  {r.host_pattern}  {r.target}  until {r.expires}  ({state_text})  {r.reason}",
                     markup=False)
    return 0


@ignore_group.command("remove")
@inventory_argument
@click.argument("rule_id", type=int)
@state_option
def ignore_remove(inventory: Path, rule_id: int, state: str | None) -> int:
    store = open_store(settings_from(state=state))
    try:
        removed = store.remove_ignore(rule_id, inventory_key(inventory))
    finally:
        store.close()
    if not removed:
        raise ConfigError(f"no ignore rule {rule_id} for {inventory}",
                          hint=f"driftctl ignore list {inventory} shows its rules and their ids")
    ui.out.print(f"ignore rule {rule_id} removed", markup=False)
    return 0


def register(group: click.Group) -> None:
    group.add_command(drift_cmd)
    group.add_command(accept_cmd)
    group.add_command(ignore_group)
