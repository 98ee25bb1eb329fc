"""Terminal output: one rich Console for stdout, one for stderr. No colour without a TTY."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator

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


PIPE_WIDTH = 400


def table_out() -> Console:
    """Where tables go: ``out`` at a terminal; piped or under cron, where there is no width to respect,
    a console wide enough that each row stays on one line, for grep."""
    if out.is_terminal:
        return out
    return Console(file=out.file, width=PIPE_WIDTH, no_color=out.no_color, highlight=False)


def error(message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {escape(message)}", markup=True, highlight=False)


class _WarningsToUI(logging.Handler):
    """Shows what the core warns about (a host key trusted on first use, a stale lock taken over) to the
    person running driftctl, as every other warning: ``warning: ...`` on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        warn(record.getMessage())


@contextlib.contextmanager
def core_warnings() -> Iterator[None]:
    """While a command runs, every warning the core logs (the ``driftctl.*`` loggers: transports, the
    run lock, ...) reaches stderr through ``warn()``. The core never prints: it logs, and this shows it.

    Entered once for every command (driftctl/cli/__init__.py), so no warning depends on a command
    remembering to ask for it.
    """
    logger = logging.getLogger("driftctl")
    handler = _WarningsToUI(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def interactive() -> bool:
    """The live progress view only for a person at a terminal that can move its cursor: never under cron
    or CI, nor at a dumb terminal (Emacs' shell, TERM=dumb), where the view could not be redrawn and the
    one plain line per finished host is shown instead."""
    return sys.stderr.isatty() and not os.environ.get("CI") and os.environ.get("TERM") != "dumb"


def print_json(value: object) -> None:
    """A command's ``--json`` output: the one JSON writer (driftctl/report/jsondoc.py), as UTF-8 bytes
    whatever the locale's encoding (JSON is UTF-8); indented at a terminal, one line when piped (for
    a program, or ``| jq``)."""
    from driftctl.report.jsondoc import dumps

    text = dumps(value, pretty=sys.stdout.isatty())
    sys.stdout.flush()
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:  # a text-only stream (a test's StringIO)
        sys.stdout.write(text)
    else:
        buffer.write(text.encode("utf-8"))
    sys.stdout.flush()
