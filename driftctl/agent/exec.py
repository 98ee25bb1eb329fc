"""Host side of ``exec``: run a command when its guards say so.

observe -> {"state": "done"|"pending", "why": "..."}. Observing runs the guard commands (``unless``,
``onlyif``): they run during plan and check too, which is why they must only read.
The command and the guards are argv lists (the controller split them, or wrapped them in
``/bin/sh -c`` when the manifest asked for a shell), run as ``user`` in ``cwd`` with ``environment``
added to the agent's own.

Time: a command (or guard) runs at most ``timeout`` seconds, and never past the resource's time limit
(``run_remaining()`` of _core). Then it is ended with everything it started:
its process group, every descendant (including one that made a session of its own) and anything left
in its session get SIGTERM, and SIGKILL after a grace; output still held open by a survivor is not
waited for. Only that resource fails; the rest of the host's resources go on.
"""

import contextlib
import os
import pwd
import signal
import subprocess
import time

from driftctl.agent._core import Failure, before_command, register, run_remaining

EXEC_TAIL_LINES = 20
EXEC_TAIL_CHARS = 2000
EXEC_GRACE = 2.0  # seconds between SIGTERM and SIGKILL when a command is ended
EXEC_DRAIN = 2.0  # seconds to read what is left of its output once it is ended
# params objects (one per resource in this request) whose command ran in this agent run: a
# notified exec that already ran during apply is not run a second time by its refresh
EXEC_RAN: set = set()


class ExecResult(object):
    def __init__(self, rc, output):
        self.rc = rc
        self.output = output


def exec_tail(output):
    lines = output.rstrip().splitlines()[-EXEC_TAIL_LINES:]
    return "\n".join(lines)[-EXEC_TAIL_CHARS:]


def _exec_env(params, pw):
    env = dict(os.environ)
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    if pw is not None:
        env.update(HOME=pw.pw_dir, USER=pw.pw_name, LOGNAME=pw.pw_name)
    for key, value in (params.get("environment") or {}).items():
        env[str(key)] = str(value)
    return env


def _exec_user(params):
    user = params.get("user")
    if user is None:
        return None
    try:
        return pwd.getpwuid(int(user)) if str(user).isdigit() else pwd.getpwnam(user)
    except KeyError:
        raise Failure("no such user: %s" % user) from None


def exec_proc_stat(pid):
    """(ppid, pgrp, session, state) of a process from /proc, or None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), int(fields[2]), int(fields[3]), fields[0].decode("ascii", "replace")


def exec_tree(leader):
    """Every live process the command started: its own, its process group and session (led by
    ``leader``, started with start_new_session), and all descendants, wherever they moved."""
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = exec_proc_stat(int(name))
            if st is not None and st[3] not in ("Z", "X"):
                table[int(name)] = st
    found = set(pid for pid, st in table.items() if pid == leader or leader in (st[1], st[2]))
    grew = True
    while grew:
        grew = False
        for pid, st in table.items():
            if pid not in found and st[0] in found:
                found.add(pid)
                grew = True
    found.discard(os.getpid())
    return found


def exec_alive(pid):
    st = exec_proc_stat(pid)
    return st is not None and st[3] not in ("Z", "X")


def exec_end(proc):
    """End the command and everything it started. The tree is frozen first (SIGSTOP), so nothing in it
    forks or is reparented away while it is collected; then SIGTERM (and SIGCONT, so it is handled),
    and SIGKILL to whatever is still alive after a grace."""
    doomed = set()
    for _ in range(3):  # a process may have forked just before it was stopped: collect again
        new = exec_tree(proc.pid) - doomed
        if not new:
            break
        for pid in new:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGSTOP)
        doomed |= new
    for sig in (signal.SIGTERM, signal.SIGCONT):
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, sig)
        for pid in doomed:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
    end = time.monotonic() + EXEC_GRACE
    while time.monotonic() < end:
        proc.poll()  # reap our own child, so it does not count as alive
        if not any(exec_alive(pid) for pid in doomed):
            return
        time.sleep(0.05)
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    for pid in doomed:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def exec_seconds(value):
    return "%g" % value


def exec_run(argv, params, timeout=None):
    """Run argv with the resource's user, cwd and environment; stdout and stderr merged.

    Ends it, and everything it started, at ``timeout`` or at the resource's time limit if sooner.
    """
    limit, by_deadline = run_remaining(timeout)
    if by_deadline and limit <= 0:
        raise Failure("%s not started: the resource timed out (the resource's time limit)" % " ".join(argv)[:200])
    pw = _exec_user(params)
    cwd = params.get("cwd")
    if cwd is not None and not os.path.isdir(cwd):
        raise Failure("cwd %s is not a directory" % cwd)

    def demote():
        if pw is not None and os.getuid() != pw.pw_uid:
            os.setgid(pw.pw_gid)
            os.initgroups(pw.pw_name, pw.pw_gid)
            os.setuid(pw.pw_uid)

    before_command()
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=_exec_env(params, pw),
            preexec_fn=demote if pw is not None else None,
            start_new_session=True,  # so a timeout kills the whole process group
        )
    except FileNotFoundError:
        raise Failure("command not found: %s" % argv[0]) from None
    except PermissionError:
        raise Failure("command not executable: %s" % argv[0]) from None
    try:
        out, _ = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        exec_end(proc)
        try:
            out, _ = proc.communicate(timeout=EXEC_DRAIN)
        except subprocess.TimeoutExpired:
            # something it started survived SIGKILL's reach (or sits in the kernel) holding the output
            # open: stop reading rather than wait for it
            out = b""
            with contextlib.suppress(OSError):
                proc.stdout.close()
            proc.wait()
        raise Failure(
            "%s timed out after %ss%s%s"
            % (" ".join(argv)[:200], exec_seconds(round(limit) if by_deadline else limit),
               " (the resource's time limit)" if by_deadline else "",
               (": " + exec_tail(out.decode("utf-8", "replace"))) if out and out.strip() else "")
        ) from None
    return ExecResult(proc.returncode, out.decode("utf-8", "replace"))


def exec_guards(params, use_refreshonly=True):
    """(state, why): whether the guards require a run. Runs the guard commands (read-only ones)."""
    if use_refreshonly and params.get("refreshonly"):
        return "done", "refreshonly: runs only when notified"
    creates = params.get("creates")
    if creates and os.path.lexists(creates):
        return "done", "%s exists" % creates
    if params.get("unless"):
        res = exec_run(params["unless"], params, params.get("timeout"))
        if res.rc == 0:
            return "done", "unless succeeded"
    if params.get("onlyif"):
        res = exec_run(params["onlyif"], params, params.get("timeout"))
        if res.rc != 0:
            return "done", "onlyif exited %d" % res.rc
    reasons = []
    if creates:
        reasons.append("%s does not exist" % creates)
    if params.get("unless"):
        reasons.append("unless failed")
    if params.get("onlyif"):
        reasons.append("onlyif succeeded")
    return "pending", ", ".join(reasons) or "no guard: runs every time"


def _exec_command(params):
    EXEC_RAN.add(id(params))
    res = exec_run(params["command"], params, params.get("timeout"))
    allowed = params.get("returns") or [0]
    if res.rc not in allowed:
        tail = exec_tail(res.output)
        raise Failure("command exited %d (expected %s)%s" % (
            res.rc, ", ".join(str(r) for r in allowed), (":\n" + tail) if tail else ""))


def exec_observe(params, ctx):
    state, why = exec_guards(params)
    return {"state": state, "why": why}


def exec_apply(params, changes, ctx):
    if "state" in changes:
        _exec_command(params)


def exec_refresh(params, ctx):
    """When notified: run again, unless a guard (creates, unless, onlyif) says it is not needed."""
    if id(params) in EXEC_RAN:
        return
    state, _why = exec_guards(params, use_refreshonly=False)
    if state == "pending":
        _exec_command(params)


register("exec", exec_observe, exec_apply, exec_refresh)
