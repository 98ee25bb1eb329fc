"""Finding a task lost between the broker and a worker (driftctl/distributed/lost.py): the exact match of
task ids in kombu's ``unacked`` hash, the names of a queue's lists, and the two looks at a real Redis
(the session's server: what it is asked, from its command statistics)."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace
from typing import Any

from dist import RedisServer, free_port

from driftctl.distributed.lost import BrokerKeys, LostWatch, look, unacked_ids


def unacked_value(task_id: str, queue: str = "driftctl") -> str:
    """An ``unacked`` hash value as kombu writes it: ``[message, exchange, routing_key]``."""
    message = {"body": "W1tdLCB7fSwge31d", "content-encoding": "utf-8", "content-type": "application/json",
               "headers": {"lang": "py", "task": "driftctl.host", "id": task_id, "root_id": task_id},
               "properties": {"delivery_tag": "tag-" + task_id, "priority": 0,
                              "delivery_info": {"exchange": "", "routing_key": queue}}}
    return json.dumps([message, "", queue])


def commands(redis: Any) -> dict[str, int]:
    """How often the server ran each command since its statistics were reset."""
    return {name.removeprefix("cmdstat_"): int(stat["calls"])
            for name, stat in redis.info("commandstats").items()}


def test_a_task_id_matches_exactly_never_as_a_prefix() -> None:
    values = [unacked_value("driftctl-R-web10").encode(), unacked_value("driftctl-R-web2")]
    assert unacked_ids(values) == {"driftctl-R-web10", "driftctl-R-web2"}
    assert "driftctl-R-web1" not in unacked_ids(values)


def test_a_value_that_is_no_task_message_is_skipped() -> None:
    values = [b"not json", b"[]", b"{}", json.dumps([{"headers": {}}, "", "q"]), json.dumps([{"headers": {"id": 7}}]),
              unacked_value("driftctl-R-web1")]
    assert unacked_ids(values) == {"driftctl-R-web1"}


def test_the_lists_of_a_queue_are_those_kombu_pushes_to() -> None:
    from kombu.transport.redis import Channel

    keys = BrokerKeys.of({})
    channel = SimpleNamespace(sep=Channel.sep, priority_steps=Channel.priority_steps)
    channel.priority = lambda n: Channel.priority(channel, n)  # type: ignore[attr-defined]
    assert keys.lists("east") == [Channel._q_for_pri(channel, "east", step) for step in Channel.priority_steps]
    assert keys.lists("east")[0] == "east" and keys.unacked == Channel.unacked_key
    assert BrokerKeys.of({"unacked_key": "u", "priority_steps": [0, 5]}).lists("q") == ["q", "q\x06\x165"]


def test_unacked_is_read_only_when_the_queue_is_empty(broker: RedisServer) -> None:
    redis = broker.client()
    keys = BrokerKeys.of({})
    redis.hset("unacked", "tag-1", unacked_value("driftctl-R-web10"))
    redis.lpush(keys.lists("east")[2], "a message at priority 6")  # a priority list counts
    redis.config_resetstat()
    seen = look(redis, keys, ["east", "driftctl"])
    assert seen.empty == {"driftctl"} and seen.held == {"driftctl-R-web10"}
    assert commands(redis).get("hvals") == 1
    redis.delete("driftctl")
    redis.lpush("driftctl", "waiting")
    redis.config_resetstat()
    seen = look(redis, keys, ["east", "driftctl"])
    assert seen.empty == set() and seen.held is None
    calls = commands(redis)
    assert "hvals" not in calls and "hgetall" not in calls and "lrange" not in calls


def test_a_task_is_lost_when_seen_missing_twice_apart(broker: RedisServer) -> None:
    redis = broker.client()
    now = [100.0]
    watch = LostWatch(redis, BrokerKeys.of({}), every=2, confirm=2, clock=lambda: now[0])
    redis.hset("unacked", "tag-1", unacked_value("driftctl-R-web10"))
    waiting = {"driftctl-R-web1": "driftctl", "driftctl-R-web10": "driftctl"}
    assert watch.check(waiting) == []  # first seen missing
    redis.config_resetstat()
    now[0] += 1
    assert watch.check(waiting) == []  # too soon: not even looked at
    assert "llen" not in commands(redis)
    now[0] += 1
    assert watch.check(waiting) == ["driftctl-R-web1"]  # web10 is in a worker's hands
    redis.lpush("driftctl", "waiting")  # the queue has messages: it may be waiting there, seen again from scratch
    now[0] += 2
    assert watch.check(waiting) == []
    redis.delete("driftctl")
    now[0] += 2
    assert watch.check(waiting) == []
    watch.forget("driftctl-R-web1")  # sent again: seen twice again before it is lost again
    now[0] += 2
    assert watch.check(waiting) == []
    now[0] += 2
    assert watch.check(waiting) == ["driftctl-R-web1"]
    assert watch.check({}) == []


def test_a_tail_of_held_tasks_reads_unacked_less_and_less_often(broker: RedisServer) -> None:
    """While every waiting task is in a worker's hands (a run's tail), each look that read the hash
    waits twice as long as the last, up to max_every; a task missing then is still found."""
    redis = broker.client()
    now = [0.0]
    watch = LostWatch(redis, BrokerKeys.of({}), every=2, confirm=2, clock=lambda: now[0], max_every=8)
    redis.hset("unacked", "tag-1", unacked_value("driftctl-R-web1"))
    waiting = {"driftctl-R-web1": "driftctl"}
    looked = []
    redis.config_resetstat()
    for _ in range(40):  # 20 s, a check at every 0.5 s as the poll loop makes them
        before = commands(redis).get("hvals", 0)
        assert watch.check(waiting) == []
        if commands(redis).get("hvals", 0) > before:
            looked.append(now[0])
        now[0] += 0.5
    assert looked == [0.0, 4.0, 12.0], looked  # waits of 4, 8, then 8
    redis.delete("unacked")  # its worker died as it took it, in a sense: now it is in no one's hands
    now[0] = 20.0
    assert watch.check(waiting) == []  # the next look is at 20: seen missing, once
    now[0] = 22.0
    assert watch.check(waiting) == ["driftctl-R-web1"]


def test_a_broker_away_is_looked_at_again_later(caplog: Any) -> None:
    from driftctl.distributed.app import make_app
    from driftctl.distributed.lost import watch_broker

    watch = watch_broker(make_app(f"redis://127.0.0.1:{free_port()}/0"))  # nothing listens there
    started = time.monotonic()
    assert watch.check({"driftctl-R-web1": "driftctl"}) == []
    assert time.monotonic() - started < 1  # no retries with backoff: the poll loop goes on
    assert "broker:" in caplog.text and "Connection refused" in caplog.text
    watch.close()
