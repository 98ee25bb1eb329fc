"""``driftctl prune``: old runs out of the store, old backups of replaced files off the hosts.

Backups of replaced files (``backup_dir`` on each host) can hold old secrets forever, and every cron'd
drift run adds a run to the store: both need a retention policy that actually runs.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from driftctl.cli import ui
from driftctl.cli.common import fleet_options, inventory_argument, load_context, pass_flags, settings_from
from driftctl.cli.options import state_option
from driftctl.config import Settings
from driftctl.errors import ExitCode
from driftctl.prune import BackupPolicy, HostPrune, prune_backups
from driftctl.store import inventory_key, open_store
from driftctl.store.types import PruneResult, iso


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def prune_store(settings: Settings, inventory: str, keep_days: float, dry_run: bool, vacuum: bool,
                now: datetime | None = None) -> dict[str, Any]:
    """Runs older than ``keep_days`` out of the store (see Store.prune); a JSON-ready summary."""
    key = inventory_key(inventory)
    if keep_days <= 0:
        return {"url": None, "skipped": "store_keep_days is 0: every run is kept"}
    cutoff = (now or datetime.now(UTC)) - timedelta(days=keep_days)
    with open_store(settings.store_url) as store:
        result: PruneResult = store.prune(key, cutoff, dry_run=dry_run)
        vacuumed = False
        if vacuum and not dry_run:
            store.vacuum()
            vacuumed = True
        return {"url": store.url, "keep_days": keep_days, **result.to_json(), "vacuumed": vacuumed}


def _show_store(s: dict[str, Any]) -> None:
    if s.get("skipped"):
        ui.out.print(f"store: {s['skipped']}", markup=False)
        return
    verb = "would remove" if s["dry_run"] else "removed"
    ui.out.print(
        f"store {s['url']}: {s['inventory']}: {verb} {s['runs']} run(s) started before {s['cutoff']}"
        f" ({_size(s['document_bytes'])} of report documents, {s['host_results']} host results,"
        f" {s['resource_results']} resource results, {s['unmanaged_results']} unmanaged changes)"
        f" and {s['episodes']} drift episode(s) closed before then",
        markup=False, highlight=False,
    )
    if s["kept_runs"]:
        ui.out.print(f"  kept {s['kept_runs']} older run(s): the latest of a host, or where open drift began",
                     markup=False)
    if s["vacuumed"]:
        ui.out.print("  vacuumed: the space is back with the file system", markup=False)


def _show_backups(results: list[HostPrune], dry_run: bool) -> None:
    if dry_run:
        ui.out.print("backups: not examined (--dry-run: the hosts are not contacted)", markup=False)
        return
    for h in results:
        if h.status == "ok":
            ui.out.print(f"{h.host}: backups: {h.removed} removed, {h.kept} kept, {_size(h.bytes_freed)} freed",
                         markup=False, highlight=False)
        else:
            ui.out.print(f"{h.host}: {h.status}: {h.error}", markup=False, highlight=False)
    ok = [h for h in results if h.status == "ok"]
    ui.out.print(
        f"{len(results)} host(s): {len(ok)} pruned, {sum(h.removed for h in ok)} backups removed,"
        f" {_size(sum(h.bytes_freed for h in ok))} freed"
        + "".join(f", {n} {s}" for s in ("unreachable", "failed")
                  if (n := sum(h.status == s for h in results))),
        markup=False, highlight=False,
    )


@click.command("prune")
@inventory_argument
@click.option("--store-only", is_flag=True, help="Only the store: contact no host.")
@click.option("--backups-only", is_flag=True, help="Only the backups on the hosts: leave the store alone.")
@click.option("--keep-days", type=click.FloatRange(min=0), metavar="N",
              help="Keep runs of the last N days (default: the store_keep_days setting, 90; 0 keeps all).")
@click.option("--backup-keep", type=click.IntRange(min=1), metavar="N",
              help="Per managed path keep at most N backups (default: backup_keep, 5; the newest always stays).")
@click.option("--backup-max-age-days", type=click.FloatRange(min=0), metavar="N",
              help="Remove backups older than N days (default: backup_max_age_days, 30).")
@click.option("--dry-run", is_flag=True, help="Count what the store would lose; change nothing, contact no host.")
@click.option("--vacuum", is_flag=True, help="Then VACUUM the store, giving the space back (SQLite: the file shrinks).")
@state_option
@fleet_options
@pass_flags
def prune_cmd(inventory: Path, store_only: bool, backups_only: bool, keep_days: float | None,
              backup_keep: int | None, backup_max_age_days: float | None, dry_run: bool, vacuum: bool,
              state: str | None, limit: str | None, as_json: bool, flags: dict[str, Any]) -> int:
    """Remove old runs from the store and old backups of replaced files from the hosts.

    Store: runs older than --keep-days go, with their results and documents, and drift episodes
    closed before then; open drift, converged state, baselines, ignore rules, the latest run of each
    host and the run where each open drift began always stay. Hosts (--limit selects them): per
    managed path, the newest --backup-keep backups younger than --backup-max-age-days stay (the
    newest one always). Exit 0, 8 a host unreachable, 4 pruning failed on a host, 1 bad input,
    32 the store unreachable.
    """
    if store_only and backups_only:
        raise click.UsageError("--store-only and --backups-only exclude each other")
    settings = settings_from(**dict(flags, state=state))
    doc: dict[str, Any] = {"inventory": inventory_key(inventory), "dry_run": dry_run, "store": None, "backups": None}
    code = ExitCode.OK
    hosts = None
    if not store_only:  # load the inventory first: an input error contacts nothing and prunes nothing
        ctx = load_context(inventory, limit, as_json, **dict(flags, state=state))
        hosts = ctx.hosts
    if not backups_only:
        doc["store"] = prune_store(settings, str(inventory), settings.store_keep_days if keep_days is None
                                   else keep_days, dry_run, vacuum)
        if not as_json:
            _show_store(doc["store"])
    if hosts is not None:
        policy = BackupPolicy(settings.backup_dir, backup_keep or settings.backup_keep,
                              settings.backup_max_age_days if backup_max_age_days is None else backup_max_age_days)
        results: list[HostPrune] = []
        if not dry_run:
            started = time.monotonic()
            results = prune_backups(hosts, ctx.transport_options, policy, ctx.parallel)
            for h in results:
                code |= h.exit_code
            duration = time.monotonic() - started
        doc["backups"] = {
            "backup_dir": policy.backup_dir, "backup_keep": policy.keep, "backup_max_age_days": policy.max_age_days,
            "examined": not dry_run, "hosts": [h.to_json() for h in results],
            "removed": sum(h.removed for h in results), "bytes_freed": sum(h.bytes_freed for h in results),
            "duration": round(duration, 3) if not dry_run else None,
        }
        if not as_json:
            _show_backups(results, dry_run)
    if as_json:
        doc["finished"] = iso(datetime.now(UTC))
        ui.print_json(doc)
    return code


def register(group: click.Group) -> None:
    group.add_command(prune_cmd)
