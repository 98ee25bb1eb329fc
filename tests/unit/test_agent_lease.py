"""The agent's lease and the SSH liveness check (D47): a link that goes silent stops both ends.

The agent runs for real (a local process fed by a fake controller that can fall silent without
closing anything); the pure parts (the lease's bookkeeping, the controller's pings and its liveness
rule) are driven with fake clocks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from driftctl import ship
from driftctl.agent import _main
from driftctl.transport.base import Feed
from driftctl.transport.ssh import Liveness


def exec_item(name: str, script: str) -> dict[str, Any]:
    return {"id": f"exec:{name}", "type": "exec", "changes": ["state"], "depends": [], "notify": [],
            "params": {"command": ["/bin/sh", "-c", script]}}


class Agent:
    """The agent program run as a controller runs it, with stdin held open: ``write`` sends, and not
    writing is the silent link (nothing ends, nothing is reset)."""

    def __init__(self, tmp_path: Path, items: list[dict[str, Any]], lease: float | None) -> None:
        modules = ship.modules_for(["exec"])
        request: dict[str, Any] = {"op": "apply", "resources": items, "frames": True,
                                   "lock_dir": str(tmp_path / "lock")}
        if lease:
            request["lease"] = lease
        self.proc = subprocess.Popen(ship.command(sys.executable, modules, cache=False), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.write(ship.program_bytes(modules) + ship._payload(request))
        self.started = time.monotonic()

    def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def records(self, timeout: float = 30) -> tuple[list[dict[str, Any]], float]:
        """Every record up to the final answer (expanded), and the seconds the agent ran."""
        assert self.proc.stdout is not None
        out = []
        for line in self.proc.stdout:
            out.append(ship._parse(line))
            if "v" in out[-1]:
                break
        took = time.monotonic() - self.started
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=timeout)
        return out, took


def begun(records: list[dict[str, Any]]) -> list[str]:
    return [r["begin"] for r in records if "begin" in r]


def test_a_silent_controller_stops_the_agent_in_the_resource_it_runs(tmp_path: Path) -> None:
    marker = tmp_path / "late"
    agent = Agent(tmp_path, [exec_item("long", f"sleep 20; touch {marker}"), exec_item("next", f"touch {marker}")],
                  lease=1.5)
    agent.write(b'{"end":true}\n')  # and then not a word, stdin still open
    records, took = agent.records()
    answer = records[-1]
    assert answer["cancelled"] == "the controller's connection is gone (nothing from it for 1.5 s)"
    assert begun(records) == ["exec:long"]  # the running command was ended, nothing after it started
    assert not marker.exists()
    assert took < 10


def test_pings_keep_the_lease_while_a_long_apply_runs(tmp_path: Path) -> None:
    done = tmp_path / "done"
    agent = Agent(tmp_path, [exec_item("a", "sleep 1.5"), exec_item("b", f"sleep 1.5; touch {done}")], lease=1.0)
    agent.write(b'{"end":true}\n')
    stop = threading.Event()

    def ping() -> None:
        n = 0
        while not stop.wait(0.25):
            n += 1
            try:
                agent.write(b'{"ping":%d}\n' % n)
            except (BrokenPipeError, ValueError):
                return

    pinger = threading.Thread(target=ping, daemon=True)
    pinger.start()
    try:
        records, took = agent.records()
    finally:
        stop.set()
    assert "cancelled" not in records[-1] and records[-1]["ok"], records[-1]
    assert begun(records) == ["exec:a", "exec:b"] and done.exists()
    assert took > 3  # three times the lease


def test_without_a_lease_silence_is_not_an_end(tmp_path: Path) -> None:
    """An older controller sends no lease and no pings: only end of input ends its run, as before."""
    agent = Agent(tmp_path, [exec_item("a", "sleep 1.5"), exec_item("b", "true")], lease=None)
    agent.write(b'{"end":true}\n')
    records, _ = agent.records()
    assert "cancelled" not in records[-1] and begun(records) == ["exec:a", "exec:b"]


def test_before_the_end_frame_the_lease_is_judged_at_the_next_resource_boundary(tmp_path: Path) -> None:
    """Content still on its way for a later resource: the agent reads on at each boundary, and stops
    there when nothing came for the lease."""
    agent = Agent(tmp_path, [exec_item("a", "sleep 2.5"), exec_item("b", "true"), exec_item("c", "true")], lease=1.0)
    agent.write(b'{"blob":"%s","size":100,"for":"exec:c"}\n' % (b"0" * 64) + b"x" * 10)
    records, _ = agent.records()
    assert records[-1]["cancelled"] == "the controller's connection is gone (nothing from it for 1 s)"
    assert begun(records) == ["exec:a"]


def test_before_the_end_frame_content_arriving_keeps_the_lease(tmp_path: Path) -> None:
    agent = Agent(tmp_path, [exec_item("a", "sleep 2.5"), exec_item("b", "true"), exec_item("c", "true")], lease=1.0)
    agent.write(b'{"blob":"%s","size":20,"for":"exec:c"}\n' % (b"0" * 64))
    for _ in range(10):  # a slow link: a byte every 0.3 s
        time.sleep(0.3)
        agent.write(b"x")
    agent.write(b"x" * 10 + b'{"end":true}\n')
    records, _ = agent.records()
    assert "cancelled" not in records[-1] and begun(records) == ["exec:a", "exec:b", "exec:c"]


# ---- the lease's bookkeeping, in process


@pytest.fixture
def pipe() -> Any:
    r, w = os.pipe()
    yield r, w
    os.close(r)
    os.close(w)


def test_the_lease_runs_only_while_the_agent_could_read(pipe: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    r, w = pipe
    clock = [100.0]
    monkeypatch.setattr(_main.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(_main, "HOLD", 8)
    inp = _main._Input(r)
    inp.lease = 10.0
    clock[0] += 9
    assert not inp.hear()
    os.write(w, b"abc")
    clock[0] += 9
    assert not inp.hear() and inp.last == clock[0]  # what came renews it
    clock[0] += 10
    assert inp.hear() and inp.gone() == "the controller's connection is gone (nothing from it for 10 s)"
    inp = _main._Input(r)
    inp.lease = 10.0
    os.write(w, b"0123456789")  # more than we read ahead: the controller may be waiting for us
    clock[0] += 60
    assert not inp.hear()


# ---- the controller's side


def test_pings_follow_the_end_frame_every_quarter_of_the_lease() -> None:
    feed = Feed([])
    ticks = iter(range(0, 10_000))
    frames = ship._frames({"op": "apply", "resources": [], "lease": 8}, [], feed, clock=lambda: float(next(ticks)))
    assert next(frames).endswith(b'{"end":true}\n')  # program, request and end frame: one write
    assert [next(frames) for _ in range(3)] == [b'{"ping":1}\n', b'{"ping":2}\n', b'{"ping":3}\n']
    feed.done.set()
    assert list(frames) == []


def test_without_a_lease_no_ping_is_sent() -> None:
    feed = Feed([])
    frames = ship._frames({"op": "apply", "resources": []}, [], feed, clock=lambda: 1e9)
    assert next(frames).endswith(b'{"end":true}\n')
    threading.Timer(0.5, feed.done.set).start()
    assert list(frames) == []


class Keepalives:
    """``ask`` for Liveness: each keepalive waits until the test answers it (or never)."""

    def __init__(self) -> None:
        self.sent = 0
        self._answer = threading.Event()

    def ask(self) -> None:
        self.sent += 1
        self._answer.wait()
        self._answer.clear()

    def answer(self) -> None:
        self._answer.set()
        time.sleep(0.05)


def test_a_quiet_host_is_asked_once_and_lost_only_after_the_whole_timeout() -> None:
    clock = [0.0]
    keep = Keepalives()
    live = Liveness(keep.ask, 60, clock=lambda: clock[0])
    clock[0] = 14
    assert not live.lost() and keep.sent == 0
    clock[0] = 15
    assert not live.lost()
    time.sleep(0.05)
    assert keep.sent == 1
    clock[0] = 59
    assert not live.lost() and keep.sent == 1  # one keepalive at a time
    clock[0] = 60
    assert live.lost()
    keep.answer()


def test_an_answered_keepalive_or_any_output_is_a_word_from_the_host() -> None:
    clock = [0.0]
    keep = Keepalives()
    live = Liveness(keep.ask, 60, clock=lambda: clock[0])
    clock[0] = 20
    live.lost()
    clock[0] = 30
    keep.answer()  # the answer took 10 s: a slow link, not a dead one
    clock[0] = 80
    assert not live.lost()  # heard at 30
    clock[0] = 85
    assert not live.lost()
    time.sleep(0.05)
    assert keep.sent == 2
    live.heard_now()
    clock[0] = 140
    assert not live.lost()
    keep.answer()


def test_a_controller_that_was_stopped_asks_before_it_blames_the_host() -> None:
    clock = [0.0]
    keep = Keepalives()
    live = Liveness(keep.ask, 60, clock=lambda: clock[0])
    clock[0] = 500  # SIGSTOP, a suspended laptop: nothing was asked meanwhile
    assert not live.lost()
    clock[0] = 544
    assert not live.lost()
    clock[0] = 545
    assert live.lost()
    keep.answer()
