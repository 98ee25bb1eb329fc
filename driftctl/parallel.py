"""The executor seam: how a run's host tasks are carried out. One host's failure never stops the others.

An ``Executor`` takes the hosts and a function of one host and yields each host's ``Outcome`` as it
finishes. The engine and the drift run only see this interface; events, locks, the store and exit
codes stay above it, so every way of running hosts behaves the same:

- ``ThreadExecutor(n)``: a bounded thread pool on the controller (the default);
- ``InlineExecutor()``: one host after the other in the calling thread (a host that runs itself, a
  test, a debugger);
- later, a distributed queue: the same ``map`` over workers elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

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


class Executor(Protocol):
    concurrent: bool  # hosts run at once (the caller's thread is free meanwhile)

    def map(self, hosts: Sequence[Host], fn: Callable[[Host], T]) -> Iterator[Outcome[T]]:
        """``fn(host)`` for every host; each outcome as soon as it is known (any order).

        An exception of ``fn`` is that host's outcome, never raised."""
        ...


def _attempt(host: Host, fn: Callable[[Host], T]) -> Outcome[T]:
    try:
        return Outcome(host, value=fn(host))
    except Exception as e:  # collected, reported per host
        return Outcome(host, error=e)


class ThreadExecutor:
    """At most ``parallel`` hosts at once, on threads of this process."""

    concurrent = True

    def __init__(self, parallel: int = 10) -> None:
        self.parallel = max(1, parallel)

    def map(self, hosts: Sequence[Host], fn: Callable[[Host], T]) -> Iterator[Outcome[T]]:
        if not hosts:
            return
        with ThreadPoolExecutor(max_workers=min(self.parallel, len(hosts)), thread_name_prefix="host") as pool:
            futures = [pool.submit(_attempt, h, fn) for h in hosts]
            for fut in as_completed(futures):
                yield fut.result()


class InlineExecutor:
    """One host after the other, in the calling thread."""

    concurrent = False

    def map(self, hosts: Sequence[Host], fn: Callable[[Host], T]) -> Iterator[Outcome[T]]:
        for h in hosts:
            yield _attempt(h, fn)


def run_hosts(
    hosts: Sequence[Host],
    fn: Callable[[Host], T],
    parallel: int = 10,
    on_done: Callable[[Outcome[T]], None] | None = None,
    executor: Executor | None = None,
) -> list[Outcome[T]]:
    """``fn(host)`` for every host through ``executor`` (default: ``parallel`` threads); results in the
    hosts' order. ``on_done`` is called as each host finishes, so a renderer can show progress."""
    outcomes: dict[str, Outcome[T]] = {}
    for outcome in (executor or ThreadExecutor(parallel)).map(hosts, fn):
        outcomes[outcome.host.name] = outcome
        if on_done is not None:
            on_done(outcome)
    return [outcomes[h.name] for h in hosts]
