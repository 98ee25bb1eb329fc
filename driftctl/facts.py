"""Gather system facts from many hosts: one agent round trip per host, every host in parallel.

An unreachable or refusing host gives a HostResult with status ``unreachable`` and the reason; a host
where the agent could not run gives ``failed``. Neither stops the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from driftctl import ship
from driftctl.errors import ConnectError, DriftctlError, HostError
from driftctl.model import Host, HostResult
from driftctl.parallel import Outcome, run_hosts
from driftctl.transport.base import Transport, TransportOptions, get_transport

TransportFactory = Callable[[Host, TransportOptions], Transport]


def gather_one(
    host: Host, options: TransportOptions, transport_factory: TransportFactory = get_transport
) -> HostResult:
    """Connect to ``host``, ask the agent for its facts (one round trip), close. Never raises a HostError."""
    started = time.monotonic()
    try:
        with transport_factory(host, options) as transport:
            answer = ship.call(transport, {"op": "facts"}, timeout=host.connection.command_timeout)
        result = HostResult(host.name, "ok", facts=answer.get("facts", {}), round_trips=1)
    except ConnectError as e:  # unreachable, host key, authentication
        result = HostResult(host.name, "unreachable", error=e.message)
    except HostError as e:  # the agent failed, or timed out
        result = HostResult(host.name, "failed", error=e.message)
    result.duration = time.monotonic() - started
    return result


def gather(
    hosts: Sequence[Host],
    options: TransportOptions,
    parallel: int = 10,
    on_done: Callable[[HostResult], None] | None = None,
    transport_factory: TransportFactory = get_transport,
) -> list[HostResult]:
    """Facts of every host, at most ``parallel`` at once, results in the hosts' order.

    Transports are built first, so input errors (unknown transport, unreadable ssh config) are raised
    before any host is contacted. ``on_done`` sees each host's result as it finishes (for progress).
    """
    for h in hosts:
        transport_factory(h, options)  # construction contacts nothing; it validates the settings

    def done(outcome: Outcome[HostResult]) -> None:
        if on_done is not None:
            on_done(_result(outcome))

    outcomes = run_hosts(hosts, lambda h: gather_one(h, options, transport_factory), parallel, done)
    return [_result(o) for o in outcomes]


def _result(outcome: Outcome[HostResult]) -> HostResult:
    if outcome.value is not None:
        return outcome.value
    e = outcome.error
    if isinstance(e, DriftctlError):
        return HostResult(outcome.host.name, "failed", error=str(e))
    return HostResult(outcome.host.name, "failed", error=f"internal error: {type(e).__name__}: {e}")
