"""SSH connect part (paramiko): one verified, authenticated connection per host, with its jump chain.

Connecting: TCP (or a ``direct-tcpip`` channel of the previous ProxyJump hop) -> key exchange -> host
key check against known_hosts files -> authentication (key files, ssh-agent, default keys, password).
The connect timeout is the whole budget for all of it, retries included: one deadline is set when
open() starts. A refused or reset connection is retried with jittered backoff while the budget
lasts; an authentication or host key failure is final. Key exchange offers only the algorithms of
driftctl's policy (sshpolicy.py: no CBC, MD5/SHA-1 MACs, SHA-1 kex or ssh-rsa signatures unless a
setting allows them, with a warning on every connection that uses them). Every library error leaves
this module as a driftctl error naming the host.

Host keys are looked up in ``~/.ssh/known_hosts``, ``/etc/ssh/ssh_known_hosts``, ssh_config's
UserKnownHostsFile, ``SSHOptions.known_hosts``, the host's ``ConnectionSpec.known_hosts`` and
driftctl's own file (``SSHOptions.own_known_hosts``). An unknown key is refused unless
``accept_new_host_keys`` is set, in which case it is recorded in the own file; a changed key is always
refused.

The channel part (commands over the open connection) is ssh.py.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import random
import select
import socket
import threading
import time

import paramiko

from driftctl.errors import ConnectError, HostKeyError
from driftctl.model import Host
from driftctl.transport import knownhosts, sshauth, sshpolicy
from driftctl.transport.options import SSHOptions
from driftctl.transport.sshconfig import Endpoint, load_config, resolve

log = logging.getLogger(__name__)
# paramiko logs handshake failures with tracebacks; without a handler Python would print them on stderr
# next to driftctl's own (translated) error. Applications that configure logging still receive them.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

SYSTEM_KNOWN_HOSTS = ("~/.ssh/known_hosts", "/etc/ssh/ssh_known_hosts")
RSA_ALGORITHMS = ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")
KEEPALIVE = 30  # seconds; keeps NAT/firewall state alive during long runs
MIN_ATTEMPT = 0.2  # seconds of connect budget below which another attempt is not worth starting


class _Retry(Exception):
    """A connect attempt failed in a way that may succeed when tried again."""

    def __init__(self, error: ConnectError) -> None:
        self.error = error
        super().__init__(str(error))


class _Deadline:
    """One budget for everything open() does: TCP, banner, key exchange, authentication, retries."""

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


class SSHConnection:
    """How one host is reached: endpoint, algorithm policy, the open connection and its jump hops.

    ``connects`` counts the SSH connections opened (normally 1); ``accepted_host_keys`` lists the
    "name type fingerprint" recorded in the own known_hosts; ``weak_algorithms`` the "where: kind name
    (why)" the last open() ended up using. Not locked: SSHTransport serialises open() and close().
    """

    def __init__(self, host: Host, options: SSHOptions) -> None:
        self.host = host
        self.options = options
        # Resolved now, so a broken ssh_config is an input error before any host is contacted.
        self.endpoint: Endpoint = resolve(host.connection, load_config(options.ssh_config))
        self.connects = 0
        self.accepted_host_keys: list[str] = []
        self.policy = self._algorithm_policy()  # also an input error before any host is contacted
        self.weak_algorithms: list[str] = []
        self._connecting: list[paramiko.Transport] = []  # closed by the watchdog when the budget runs out
        self._watch_lock = threading.Lock()  # the watchdog and a connect finishing just in time
        self._cancelled = threading.Event()  # cancel(): this connect is not wanted any more
        self.client: paramiko.Transport | None = None
        self._hops: list[paramiko.Transport] = []

    @property
    def active(self) -> bool:
        return self.client is not None and self.client.is_active()

    def open(self) -> paramiko.Transport:
        """Connect (again) to the endpoint through its jump chain, all within the connect timeout."""
        self.close()
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
            self.client = client
        except ConnectError as e:
            self.close()
            if deadline.expired and not isinstance(e, HostKeyError) and "connect timeout" not in e.message:
                # the watchdog cut a step that has no timeout of its own (authentication)
                raise self._err(
                    f"could not connect to {endpoint} and log in within the connect timeout "
                    f"({deadline.budget:g}s): {e.message}"
                ) from e
            raise
        except BaseException:
            self.close()
            raise
        finally:
            watchdog.cancel()
            with self._watch_lock:
                self._connecting = []
        self.connects += 1
        return client

    def _connect_within(self, endpoint: Endpoint, deadline: _Deadline) -> paramiko.Transport:
        """Open the chain; retry what may pass on a second try while the budget lasts."""
        attempts = 1 + max(0, self.options.connect_retries)
        for attempt in range(attempts):
            try:
                return self._open_chain(endpoint, deadline)
            except _Retry as r:
                self.close()
                remaining = deadline.remaining()
                if attempt == attempts - 1 or remaining < MIN_ATTEMPT:
                    raise r.error from r.__cause__
                backoff = min(8.0, 0.5 * 2**attempt) * random.uniform(0.5, 1.5)  # noqa: S311 (jitter)
                delay = min(backoff, remaining / 2)  # leave the next attempt half of what is left
                log.debug("%s: %s; retrying in %.1fs", self.host.name, r.error.message, delay)
                if self._cancelled.wait(delay):
                    raise r.error from r.__cause__
        raise AssertionError("the last attempt raises")

    def _expire(self) -> None:
        """The connect budget is spent: end whatever is still waiting (a TCP connect ends by its own timeout).

        The socket is closed as well: paramiko's close() does nothing to a transport whose handshake has
        not started yet, which would then start on an open socket and wait out its whole timeout."""
        with self._watch_lock:
            for t in self._connecting:
                t.close()
                with contextlib.suppress(Exception):
                    t.sock.close()

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
        """Close the connection and its hops (idempotent)."""
        for t in [self.client, *reversed(self._hops)]:
            if t is not None:
                t.close()
        self.client = None
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
        with self._watch_lock:  # cancel() may have run since the dial: it closes only what it sees here
            self._connecting.append(t)
        if self._cancelled.is_set():
            t.close()
            raise self._err("connect cancelled: the run ended before this host was needed")
        left = deadline.left()
        t.banner_timeout = left
        t.auth_timeout = left
        t.handshake_timeout = left
        self.policy.apply(t)
        files = self._known_hosts_files(ep)
        entries = knownhosts.load(files, ep.key_names)
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
            if self._cancelled.is_set():
                raise self._err("connect cancelled: the run ended before this host was needed") from e
            raise _Retry(self._err(self._handshake_failed(where, deadline, f"{e or type(e).__name__}"))) from e
        if not t.initial_kex_done:  # start_client returns quietly when its own timeout passes
            t.close()
            if self._cancelled.is_set():
                raise self._err("connect cancelled: the run ended before this host was needed")
            raise _Retry(self._err(self._handshake_failed(where, deadline, "no answer")))
        try:
            self._check_negotiated(t, where)
            self._verify_host_key(t, ep, entries, files)
            t.auth_timeout = deadline.left()
            password = self.host.connection.password if is_target else None
            sshauth.authenticate(t, ep, self.host.name, use_agent=self.options.use_agent,
                                 password=str(password) if password else None)
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

    def cancel(self) -> None:
        """Give up a connect in progress, from another thread: a TCP connect stops within 0.1 s, a
        handshake or an authentication at once (the run it was for has ended before any work)."""
        self._cancelled.set()
        self._expire()

    def _dial(self, ep: Endpoint, deadline: _Deadline) -> socket.socket:
        try:
            return self._tcp(ep, deadline)
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

    def _tcp(self, ep: Endpoint, deadline: _Deadline) -> socket.socket:
        """socket.create_connection within the deadline, which cancel() can stop: each address is
        tried with a non-blocking connect, polled every 0.1 s."""
        error: OSError | None = None
        for family, kind, proto, _, address in socket.getaddrinfo(ep.hostname, ep.port, type=socket.SOCK_STREAM):
            if self._cancelled.is_set():  # a connect to loopback can complete at once, never polled
                raise self._err("connect cancelled: the run ended before this host was needed")
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                rc = sock.connect_ex(address)
                poller = select.poll()
                poller.register(sock, select.POLLOUT)
                while rc in (errno.EINPROGRESS, errno.EAGAIN, errno.EALREADY):
                    if self._cancelled.is_set():
                        raise self._err("connect cancelled: the run ended before this host was needed")
                    if deadline.remaining() <= 0:
                        raise TimeoutError(errno.ETIMEDOUT, "timed out")
                    if poller.poll(int(min(0.1, deadline.left()) * 1000)):
                        rc = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if rc:
                    raise OSError(rc, os.strerror(rc))
                sock.settimeout(deadline.left())
                return sock
            except OSError as e:
                sock.close()
                error = e
            except BaseException:
                sock.close()
                raise
        raise error or OSError(errno.EADDRNOTAVAIL, f"no address for {ep.hostname}")

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
