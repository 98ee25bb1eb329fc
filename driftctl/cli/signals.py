"""SIGINT and SIGTERM during a run: stop starting things, let in-flight work end, report what happened.

The first signal sets the engine's ``abort``: no new host or resource starts, running agents are told to
stop at their next resource boundary (their running commands are terminated) and get a grace period; the
run then reports and stores what it did, releases its locks and exits with the aborted bit (16). A second
signal sets ``kill``: what is still running on a host is killed at once, and the run still reports and
releases its locks.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

from driftctl.cli import ui

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def interruptible(engine: Any) -> Iterator[None]:
    """Route SIGINT/SIGTERM to ``engine.abort`` / ``engine.kill`` while the block runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if engine.abort.is_set():
            engine.kill.set()
            ui.warn(f"{name} again: killing what still runs on the hosts")
            return
        engine.abort.set()
        ui.warn(f"{name}: stopping: nothing new starts, running resources end or are stopped "
                f"({name} again to kill them now)")

    previous = {s: signal.signal(s, handle) for s in SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
