"""``driftctl history``: what happened to an inventory, from the state store. Contacts no host."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from driftctl.cli import ui
from driftctl.cli.common import inventory_argument, open_from_flags
from driftctl.cli.options import json_option, store_options
from driftctl.store import HistoryEvent, Store, inventory_key
from driftctl.store.types import DriftEpisode, iso

EVENT_STYLE = {
    "applied": "yellow", "failed": "bold red", "host-failed": "bold red", "unreachable": "bold red",
    "drift-found": "magenta", "drift-resolved": "green",
}
_AGO = re.compile(r"^(\d+)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str | None, now: datetime | None = None) -> datetime | None:
    """``2026-11-01``, ``2026-11-01T06:00`` (UTC unless it says otherwise), or ``30m``/``12h``/``7d``/``2w`` ago."""
    if value is None:
        return None
    text = value.strip()
    ago = _AGO.match(text)
    if ago:
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[ago.group(2)]: int(ago.group(1))})
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise click.BadParameter(
                f"{value!r} is neither a date (2026-11-01), a time (2026-11-01T06:00) nor an age (7d, 12h)",
                param_hint="--since",
            ) from None
        when = datetime(day.year, day.month, day.day)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


MAX_EVENTS = 100_000
DEFAULT_EVENTS = 50


def _events_wanted(last: int | None, old_limit: str | None) -> int:
    """--last N; the old ``--limit N`` still works for one release, with a warning. ``--limit`` given a host
    pattern (as every other command takes it) is an error that points to --host."""
    if old_limit is None:
        return DEFAULT_EVENTS if last is None else last
    if last is not None:
        raise click.UsageError("--limit is the old name of --last: give only --last")
    if not old_limit.strip().isdigit():
        raise click.BadParameter(f"{old_limit!r}: history selects a host with --host HOST (and the number of "
                                 "events with --last N); -l/--limit PATTERN is for commands that contact hosts",
                                 param_hint="--limit")
    n = int(old_limit)
    if not 1 <= n <= MAX_EVENTS:
        raise click.BadParameter(f"{n} is not in the range 1<=x<={MAX_EVENTS}", param_hint="--limit")
    ui.warn(f"history --limit N is deprecated and will be removed in the next release: use --last {n}")
    return n


def _when(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _timeline(key: str, store: Store, events: list[HistoryEvent], open_drift: list[DriftEpisode]) -> None:
    console = ui.table_out()  # piped or under cron: one event per line, for grep
    if not events:
        console.print(f"No history for {escape(key)} in {escape(store.url)}.")
    else:
        table = Table(title=f"History of {escape(key)}", title_justify="left", show_edge=False, pad_edge=False)
        for name, style in (("time", "dim"), ("host", "bold"), ("event", ""), ("subject", "cyan"),
                            ("detail", ""), ("run", "dim")):
            table.add_column(name, style=style, overflow="fold", no_wrap=name in ("time", "run"))
        previous_day = None
        for e in events:
            day = e.time.astimezone(UTC).date()
            if previous_day is not None and day != previous_day:
                table.add_section()  # a rule between days keeps a long timeline readable
            previous_day = day
            table.add_row(
                _when(e.time), e.host, Text(e.kind, style=EVENT_STYLE.get(e.kind, "")), e.subject or "",
                Text(e.detail), f"#{e.run_id}" if e.run_id is not None else "",
            )
        console.print(table)
    if open_drift:
        hosts = sorted({e.host for e in open_drift})
        oldest = min(open_drift, key=lambda e: e.first_seen)
        console.print(
            f"\n[magenta]Open drift:[/] {len(open_drift)} on {len(hosts)} host{'s' if len(hosts) != 1 else ''}"
            f" (oldest: {escape(oldest.host)} {escape(oldest.subject)}, since {_when(oldest.first_seen)},"
            f" {oldest.runs} drift run{'s' if oldest.runs != 1 else ''})"
        )


def _episode_json(e: DriftEpisode) -> dict[str, Any]:
    return {"host": e.host, "kind": e.kind, "subject": e.subject, "drift_class": e.drift_class, "fields": e.fields,
            "since": iso(e.first_seen), "last_seen": iso(e.last_seen), "runs": e.runs}


@click.command("history")
@inventory_argument
@click.option("--host", metavar="HOST", help="Only this host.")
@click.option("--resource", metavar="ID|PATH", help="Only this resource (file:/etc/motd) or watched path.")
@click.option("--since", metavar="WHEN", help="From this date/time (UTC) or age: 2026-11-01, 7d, 12h.")
@click.option("--last", type=click.IntRange(1, MAX_EVENTS), default=None, metavar="N",
              help=f"The latest N events (default {DEFAULT_EVENTS}).")
@click.option("--limit", "old_limit", metavar="N", hidden=True,
              help="Deprecated name of --last (-l/--limit is a host pattern everywhere else).")
@json_option
@store_options
def history_cmd(inventory: Path, host: str | None, resource: str | None, since: str | None, last: int | None,
                old_limit: str | None, as_json: bool, state_dir: str | None, state: str | None) -> int:
    """What happened to an inventory, oldest first: applies, drift found and resolved, failures.

    Reads the state store only; contacts no host. Drift still open is summed up at the end.
    """
    limit = _events_wanted(last, old_limit)
    start = parse_since(since)
    key = inventory_key(inventory)
    with open_from_flags(state_dir, state) as store:
        events = store.history(key, host=host, resource=resource, since=start, limit=limit)
        open_drift = [e for e in store.open_drift(key, host) if resource is None or e.subject == resource]
        if as_json:
            doc = {"inventory": key, "store": store.url, "since": iso(start), "events": [e.to_json() for e in events],
                   "open_drift": [_episode_json(e) for e in open_drift]}
            ui.print_json(doc)
        else:
            _timeline(key, store, events, open_drift)
    return 0


def register(group: click.Group) -> None:
    group.add_command(history_cmd)
