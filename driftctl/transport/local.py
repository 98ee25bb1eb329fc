"""Local transport: run commands on the controller itself (``driftctl_transport: local``).

argv is executed directly (no shell). Each command gets its own process group, so a timeout kills the
command and everything it started. ``become`` goes through sudo exactly as over SSH (see become.py).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Sequence

from driftctl.errors import CommandTimeout, ConnectError
from driftctl.model import Host
from driftctl.transport.base import CommandResult, Transport, TransportOptions
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

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes = b"",
        timeout: float | None = None,
        become: bool | None = None,
    ) -> CommandResult:
        conn = self.host.connection
        timeout = conn.command_timeout if timeout is None else timeout
        become = conn.become if become is None else become
        if not become or not self._become.needed(conn.become_user):
            return self._raw(list(argv), stdin, timeout)
        wrapped = self._become.wrap(argv, stdin, conn.become_user)
        result = self._raw(wrapped.argv, wrapped.stdin, timeout)
        result.argv = list(argv)
        return self._become.finish(wrapped, result, conn.become_user)

    def _raw(self, argv: list[str], stdin: bytes, timeout: float) -> CommandResult:
        return run_process(self.host.name, [str(a) for a in argv], stdin, timeout)
