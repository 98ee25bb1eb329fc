"""Redelivery of a dead worker's task, with this machine as the one host (local transport), a real Redis
and real `driftctl worker` processes.

kombu's Redis transport puts a dead worker's unacknowledged messages back in their queue from a scan
each worker runs every 2 s under a Redis lock (``unacked_mutex``). A worker SIGKILLed while it holds
that lock leaves it to expire: after kombu's default 300 s, every redelivery waited 5 minutes.
driftctl/distributed/app.py bounds the lock (and the scan under it): the task comes back within
about visibility_timeout + a few seconds, and runs once.

A worker SIGKILLed after its ``BRPOP`` took a message and before it wrote it to ``unacked`` leaves the
message nowhere: no scan can bring it back. The controller finds such a task (in no queue, in no
worker's hands, not started) and sends it again (driftctl/distributed/lost.py); a task that waits in
a queue nobody serves is not sent again, and fails after ``queue_timeout`` as before.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from dist import REPO, RedisServer, Worker, local_site, wait_for

pytestmark = [pytest.mark.slow]

RUN = 4  # seconds of each of the resource's two checks: the task takes ~8 s, the victim never finishes it
VISIBILITY = 15  # seconds: above the task's run (one delivery to the survivor), and the victim is killed
# within ~2 s of taking it. From the kill to the survivor starting the task: the rest of the visibility
# timeout, then the 2-s scan (the lock's 5 s expire meanwhile) and room for a loaded machine; with
# kombu's default lock (300 s) it is 5 minutes
BOUND = VISIBILITY + 15.0
MUTEX = "unacked_mutex"  # kombu's default unacked_mutex_key


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = local_site(tmp_path, '"x\\n"')
    (root / "manifests" / "roles" / "r" / "resources.yaml").write_text(
        f"resources:\n  - exec: slow\n    command: ['true']\n    unless: ['/bin/sh', '-c', 'sleep {RUN}; false']\n")
    return root


@pytest.fixture
def scene(site: Path, broker: RedisServer) -> Iterator[Any]:
    def env(**extra: str) -> dict[str, str]:
        out = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTCTL_")}
        return {**out, "NO_COLOR": "1", "DRIFTCTL_STATE_DIR": str(site / "state"),
                "DRIFTCTL_VISIBILITY_TIMEOUT": str(VISIBILITY), **extra}

    s = SimpleNamespace(tmp=site, broker=broker.url, store_url=str(site / "store.db"), key=site / "k", env=env,
                        workers=[])
    yield s
    for w in s.workers:
        w.stop()


def kill_holding_the_lock(victim: Worker, redis: Any) -> int:
    """SIGKILL ``victim`` while it holds the restore lock (it is the one worker: a lock there is its);
    the lock's remaining time in ms. Expired index entries without a message (what a scan drops) make
    each of its scans long enough to be caught in, as any scan of a real backlog is."""
    redis.zadd("unacked_index", {f"planted-{i}": 0 for i in range(3000)})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if redis.exists(MUTEX):
            os.killpg(victim.proc.pid, signal.SIGSTOP)
            if redis.exists(MUTEX):  # still held, by a stopped victim: killed holding it
                victim.kill()
                return int(redis.pttl(MUTEX))
            os.killpg(victim.proc.pid, signal.SIGCONT)
    raise AssertionError("the victim never took the restore lock in 30 s")


def test_a_worker_killed_holding_the_restore_lock_delays_no_redelivery(scene: Any, broker: RedisServer) -> None:
    redis = broker.client()
    victim = Worker(scene, "victim", ("driftctl",), 1, {})
    scene.workers.append(victim)
    site = scene.tmp
    argv = [sys.executable, "-m", "driftctl", "apply", "--json", str(site / "inv"), "-m", str(site / "manifests"),
            "--executor", "celery", "--broker", broker.url, "--worker-key", str(site / "k")]
    run = subprocess.Popen(argv, cwd=REPO, env=scene.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: ": apply ctl" in victim.text(), "the victim to take the task", 120)
        ttl = kill_holding_the_lock(victim, redis)
        killed = time.monotonic()
        assert redis.hlen("unacked") == 1  # the victim's task, unacknowledged, waiting for a scan
        survivor = Worker(scene, "survivor", ("driftctl",), 1, {})
        scene.workers.append(survivor)
        while ": apply ctl" not in survivor.text() and time.monotonic() - killed < BOUND:
            time.sleep(0.1)
        waited = time.monotonic() - killed
        assert ": apply ctl" in survivor.text(), (
            f"the dead victim's task was not delivered again {waited:.0f}s after it was killed holding the "
            f"restore lock (the lock's time left then: {ttl} ms; now: {redis.pttl(MUTEX)} ms)")
        out, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 2, err  # applied: changed
    doc = json.loads(out)
    assert [(h["name"], h["status"]) for h in doc["hosts"]] == [("ctl", "changed")]
    assert "done:" not in victim.text()
    assert len(re.findall(r": apply ctl$", survivor.text(), re.M)) == 1  # delivered again once


QUEUE_TIMEOUT = 120  # seconds: without the lost-task check, the lost host fails after this
LOST_BOUND = 60.0  # from the victim's kill to the run's end: the survivor's start (~5 s), the two looks
# 2 s apart (~4 s), the host's run (~1 s), and room for a loaded machine


def brpop_blocked(redis: Any) -> bool:
    """A client (the victim: the only worker) is blocked in BRPOP on the server now."""
    return any(c.get("cmd") == "brpop" and "b" in c.get("flags", "") for c in redis.client_list())


def lose_to(victim: Worker, redis: Any, queue: str) -> None:
    """The message waiting in ``queue`` handed to the stopped ``victim``'s BRPOP, then the victim
    SIGKILLed: as a worker killed between its BRPOP and its write to ``unacked``. The message is out of
    the queue only for the moments it takes to catch the victim in a BRPOP (it times out every 1 s)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        message = redis.rpop(queue)
        assert message, f"no message in {queue!r}"
        os.killpg(victim.proc.pid, signal.SIGCONT)
        wait_for(lambda: brpop_blocked(redis), "the victim to wait in BRPOP", 30)
        os.killpg(victim.proc.pid, signal.SIGSTOP)
        if brpop_blocked(redis):  # still blocked, and stopped: Redis hands the message to it
            redis.lpush(queue, message)
            if redis.llen(queue) == 0 and not brpop_blocked(redis):
                victim.kill()
                return
        else:
            redis.lpush(queue, message)
    raise AssertionError("the victim was never caught waiting in BRPOP")


def apply_run(scene: Any, broker: RedisServer, **env: str) -> subprocess.Popen[str]:
    site = scene.tmp
    argv = [sys.executable, "-m", "driftctl", "apply", "--json", str(site / "inv"), "-m", str(site / "manifests"),
            "--executor", "celery", "--broker", broker.url, "--worker-key", str(site / "k")]
    return subprocess.Popen(argv, cwd=REPO, env=scene.env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, stdin=subprocess.DEVNULL)


def plain_file(site: Path) -> None:
    (site / "manifests" / "roles" / "r" / "resources.yaml").write_text(
        f"resources:\n  - file: {site}/touched\n    content: \"x\\n\"\n")


def test_a_task_lost_between_brpop_and_unacked_is_sent_again(scene: Any, broker: RedisServer) -> None:
    redis = broker.client()
    plain_file(scene.tmp)
    victim = Worker(scene, "victim", ("driftctl",), 1, {})
    scene.workers.append(victim)
    os.killpg(victim.proc.pid, signal.SIGSTOP)  # its BRPOP times out: the controller's task stays queued
    wait_for(lambda: not brpop_blocked(redis), "the stopped victim's BRPOP to time out", 30)
    redis.config_resetstat()
    run = apply_run(scene, broker, DRIFTCTL_QUEUE_TIMEOUT=str(QUEUE_TIMEOUT))
    try:
        wait_for(lambda: redis.llen("driftctl") == 1, "the controller's task in the queue", 120)
        lose_to(victim, redis, "driftctl")
        killed = time.monotonic()
        assert redis.llen("driftctl") == 0 and redis.hlen("unacked") == 0  # lost: nowhere
        survivor = Worker(scene, "survivor", ("driftctl",), 1, {})
        scene.workers.append(survivor)
        out, err = run.communicate(timeout=QUEUE_TIMEOUT + 60)
        took = time.monotonic() - killed
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    doc = json.loads(out)
    assert [(h["name"], h["status"]) for h in doc["hosts"]] == [("ctl", "changed")], \
        [h.get("error") for h in doc["hosts"]]
    assert run.returncode == 2, err
    assert took < LOST_BOUND, f"the lost task's host ended {took:.0f}s after the victim was killed"
    assert "ctl: its task driftctl-" in err and "was lost between the broker and a worker" in err
    assert "sent again (1 of 3)" in err
    assert len(re.findall(r": apply ctl$", survivor.text(), re.M)) == 1  # run once
    assert "apply ctl" not in victim.text()
    assert (scene.tmp / "touched").read_text() == "x\n"
    assert "lrange" not in {k.removeprefix("cmdstat_") for k in redis.info("commandstats")}


def test_a_task_waiting_in_a_queue_nobody_serves_is_not_sent_again(scene: Any, broker: RedisServer) -> None:
    redis = broker.client()
    plain_file(scene.tmp)
    redis.config_resetstat()
    run = apply_run(scene, broker, DRIFTCTL_QUEUE_TIMEOUT="8")
    out, err = run.communicate(timeout=120)
    assert run.returncode == 4, err
    doc = json.loads(out)
    assert [(h["name"], h["status"]) for h in doc["hosts"]] == [("ctl", "failed")]
    assert doc["hosts"][0]["error"] == ("not started: no worker took its task in 8s "
                                        "(queue 'driftctl': is a worker serving it?)")
    assert "lost" not in err
    assert redis.llen("driftctl") == 1  # sent once: never again
    calls = {k.removeprefix("cmdstat_") for k in redis.info("commandstats")}
    assert not calls & {"hvals", "hgetall", "lrange"}  # its queue had a message: unacked was never read
