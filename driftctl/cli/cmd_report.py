"""``driftctl report``: render a stored run (the latest drift run, or ``--run ID``) in one format.

Reads the state store only; contacts no host. ``-o FILE`` writes atomically, else stdout.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from driftctl.cli import ui
from driftctl.cli.common import inventory_argument, open_from_flags
from driftctl.cli.options import store_options
from driftctl.errors import InputError
from driftctl.report import FORMATS, chart_from_store, history_from_store, render, write_atomic
from driftctl.report.common import parse_time
from driftctl.store import inventory_key


@click.command("report")
@inventory_argument
@click.option("-f", "--format", "fmt", type=click.Choice(FORMATS), default="markdown", show_default=True,
              help="json (the document), junit (CI), markdown (PR/issue), html (one page: filters, a chart of "
                   "drift and applies, each resource's past events), "
                   "prometheus (node_exporter textfile).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file (atomically, mode 0644) instead of stdout.")
@click.option("--run", "run_id", type=click.IntRange(min=1), metavar="ID",
              help="This stored run instead of the latest drift run (ids: driftctl history --json).")
@store_options
def report_cmd(inventory: Path, fmt: str, output: Path | None, run_id: int | None, state_dir: str | None,
               state: str | None) -> int:
    """Render the latest drift run of INVENTORY stored in the state store (or --run ID).

    Exit 1 when the store holds no such run.
    """
    key = inventory_key(inventory)
    with open_from_flags(state_dir, state) as store:
        if run_id is None:
            latest = store.runs(key, limit=1, command="drift")
            if not latest:
                raise InputError(f"no drift run of {key} in {store.url}",
                                 hint=f"run `driftctl drift {inventory}` first, or pass --state/--state-dir")
            run_id = latest[0].id
        doc = store.run_document(run_id)
        if doc is None:
            raise InputError(f"no run {run_id} in {store.url}")
        if inventory_key(str(doc.get("inventory", ""))) != key:
            raise InputError(f"run {run_id} is a run of {doc.get('inventory')}, not of {key}")
        chart = history = None
        if fmt == "html":
            chart = chart_from_store(store, key, until_run=run_id, applies=True)
            history = history_from_store(store, key, until=parse_time(doc.get("finished") or doc.get("started")))
    text = render(doc, fmt, chart, history)
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_atomic(output, text)
        ui.err.print(f"wrote {output}", markup=False, highlight=False)
    return 0


def register(group: click.Group) -> None:
    group.add_command(report_cmd)
