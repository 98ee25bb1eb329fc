"""Terminal output: one rich Console for stdout, one for stderr. No colour without a TTY."""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.markup import escape


def _console(stream: object) -> Console:
    tty = getattr(stream, "isatty", lambda: False)()
    no_color = bool(os.environ.get("NO_COLOR")) or not tty
    # Without a terminal (cron, pipes, CI logs) lines are never folded at an imagined 80 columns,
    # and tables get room enough to stay on one line per row.
    return Console(file=stream, no_color=no_color, highlight=False, soft_wrap=not tty,  # type: ignore[arg-type]
                   width=None if tty else 160)


out = _console(sys.stdout)
err = _console(sys.stderr)


def error(message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {escape(message)}", markup=True, highlight=False)


def interactive() -> bool:
    """Progress bars and colour only for a person at a terminal (never under cron)."""
    return sys.stderr.isatty() and not os.environ.get("CI")
