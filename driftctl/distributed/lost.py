"""Tasks lost between the broker and a worker, found by the controller so that it can send them again.

kombu's Redis transport takes a message from its queue with ``BRPOP`` and records it in the
``unacked`` hash a moment later, in Python: a worker killed in between takes the message with it. It
is then in no queue and in no ``unacked`` hash, and no worker's restore scan can bring it back.

``LostWatch`` finds such a task cheaply: only when the task's queue is empty (``LLEN`` of its lists;
a queue with messages may hold the task, which waits legitimately) does it read the ``unacked`` hash
(whose size is bounded by the messages in workers' hands), both in one ``MULTI`` so that a message
moving between them (a restore, a worker taking it) is seen in one place or the other. A task that is
in neither in two such looks at least ``CONFIRM`` seconds apart is lost: the gap a worker is normally
in is milliseconds. The queues are never read (``LRANGE``): each message carries a catalog.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("driftctl.distributed")

CHECK_EVERY = 2.0  # seconds between two looks at the broker in a run (not at every poll of the results)
# A look that had to read ``unacked`` (every message in workers' hands, each with its catalog) and found
# nothing missing waits twice as long before the next, up to this: a run's tail (its queue empty, the
# last tasks reserved by busy workers) does not read the hash every 2 s; a task lost then is found
# within this + CONFIRM. A look that finds a task missing, or reads only the queues' lengths, resets it.
MAX_EVERY = 16.0
CONFIRM = 2.0  # a task seen lost must be seen lost again at least this much later
SOCKET_TIMEOUT = 5.0  # a broker that stops answering holds the controller's poll loop this long at most


@dataclass(frozen=True)
class BrokerKeys:
    """The names kombu's Redis transport gives its keys (``kombu.transport.redis.Channel``): the
    ``unacked`` hash, and a queue's lists, one per priority step (``queue`` for step 0, else
    ``queue + sep + step``; Celery's messages have priority 0, so they land in ``queue`` itself)."""

    unacked: str = "unacked"
    sep: str = "\x06\x16"
    priority_steps: tuple[int, ...] = (0, 3, 6, 9)

    @classmethod
    def of(cls, transport_options: Mapping[str, Any]) -> BrokerKeys:
        from kombu.transport.redis import Channel

        return cls(unacked=str(transport_options.get("unacked_key", Channel.unacked_key)), sep=Channel.sep,
                   priority_steps=tuple(transport_options.get("priority_steps", Channel.priority_steps)))

    def lists(self, queue: str) -> list[str]:
        """The Redis lists of ``queue`` (kombu's ``_q_for_pri`` of each priority step)."""
        return [f"{queue}{self.sep}{step}" if step else queue for step in self.priority_steps]


def unacked_ids(values: Iterable[bytes | str]) -> set[str]:
    """The task ids of the messages in ``unacked`` hash values (kombu's JSON ``[message, exchange,
    routing_key]``; Celery's task id is the message's ``headers.id``). A value that is not such a
    message is skipped: it is no task of ours."""
    ids = set()
    for value in values:
        try:
            message = json.loads(value)[0]
            task_id = message["headers"]["id"]
        except (ValueError, TypeError, KeyError, IndexError):
            continue
        if isinstance(task_id, str):
            ids.add(task_id)
    return ids


@dataclass
class Look:
    """One look at the broker: the queues that were empty, and the ids of the tasks in workers' hands
    then (``None``: no queue was empty, so ``unacked`` was not read)."""

    empty: set[str]
    held: set[str] | None


def look(client: Any, keys: BrokerKeys, queues: Collection[str]) -> Look:
    """Which of ``queues`` are empty, and, when one is, the tasks in ``unacked`` at that same instant."""
    queues = sorted(set(queues))
    if not queues:
        return Look(set(), None)
    with client.pipeline(transaction=False) as pipe:
        empty = _empty(queues, keys, _lengths(pipe, keys, queues).execute())
    if not empty:
        return Look(set(), None)
    # again in one MULTI with the hash: a message restored (hash -> queue) or taken (queue -> hash)
    # between two separate reads would be seen in neither
    with client.pipeline(transaction=True) as pipe:
        *lengths, values = _lengths(pipe, keys, empty).hvals(keys.unacked).execute()
    return Look(set(_empty(empty, keys, lengths)), unacked_ids(values))


def _lengths(pipe: Any, keys: BrokerKeys, queues: list[str]) -> Any:
    """``pipe`` asked the LLEN of every list of each of ``queues``, in order."""
    for q in queues:
        for name in keys.lists(q):
            pipe.llen(name)
    return pipe


def _empty(queues: list[str], keys: BrokerKeys, lengths: list[int]) -> list[str]:
    """Of ``queues``, those whose lists (``_lengths``' answers, in order) are all empty."""
    steps = len(keys.priority_steps)
    return [q for i, q in enumerate(queues) if not any(lengths[i * steps:(i + 1) * steps])]


class LostWatch:
    """Finds the lost tasks of a run: ``check`` at every poll, it looks at the broker every
    ``every`` seconds at most. ``client``: a Redis client of the broker."""

    def __init__(self, client: Any, keys: BrokerKeys, every: float = CHECK_EVERY, confirm: float = CONFIRM,
                 clock: Callable[[], float] = time.monotonic, max_every: float = MAX_EVERY) -> None:
        self.client, self.keys, self.every, self.confirm, self.clock = client, keys, every, confirm, clock
        self.max_every = max_every
        self._next = 0.0
        self._wait = every  # until the next look (MAX_EVERY)
        self._missing: dict[str, float] = {}  # task id -> when it was first seen in no queue and not held

    def check(self, waiting: Mapping[str, str]) -> list[str]:
        """Of ``waiting`` (task id -> its queue: tasks not started), those in no queue and in no
        worker's hands in two looks at least ``confirm`` seconds apart. The caller reads their state
        again before it calls them lost (a task that finished was acknowledged after its result was
        stored). A broker that does not answer is logged and looked at again later."""
        now = self.clock()
        if now < self._next:
            return []
        self._next = now + self.every
        try:
            seen = look(self.client, self.keys, set(waiting.values()))
        except Exception as e:  # the broker is away for a moment: look again later, timeouts still run
            log.warning("broker: %s (looked at again in %gs for tasks lost between it and a worker)", e, self.every)
            return []
        missing = {}
        for task_id, queue in waiting.items():
            if queue in seen.empty and seen.held is not None and task_id not in seen.held:
                missing[task_id] = self._missing.get(task_id, now)
        self._missing = missing  # a task seen anywhere once (or whose queue had messages) starts again
        self._wait = min(self._wait * 2, self.max_every) if seen.held is not None and not missing else self.every
        self._next = now + self._wait
        return [t for t, first in missing.items() if now - first >= self.confirm]

    def forget(self, task_id: str) -> None:
        """``task_id`` was sent again: it must be seen lost twice again."""
        self._missing.pop(task_id, None)

    def close(self) -> None:
        try:
            self.client.close()
        except Exception as e:  # closing a connection to a broker that went away
            log.debug("broker: %s", e)


def watch_broker(app: Any) -> LostWatch:
    """A ``LostWatch`` on ``app``'s broker, with a client of its own: short socket timeouts and no
    retries (redis-py's default retries with backoff for seconds), as the watch looks again anyway."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis.from_url(app.conf.broker_url, socket_timeout=SOCKET_TIMEOUT,
                                  socket_connect_timeout=SOCKET_TIMEOUT, retry=Retry(NoBackoff(), 0))
    return LostWatch(client, BrokerKeys.of(app.conf.broker_transport_options or {}))
