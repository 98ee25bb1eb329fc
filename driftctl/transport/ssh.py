"""SSH transport (paramiko), channel part: commands over the host's one connection (ssh_connect.py).

Each ``run()`` opens a channel, sends ``quote(argv)``, streams stdin while reading stdout and stderr
(so multi-megabyte payloads in both directions cannot deadlock), and cuts the command at its timeout:
SIGKILL through the channel (RFC 4254 "signal", refused by OpenSSH < 10 for root sessions), then every
remote process carrying the command's ``DRIFTCTL_RUN`` mark is killed from a second channel.
``stream()`` is the same with stdin from a Feed held open until the command exits.

A link that goes silent (a partition, a dead NIC, a firewall dropping: no FIN, no RST) is noticed
while a command runs (``Liveness``, D47): after a quarter of the host's ``link_timeout`` without output,
a keepalive that sshd must answer is sent; nothing heard for the whole ``link_timeout`` closes the
connection and raises ConnectionLost, as a reset connection does.

Connecting (jump chain, host keys, authentication, algorithm policy, the connect budget) is
``SSHConnection`` in ssh_connect.py; this module only asks it for an open connection.
"""

from __future__ import annotations

import itertools
import logging
import select
import threading
import time
from collections.abc import Callable
from dataclasses import replace

import paramiko
from paramiko.common import cMSG_CHANNEL_REQUEST

from driftctl.errors import CommandAborted, CommandTimeout, ConnectError, ConnectionLost, DriftctlError
from driftctl.model import Host
from driftctl.transport import sshpolicy
from driftctl.transport.base import CommandResult, Feed, Transport, TransportOptions, quote
from driftctl.transport.become import Become
from driftctl.transport.local import kill_marked, marked, new_mark
from driftctl.transport.ssh_connect import SSHConnection
from driftctl.transport.sshconfig import Endpoint

log = logging.getLogger(__name__)

CHUNK = 1 << 16
REAP_TIMEOUT = 15.0
EOF_GRACE = 2.0  # after the exit status, how long to wait for output a background child still holds
KEEPALIVE_REQUEST = "keepalive@openssh.com"  # OpenSSH's ServerAliveInterval request: any answer will do


class Liveness:
    """Whether the host is still there while a command runs and says nothing (D47).

    Heard from: any output of the command, or the answer to a keepalive sent with want-reply (as
    OpenSSH's ServerAliveInterval does; sshd answers it itself, whatever the command is doing). After
    ``timeout / 4`` seconds without a word one keepalive is sent (``ask`` blocks until its answer and
    raises when there will be none); the host is lost when nothing at all was heard for ``timeout``
    seconds and that keepalive has waited at least three quarters of it, so a controller that was
    stopped or starved for a while does not blame the host before asking it once.
    """

    def __init__(self, ask: Callable[[], None], timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ask = ask
        self.timeout = timeout
        self.quiet = timeout / 4
        self._clock = clock
        self.heard = clock()
        self._asked: float | None = None  # when the keepalive still waiting for its answer was sent
        self._answered: float | None = None
        self._lock = threading.Lock()

    def heard_now(self) -> None:
        self.heard = self._clock()

    def lost(self) -> bool:
        """Called about once a second by the command's loop: starts a keepalive when due."""
        now = self._clock()
        with self._lock:
            if self._answered is not None:
                self.heard = max(self.heard, self._answered)
                self._answered = None
            asked = self._asked
            if asked is None and now - self.heard >= self.quiet:
                self._asked = now
                threading.Thread(target=self._keepalive, name="ssh-keepalive", daemon=True).start()
        return asked is not None and now - self.heard >= self.timeout and now - asked >= self.timeout - self.quiet

    def _keepalive(self) -> None:
        try:
            self._ask()
        except Exception:  # no answer is coming (the connection closed): it stays unanswered
            return
        with self._lock:
            self._answered = self._clock()
            self._asked = None


class SSHTransport(Transport):
    """Run commands on one host over SSH: one connection (``self.ssh``), a channel per command."""

    name = "ssh"

    def __init__(self, host: Host, options: TransportOptions | None = None) -> None:
        super().__init__(host, options)
        # resolves the endpoint and the algorithm policy now: input errors before any host is contacted
        self.ssh = SSHConnection(host, self.options.ssh)
        self._become: Become | None = None
        self._lock = threading.Lock()

    # what the connect part found out, under the names callers have always used
    @property
    def endpoint(self) -> Endpoint:
        return self.ssh.endpoint

    @property
    def policy(self) -> sshpolicy.Policy:
        return self.ssh.policy

    @property
    def connects(self) -> int:
        return self.ssh.connects

    @property
    def accepted_host_keys(self) -> list[str]:
        return self.ssh.accepted_host_keys

    @property
    def weak_algorithms(self) -> list[str]:
        return self.ssh.weak_algorithms

    def connect(self) -> None:
        with self._lock:
            if self.ssh.active:
                return
            self.ssh.open()
            password = self.host.connection.become_password
            self._become = Become(self.host.name, self.endpoint.user, str(password) if password else None, self._raw)

    def close(self) -> None:
        with self._lock:
            self.ssh.close()

    def cancel(self) -> None:
        self.ssh.cancel()  # not under the lock: connect() holds it while it waits

    # ---- commands

    def _sudo(self, become_user: str | None) -> str | None:
        """The user to sudo to, or None when the command runs as the login user."""
        assert self._become is not None
        return become_user if become_user is not None and self._become.needed(become_user) else None

    def _run(self, argv: list[str], stdin: bytes, timeout: float, become_user: str | None) -> CommandResult:
        self.connect()
        sudo = self._sudo(become_user)
        assert self._become is not None
        # The mark lets a timeout kill the whole remote process tree: OpenSSH (before 10) refuses the
        # "signal" request for root sessions, and closing the channel alone leaves the command running.
        token = new_mark()
        wrapped = self._become.wrap(marked(argv, token), stdin, sudo) if sudo else None
        try:
            if wrapped is None or sudo is None:
                return self._raw(marked(argv, token), stdin, timeout)
            return self._become.finish(wrapped, self._raw(wrapped.argv, wrapped.stdin, timeout), sudo)
        except CommandTimeout:
            self._reap(token, sudo)
            raise CommandTimeout(
                self.host.name, f"command timed out after {timeout:g}s and was killed: {quote(argv)[:200]}"
            ) from None

    def _reap(self, token: str, sudo: str | None) -> None:
        """Kill what is left of a timed-out command (best effort: the host may be the problem)."""
        argv = kill_marked(token)
        try:
            if sudo and self._become is not None:
                w = self._become.wrap(argv, b"", sudo)
                self._raw(w.argv, w.stdin, REAP_TIMEOUT)
            else:
                self._raw(argv, b"", REAP_TIMEOUT)
        except DriftctlError as e:
            log.warning("%s: could not kill a timed-out command: %s", self.host.name, e)

    def _raw(self, argv: list[str], stdin: bytes, timeout: float) -> CommandResult:
        """Run argv as the login user: one channel, stdin streamed, both outputs read concurrently."""
        out: list[bytes] = []
        result = self._exchange(argv, Feed([stdin]), out.append, timeout, hold_open=False)
        result.stdout = b"".join(out)
        return result

    def _stream(self, argv: list[str], feed: Feed, on_output: Callable[[bytes], None], timeout: float,
                become_user: str | None) -> CommandResult:
        self.connect()
        sudo = self._sudo(become_user)
        assert self._become is not None
        token = new_mark()
        try:
            if sudo is None:
                return self._exchange(marked(argv, token), feed, on_output, timeout, hold_open=True)
            wrapped = self._become.wrap(marked(argv, token), b"", sudo)
            fed = replace(feed, chunks=itertools.chain([wrapped.stdin], feed.chunks))
            return self._become.finish(
                wrapped, self._exchange(wrapped.argv, fed, on_output, timeout, hold_open=True), sudo)
        except (CommandTimeout, CommandAborted) as e:
            self._reap(token, sudo)
            raise type(e)(self.host.name, f"{e.message}: {quote(argv)[:200]}") from None

    def _exchange(self, argv: list[str], feed: Feed, on_output: Callable[[bytes], None], timeout: float,
                  hold_open: bool) -> CommandResult:
        """One channel: stdin written from ``feed`` by a thread, stdout to ``on_output``, stderr kept.

        With ``hold_open`` stdin is not closed after the last chunk: it stays open until the command
        exits. A connection that breaks before the exit status arrived raises ConnectionLost.
        """
        client = self.ssh.client
        if client is None or not client.is_active():
            raise ConnectError(self.host.name, "the SSH connection is closed")
        started = time.monotonic()
        deadline = started + timeout
        chan = self._start(client, argv, deadline, timeout)
        link = self.link_timeout
        liveness = Liveness(lambda: _keepalive(client), link) if link else None
        writer = threading.Thread(target=_feed, args=(chan, feed, hold_open), name=f"ssh-stdin-{self.host.name}",
                                  daemon=True)
        writer.start()
        err: list[bytes] = []
        exited_at: float | None = None
        aborted_at: float | None = None
        try:
            while True:
                errs = len(err)
                got_output = _drain(chan, on_output, err)
                if got_output and feed.idle_timeout:
                    deadline = time.monotonic() + timeout
                if liveness is not None and (got_output or len(err) > errs):
                    liveness.heard_now()
                now = time.monotonic()
                if chan.exit_status_ready():  # also set when the channel closed
                    exited_at = exited_at or now
                    # A background child may keep stdout open after the command exited: don't wait forever.
                    if chan.eof_received or chan.closed or now - exited_at > EOF_GRACE:
                        break
                if feed.abort is not None and feed.abort.is_set():
                    aborted_at = aborted_at or now
                    if feed.must_kill(now - aborted_at):
                        self._kill(chan)
                        raise CommandAborted(self.host.name, "aborted: the command outlived its grace and was killed")
                if liveness is not None and not chan.exit_status_ready() and liveness.lost():
                    client.close()  # the next command connects again, as after a reset
                    raise ConnectionLost(self.host.name, f"connection lost: nothing from the host for {link:g}s, not "
                                                         "even an answer to a keepalive")
                remaining = deadline - now
                if remaining <= 0:
                    self._kill(chan)
                    silent = " without a word" if feed.idle_timeout else ""
                    raise CommandTimeout(self.host.name,
                                         f"command timed out after {timeout:g}s{silent}: {quote(argv)[:200]}")
                if chan.eof_received:  # output done; the exit status is on its way (select would spin)
                    chan.status_event.wait(min(remaining, 0.1))
                else:
                    select.select([chan], [], [], min(remaining, 0.2 if exited_at or aborted_at else 1.0))
            _drain(chan, on_output, err)
            if not chan.status_event.is_set() and not client.is_active():
                raise ConnectionLost(self.host.name, f"connection lost while running {argv[0]}")
            rc = chan.recv_exit_status()
        except DriftctlError:
            raise
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise ConnectionLost(self.host.name, f"connection lost while running {argv[0]}: {e or type(e).__name__}") \
                from e
        finally:
            feed.done.set()
            chan.close()
            writer.join(timeout=1)
        return CommandResult(list(argv), rc, b"", b"".join(err), time.monotonic() - started)

    def _start(self, client: paramiko.Transport, argv: list[str], deadline: float, timeout: float) -> paramiko.Channel:
        """Open a session channel and exec ``argv``, both within the command's deadline.

        Bounded by the command timeout, not the connect timeout: sshd sets the session up (PAM,
        systemd-logind) only now, which can take many seconds on a busy host that is otherwise fine.
        A link that went silent since the last command is told apart from such a host by ``Liveness``
        (D47): a start quiet for a quarter of ``link_timeout`` sends the keepalive sshd must answer,
        and one unanswered for the whole ``link_timeout`` is a lost connection.
        """
        chan: paramiko.Channel | None = None
        watchdog: threading.Timer | None = None
        guard = _StartGuard(client, self.link_timeout) if self.link_timeout else None
        try:
            chan = client.open_session(timeout=max(0.1, deadline - time.monotonic()))
            # paramiko waits for the exec reply without a timeout: closing the channel ends that wait
            watchdog = threading.Timer(max(0.1, deadline - time.monotonic()), chan.close)
            watchdog.daemon = True
            watchdog.start()
            chan.exec_command(quote(argv))
            return chan
        except (paramiko.SSHException, OSError, EOFError) as e:
            if chan is not None:
                chan.close()
            if guard is not None and guard.lost.is_set():
                raise ConnectionLost(self.host.name, f"connection lost: nothing from the host for {guard.timeout:g}s "
                                                     "while it started a command, not even an answer to a keepalive"
                                     ) from e
            if time.monotonic() >= deadline - 0.05 or "Timeout opening channel" in str(e):
                raise CommandTimeout(
                    self.host.name, f"the host did not start the command within {timeout:g}s: {quote(argv)[:200]}"
                ) from e
            raise ConnectError(self.host.name, f"cannot start a command: {e or type(e).__name__}") from e
        finally:
            if watchdog is not None:
                watchdog.cancel()
            if guard is not None:
                guard.stop()

    @property
    def link_timeout(self) -> float | None:
        return self.host.connection.link_timeout or None  # 0 turns the check off

    @staticmethod
    def _kill(chan: paramiko.Channel) -> None:
        """SIGKILL the remote command (RFC 4254 signal request), then close the channel."""
        try:
            msg = paramiko.Message()
            msg.add_byte(cMSG_CHANNEL_REQUEST)
            msg.add_int(chan.remote_chanid)
            msg.add_string("signal")
            msg.add_boolean(False)
            msg.add_string("KILL")
            chan.transport._send_user_message(msg)  # type: ignore[union-attr]
        except (paramiko.SSHException, OSError, EOFError, AttributeError):
            pass
        chan.close()


def _drain(chan: paramiko.Channel, on_output: Callable[[bytes], None], err: list[bytes]) -> bool:
    """Hand over what arrived; True when stdout had something."""
    got = False
    while chan.recv_ready():
        on_output(chan.recv(CHUNK))
        got = True
    while chan.recv_stderr_ready():
        err.append(chan.recv_stderr(CHUNK))
    return got


class _StartGuard:
    """While a command starts (channel open, exec reply: no output to hear yet), ``Liveness`` checked
    each second; a link found lost closes the connection, which ends paramiko's waits at once. The
    checks begin only when the start has been quiet for a quarter of the timeout (nearly every start
    takes milliseconds: the timer is cancelled before it fires)."""

    def __init__(self, client: paramiko.Transport, timeout: float) -> None:
        self.timeout = timeout
        self.lost = threading.Event()
        self._done = threading.Event()
        self._liveness = Liveness(lambda: _keepalive(client), timeout)
        self._client = client
        self._timer = threading.Timer(self._liveness.quiet, self._watch)
        self._timer.daemon = True
        self._timer.start()

    def _watch(self) -> None:
        while not self._done.is_set():
            if self._liveness.lost():
                self.lost.set()
                self._client.close()
                return
            self._done.wait(min(1.0, self.timeout / 8))

    def stop(self) -> None:
        self._done.set()
        self._timer.cancel()


def _keepalive(client: paramiko.Transport) -> None:
    """One keepalive that sshd must answer; returns with its answer (a refusal is one), raises without."""
    client.global_request(KEEPALIVE_REQUEST, wait=True)  # returns None both when refused and when closed
    if not client.is_active():
        raise ConnectionError("the connection closed before the keepalive was answered")


def _feed(chan: paramiko.Channel, feed: Feed, hold_open: bool) -> None:
    """Write stdin in chunks; then EOF, unless held open. The remote may exit without reading it all."""
    try:
        for data in feed.chunks:
            view = memoryview(data)
            for i in range(0, len(view), CHUNK):
                chan.sendall(bytes(view[i : i + CHUNK]))
        if not hold_open:
            chan.shutdown_write()
    except (OSError, EOFError, paramiko.SSHException):
        pass
