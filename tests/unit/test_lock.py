"""Run locks between real processes: on a state directory, a SQLite store and a PostgreSQL store."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from driftctl.errors import ExitCode, LockedError
from driftctl.store import Store, open_store
from driftctl.store.lock import describe, holder_info, lock

NAME = "inventory:inventory/prod"

# A holder in a process of its own: locks, says so on stdout, then holds as told.
HOLDER = r"""
import json, os, sys, time
from driftctl.store.lock import holder_info, lock
from driftctl.store import open_store
kind, target, name, mode = sys.argv[1:5]
where = target if kind == "dir" else open_store(target)
with lock(where, name, holder_info("apply inventory/prod"), wait=None) as held:
    if mode == "fork":
        orphan = os.fork()  # inherits the lock (file descriptor / PostgreSQL session) and outlives us
        if orphan == 0:
            time.sleep(600)
            os._exit(0)
        print(json.dumps({"holder": held.holder, "orphan": orphan}), flush=True)
        time.sleep(600)
    print(json.dumps({"holder": held.holder}), flush=True)
    if mode == "hold":
        time.sleep(600)
    elif mode == "stdin":
        sys.stdin.readline()
print(json.dumps({"released": time.time()}), flush=True)
"""


@dataclass
class Target:
    kind: str  # dir | sqlite | postgresql
    arg: str  # what the holder process is given
    obj: Store | Path  # what this process locks


@pytest.fixture(params=["dir", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    if request.param == "dir":
        yield Target("dir", str(tmp_path / "state"), tmp_path / "state")
        return
    if request.param == "sqlite":
        url = str(tmp_path / "state" / "driftctl.sqlite")
    else:
        url = request.getfixturevalue("pg_url")
    store = open_store(url)
    try:
        yield Target(request.param, url, store)
    finally:
        store.close()


class Holder:
    def __init__(self, target: Target, mode: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, target.kind, target.arg, NAME, mode],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, f"holder exited without locking (rc {self.proc.wait()})"
        first: dict[str, Any] = json.loads(line)
        self.holder: dict[str, Any] = first["holder"]
        self.orphan: int | None = first.get("orphan")

    def release(self) -> float:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        released = json.loads(self.proc.stdout.readline())["released"]
        assert self.proc.wait(30) == 0
        return float(released)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        if self.orphan:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.orphan, signal.SIGKILL)


@pytest.fixture
def holders() -> Iterator[list[Holder]]:
    started: list[Holder] = []
    yield started
    for h in started:
        h.cleanup()


def test_second_holder_is_refused_naming_the_first(target: Target, holders: list[Holder]) -> None:
    first = Holder(target, "stdin")
    holders.append(first)
    with pytest.raises(LockedError) as caught, lock(target.obj, NAME, holder_info("drift inventory/prod")):
        pytest.fail("acquired a lock another process holds")
    message = str(caught.value)
    assert f"pid {first.proc.pid} on {socket.gethostname()}" in message
    assert "apply inventory/prod" in message
    assert caught.value.exit_code == ExitCode.LOCKED == 75
    first.release()
    with lock(target.obj, NAME, holder_info("drift inventory/prod")) as held:
        assert held.recovered is None  # released cleanly: nothing stale
        assert held.holder["pid"] == os.getpid()


def test_waits_for_the_holder_when_asked(target: Target, holders: list[Holder]) -> None:
    first = Holder(target, "stdin")
    holders.append(first)
    # Release from another process after this one has started waiting: the holder reads stdin.
    releaser = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; time.sleep(1); sys.stdout.write('\\n'); sys.stdout.flush()"],
        stdout=first.proc.stdin,
    )
    with lock(target.obj, NAME, holder_info("drift inventory/prod"), wait=120) as held:
        acquired = time.time()
        assert held.recovered is None
    releaser.wait(30)
    assert first.proc.stdout is not None
    released = json.loads(first.proc.stdout.readline())["released"]
    assert released <= acquired  # we got it only after the first holder let go
    assert first.proc.wait(30) == 0


def test_gives_up_after_the_wait(target: Target, holders: list[Holder]) -> None:
    holders.append(Holder(target, "hold"))
    with pytest.raises(LockedError), lock(target.obj, NAME, holder_info("drift inventory/prod"), wait=0.5):
        pytest.fail("acquired a lock another process holds")


def test_stale_lock_of_a_killed_holder_is_recovered(
    target: Target, holders: list[Holder], caplog: pytest.LogCaptureFixture
) -> None:
    first = Holder(target, "hold")
    holders.append(first)
    first.kill9()
    caplog.set_level(logging.WARNING, logger="driftctl.store.lock")
    with lock(target.obj, NAME, holder_info("drift inventory/prod"), wait=None) as held:
        assert held.recovered is not None
        assert held.recovered["pid"] == first.proc.pid
        assert held.recovered_from == describe(first.holder)
    assert f"pid {first.proc.pid}" in caplog.text and "stale" in caplog.text
    with lock(target.obj, NAME, holder_info("drift inventory/prod")) as again:
        assert again.recovered is None  # that release was clean


def test_lock_kept_by_an_orphan_of_a_dead_holder_is_broken(target: Target, holders: list[Holder]) -> None:
    # The holder forked a process that inherited the lock, then was killed: the lock is still held
    # (by the orphan), but the holder named in it is dead on this machine.
    first = Holder(target, "fork")
    holders.append(first)
    assert first.orphan
    first.kill9()
    os.kill(first.orphan, 0)  # the orphan is alive and keeps the lock
    with lock(target.obj, NAME, holder_info("drift inventory/prod"), wait=None) as held:
        assert held.recovered is not None and held.recovered["pid"] == first.proc.pid
        # Meanwhile, nobody else gets in.
        with pytest.raises(LockedError, match=f"pid {os.getpid()}"), lock(target.obj, NAME, holder_info("x")):
            pytest.fail("two holders at once")


def test_a_live_holder_on_another_machine_is_never_broken(tmp_path: Path) -> None:
    # Same pid as a dead local process would have, but another host: we cannot know, so we wait.
    lockdir = tmp_path / "state"
    with (
        lock(lockdir, NAME, holder_info("apply", hostname="elsewhere", pid=999_999_999)),
        pytest.raises(LockedError, match="on elsewhere"),
        lock(lockdir, NAME, holder_info("drift"), wait=0.3),
    ):
        pytest.fail("broke a lock held for another machine")


def test_names_are_independent_and_release_clears_the_holder(tmp_path: Path) -> None:
    lockdir = tmp_path / "state"
    with (
        lock(lockdir, "inventory:a", holder_info("apply a")) as a,
        lock(lockdir, "inventory:b", holder_info("apply b")) as b,
    ):
        assert a.where != b.where
        assert json.loads(Path(a.where).read_text())["command"] == "apply a"
    assert Path(a.where).read_text() == ""
    assert oct(Path(a.where).stat().st_mode & 0o777) == "0o600"


def test_holders_are_described_for_people() -> None:
    holder = {"pid": 42, "hostname": "ctl1", "user": "alice", "command": "drift inventory/prod",
              "started": 1764313200.5}  # epoch seconds are shown as ISO 8601
    assert describe(holder) == "pid 42 on ctl1 (alice: drift inventory/prod) since 2025-11-28T07:00:00Z"
    assert describe(None) == "an unknown holder"
