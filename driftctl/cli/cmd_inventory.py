"""``driftctl inventory``: show what an inventory means -- hosts, the group tree, one host's variables.

Contacts no host. Secrets (``!secret`` values and connection passwords) are always redacted.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
from pathlib import Path
from typing import Any

import click
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from driftctl.cli import ui
from driftctl.cli.common import inventory_argument, load_inventory_from_flags, settings_from
from driftctl.cli.options import inventory_input_options, json_option, limit_option
from driftctl.errors import InventoryError, Location
from driftctl.inventory import Inventory
from driftctl.inventory import limit as limits
from driftctl.inventory.connection import SECRET_VARS
from driftctl.inventory.loader import suggest, warnings_for
from driftctl.model import Host
from driftctl.secret import REDACTED, Secret, collect, redact, redact_data

HIDDEN_GROUPS = ("all", "ungrouped")


def _secrets(inv: Inventory, hosts: list[Host]) -> set[str]:
    """Every secret value in the inventory: ``!secret`` values and anything in a password variable, as
    the files wrote them (every group's and host's, shown or not), and the connection passwords of
    ``hosts``. Builds no other host."""
    found: set[str] = set()
    for name, value in inv.written_vars():
        collect(value, found)
        if name in SECRET_VARS and isinstance(value, str) and value:
            found.add(value)
    for host in hosts:
        for value in (host.connection.password, host.connection.become_password):
            if value:
                found.add(value)
    return found


def _shown(variables: dict[str, Any], secrets: set[str]) -> dict[str, Any]:
    out = {
        k: REDACTED if (k in SECRET_VARS and v is not None) or isinstance(v, Secret) else v
        for k, v in variables.items()
    }
    return dict(redact_data(out, secrets))


def _jsonable(value: Any) -> Any:
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if isinstance(value, (bytes, complex)):
        return str(value)
    raise TypeError(f"cannot show {type(value).__name__} as JSON")


def _print_json(doc: Any, secrets: set[str]) -> None:
    """Redacted by value as well: a secret may be an address, a user or part of another value."""
    ui.print_json(redact_data(doc, secrets))


@functools.cache
def _connection_fields() -> tuple[str, ...]:
    from driftctl.model import ConnectionSpec

    return tuple(f.name for f in dataclasses.fields(ConnectionSpec))  # once, not per host


def _connection(host: Host) -> dict[str, Any]:
    # every field is a plain value: a shallow copy is asdict() without its deep copy (10,000 hosts: ~0.15 s)
    conn = {name: getattr(host.connection, name) for name in _connection_fields()}
    for key in ("password", "become_password"):
        if conn[key] is not None:
            conn[key] = REDACTED
    return conn


def _relative(location: Location | None, base: Path) -> str:
    if location is None:
        return ""
    try:
        return str(Location(str(Path(location.file).relative_to(base)), location.line))
    except ValueError:
        return str(location)


def _visible_groups(host: Host) -> list[str]:
    return [g for g in host.groups if g not in HIDDEN_GROUPS]


def _host_doc(inv: Inventory, host: Host, secrets: set[str]) -> dict[str, Any]:
    return {
        "address": host.connection.address,
        "port": host.connection.port,
        "user": host.connection.user,
        "transport": host.connection.transport,
        "become": host.connection.become,
        "groups": list(host.groups),
        "source": str(host.source) if host.source else None,
        "connection": _connection(host),
        "vars": _shown(host.vars, secrets),
    }


def _list_doc(inv: Inventory, hosts: list[Host], secrets: set[str]) -> dict[str, Any]:
    chosen = {h.name for h in hosts}
    return {
        "inventory": str(inv.path),
        "hosts": {h.name: _host_doc(inv, h, secrets) for h in hosts},
        "groups": {
            g.name: {
                "hosts": [h for h in g.hosts if h in chosen],
                "children": g.children,
                "parents": g.parents,
                "depth": g.depth,
                "priority": g.priority,
                "source": str(g.location) if g.location else None,
                "var_files": g.var_files,
                "vars": _shown(g.vars, secrets),
            }
            for g in inv.groups.values()
        },
        "warnings": inv.warnings,
    }


def _graph_doc(inv: Inventory, name: str, chosen: set[str]) -> dict[str, Any] | None:
    group = inv.groups[name]
    children = [d for c in group.children if (d := _graph_doc(inv, c, chosen)) is not None]
    hosts = [h for h in group.hosts if h in chosen]
    if not hosts and not children and name != "all":
        return None
    return {"name": name, "hosts": hosts, "children": children}


def _graph_tree(doc: dict[str, Any], tree: Tree | None = None) -> Tree:
    label = Text(f"@{doc['name']}", style="bold")
    node = Tree(label) if tree is None else tree.add(label)
    for child in doc["children"]:
        _graph_tree(child, node)
    for host in doc["hosts"]:
        node.add(Text(host))
    return node


def _table(inv: Inventory, hosts: list[Host], secrets: set[str]) -> Table:
    table = Table(title=f"{inv.path}: {len(hosts)} of {len(inv.hosts)} hosts", title_justify="left")
    for column in ("host", "address", "user", "become", "transport", "groups"):
        table.add_column(column, overflow="fold")
    for h in hosts:
        c = h.connection
        become = c.become_user if c.become else "-"
        cells = [h.name, f"{c.address}:{c.port}", c.user or "-", become, c.transport,
                 ", ".join(_visible_groups(h)) or "ungrouped"]
        table.add_row(*(Text(redact(cell, secrets)) for cell in cells))
    return table


def _value_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=_jsonable)


def _host_view(inv: Inventory, host: Host, secrets: set[str], as_json: bool) -> None:
    shown = _shown(host.vars, secrets)
    sources = inv.var_sources.get(host.name, {})
    if as_json:
        doc = {
            "host": host.name,
            "groups": list(host.groups),
            "source": str(host.source) if host.source else None,
            "connection": _connection(host),
            "vars": shown,
            "sources": {k: str(loc) for k, loc in sources.items()},
        }
        _print_json(doc, secrets)
        return
    base = inv.path if inv.path.is_dir() else inv.path.parent
    c = host.connection
    ui.out.print(Text(f"{host.name}  ({_relative(host.source, base)})", style="bold"))
    connect = (f"  connect: {c.transport} {c.user + '@' if c.user else ''}{c.address}:{c.port}"
               f"{' via ' + c.proxy_jump if c.proxy_jump else ''}{', become ' + c.become_user if c.become else ''}")
    ui.out.print(Text(redact(connect, secrets)))
    ui.out.print(Text(f"  groups:  {', '.join(host.groups)}"))
    table = Table(title="variables (winning value, and where it was set)", title_justify="left")
    for column in ("variable", "value", "from"):
        table.add_column(column, overflow="fold")
    for key in sorted(shown):
        table.add_row(Text(key), Text(_value_text(shown[key])), Text(_relative(sources.get(key), base)))
    ui.out.print(table)


@click.command("inventory")
@inventory_argument
@limit_option
@click.option("--host", "host_name", metavar="NAME", help="Show one host's merged variables and where each came from.")
@click.option("--graph", is_flag=True, help="Show the group tree.")
@json_option
@inventory_input_options
def inventory_command(inventory: Path, limit: str | None, host_name: str | None, graph: bool, as_json: bool,
                      **flags: Any) -> None:
    """Show the hosts of INVENTORY (a directory such as inventory/prod, or a hosts file).

    Contacts no host. Errors in the inventory are reported with file:line (exit 1). Extra variables
    (-e) are in every host's variables, above all others, as in a run.
    """
    if host_name and (graph or limit):
        raise click.UsageError("--host cannot be combined with --graph or --limit")
    settings = settings_from(**flags)
    if host_name is not None:  # one host: only it is built (its variables merged, its connection checked)
        inv = load_inventory_from_flags(inventory, settings, flags, lazy=True)
        if host_name not in inv.hosts:
            for warning in inv.warnings:
                ui.warn(warning)
            raise InventoryError(f"no host named {host_name!r} in the inventory", Location(str(inventory)),
                                 suggest(host_name, list(inv.hosts)))
        host = inv.hosts[host_name]
        for warning in warnings_for(inv, [host]):
            ui.warn(warning)
        _host_view(inv, host, _secrets(inv, [host]), as_json)
        return
    inv = load_inventory_from_flags(inventory, settings, flags, lazy=False)
    for warning in inv.warnings:
        ui.warn(warning)
    secrets = _secrets(inv, list(inv.hosts.values()))
    hosts = [inv.hosts[n] for n in limits.select_names(inv, limit)]
    if graph:
        doc = _graph_doc(inv, "all", {h.name for h in hosts}) or {"name": "all", "hosts": [], "children": []}
        if as_json:
            _print_json({"inventory": str(inv.path), "graph": doc}, secrets)
        else:
            ui.out.print(_graph_tree(doc))
        return
    if as_json:
        _print_json(_list_doc(inv, hosts, secrets), secrets)
    else:
        ui.out.print(_table(inv, hosts, secrets))


def register(group: click.Group) -> None:
    group.add_command(inventory_command)
