"""SSH transport (paramiko): one verified, authenticated connection per host, reused for every command.

Connecting: TCP (or a ``direct-tcpip`` channel of the previous ProxyJump hop) -> key exchange -> host
key check against known_hosts files -> authentication (key files, ssh-agent, default keys, password).
The connect timeout is the whole budget for all of it, retries included: one deadline is set when
connect() starts. A refused or reset connection is retried with jittered backoff while the budget
lasts; an authentication or host key failure is final. Key exchange offers only the algorithms of
driftctl's policy (sshpolicy.py: no CBC, MD5/SHA-1 MACs, SHA-1 kex or ssh-rsa signatures unless a
setting allows them, with a warning on every connection that uses them). Every library error leaves
this module as a driftctl error naming the host.

Host keys are looked up in ``~/.ssh/known_hosts``, ``/etc/ssh/ssh_known_hosts``, ssh_config's
UserKnownHostsFile, ``TransportOptions.known_hosts``, the host's ``ConnectionSpec.known_hosts`` and
driftctl's own file (``TransportOptions.own_known_hosts``). An unknown key is refused unless
``accept_new_host_keys`` is set, in which case it is recorded in the own file; a changed key is always
refused.

Commands: each ``run()`` opens a channel, sends ``quote(argv)``, streams stdin while reading stdout and
stderr (so multi-megabyte payloads in both directions cannot deadlock), and cuts the command at its
timeout: SIGKILL through the channel (RFC 4254 "signal", refused by OpenSSH < 10 for root sessions),
then every remote process carrying the command's ``DRIFTCTL_RUN`` mark is killed from a second channel.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import select
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import paramiko
from paramiko.common import cMSG_CHANNEL_REQUEST

from driftctl.errors import (
    AuthError,
    CommandAborted,
    CommandTimeout,
    ConnectError,
    ConnectionLost,
    DriftctlError,
    HostKeyError,
)
from driftctl.model import Host
from driftctl.transport import knownhosts, sshpolicy
from driftctl.transport.base import CommandResult, Feed, Transport, TransportOptions, quote
from driftctl.transport.become import Become
from driftctl.transport.local import kill_marked, marked, new_mark
from driftctl.transport.sshconfig import DEFAULT_KEYS, Endpoint, load_config, resolve

log = logging.getLogger(__name__)
# paramiko logs handshake failures with tracebacks; without a handler Python would print them on stderr
# next to driftctl's own (translated) error. Applications that configure logging still receive them.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

SYSTEM_KNOWN_HOSTS = ("~/.ssh/known_hosts", "/etc/ssh/ssh_known_hosts")
RSA_ALGORITHMS = ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")
CHUNK = 1 << 16
KEEPALIVE = 30  # seconds; keeps NAT/firewall state alive during long runs
REAP_TIMEOUT = 15.0
EOF_GRACE = 2.0  # after the exit status, how long to wait for output a background child still holds
MIN_ATTEMPT = 0.2  # seconds of connect budget below which another attempt is not worth starting


class _Retry(Exception):
    """A connect attempt failed in a way that may succeed when tried again."""

    def __init__(self, error: ConnectError) -> None:
        self.error = error
        super().__init__(str(error))


class _Deadline:
    """One budget for everything connect() does: TCP, banner, key exchange, authentication, retries."""

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self.at = time.monotonic() + budget

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def left(self) -> float:
        """The remaining time as a library timeout (never 0: that would mean "no timeout" to some)."""
        return max(0.01, self.remaining())

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0.05


class SSHTransport(Transport):
    """Run commands on one host over SSH. ``connects`` counts the SSH connections opened (normally 1)."""

    name = "ssh"

    def __init__(self, host: Host, options: TransportOptions | None = None) -> None:
        super().__init__(host, options)
        # Resolved now, so a broken ssh_config is an input error before any host is contacted.
        self.endpoint: Endpoint = resolve(host.connection, load_config(self.options.ssh_config))
        self.connects = 0
        self.accepted_host_keys: list[str] = []  # "name fingerprint" recorded in the own known_hosts
        self.policy = self._algorithm_policy()  # also an input error before any host is contacted
        self.weak_algorithms: list[str] = []  # "where: kind name (why)" used by the last connect
        self._connecting: list[paramiko.Transport] = []  # closed by the watchdog when the budget runs out
        self._watch_lock = threading.Lock()  # the watchdog and a connect finishing just in time
        self._client: paramiko.Transport | None = None
        self._hops: list[paramiko.Transport] = []
        self._become: Become | None = None
        self._lock = threading.Lock()

    # ---- connection

    def connect(self) -> None:
        with self._lock:
            if self._client is not None and self._client.is_active():
                return
            self._close_all()
            endpoint = self.endpoint
            deadline = _Deadline(self.host.connection.connect_timeout)
            # Each step gets the time left as its own timeout; authentication (several requests, each
            # with paramiko's auth_timeout) is bounded by closing the connection when the budget is spent.
            watchdog = threading.Timer(deadline.budget, self._expire)
            watchdog.daemon = True
            watchdog.start()
            self.weak_algorithms = []
            try:
                client = self._connect_within(endpoint, deadline)
                with self._watch_lock:  # from here on the watchdog leaves the connection alone
                    self._connecting = []
                if not client.is_active():  # it fired just before: the connection is gone
                    raise self._err(f"could not connect to {endpoint} and log in within the connect timeout "
                                    f"({deadline.budget:g}s)")
                self._client = client
            except ConnectError as e:
                self._close_all()
                if deadline.expired and not isinstance(e, HostKeyError) and "connect timeout" not in e.message:
                    # the watchdog cut a step that has no timeout of its own (authentication)
                    raise self._err(
                        f"could not connect to {endpoint} and log in within the connect timeout "
                        f"({deadline.budget:g}s): {e.message}"
                    ) from e
                raise
            except BaseException:
                self._close_all()
                raise
            finally:
                watchdog.cancel()
                with self._watch_lock:
                    self._connecting = []
            self.connects += 1
            password = self.host.connection.become_password
            self._become = Become(self.host.name, endpoint.user, str(password) if password else None, self._raw)

    def _connect_within(self, endpoint: Endpoint, deadline: _Deadline) -> paramiko.Transport:
        """Open the chain; retry what may pass on a second try while the budget lasts."""
        attempts = 1 + max(0, self.options.connect_retries)
        for attempt in range(attempts):
            try:
                return self._open_chain(endpoint, deadline)
            except _Retry as r:
                self._close_all()
                remaining = deadline.remaining()
                if attempt == attempts - 1 or remaining < MIN_ATTEMPT:
                    raise r.error from r.__cause__
                backoff = min(8.0, 0.5 * 2**attempt) * random.uniform(0.5, 1.5)  # noqa: S311 (jitter)
                delay = min(backoff, remaining / 2)  # leave the next attempt half of what is left
                log.debug("%s: %s; retrying in %.1fs", self.host.name, r.error.message, delay)
                time.sleep(delay)
        raise AssertionError("the last attempt raises")

    def _expire(self) -> None:
        """The connect budget is spent: end whatever is still waiting (a TCP connect ends by its own timeout)."""
        with self._watch_lock:
            for t in self._connecting:
                t.close()

    def _algorithm_policy(self) -> sshpolicy.Policy:
        """The global ssh_algorithms setting, then the host's driftctl_ssh_algorithms."""
        own = self.host.connection.ssh_algorithms
        host_where = self.host.source
        return sshpolicy.policy(
            sshpolicy.parse(self.options.ssh_algorithms),
            sshpolicy.parse(
                None if own is None else str(own), f"{sshpolicy.HOST_VARIABLE} for host {self.host.name!r}", host_where
            ),
            where=host_where,
        )

    def close(self) -> None:
        with self._lock:
            self._close_all()

    def _close_all(self) -> None:
        for t in [self._client, *reversed(self._hops)]:
            if t is not None:
                t.close()
        self._client = None
        self._hops = []

    def _open_chain(self, target: Endpoint, deadline: _Deadline) -> paramiko.Transport:
        sock: paramiko.Channel | None = None
        prev: Endpoint | None = None
        for i, hop in enumerate(target.jumps):
            t = self._open(hop, sock, via=prev, is_target=False, deadline=deadline)
            self._hops.append(t)
            nxt = target.jumps[i + 1] if i + 1 < len(target.jumps) else target
            sock = self._tunnel(t, hop, nxt, deadline)
            prev = hop
        return self._open(target, sock, via=prev, is_target=True, deadline=deadline)

    def _tunnel(self, t: paramiko.Transport, hop: Endpoint, nxt: Endpoint, deadline: _Deadline) -> paramiko.Channel:
        """A channel from ``hop`` to the next server, used as the next connection's socket."""
        try:
            return t.open_channel(
                "direct-tcpip",
                dest_addr=(nxt.hostname, nxt.port),
                src_addr=("127.0.0.1", 0),
                timeout=deadline.left(),
            )
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise _Retry(self._err(f"jump host {hop} could not reach {nxt.hostname}:{nxt.port}: {e}")) from e

    def _open(
        self, ep: Endpoint, sock: paramiko.Channel | None, via: Endpoint | None, is_target: bool, deadline: _Deadline
    ) -> paramiko.Transport:
        where = f"{ep}" + (f" via {via}" if via else "")
        channel_or_socket: socket.socket | paramiko.Channel = sock if sock is not None else self._dial(ep, deadline)
        try:
            # strict kex (Terrapin): advertised, and then paramiko enforces it whenever the server offers it
            t = sshpolicy.RecordingTransport(channel_or_socket, strict_kex=True)
        except (paramiko.SSHException, OSError) as e:
            channel_or_socket.close()
            raise _Retry(self._err(f"cannot start SSH with {where}: {e}")) from e
        self._connecting.append(t)
        left = deadline.left()
        t.banner_timeout = left
        t.auth_timeout = left
        t.handshake_timeout = left
        self.policy.apply(t)
        files = self._known_hosts_files(ep)
        entries = knownhosts.load(files)
        self._prefer_known_key_types(t, knownhosts.recorded_types(entries, ep.key_names))
        try:
            t.start_client(timeout=left)
        except paramiko.ssh_exception.IncompatiblePeer as e:
            t.close()
            missing = sshpolicy.mismatches(t.offer, self.policy) if t.offer else []
            if missing and t.offer:
                raise self._err(sshpolicy.refusal_message(where, t.offer, missing)) from e
            raise self._err(f"no common algorithms with {where}: {e}") from e
        except (paramiko.SSHException, OSError, EOFError) as e:
            t.close()
            raise _Retry(self._err(self._handshake_failed(where, deadline, f"{e or type(e).__name__}"))) from e
        if not t.initial_kex_done:  # start_client returns quietly when its own timeout passes
            t.close()
            raise _Retry(self._err(self._handshake_failed(where, deadline, "no answer")))
        try:
            self._check_negotiated(t, where)
            self._verify_host_key(t, ep, entries, files)
            t.auth_timeout = deadline.left()
            self._authenticate(t, ep, is_target)
        except BaseException:
            t.close()
            raise
        self._warn_weak(t, where)
        t.set_keepalive(KEEPALIVE)
        return t

    @staticmethod
    def _handshake_failed(where: str, deadline: _Deadline, cause: str) -> str:
        if deadline.expired:
            # paramiko's words for it depend on whether its timeout or the watchdog ended the wait
            if "banner" in cause.lower():
                cause = "the server never sent its SSH banner"
            return f"no SSH handshake with {where} within the connect timeout ({deadline.budget:g}s): {cause}"
        return f"SSH handshake with {where} failed: {cause}"

    def _check_negotiated(self, t: sshpolicy.RecordingTransport, where: str) -> None:
        """Refuse a handshake that skipped strict kex although the server offered it (Terrapin)."""
        if t.offer is not None and t.offer.strict_kex and not sshpolicy.strict_kex_agreed(t):
            raise self._err(f"{where} offered strict key exchange (Terrapin fix) but it was not used; refusing")

    def _warn_weak(self, t: paramiko.Transport, where: str) -> None:
        weak = sshpolicy.weak_in_use(t)
        if not weak:
            return
        used = ", ".join(f"{sshpolicy.LABELS[c].rstrip('s')} {n} ({why})" for c, n, why in weak)
        allowed_by = sorted({self.policy.allowed_by.get((c, n), "the default") for c, n, _ in weak})
        terrapin = (
            "; without strict key exchange this combination is open to the Terrapin attack (CVE-2023-48795)"
            if sshpolicy.terrapin_exposed(t)
            else ""
        )
        self.weak_algorithms.append(f"{where}: {used}")
        log.warning(
            "%s: %s uses weak SSH algorithms: %s, allowed by %s%s; enable modern algorithms in its sshd_config",
            self.host.name, where, used, " and ".join(allowed_by), terrapin,
        )

    def _dial(self, ep: Endpoint, deadline: _Deadline) -> socket.socket:
        try:
            return socket.create_connection((ep.hostname, ep.port), timeout=deadline.left())
        except socket.gaierror as e:
            raise self._err(f"cannot resolve {ep.hostname}: {e.strerror}") from e
        except ConnectionRefusedError as e:
            raise _Retry(self._err(f"connection refused by {ep.hostname}:{ep.port}")) from e
        except TimeoutError as e:
            raise _Retry(
                self._err(
                    f"timed out connecting to {ep.hostname}:{ep.port}: no TCP connection within the connect "
                    f"timeout ({deadline.budget:g}s)"
                )
            ) from e
        except OSError as e:
            raise _Retry(self._err(f"cannot connect to {ep.hostname}:{ep.port}: {e.strerror or e}")) from e

    def _err(self, message: str) -> ConnectError:
        return ConnectError(self.host.name, message)

    # ---- host keys

    def _known_hosts_files(self, ep: Endpoint) -> list[str]:
        files = [*SYSTEM_KNOWN_HOSTS, *ep.known_hosts, *self.options.known_hosts]
        if self.host.connection.known_hosts:
            files.append(self.host.connection.known_hosts)
        if self.options.own_known_hosts:
            files.append(self.options.own_known_hosts)
        return [os.path.expanduser(f) for f in dict.fromkeys(files)]

    @staticmethod
    def _prefer_known_key_types(t: paramiko.Transport, known: list[str]) -> None:
        """Ask for a host key type we have on record first, so a known host is not "unknown" by type."""
        if not known:
            return
        wanted: list[str] = []
        for k in known:
            wanted.extend(RSA_ALGORITHMS if k == "ssh-rsa" else [k])
        opts = t.get_security_options()
        available = list(opts.key_types)
        first = [k for k in dict.fromkeys(wanted) if k in available]
        opts.key_types = tuple(first + [k for k in available if k not in first])

    def _verify_host_key(
        self, t: paramiko.Transport, ep: Endpoint, entries: list[knownhosts.Entry], files: list[str]
    ) -> None:
        key = t.get_remote_server_key()
        blob, ktype = key.asbytes(), key.get_name()
        found = knownhosts.check(entries, ep.key_names, ktype, blob)
        name = ep.key_names[0]
        fp = found.offered_fingerprint
        if found.verdict == "known":
            return
        if found.verdict == "revoked":
            raise HostKeyError(
                self.host.name, f"host key {ktype} {fp} of {name} is REVOKED ({found.recorded[0].where})", fp
            )
        if found.verdict == "changed":
            raise HostKeyError(
                self.host.name,
                f"HOST KEY CHANGED for {name}: it now offers {ktype} {fp}, but the recorded key is "
                f"{'; '.join(found.recorded_fingerprints)}. Someone may be intercepting the connection "
                "(man-in-the-middle), or the host was reinstalled. Refusing to connect (also with "
                f"--accept-new-host-keys). If the change is expected, check the new fingerprint on the host, "
                f"then remove the old entry: ssh-keygen -R '{name}' -f <file>",
                fp,
            )
        own = self.options.own_known_hosts
        if self.options.accept_new_host_keys and own:
            try:
                knownhosts.add(own, name, ktype, blob)
            except OSError as e:
                raise HostKeyError(self.host.name, f"cannot record the new host key of {name} in {own}: {e}", fp) from e
            self.accepted_host_keys.append(f"{name} {ktype} {fp}")
            log.warning("%s: trusted new host key %s %s of %s (recorded in %s)", self.host.name, ktype, fp, name, own)
            return
        hint = (
            f"re-run with --accept-new-host-keys to trust it on first use (recorded in {own})"
            if own
            else "add it to a known_hosts file"
        )
        raise HostKeyError(
            self.host.name,
            f"unknown host key for {name}: {ktype} {fp} (not in {', '.join(files)}). Verify this "
            f"fingerprint on the host (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), then {hint}, or add it "
            f"yourself: ssh-keyscan -p {ep.port} {ep.hostname} >> ~/.ssh/known_hosts",
            fp,
        )

    # ---- authentication

    def _authenticate(self, t: paramiko.Transport, ep: Endpoint, is_target: bool) -> None:
        tried: list[str] = []
        allowed: list[str] = []
        seen: set[bytes] = set()

        def offer(key: paramiko.PKey, label: str) -> bool:
            if key.asbytes() in seen:
                return False
            seen.add(key.asbytes())
            return self._try(t, ep, lambda: t.auth_publickey(ep.user, key), label, tried, allowed)

        for path in ep.identity_files:
            key = self._load_key(path, tried, explicit=True)
            if key is not None and offer(key, f"key {path}"):
                return
        if self.options.use_agent and not ep.identities_only:
            try:
                agent = paramiko.Agent()
            except (paramiko.SSHException, OSError) as e:  # SSH_AUTH_SOCK points at something broken
                tried.append(f"ssh-agent (unusable: {e})")
            else:
                try:
                    for key in agent.get_keys():
                        if offer(key, f"agent key {key.fingerprint}"):
                            return
                finally:
                    agent.close()
        if not ep.identities_only:
            for path in DEFAULT_KEYS:
                key = self._load_key(os.path.expanduser(path), tried, explicit=False)
                if key is not None and offer(key, f"key {path}"):
                    return
        password = self.host.connection.password
        if is_target and password:
            secret = str(password)
            if self._try(t, ep, lambda: t.auth_password(ep.user, secret), "password", tried, allowed):
                return
            # Servers that take passwords only through PAM's keyboard-interactive: answer every prompt with it.
            if "keyboard-interactive" in allowed and self._try(
                t,
                ep,
                lambda: t.auth_interactive(ep.user, lambda _title, _instr, prompts: [secret] * len(prompts)),
                "password (keyboard-interactive)",
                tried,
                allowed,
            ):
                return
        accepts = f"; the server accepts: {', '.join(allowed)}" if allowed else ""
        raise AuthError(
            self.host.name,
            f"authentication as {ep} failed; tried {', '.join(tried) or 'nothing (no key, no agent, no password)'}"
            + accepts,
        )

    def _try(
        self,
        t: paramiko.Transport,
        ep: Endpoint,
        attempt: Callable[[], object],
        label: str,
        tried: list[str],
        allowed: list[str],
    ) -> bool:
        try:
            attempt()
        except paramiko.BadAuthenticationType as e:
            allowed[:] = list(e.allowed_types)
            tried.append(f"{label} (method not allowed)")
            return False
        except paramiko.AuthenticationException as e:
            if "timeout" in str(e).lower():
                raise AuthError(self.host.name, f"authentication as {ep} timed out") from e
            tried.append(f"{label} (rejected)")
            return False
        except (paramiko.SSHException, OSError, EOFError) as e:
            tried.append(label)
            raise AuthError(
                self.host.name,
                f"{ep} closed the connection during authentication after {', '.join(tried)} "
                f"(too many keys offered? MaxAuthTries): {e or type(e).__name__}",
            ) from e
        return t.is_authenticated()

    @staticmethod
    def _load_key(path: str, tried: list[str], explicit: bool) -> paramiko.PKey | None:
        if not os.path.exists(path):
            if explicit:
                tried.append(f"key {path} (file not found)")
            return None
        try:
            return paramiko.PKey.from_path(path)
        except paramiko.PasswordRequiredException:
            tried.append(f"key {path} (encrypted: load it into ssh-agent)")
        except (paramiko.SSHException, OSError, ValueError) as e:
            tried.append(f"key {path} (unreadable: {e})")
        return None

    # ---- commands

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes = b"",
        timeout: float | None = None,
        become: bool | None = None,
    ) -> CommandResult:
        self.connect()
        conn = self.host.connection
        timeout = conn.command_timeout if timeout is None else timeout
        become = conn.become if become is None else become
        assert self._become is not None
        sudo = become and self._become.needed(conn.become_user)
        # The mark lets a timeout kill the whole remote process tree: OpenSSH (before 10) refuses the
        # "signal" request for root sessions, and closing the channel alone leaves the command running.
        token = new_mark()
        wrapped = self._become.wrap(marked(argv, token), stdin, conn.become_user) if sudo else None
        try:
            if wrapped is None:
                result = self._raw(marked(argv, token), stdin, timeout)
            else:
                result = self._become.finish(
                    wrapped, self._raw(wrapped.argv, wrapped.stdin, timeout), conn.become_user
                )
        except CommandTimeout:
            self._reap(token, sudo)
            raise CommandTimeout(
                self.host.name, f"command timed out after {timeout:g}s and was killed: {quote(argv)[:200]}"
            ) from None
        result.argv = list(argv)
        return result

    def _reap(self, token: str, sudo: bool) -> None:
        """Kill what is left of a timed-out command (best effort: the host may be the problem)."""
        argv = kill_marked(token)
        try:
            if sudo and self._become is not None:
                w = self._become.wrap(argv, b"", self.host.connection.become_user)
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

    def stream(
        self,
        argv: Sequence[str],
        *,
        feed: Feed,
        on_output: Callable[[bytes], None],
        timeout: float | None = None,
        become: bool | None = None,
    ) -> CommandResult:
        self.connect()
        conn = self.host.connection
        timeout = conn.command_timeout if timeout is None else timeout
        become = conn.become if become is None else become
        assert self._become is not None
        sudo = become and self._become.needed(conn.become_user)
        token = new_mark()
        try:
            if not sudo:
                result = self._exchange(marked(argv, token), feed, on_output, timeout, hold_open=True)
            else:
                wrapped = self._become.wrap(marked(argv, token), b"", conn.become_user)
                fed = replace(feed, chunks=itertools.chain([wrapped.stdin], feed.chunks))
                result = self._become.finish(
                    wrapped, self._exchange(wrapped.argv, fed, on_output, timeout, hold_open=True),
                    conn.become_user)
        except (CommandTimeout, CommandAborted) as e:
            self._reap(token, sudo)
            raise type(e)(self.host.name, f"{e.message}: {quote(argv)[:200]}") from None
        result.argv = list(argv)
        return result

    def _exchange(self, argv: list[str], feed: Feed, on_output: Callable[[bytes], None], timeout: float,
                  hold_open: bool) -> CommandResult:
        """One channel: stdin written from ``feed`` by a thread, stdout to ``on_output``, stderr kept.

        With ``hold_open`` stdin is not closed after the last chunk: it stays open until the command
        exits. A connection that breaks before the exit status arrived raises ConnectionLost.
        """
        client = self._client
        if client is None or not client.is_active():
            raise self._err("the SSH connection is closed")
        started = time.monotonic()
        deadline = started + timeout
        chan = self._start(client, argv, deadline, timeout)
        writer = threading.Thread(target=_feed, args=(chan, feed, hold_open), name=f"ssh-stdin-{self.host.name}",
                                  daemon=True)
        writer.start()
        err: list[bytes] = []
        exited_at: float | None = None
        aborted_at: float | None = None
        try:
            while True:
                if _drain(chan, on_output, err) and feed.idle_timeout:
                    deadline = time.monotonic() + timeout
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
        """
        chan: paramiko.Channel | None = None
        watchdog: threading.Timer | None = None
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
            if time.monotonic() >= deadline - 0.05 or "Timeout opening channel" in str(e):
                raise CommandTimeout(
                    self.host.name, f"the host did not start the command within {timeout:g}s: {quote(argv)[:200]}"
                ) from e
            raise self._err(f"cannot start a command: {e or type(e).__name__}") from e
        finally:
            if watchdog is not None:
                watchdog.cancel()

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
