"""driftctl facts: what every host is (OS, kernel, arch, python, init, package manager), in one round trip."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from driftctl.cli import ui
from driftctl.cli.common import fleet_options, inventory_argument, load_context, pass_flags, recorded_argv
from driftctl.facts import gather
from driftctl.model import HostResult, RunResult
from driftctl.report import document

STATUS_STYLE = {"ok": "green", "unreachable": "bold red", "failed": "bold red"}


def _os(f: dict[str, Any]) -> str:
    dist = str(f.get("distribution", "")) or "?"
    version = str(f.get("distribution_version", ""))
    codename = str(f.get("distribution_codename", ""))
    return f"{dist} {version}".strip() + (f" ({codename})" if codename else "")


def facts_table(hosts: list[HostResult]) -> Table:
    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    for column in ("host", "status", "os", "kernel", "arch", "hostname", "python", "init", "packages"):
        table.add_column(column, overflow="fold")
    for h in hosts:
        status = f"[{STATUS_STYLE.get(h.status, '')}]{h.status}[/]"
        if h.status != "ok":
            table.add_row(escape(h.host), status, *[""] * 7)
            continue
        f = h.facts
        table.add_row(
            escape(h.host),
            status,
            escape(_os(f)),
            escape(str(f.get("kernel", ""))),
            escape(str(f.get("architecture", ""))),
            escape(str(f.get("hostname", ""))),
            escape(str(f.get("python", ""))),
            escape(str(f.get("init", ""))),
            escape(str(f.get("package_manager") or "-")),
        )
    return table


def show(run: RunResult) -> None:
    if run.hosts:
        ui.table_out().print(facts_table(run.hosts))  # piped: one host per line, for grep
    problems = [h for h in run.hosts if h.status != "ok"]
    for h in problems:
        ui.out.print(f"[bold]{escape(h.host)}[/]: [bold red]{h.status}[/]: {escape(h.error or '')}")
    ok = len(run.hosts) - len(problems)
    line = f"{len(run.hosts)} host(s): {ok} ok"
    for status in ("unreachable", "failed"):
        n = sum(h.status == status for h in problems)
        if n:
            line += f", {n} {status}"
    ui.out.print(line, markup=False)


@click.command("facts")
@inventory_argument
@fleet_options
@pass_flags
def facts_command(inventory: Path, limit: str | None, as_json: bool, flags: dict[str, Any]) -> int:
    """Show each host's system facts: OS and version, kernel, arch, hostname, python, init, packages.

    One round trip per host, all hosts in parallel. Exit code 8 if a host is unreachable or refused
    us (host key, authentication), 4 if the agent failed on a host, 0 otherwise.
    """
    ctx = load_context(inventory, limit, as_json, **flags)  # selecting no host is an input error there
    run = RunResult(command="facts")
    total = len(ctx.hosts)
    finished: list[str] = []

    def progress(h: HostResult) -> None:
        finished.append(h.host)
        if ui.interactive() and not as_json:
            ui.err.print(f"[dim]{len(finished)}/{total}[/] {escape(h.host)} {h.status}", highlight=False)

    run.hosts = gather(ctx.hosts, ctx.transport_options, ctx.parallel, on_done=progress)
    run.finished = time.time()
    if as_json:
        ui.print_json(document.build(run, str(inventory), recorded_argv(sys.argv[1:])))
    else:
        show(run)
    return run.exit_code


def register(group: click.Group) -> None:
    group.add_command(facts_command)
