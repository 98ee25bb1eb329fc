"""Pruning the backups of replaced files on hosts (the agent's ``prune`` op), one round trip per host.

Request ``{"op": "prune", "backup_dir": D, "backup_keep": N, "backup_max_age_days": A}``; answer
``{"prune": {"removed": n, "kept": m, "bytes_freed": b}}``. Per managed path the agent keeps the newest
``backup_keep`` backups and none older than ``backup_max_age_days`` (always the newest one). The store
side of ``driftctl prune`` is ``Store.prune`` (driftctl/store/store.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from driftctl import ship
from driftctl.errors import ConnectError, DriftctlError, ExitCode, HostError
from driftctl.model import Host
from driftctl.parallel import Outcome, run_hosts
from driftctl.transport.base import Transport, TransportOptions, get_transport

TransportFactory = Callable[[Host, TransportOptions], Transport]


@dataclass(frozen=True)
class BackupPolicy:
    backup_dir: str
    keep: int
    max_age_days: float

    def request(self) -> dict[str, Any]:
        return {"op": "prune", "backup_dir": self.backup_dir, "backup_keep": self.keep,
                "backup_max_age_days": self.max_age_days}


@dataclass
class HostPrune:
    """One host's answer: counts when ``status`` is ok, else the error."""

    host: str
    status: str  # ok | unreachable | failed
    removed: int = 0
    kept: int = 0
    bytes_freed: int = 0
    error: str | None = None
    duration: float = 0.0

    @property
    def exit_code(self) -> int:
        return {"ok": ExitCode.OK, "unreachable": ExitCode.UNREACHABLE}.get(self.status, ExitCode.FAILED)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.host, "status": self.status, "removed": self.removed, "kept": self.kept,
                "bytes_freed": self.bytes_freed, "error": self.error}


def prune_host(host: Host, options: TransportOptions, policy: BackupPolicy,
               transport_factory: TransportFactory = get_transport) -> HostPrune:
    """Ask ``host``'s agent to prune its backups. Never raises a HostError."""
    started = time.monotonic()
    try:
        with transport_factory(host, options) as transport:
            answer = ship.call(transport, policy.request(), timeout=host.connection.command_timeout)
        counts = answer.get("prune")
        if not isinstance(counts, dict):
            raise HostError(host.name, "the agent answered no prune counts")
        result = HostPrune(host.name, "ok", removed=int(counts.get("removed", 0)), kept=int(counts.get("kept", 0)),
                           bytes_freed=int(counts.get("bytes_freed", 0)))
    except ConnectError as e:
        result = HostPrune(host.name, "unreachable", error=e.message)
    except HostError as e:
        result = HostPrune(host.name, "failed", error=e.message)
    result.duration = time.monotonic() - started
    return result


def prune_backups(hosts: Sequence[Host], options: TransportOptions, policy: BackupPolicy, parallel: int = 10,
                  transport_factory: TransportFactory = get_transport) -> list[HostPrune]:
    """Every host's backups pruned, ``parallel`` at once, results in the hosts' order; one host's failure
    never stops the others. Transports are built first: settings errors surface before any contact."""
    for h in hosts:
        transport_factory(h, options)
    outcomes = run_hosts(hosts, lambda h: prune_host(h, options, policy, transport_factory), parallel)
    return [_result(o) for o in outcomes]


def _result(o: Outcome[HostPrune]) -> HostPrune:
    if o.value is not None:
        return o.value
    e = o.error
    why = str(e) if isinstance(e, DriftctlError) else f"internal error: {type(e).__name__}: {e}"
    return HostPrune(o.host.name, "failed", error=why)
