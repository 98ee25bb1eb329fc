"""Which inventory host this machine is: ``--host``, else the one host whose name or ``ansible_host``
is this machine's hostname, FQDN or one of its addresses."""

from __future__ import annotations

import contextlib
import difflib
import json
import socket
import subprocess
from typing import Any

from driftctl.errors import InventoryError
from driftctl.model import Host


def my_names() -> list[str]:
    """This machine's hostname, short name, FQDN and addresses (what an inventory may call it)."""
    names: list[str] = []

    def add(value: str | None) -> None:
        if value and value not in names:
            names.append(value)

    hostname = socket.gethostname()
    add(hostname)
    add(hostname.split(".", 1)[0])
    with contextlib.suppress(OSError):
        add(socket.getfqdn())
    for name in (hostname, *names[1:]):
        try:
            for info in socket.getaddrinfo(name, None):
                add(str(info[4][0]))
        except OSError:
            continue
    for address in _interface_addresses():
        add(address)
    return names


def _interface_addresses() -> list[str]:
    try:
        proc = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, timeout=10, check=False)
        data: Any = json.loads(proc.stdout or b"[]")
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return []
    out = []
    for link in data if isinstance(data, list) else []:
        for a in link.get("addr_info", []) if isinstance(link, dict) else []:
            if isinstance(a, dict) and a.get("local") and a.get("scope") != "host":
                out.append(str(a["local"]))
    return out


def find_host(inventory: Any, inventory_name: str, wanted: str | None, names: list[str] | None = None) -> Host:
    """This machine's host in ``inventory``. InventoryError when ``wanted`` is not in it, or when no
    host or several hosts match this machine (saying what was compared)."""
    hosts = list(inventory.hosts)
    if wanted is not None:
        if wanted not in hosts:
            close = difflib.get_close_matches(wanted, hosts, n=1)
            raise InventoryError(f"--host {wanted}: no such host in {inventory_name}",
                                 hint=(f"did you mean {close[0]}?" if close else
                                       f"it has {len(hosts)} hosts: {', '.join(hosts[:8])}"
                                       + (", ..." if len(hosts) > 8 else "")))
        return inventory.hosts[wanted]
    mine = names if names is not None else my_names()
    matches: list[Host] = []
    for name in hosts:
        host: Host = inventory.hosts[name]
        if name in mine or host.connection.address in mine:
            matches.append(host)
    compared = ", ".join(mine) or "nothing (no hostname)"
    if not matches:
        raise InventoryError(f"{inventory_name} does not list this machine: no host is named, nor has "
                             f"ansible_host, any of {compared}",
                             hint="give --host NAME, or add this machine to the inventory")
    if len(matches) > 1:
        raise InventoryError(f"{inventory_name} has several hosts that match this machine "
                             f"({', '.join(h.name for h in matches)}; compared with {compared})",
                             hint="give --host NAME")
    return matches[0]
