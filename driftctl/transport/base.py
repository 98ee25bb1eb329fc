"""The transport interface: run an argv on a host, with bytes on stdin, and get a CommandResult.

One implementation per file (ssh.py, local.py, container.py), chosen by name: ``TRANSPORTS`` maps a
``driftctl_transport`` name to ``"module:Class"``, imported only when a host uses it (so this module
imports no implementation, and an implementation's library is loaded only when needed).

``Transport.run()`` and ``Transport.stream()`` are the same for every transport up to the point where
bytes move: they resolve the timeout (default: the host's command_timeout) and become (default: the
host's become/become_user) once, then call the implementation's ``_run()`` / ``_stream()`` with the
user to become, or None. Implementations translate their library's errors into driftctl.errors at
this boundary (ConnectError, HostKeyError, AuthError, CommandTimeout), always naming the host.
"""

from __future__ import annotations

import importlib
import shlex
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

from driftctl.errors import InventoryError
from driftctl.model import Host
from driftctl.transport.options import SSHOptions, TransportOptions

__all__ = ["TRANSPORTS", "CommandResult", "Feed", "SSHOptions", "Transport", "TransportOptions",
           "get_transport", "quote", "transport_class"]


@dataclass
class CommandResult:
    argv: list[str]
    rc: int
    stdout: bytes = b""
    stderr: bytes = b""
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def stdout_text(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    @property
    def stderr_text(self) -> str:
        return self.stderr.decode("utf-8", "replace")


@dataclass
class Feed:
    """stdin of a streaming command: ``chunks`` are written in order as the command reads them.

    stdin stays open after the last chunk, until the command exits (``done`` is set then): for the
    agent, end of input means "the controller is gone". A ``chunks`` generator may itself wait for
    ``done`` or ``abort`` to say a last word. Once ``abort`` is set, the command has ``grace`` seconds
    to end by itself before the transport kills it (and everything it started) and raises
    CommandAborted.
    """

    chunks: Iterable[bytes]
    done: threading.Event = field(default_factory=threading.Event)
    abort: threading.Event | None = None
    grace: float = 10.0
    kill: threading.Event | None = None  # set: no more grace, kill now (a second interrupt)
    # the timeout counts from the command's last output, not its start (a long run that keeps reporting)
    idle_timeout: bool = False

    def must_kill(self, aborted_for: float) -> bool:
        """Whether an aborted command has had its grace (``aborted_for`` seconds since the abort)."""
        return aborted_for > self.grace or (self.kill is not None and self.kill.is_set())


def quote(argv: Sequence[str]) -> str:
    """Join an argv into one shell-safe command line: every element quoted."""
    return " ".join(shlex.quote(str(a)) for a in argv)


class Transport(ABC):
    """A connection to one host, reused for the whole run. Use as a context manager."""

    name: str = ""

    def __init__(self, host: Host, options: TransportOptions | None = None) -> None:
        self.host = host
        self.options = options or TransportOptions()

    @abstractmethod
    def connect(self) -> None:
        """Open the connection (idempotent). Raises ConnectError/HostKeyError/AuthError."""

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes = b"",
        timeout: float | None = None,
        become: bool | None = None,
    ) -> CommandResult:
        """Run ``argv`` (quoted element by element, never through a shell of ours).

        ``become`` (default: the host's setting) runs it as the host's become_user; a become password
        goes over stdin, never argv. Raises CommandTimeout when ``timeout`` (default: the host's
        command_timeout) passes. The result's argv is ``argv`` as given, whatever was wrapped around it.
        """
        limit, user = self._resolve(timeout, become)
        result = self._run([str(a) for a in argv], stdin, limit, user)
        result.argv = list(argv)
        return result

    def stream(
        self,
        argv: Sequence[str],
        *,
        feed: Feed,
        on_output: Callable[[bytes], None],
        timeout: float | None = None,
        become: bool | None = None,
    ) -> CommandResult:
        """Run ``argv`` with stdin from ``feed``, passing stdout to ``on_output`` as it arrives.

        The result carries stderr and the exit status (its stdout is empty). Raises ConnectError when
        the connection is lost mid-command (what ``on_output`` got until then stands), CommandTimeout,
        and CommandAborted when ``feed.abort`` was set and the command outlived its grace.
        """
        limit, user = self._resolve(timeout, become)
        result = self._stream([str(a) for a in argv], feed, on_output, limit, user)
        result.argv = list(argv)
        return result

    def _resolve(self, timeout: float | None, become: bool | None) -> tuple[float, str | None]:
        """The command's time limit, and the user to become (None: run as the login user)."""
        conn = self.host.connection
        limit = conn.command_timeout if timeout is None else timeout
        become = conn.become if become is None else become
        return limit, (conn.become_user if become else None)

    @abstractmethod
    def _run(self, argv: list[str], stdin: bytes, timeout: float, become_user: str | None) -> CommandResult:
        """run() after the defaults are resolved: ``become_user`` None means as the login user."""

    @abstractmethod
    def _stream(
        self,
        argv: list[str],
        feed: Feed,
        on_output: Callable[[bytes], None],
        timeout: float,
        become_user: str | None,
    ) -> CommandResult:
        """stream() after the defaults are resolved: ``become_user`` None means as the login user."""

    @abstractmethod
    def close(self) -> None:
        """Close the connection (idempotent)."""

    def cancel(self) -> None:
        """Give up a connect() in progress in another thread (transports that connect at once need not)."""
        return None

    @property
    def link_timeout(self) -> float | None:
        """Seconds of silence after which this transport's link counts as lost mid-command, or None
        when its link cannot go silent (a local process, a local container). An apply's agent is then
        asked to stop by itself after as long without a word from the controller (D47)."""
        return None

    def __enter__(self) -> Transport:
        self.connect()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# driftctl_transport name -> "module:Class"; the inventory accepts these names (and Ansible's aliases)
TRANSPORTS: dict[str, str] = {
    "ssh": "driftctl.transport.ssh:SSHTransport",
    "local": "driftctl.transport.local:LocalTransport",
    "podman": "driftctl.transport.container:PodmanTransport",
}


def transport_class(name: str) -> type[Transport] | None:
    """The class registered under ``name`` (its module imported now), or None for an unknown name."""
    target = TRANSPORTS.get(name)
    if target is None:
        return None
    module, _, cls = target.partition(":")
    found: type[Transport] = getattr(importlib.import_module(module), cls)
    return found


def get_transport(host: Host, options: TransportOptions | None = None) -> Transport:
    """The transport named by ``host.connection.transport``."""
    kind = host.connection.transport
    cls = transport_class(kind)
    if cls is None:
        names = list(TRANSPORTS)
        known = ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]
        raise InventoryError(f"host {host.name}: unknown transport {kind!r} (use {known})", host.source)
    return cls(host, options)
