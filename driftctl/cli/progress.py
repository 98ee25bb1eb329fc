"""The live view of a run for a person at a terminal; one plain line per finished host elsewhere.

The engine's events (``driftctl.engine.Event``) come from the hosts' threads. ``Progress.__call__`` only
updates a ``Board`` under a lock: no drawing, no terminal output at a TTY. rich's Live thread draws the
board a few times a second (``view``), sized to the terminal: the overall bar with elapsed time and an
estimate, the running hosts (phase, elapsed, resources done of total during apply), the latest finished
hosts with their result, and counts for the rest, never more lines than the terminal has. The view is
transient: when it closes, the commands print their usual host sections and summary, unchanged.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from driftctl.engine import Event
from driftctl.model import HostResult

REFRESH_PER_SECOND = 4
MAX_WIDTH = 100  # a wider terminal still gets lines this long: a host's time stays near its name
BAR = "━"


@dataclass
class HostLine:
    """What the view knows of one host."""

    name: str
    phase: str = "waiting"
    started: float | None = None  # clock() at its ``start`` event
    ended: float | None = None  # clock() at its ``done`` event
    done: int = 0  # during apply: resources the agent finished, of ``total`` to change
    total: int = 0
    last: str = ""  # the resource the agent finished last
    current: str = ""  # the resource the agent works on now
    applied: bool = False  # went through the apply phase: its changes were made, not planned
    result: HostResult | None = None
    outcome: Outcome | None = None  # its result in words, worked out once when first drawn


@dataclass(frozen=True)
class Outcome:
    """A finished host's result in words (``changed 12, failed 1``, ``in sync``, ``unreachable: ...``),
    its style, and its class in the counts line."""

    text: str
    style: str
    kind: str  # one of KINDS


KINDS = ("changed", "to change", "drifted", "in sync", "failed", "unreachable", "not started")
KIND_STYLE = {"changed": "yellow", "to change": "yellow", "drifted": "yellow", "in sync": "green",
              "failed": "bold red", "unreachable": "bold red", "not started": "magenta"}
MARK = {"changed": "✓", "to change": "✓", "drifted": "!", "in sync": "✓", "failed": "✗", "unreachable": "✗",
        "not started": "-"}


def outcome(h: HostResult, applied: bool) -> Outcome:
    """``h`` in words. ``applied``: its changes were made (apply), else they are to make (plan, check)."""
    from driftctl.cli.render import not_started, summary_counts  # render.py imports this module

    if not_started(h):
        return Outcome(f"not started: {(h.error or '').removeprefix('not started: ')}", "magenta", "not started")
    if h.status == "unreachable":
        return Outcome(f"unreachable: {h.error or ''}", "bold red", "unreachable")
    if h.status == "failed" and not h.resources:
        return Outcome(f"failed: {h.error or ''}", "bold red", "failed")
    c = summary_counts(h)
    unmanaged = sum(not u.ignored for u in h.unmanaged)
    parts = []
    if c["drifted"]:
        parts.append(f"drifted {c['drifted']}")
    if unmanaged:
        parts.append(f"{unmanaged} unmanaged")
    if c["changed"]:
        parts.append(f"changed {c['changed']}" if applied else f"{c['changed']} to change")
    if c["failed"]:
        parts.append(f"failed {c['failed']}")
    if c["skipped"]:
        parts.append(f"skipped {c['skipped']}")
    if h.status == "failed" and not c["failed"]:
        parts.append(f"failed: {h.error or ''}")
    if h.interrupted:
        parts.append(h.interrupted)
    if h.status == "failed" or c["failed"] or h.interrupted:
        kind = "failed"
    elif c["drifted"] or unmanaged:
        kind = "drifted"
    elif c["changed"]:
        kind = "changed" if applied else "to change"
    else:
        kind = "in sync"
    return Outcome(", ".join(parts) or "in sync", KIND_STYLE[kind], kind)


@dataclass
class Board:
    """The state of a run as its events tell it; updating it is all an event costs."""

    hosts: dict[str, HostLine]
    started: float
    batch: str = ""  # "k/n" while a --serial run is in batch k
    finished: list[str] = field(default_factory=list)  # in the order they finished
    running: int = 0
    peak: int = 0  # the most hosts running at once: how many run side by side, for the estimate

    @classmethod
    def of(cls, hosts: list[str], now: float) -> Board:
        return cls({h: HostLine(h) for h in hosts}, now)

    def line(self, host: str) -> HostLine:
        line = self.hosts.get(host)
        if line is None:  # a host the command did not name: shown all the same
            line = self.hosts[host] = HostLine(host)
        return line

    def update(self, event: Event, now: float) -> None:
        if event.kind == "batch":
            self.batch = event.phase
            return
        line = self.line(event.host)
        if line.result is not None:
            return
        if event.kind in ("start", "phase", "resource") and line.started is None:
            line.started = now
            self.running += 1
            self.peak = max(self.peak, self.running)
        if event.kind == "start":
            line.phase = "start"
        elif event.kind == "phase":
            line.phase = event.phase
            line.applied = line.applied or event.phase == "apply"
        elif event.kind == "resource":
            line.done, line.total = event.done, event.total
            line.last = event.phase or line.last
            line.current = event.current
        elif event.kind == "done" and event.result is not None:
            line.result, line.ended, line.phase = event.result, now, "done"
            if line.started is not None:
                self.running -= 1
            self.finished.append(line.name)

    def outcome(self, line: HostLine) -> Outcome:
        assert line.result is not None
        if line.outcome is None:
            line.outcome = outcome(line.result, line.applied)
        return line.outcome

    def estimate(self, now: float) -> float | None:
        """Seconds left, from the finished hosts' durations: the running hosts' rest of the mean, then the
        waiting ones as many at a time as have run at once. None before any host finished, or when every
        running host has already taken longer than the mean (nothing honest to say)."""
        durations = [self.hosts[h].result.duration for h in self.finished  # type: ignore[union-attr]
                     if self.hosts[h].started is not None]
        if not durations or len(self.finished) == len(self.hosts):
            return None
        mean = sum(durations) / len(durations)
        running = [line for line in self.hosts.values() if line.result is None and line.started is not None]
        waiting = sum(line.result is None and line.started is None for line in self.hosts.values())
        rest = max((mean - (now - line.started) for line in running if line.started is not None), default=0.0)
        left = max(rest, 0.0) + math.ceil(waiting / max(self.peak, 1)) * mean
        return left if left >= 0.5 else None


def clock_text(seconds: float) -> str:
    """``7s``, ``3m05s``, ``1h02m``."""
    s = int(max(seconds, 0))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def bar(done: int, total: int, width: int) -> Text:
    filled = round(width * done / total) if total else 0
    return Text(BAR * filled, style="green").append(BAR * (width - filled), style="grey37")


def row(left: Text, right: str, width: int, style: str = "dim") -> Text:
    """One terminal line: ``left`` cut to fit, ``right`` (a time) aligned to the right edge."""
    room = max(width - len(right) - 1, 1)
    left.truncate(room, overflow="ellipsis", pad=True)
    left.no_wrap = True
    return left.append(" ").append(right, style=style)


def view(board: Board, now: float, width: int, height: int) -> Group:
    """The board as at most ``height - 1`` lines of at most ``width`` cells (one line stays free, so that a
    view as tall as the terminal never scrolls it and leaves copies behind)."""
    width = min(width, MAX_WIDTH)
    hosts = board.hosts.values()
    n, n_done = len(board.hosts), len(board.finished)
    running = sorted((h for h in hosts if h.result is None and h.started is not None),
                     key=lambda h: (h.started or 0.0, h.name))  # the longest running first
    waiting = sum(h.result is None and h.started is None for h in hosts)
    name_w = min(max((len(h) for h in board.hosts), default=4), 28)

    head = Text.assemble(bar(n_done, n, min(30, max(width // 5, 10))), " ",
                         (f"{n_done}/{n} hosts done", "bold"), f"  {clock_text(now - board.started)} elapsed")
    left = board.estimate(now)
    if left is not None:
        head.append(f", ~{clock_text(left)} left")
    if board.batch:
        head.append(f"  batch {board.batch}", style="cyan")
    fixed = [row(head, "", width)]
    tail: list[Text] = []
    if n_done:
        counts: dict[str, int] = {}
        for name in board.finished:
            kind = board.outcome(board.hosts[name]).kind
            counts[kind] = counts.get(kind, 0) + 1
        summary = Text("finished: ", style="bold")
        for i, kind in enumerate(k for k in KINDS if k in counts):
            summary.append(", " if i else "").append(f"{counts[kind]} {kind}", style=KIND_STYLE[kind])
        fixed.append(row(summary, "", width))
    if waiting:
        tail.append(row(Text(f"waiting: {waiting} host(s)" + (" (later batches)" if board.batch else ""),
                             style="dim"), "", width))

    room = max(height - 1 - len(fixed) - len(tail), 0)
    # finished hosts get up to a third of the room when it is short, and whatever the running leave
    show_done = min(n_done, room // 3) if len(running) + n_done > room else n_done
    show_running = len(running) if len(running) <= room - show_done else max(room - show_done - 1, 0)
    more_running = len(running) - show_running
    show_done = min(n_done, room - show_running - (1 if more_running else 0))
    if show_done < n_done:
        show_done = max(show_done - 1, 0)  # a line saying how many earlier ones are not shown
    lines = fixed[:1]
    for h in running[:show_running]:
        lines.append(_running_line(h, now, name_w, width))
    if more_running:
        lines.append(row(Text(f"  … {more_running} more running", style="cyan"), "", width))
    lines += fixed[1:]
    for name in reversed(board.finished[n_done - show_done:]):  # the latest first
        lines.append(_finished_line(board, board.hosts[name], name_w, width))
    if show_done < n_done and room > show_running + (1 if more_running else 0):
        lines.append(row(Text(f"  … {n_done - show_done} earlier", style="dim"), "", width))
    lines += tail
    return Group(*lines[:max(height - 1, 1)])


def _name(name: str, width: int) -> str:
    return name.ljust(width) if len(name) <= width else name[:width - 1] + "…"


def _running_line(h: HostLine, now: float, name_w: int, width: int) -> Text:
    text = Text("  ").append(_name(h.name, name_w), style="bold").append("  ")
    text.append(h.phase.ljust(7), style="cyan")
    if h.phase == "apply" and h.total:
        text.append(" ").append(bar(h.done, h.total, 10)).append(f" {h.done}/{h.total} resources")
        if h.current:
            text.append(f"  now: {h.current}")
        elif h.last:
            text.append(f"  {h.last}", style="dim")
    return row(text, clock_text(now - h.started if h.started is not None else 0.0), width)


def _finished_line(board: Board, h: HostLine, name_w: int, width: int) -> Text:
    o = board.outcome(h)
    text = Text(MARK[o.kind] + " ", style=o.style).append(_name(h.name, name_w), style="bold").append("  ")
    text.append(o.text, style=o.style)
    assert h.result is not None
    return row(text, f"{h.result.duration:.1f}s", width)


class Progress:
    """Live per-host progress for a person at a terminal (``interactive``); one line per finished host, and
    per ``--serial`` batch, otherwise. Pass it as the engine's ``on_event``."""

    def __init__(self, console: Console, hosts: list[str], interactive: bool,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console
        self.interactive = interactive
        self.clock = clock
        self.board = Board.of(hosts, clock())
        self.lock = threading.Lock()
        self.live: Live | None = None

    def __enter__(self) -> Progress:
        if self.interactive:
            self.board.started = self.clock()
            # drawn by Live's own thread at a modest rate; stdout is left alone (only stderr is redirected
            # above the view), so nothing the command writes there is moved or mixed into it
            self.live = Live(console=self.console, transient=True, refresh_per_second=REFRESH_PER_SECOND,
                             redirect_stdout=False, get_renderable=self.render)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def render(self) -> Group:
        width, height = self.console.size
        with self.lock:
            return view(self.board, self.clock(), width, height)

    def __call__(self, event: Event) -> None:
        with self.lock:
            self.board.update(event, self.clock())
            if self.interactive:
                return
            if event.kind == "batch":
                self.console.print(f"batch {event.phase}: {', '.join(event.hosts)}", markup=False, highlight=False)
            elif event.kind == "done" and event.result is not None:
                r = event.result
                self.console.print(f"{r.host}: {r.status}" + (f" ({r.error})" if r.error else ""),
                                   markup=False, highlight=False)
