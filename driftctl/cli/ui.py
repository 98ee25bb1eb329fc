"""Terminal output: one rich Console for stdout, one for stderr. No colour without a TTY."""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.markup import escape


def _console(stream: object) -> Console:
    no_color = bool(os.environ.get("NO_COLOR")) or not getattr(stream, "isatty", lambda: False)()
    return Console(file=stream, no_color=no_color, highlight=False, soft_wrap=False)  # type: ignore[arg-type]


out = _console(sys.stdout)
err = _console(sys.stderr)


def error(message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {escape(message)}", markup=True, highlight=False)


def interactive() -> bool:
    """Progress bars and colour only for a person at a terminal (never under cron)."""
    return sys.stderr.isatty() and not os.environ.get("CI")
