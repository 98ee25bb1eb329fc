"""Local transport: run commands on the controller itself (``driftctl_transport: local``).

argv is executed directly (no shell). Each command gets its own process group, so a timeout kills the
command and everything it started. ``become`` goes through sudo exactly as over SSH (see become.py).
"""

from __future__ import annotations

import contextlib
import getpass
import itertools
import os
import secrets
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from driftctl.errors import CommandAborted, CommandTimeout, ConnectError
from driftctl.model import Host
from driftctl.transport.base import CommandResult, Feed, Transport, TransportOptions
from driftctl.transport.become import Become

MARK_VAR = "DRIFTCTL_RUN"
# Kills every process whose environment holds DRIFTCTL_RUN=$1: the command's whole process tree, also
# children that left its process group. Plain sh, tr and grep, so it works on minimal hosts too.
KILL_SCRIPT = (
    'for p in /proc/[0-9]*; do tr "\\0" "\\n" < "$p/environ" 2>/dev/null | grep -qx "DRIFTCTL_RUN=$1" '
    '&& kill -9 "${p#/proc/}" 2>/dev/null; done; true'
)


def new_mark() -> str:
    """A token that tags one command's processes (see KILL_SCRIPT)."""
    return secrets.token_hex(8)


def marked(argv: Sequence[str], token: str) -> list[str]:
    """``argv`` run through ``env`` with the mark in its environment (inherited by all its children)."""
    return ["env", f"{MARK_VAR}={token}", *[str(a) for a in argv]]


def kill_marked(token: str) -> list[str]:
    """The argv that kills every process carrying ``token``."""
    return ["sh", "-c", KILL_SCRIPT, "sh", token]


def run_process(host: str, argv: list[str], stdin: bytes, timeout: float) -> CommandResult:
    """Run ``argv`` in a new process group; feed stdin and read both outputs concurrently.

    On timeout the whole group gets SIGKILL and CommandTimeout (naming ``host``) is raised.
    """
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except FileNotFoundError:
        return CommandResult(argv, 127, b"", f"command not found: {argv[0]}\n".encode(), 0.0)
    except OSError as e:
        raise ConnectError(host, f"cannot run {argv[0]}: {e.strerror or e}") from e
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):  # a child that left the group may hold the pipes
            proc.communicate(timeout=5)
        shown = " ".join(argv)[:200]
        raise CommandTimeout(host, f"command timed out after {timeout:g}s and was killed: {shown}") from None
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    return CommandResult(argv, proc.returncode, out, err, time.monotonic() - started)


def stream_process(host: str, argv: list[str], feed: Feed, on_output: Callable[[bytes], None],
                   timeout: float, on_kill: Callable[[], None] | None = None) -> CommandResult:
    """Like run_process, with stdin written from ``feed`` and stdout handed over as it arrives.

    stdin stays open until the process exits. A timeout, or an abort that outlives ``feed.grace``,
    kills the process group (and calls ``on_kill`` for what lives outside it, e.g. in a container).
    """
    started = time.monotonic()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True, bufsize=0)
    except FileNotFoundError:
        feed.done.set()
        return CommandResult(argv, 127, b"", f"command not found: {argv[0]}\n".encode(), 0.0)
    except OSError as e:
        feed.done.set()
        raise ConnectError(host, f"cannot run {argv[0]}: {e.strerror or e}") from e
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    err: list[bytes] = []
    stdin, stdout, stderr = proc.stdin, proc.stdout, proc.stderr

    def write() -> None:
        with contextlib.suppress(OSError, ValueError):
            for chunk in feed.chunks:
                stdin.write(chunk)

    def read_err() -> None:
        while data := stderr.read(65536):
            err.append(data)

    threads = [threading.Thread(target=write, daemon=True, name=f"stdin-{host}"),
               threading.Thread(target=read_err, daemon=True, name=f"stderr-{host}")]
    for t in threads:
        t.start()
    deadline = started + timeout
    aborted_at: float | None = None

    def kill() -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        if on_kill is not None:
            on_kill()

    try:
        fd = stdout.fileno()
        while True:
            now = time.monotonic()
            if feed.abort is not None and feed.abort.is_set():
                aborted_at = aborted_at or now
                if feed.must_kill(now - aborted_at):
                    kill()
                    raise CommandAborted(host, f"aborted: {argv[0]} was stopped")
            if now > deadline:
                kill()
                raise CommandTimeout(host, f"command timed out after {timeout:g}s and was killed: "
                                           f"{' '.join(argv)[:200]}")
            if select.select([fd], [], [], 0.2)[0]:
                data = os.read(fd, 65536)
                if not data:
                    break
                on_output(data)
                if feed.idle_timeout:
                    deadline = time.monotonic() + timeout
        rc = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        kill()
        raise CommandTimeout(host, f"command timed out after {timeout:g}s and was killed: {' '.join(argv)[:200]}") \
            from None
    except BaseException:
        kill()
        proc.wait()
        raise
    finally:
        feed.done.set()
        with contextlib.suppress(OSError):
            stdin.close()
        for t in threads:
            t.join(timeout=2)
    return CommandResult(argv, rc, b"", b"".join(err), time.monotonic() - started)


class LocalTransport(Transport):
    """Commands on the controller, as the user running driftctl (``become`` wraps them in sudo)."""

    name = "local"

    def __init__(self, host: Host, options: TransportOptions | None = None) -> None:
        super().__init__(host, options)
        password = host.connection.become_password
        self._become = Become(host.name, getpass.getuser(), str(password) if password else None, self._raw)

    def connect(self) -> None:
        """Nothing to open."""

    def close(self) -> None:
        """Nothing to close."""

    def _run(self, argv: list[str], stdin: bytes, timeout: float, become_user: str | None) -> CommandResult:
        if become_user is None or not self._become.needed(become_user):
            return self._raw(argv, stdin, timeout)
        wrapped = self._become.wrap(argv, stdin, become_user)
        return self._become.finish(wrapped, self._raw(wrapped.argv, wrapped.stdin, timeout), become_user)

    def _raw(self, argv: list[str], stdin: bytes, timeout: float) -> CommandResult:
        return run_process(self.host.name, [str(a) for a in argv], stdin, timeout)

    def _stream(self, argv: list[str], feed: Feed, on_output: Callable[[bytes], None], timeout: float,
                become_user: str | None) -> CommandResult:
        token = new_mark()  # what a kill must reach: children that left the process group too

        def reap() -> None:
            run_process(self.host.name, kill_marked(token), b"", 15.0)

        if become_user is None or not self._become.needed(become_user):
            return stream_process(self.host.name, marked(argv, token), feed, on_output, timeout, reap)
        wrapped = self._become.wrap(marked(argv, token), b"", become_user)
        feed = replace(feed, chunks=itertools.chain([wrapped.stdin], feed.chunks))
        result = stream_process(self.host.name, wrapped.argv, feed, on_output, timeout, reap)
        return self._become.finish(wrapped, result, become_user)
