"""The transport interface: run an argv on a host, with bytes on stdin, and get a CommandResult.

One implementation per file (ssh.py, local.py, container.py), chosen by name with get_transport().
Implementations translate their library's errors into driftctl.errors at this boundary
(ConnectError, HostKeyError, AuthError, CommandTimeout), always naming the host.
"""

from __future__ import annotations

import shlex
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

from driftctl.model import Host


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
class TransportOptions:
    """Controller-side settings that every transport may use."""

    known_hosts: list[str] = field(default_factory=list)  # extra known_hosts files to trust
    own_known_hosts: str | None = None  # driftctl's own file: where accepted new keys are recorded
    accept_new_host_keys: bool = False  # trust on first use, only when asked
    ssh_config: str | None = None  # default ~/.ssh/config
    use_agent: bool = True
    connect_retries: int = 2  # retries of refused/reset connects, while the connect timeout lasts
    # SSH algorithms allowed beyond the safe defaults, e.g. "ciphers=+aes128-cbc" (transport/sshpolicy.py)
    ssh_algorithms: str | None = None


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

    @abstractmethod
    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes = b"",
        timeout: float | None = None,
        become: bool | None = None,
    ) -> CommandResult:
        """Run ``argv`` (quoted element by element, never through a shell of ours).

        ``become`` (default: the host's setting) wraps it in sudo; a become password goes over stdin,
        never argv. Raises CommandTimeout when ``timeout`` (default: the host's command_timeout) passes.
        """

    @abstractmethod
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

    @abstractmethod
    def close(self) -> None:
        """Close the connection (idempotent)."""

    def __enter__(self) -> Transport:
        self.connect()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def get_transport(host: Host, options: TransportOptions | None = None) -> Transport:
    """The transport named by ``host.connection.transport``."""
    kind = host.connection.transport
    if kind == "ssh":
        from driftctl.transport.ssh import SSHTransport

        return SSHTransport(host, options)
    if kind == "local":
        from driftctl.transport.local import LocalTransport

        return LocalTransport(host, options)
    if kind == "podman":
        from driftctl.transport.container import PodmanTransport

        return PodmanTransport(host, options)
    from driftctl.errors import InventoryError

    raise InventoryError(f"host {host.name}: unknown transport {kind!r} (use ssh, local or podman)", host.source)
