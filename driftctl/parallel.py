"""Run one function per host on a bounded thread pool; one host's failure never stops the others."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Generic, TypeVar

from driftctl.model import Host

T = TypeVar("T")


@dataclass
class Outcome(Generic[T]):
    host: Host
    value: T | None = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def run_hosts(
    hosts: Sequence[Host],
    fn: Callable[[Host], T],
    parallel: int = 10,
    on_done: Callable[[Outcome[T]], None] | None = None,
) -> list[Outcome[T]]:
    """``fn(host)`` for every host, at most ``parallel`` at once. Results in the hosts' order.

    Exceptions are collected per host (never raised); ``on_done`` is called as each host finishes,
    from the worker thread, so a renderer can show progress.
    """
    outcomes: dict[str, Outcome[T]] = {}
    if not hosts:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(hosts))), thread_name_prefix="host") as pool:
        futures = {pool.submit(fn, h): h for h in hosts}
        for fut in as_completed(futures):
            host = futures[fut]
            try:
                outcome: Outcome[T] = Outcome(host, value=fut.result())
            except Exception as e:  # collected, reported per host
                outcome = Outcome(host, error=e)
            outcomes[host.name] = outcome
            if on_done is not None:
                on_done(outcome)
    return [outcomes[h.name] for h in hosts]
