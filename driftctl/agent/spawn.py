"""Commands on the host: ``run``, through posix_spawn where the C library can start a session with it.

``subprocess`` is imported only where posix_spawn cannot be used (or by exec.py, which streams its
command's output): its import (locale, selectors, signal's enums, threading) is ~4 ms of an agent's
start, and a probe that asks dpkg and systemctl runs two commands.
"""

import os
import select
import time

from driftctl.agent._core import Failure, before_command, run_remaining, signal, suppress


def run(argv, stdin=None, env=None, timeout=None, check=False):
    """Run argv (never through a shell). Returns (rc, stdout text, stderr text).

    The command runs in a session of its own: on a timeout its whole process group is killed.
    """
    limit, by_deadline = run_remaining(timeout)
    if by_deadline and limit <= 0:
        raise Failure("%s not started: the resource timed out (the resource's time limit)" % argv[0])
    before_command()
    data = stdin.encode("utf-8") if isinstance(stdin, str) else (stdin or b"")
    try:
        child = SpawnChild(argv, env)
    except FileNotFoundError:
        if check:
            raise Failure("command not found: %s" % argv[0]) from None
        return 127, "", "command not found: %s" % argv[0]
    try:
        out_b, err_b = child.communicate(data, limit)
    except SpawnTimedOut:
        child.kill_group()
        if not child.drain(2.0):  # a daemon that left the group holds the pipes open: do not wait for it
            child.close()
        child.wait()
        if by_deadline:
            raise Failure("%s timed out after %ds (the resource's time limit)"
                          % (" ".join(argv)[:200], round(limit))) from None
        raise Failure("command timed out after %ss: %s" % (timeout, " ".join(argv))) from None
    except BaseException:
        child.kill_group()
        child.close()
        child.wait()
        raise
    rc = child.wait()
    out = out_b.decode("utf-8", "replace")
    err = err_b.decode("utf-8", "replace")
    if check and rc != 0:
        raise Failure("%s exited %d: %s" % (argv[0], rc, (err or out).strip()[-500:]))
    return rc, out, err


class SpawnTimedOut(Exception):
    """A command outlived its time limit (SpawnChild.communicate)."""


SPAWN_POSIX = [hasattr(os, "posix_spawnp")]  # False when this host cannot spawn in a new session: subprocess then
SPAWN_SIGDEF = tuple(getattr(signal, n) for n in ("SIGPIPE", "SIGXFSZ") if hasattr(signal, n))


class SpawnChild(object):
    """A command started in a session of its own, its stdin, stdout and stderr pipes to us.

    posix_spawn (vfork and exec) where the C library can start a session with it (glibc >= 2.26, musl);
    ``subprocess`` otherwise, whose import is ~4 ms of every agent's start. The signals Python ignores
    (SIGPIPE, SIGXFSZ) are reset in the child, as subprocess does, and the child gets only fds 0-2: the
    agent's own descriptors are all close-on-exec (PEP 446), and an inherited one is closed.
    """

    def __init__(self, argv, env):
        self.status = None
        self.popen = None  # the subprocess.Popen, where posix_spawn could not be used
        self.fds = {}  # our ends of the pipes: 0 the child's stdin, 1 and 2 its output
        ends = {}
        try:
            for n in (0, 1, 2):
                r, w = os.pipe()  # both close-on-exec
                ends[n] = (r, w) if n == 0 else (w, r)  # (the child's end, ours)
            self.pid = self._start(argv, env, ends)
        except BaseException:
            for pair in ends.values():
                for fd in pair:
                    os.close(fd)
            raise
        for n, (theirs, ours) in ends.items():
            os.close(theirs)
            self.fds[n] = ours

    def _start(self, argv, env, ends):
        env = os.environ if env is None else env
        # our own 0-2 closed: a pipe got one of them, and a dup2 onto itself would leave it close-on-exec
        if SPAWN_POSIX[0] and min(fd for pair in ends.values() for fd in pair) > 2:
            actions = [(os.POSIX_SPAWN_DUP2, ends[n][0], n) for n in (0, 1, 2)]
            actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in _spawn_inherited_fds(ends)]
            try:
                return os.posix_spawnp(argv[0], list(argv), env, file_actions=actions, setsid=True,
                                       setsigdef=SPAWN_SIGDEF)
            except NotImplementedError:  # no POSIX_SPAWN_SETSID in this C library
                SPAWN_POSIX[0] = False
        import subprocess

        self.popen = subprocess.Popen(argv, stdin=ends[0][0], stdout=ends[1][0], stderr=ends[2][0], env=env,
                                      start_new_session=True)
        return self.popen.pid

    def communicate(self, data, limit):
        """Write ``data`` to the child's stdin (then close it) while reading its stdout and stderr, until
        both end; (stdout, stderr) bytes. SpawnTimedOut after ``limit`` seconds (None: no limit)."""
        self.out = {1: [], 2: []}
        deadline = None if limit is None else time.monotonic() + limit
        poller = select.poll()
        for n in (1, 2):
            if n in self.fds:
                poller.register(self.fds[n], select.POLLIN)
        view = memoryview(data)
        if view and 0 in self.fds:
            os.set_blocking(self.fds[0], False)
            poller.register(self.fds[0], select.POLLOUT)
        else:
            self._close(0)
        by_fd = dict((fd, n) for n, fd in self.fds.items())
        while 1 in self.fds or 2 in self.fds:
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                raise SpawnTimedOut()
            for fd, _ in poller.poll(None if wait is None else max(1, int(wait * 1000))):
                n = by_fd[fd]
                if n == 0:
                    try:
                        view = view[os.write(fd, view[:1 << 16]):]
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:  # the command stopped reading: what it wrote still counts
                        view = view[:0]
                    if not view:
                        poller.unregister(fd)
                        self._close(0)
                    continue
                chunk = os.read(fd, 1 << 16)
                if chunk:
                    self.out[n].append(chunk)
                else:
                    poller.unregister(fd)
                    self._close(n)
        self._close(0)
        return b"".join(self.out[1]), b"".join(self.out[2])

    def drain(self, seconds):
        """After a kill: read what is left for up to ``seconds``; True when both outputs ended."""
        try:
            self.communicate(b"", seconds)
        except (SpawnTimedOut, OSError):
            return False
        return True

    def kill_group(self):
        with suppress(OSError):
            os.killpg(self.pid, signal.SIGKILL)

    def close(self):
        for n in list(self.fds):
            self._close(n)

    def _close(self, n):
        fd = self.fds.pop(n, None)
        if fd is not None:
            with suppress(OSError):
                os.close(fd)

    def wait(self):
        """The exit code (-N for a signal N), once the child has ended."""
        if self.status is None:
            if self.popen is not None:
                self.status = self.popen.wait()
                return self.status
            _, status = os.waitpid(self.pid, 0)
            self.status = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        return self.status


def _spawn_inherited_fds(ends):
    """Our descriptors past 2 that a child would inherit (not close-on-exec), but for the pipes' ends."""
    mine = set(fd for pair in ends.values() for fd in pair)
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return []
    found = []
    for name in names:
        fd = int(name)
        if fd > 2 and fd not in mine:
            try:
                if os.get_inheritable(fd):
                    found.append(fd)
            except OSError:  # the listing's own descriptor, closed by now
                pass
    return found
