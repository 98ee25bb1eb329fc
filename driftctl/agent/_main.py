"""Agent entry point: one JSON request line on stdin, JSON lines on stdout (protocol 2).

stdin:  the compressed program (read by the launcher), then the request as one JSON line (or
        ``{"z": n}\n`` and n bytes of that JSON compressed with zlib), then, for
        "apply" only, frames: ``{"blob": sha, "size": n}\\n`` followed by n raw bytes (file contents, in
        the order the resources need them), ``{"end": true}\\n`` when no content follows, and
        ``{"cancel": reason}\\n`` when the controller asks the run to stop. The controller keeps stdin
        open until the agent's last line: end of input means the controller is gone. An apply request
        with ``"lease": seconds`` (D47) is followed, after the end frame, by ``{"ping": n}\\n`` every
        quarter of it: that long without a byte while the agent was ready to read also means the
        controller is gone (the link went silent: no end of input ever comes).
        A probe request with ``"then": true`` (D50) keeps the agent after its answer: it then reads
        ``{"ping": n}`` (answered ``{"pong": n}`` at once, so that a controller that plans knows the
        agent is still there), ``{"bye": true}`` (it exits), or the next request (an apply and its
        frames, whose records and answer follow as above). End of input, a cancel frame, a signal or
        the lease running out while it waits end it as a bye does.
stdout: for "apply", ``{"begin": id}`` before a resource starts changing anything and
        ``{"done": id, "result": {...}}`` when it ended (again with ``"refresh": true`` for a refresh);
        then, for every op, one final answer ``{"v": 2, "ok": true, ...}`` or ``{"v": 2, "ok": false,
        "error": "..."}``; when the request asks for it (``"zip": true``) that answer is sent as
        ``{"v": 2, "z": base64 of its JSON compressed with zlib}``.
        Records share writes (D49): what waits is written before the agent starts a command or waits
        for input, once FLUSH_BYTES wait, with the answer, and at the latest FLUSH_AFTER after it was
        made (a thread writes it while a resource runs). A write per record was an SSH packet per
        record, encrypted, sent and read on its own on both ends.

Ops:
  facts  -> {"facts": {...}}
  probe  -> {"facts": {...}?, "resources": {id: {"observed": {...}, "refuse"?: "..."} | {"error": "..."}},
             "watch": {...}?, "outbox": {"id", "reports": [{"seq", "doc"}], "more"}?}  (outbox_collect below)
  apply  -> records as above; final {"cancelled"?: reason, "watch": {...}?}
  prune  -> {"prune": {"removed", "kept", "bytes_freed"}}

Apply items come in graph order: {"id", "type", "params", "changes": [field, ...], "depends": [ids],
"notify": [ids], "expect"?: what the probe saw, "timeout"?: seconds}. An item whose dependency failed or
was skipped is skipped; notified items with a refresh handler are refreshed once, after every change.

A run stops at the next resource boundary once it is cancelled: by a cancel frame, end of input, its lease
running out, SIGHUP,
SIGINT or SIGTERM, its parent (sshd, sudo) going away, or its output being closed. A resource already
running has its child processes terminated; nothing new starts after that.
"""

import _thread
import binascii
import errno
import fcntl
import os
import select
import stat
import time
import zlib

from driftctl.agent._core import (
    BACKUP_DIR,
    BEFORE_COMMAND,
    DIR_SYNC,
    TYPES,
    Ctx,
    Failure,
    new_sha256,
    remember_dirs,
    remember_names,
    signal,
    suppress,
    user_state_dir,
)
from driftctl.agent.facts import gather_facts

PROTOCOL = 2
LINE_LIMIT = 1 << 26  # a request line (the change list) larger than this is refused
CHUNK = 1 << 20
HOLD = 8 << 20  # content read ahead at a resource boundary to hear the controller behind it (lease)
FLUSH_AFTER = 0.2  # seconds a record may wait to share a write with the ones after it
FLUSH_BYTES = 1 << 15  # records waiting that make a write at once


def _json_codec():
    """(dumps, loads) as json's, compact: built on its C half, ``_json``, where this interpreter has it,
    as ``json`` itself is. Importing ``json`` imports ``re`` and ``enum`` for its pure Python fallback,
    ~5 ms of every agent's start on a small host. The same text either way; ``json`` itself where
    ``_json`` is missing or unlike the one this was written against."""
    try:
        import _json

        constants = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}

        class Context(object):  # what _json's scanner reads of a json.JSONDecoder
            strict = True
            object_hook = None
            object_pairs_hook = None
            parse_float = float
            parse_int = int
            parse_constant = constants.__getitem__

        scan = _json.make_scanner(Context())
        escape = _json.encode_basestring_ascii

        def refuse(o):
            raise TypeError("Object of type %s is not JSON serializable" % type(o).__name__)

        def dumps(obj):
            return "".join(_json.make_encoder({}, refuse, escape, None, ":", ",", False, False, True)(obj, 0))

        def loads(text):
            start = len(text) - len(text.lstrip(" \t\n\r"))
            try:
                obj, end = scan(text, start)
            except StopIteration as e:
                raise ValueError("Expecting value: char %d" % e.value) from None
            if text[end:].strip(" \t\n\r"):
                raise ValueError("Extra data: char %d" % end)
            return obj

        if dumps({"a": [1, 2.5, None, True, "\u00e9"]}) == '{"a":[1,2.5,null,true,"\\u00e9"]}' and \
                loads(' {"a": [1, 2.5, null, true, "\\u00e9"]} ') == {"a": [1, 2.5, None, True, "\u00e9"]}:
            return dumps, loads
    except Exception:  # any surprise: json's own
        pass
    import json

    return (lambda obj: json.dumps(obj, separators=(",", ":"))), json.loads


json_dumps, json_loads = _json_codec()


class _Input(object):
    """fd 0 with a buffer of our own: the launcher read exactly the program from it, unbuffered."""

    def __init__(self, fd=0):
        self.fd = fd
        self.buf = bytearray()
        self.eof = False
        self.lease = None  # seconds without a byte, while we wait for one, that mean the controller is gone
        self.last = time.monotonic()  # when a byte last came
        self.silent = False  # the input "ended" because the lease ran out
        self.before_wait = None  # called when a read would wait (the channel writes what it holds)

    def gone(self):
        """Why the controller counts as gone, in the words the records use."""
        if self.silent:
            return "the controller's connection is gone (nothing from it for %g s)" % self.lease
        return "the controller's connection is gone (end of input)"

    def _fill(self):
        if self.eof:
            return False
        if self.before_wait is not None and not self.ready(0):
            self.before_wait()
        if self.lease and not self._wait():
            self.eof = True
            return False
        data = os.read(self.fd, CHUNK)
        if not data:
            self.eof = True
            return False
        self.buf.extend(data)
        self.last = time.monotonic()
        return True

    def ready(self, timeout):
        """Whether a read would not wait (within ``timeout`` seconds)."""
        try:
            return bool(select.select([self.fd], [], [], timeout)[0])
        except (OSError, ValueError):
            return True  # the read says what is wrong

    def _wait(self):
        """Wait for input; False when the lease ran out first."""
        while not self.ready(1.0):
            if self.lapsed():
                return False
        return True

    def lapsed(self):
        """Whether the lease ran out: nothing came for that long while we were ready to read."""
        if self.lease and time.monotonic() - self.last >= self.lease:
            self.silent = True
        return self.silent

    def hear(self):
        """At a resource boundary: take in, without waiting, what the controller sent (up to HOLD bytes
        ahead of use); then whether the lease ran out. A full buffer renews the lease: the controller is
        then waiting for us, not we for it."""
        while len(self.buf) < HOLD and not self.eof and self.ready(0):
            self._fill()
        if len(self.buf) >= HOLD:
            self.last = time.monotonic()
        return self.lapsed()

    def readline(self, limit=LINE_LIMIT):
        """One line without its newline, or None at end of input."""
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[: i + 1]
                return line
            if len(self.buf) > limit:
                raise Failure("a request line longer than %d bytes" % limit)
            if not self._fill():
                if self.buf:  # a last line without its newline (protocol 1 callers)
                    line = bytes(self.buf)
                    del self.buf[:]
                    return line
                return None

    def read_into(self, n, sink):
        """Pass exactly n bytes to ``sink`` in chunks; False when the input ended first."""
        while n > 0:
            if not self.buf and not self._fill():
                return False
            take = bytes(self.buf[:n])
            del self.buf[: len(take)]
            n -= len(take)
            sink(take)
        return True


class _Channel(object):
    """The controller's end: the frames it sends, the records we send, and whether it is still there."""

    def __init__(self, out_fd=1):
        self.input = _Input()
        self.out_fd = out_fd
        self.cancelled = None  # the reason, once cancelled
        self.ppid = os.getppid()
        self.frames_done = False  # the "end" frame was read: stdin now belongs to the watcher thread
        self.pending = None  # a blob frame header read but not yet consumed
        self.records = True  # protocol 1 callers (bake, tests) want one answer document only
        self.waiting = False  # between two requests of a session (D50): a signal ends the wait at once
        self._write_lock = _thread.allocate_lock()
        self._held = []  # records made but not written yet (encoded), oldest first
        self._held_bytes = 0
        self._held_since = 0.0  # when the oldest of them was made
        self._wake = None  # a Condition on the write lock, made with the flusher
        self._flusher = None  # the thread that writes what waited FLUSH_AFTER; False: it could not start
        self._wrote = False  # a first record goes out at once: a controller that heard nothing from a
        # run that died knows nothing changed, and one that heard a record knows the run had begun
        self.input.before_wait = self.flush

    def reset(self):
        """A new request on this channel (after a probe that stayed): its first record goes out at once,
        and its frames are still to come."""
        self._wrote = False
        self.frames_done = False
        self.pending = None

    # ---- cancellation
    def cancel(self, why):
        if self.cancelled is None:
            self.cancelled = why
            _kill_children(signal.SIGTERM)

    def alive(self):
        if self.cancelled is None and os.getppid() != self.ppid:
            self.cancel("the controller's session ended (parent process gone)")
        # with a lease, before the end frame (the watcher thread owns stdin after it)
        if self.cancelled is None and self.input.lease and not self.frames_done and (
                self.input.hear() or self.input.eof):
            self.cancel(self.input.gone())
        return self.cancelled is None

    # ---- output
    def record(self, record):
        """A record for the controller: written within FLUSH_AFTER, with the records made meanwhile."""
        if self.records:
            self._put(record, hold=True)

    def send(self, record):
        """Write ``record`` now, after every record still waiting."""
        self._put(record, hold=False)

    def _put(self, record, hold):
        data = (json_dumps(record) + "\n").encode("utf-8")
        with self._write_lock:
            hold = hold and self._wrote
            if not self._held:
                self._held_since = time.monotonic()
                if hold:
                    hold = self._wake_flusher()
            self._held.append(data)
            self._held_bytes += len(data)
            if not hold or self._held_bytes >= FLUSH_BYTES:
                self._write_held()

    def _wake_flusher(self):
        """(write lock held) Tell the flusher thread (started on the first held record) that a record
        waits; False when there is no such thread (it could not start: records are written at once)."""
        if self._flusher is None:
            import threading  # an agent that holds no record imports none of it (~5 ms of a start)

            self._wake = threading.Condition(self._write_lock)
            flusher = threading.Thread(target=self._flush_later, name="driftctl-flush")
            flusher.daemon = True
            try:
                flusher.start()
            except RuntimeError:  # no thread to be had (a full pids cgroup): nothing waits then
                self._flusher = False
                return False
            self._flusher = flusher
        if self._flusher is False:
            return False
        self._wake.notify()
        return True

    def flush(self):
        """Write the records that wait, and put what was written on disk: the agent is about to wait on
        something outside it (a command, the controller's next bytes)."""
        with self._write_lock:
            if self._held:
                self._write_held()
            else:
                self._synced()

    def _flush_later(self):
        """Write what has waited FLUSH_AFTER, while the main thread is busy with a resource."""
        with self._wake:
            while True:
                if not self._held:
                    self._wake.wait()
                    continue
                due = self._held_since + FLUSH_AFTER - time.monotonic()
                if due > 0:
                    self._wake.wait(due)
                    continue
                self._write_held()

    def _synced(self):
        """(write lock held) The directories' fsyncs that waited. One that fails (EIO) stops the run: the
        records still say what was done, and the answer says why it stopped."""
        failed = DIR_SYNC.flush()
        if failed:
            self.cancel("; ".join(failed) + " (what was written there may not survive a crash)")

    def _write_held(self):
        """(write lock held) Write every waiting record, in one write when the pipe takes it; what they
        report was written is on disk first (the directories' fsyncs that waited)."""
        self._synced()
        data, self._held, self._held_bytes = b"".join(self._held), [], 0
        self._wrote = True
        try:
            view = memoryview(data)
            while view:
                n = os.write(self.out_fd, view)
                view = view[n:]
        except OSError:
            self.cancel("the controller's connection is gone (output closed)")

    # ---- frames
    def next_frame(self):
        """The next frame header (a dict), or None when input ended or the frames are over."""
        if self.pending is not None:
            frame, self.pending = self.pending, None
            return frame
        if self.frames_done:
            return None
        line = self.input.readline()
        if line is None:
            self.cancel(self.input.gone())
            return None
        try:
            frame = json_loads(line.decode("utf-8"))
        except ValueError:
            raise Failure("bad frame from the controller") from None
        if frame.get("cancel") is not None:
            self.cancel(str(frame["cancel"]) or "cancelled by the controller")
            return self.next_frame()
        if "ping" in frame:
            return self.next_frame()
        if frame.get("end"):
            self.frames_done = True
            self.start_watcher()
            return None
        return frame

    def settle(self, passed):
        """Read past the frames of resources already passed (skipped, failed, in sync), up to the next
        frame still needed; at the end frame the watcher takes over stdin."""
        while self.cancelled is None:
            frame = self.next_frame()
            if frame is None:
                return
            if frame.get("for") in passed:
                self.skip_body(frame)
                continue
            self.pending = frame
            return

    def skip_body(self, frame):
        if not self.input.read_into(int(frame["size"]), lambda chunk: None):
            self.cancel(self.input.gone())

    def start_watcher(self):
        import threading

        t = threading.Thread(target=self._watch, name="driftctl-watch")
        t.daemon = True
        t.start()

    def _watch(self):
        """After the last frame: notice a cancel frame, end of input, the lease running out or a vanished
        parent within a second."""
        while self.cancelled is None:
            if not self.alive():
                return
            ready = bool(self.input.buf) or self.input.ready(1.0)
            if not ready:
                if self.input.lapsed():
                    self.cancel(self.input.gone())
                    return
                continue
            try:
                line = self.input.readline()
            except (OSError, Failure):
                line = None
            if line is None:
                self.cancel(self.input.gone())
                return
            try:
                frame = json_loads(line.decode("utf-8"))
            except ValueError:
                continue
            if isinstance(frame, dict) and frame.get("cancel") is not None:
                self.cancel(str(frame["cancel"]) or "cancelled by the controller")


def _kill_children(sig):
    """Signal every child process of the agent (and the process group each leads): no orphan is left."""
    me = os.getpid()
    try:
        names = os.listdir("/proc")
    except OSError:
        return
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and int(fields[1]) == me:
            pid = int(name)
            try:
                os.killpg(pid, sig)  # a child that leads its own group (run() starts them so)
            except OSError:
                with suppress(OSError):
                    os.kill(pid, sig)


class StreamCtx(Ctx):
    """A Ctx whose file contents arrive as frames on the channel, streamed into the destination."""

    def __init__(self, channel, **kwargs):
        Ctx.__init__(self, **kwargs)
        self.channel = channel

    def copy_blob(self, sha, fd):
        if sha in self.blobs:  # sent inline (old controllers, tests)
            return Ctx.copy_blob(self, sha, fd)
        channel = self.channel
        while True:
            frame = channel.next_frame()
            if frame is None:
                raise Failure("content %s was not received from the controller%s" % (
                    sha[:12], (" (%s)" % channel.cancelled) if channel.cancelled else ""))
            if frame.get("blob") != sha:
                channel.skip_body(frame)  # for a resource that was skipped or failed before needing it
                continue
            return _receive(channel, frame, fd)


def _receive(channel, frame, fd):
    """Write one blob frame's body to ``fd``, hashing on the way; the whole frame is always consumed.

    Returns (bytes written, their sha256), as Ctx.copy_blob does."""
    size = int(frame["size"])
    h = new_sha256(size=size)
    failed = []

    def sink(chunk):
        if failed:
            return  # the destination failed (ENOSPC...): read the rest of the frame past it
        h.update(chunk)
        view = memoryview(chunk)
        try:
            while view:
                n = os.write(fd, view)
                view = view[n:]
        except OSError as e:
            failed.append(e)

    complete = channel.input.read_into(size, sink)
    if failed:
        raise failed[0]
    if not complete:
        channel.cancel(channel.input.gone())
        raise Failure("the connection ended while content %s was being received" % frame["blob"][:12])
    if h.hexdigest() != frame["blob"]:
        raise Failure("content received does not match its checksum %s" % frame["blob"][:12])
    return size, h.hexdigest()


def _handler(item):
    handler = TYPES.get(item["type"])
    if handler is None:
        raise Failure("this agent has no resource type %r" % item["type"])
    return handler


def _observe(item, ctx):
    try:
        handler = _handler(item)
        observed = handler.observe(item["params"], ctx)
        seen = {"observed": observed}
        precheck = getattr(handler, "precheck", None)
        if precheck is not None:
            refusal = precheck(item["params"], observed, ctx)
            if refusal:
                seen["refuse"] = refusal
        return seen
    except Failure as e:
        return {"error": str(e)}
    except Exception as e:  # a bug or an unexpected host state: report it on this resource only
        return {"error": "%s: %s" % (type(e).__name__, e)}


def _prefetch(items, ctx, hook="prefetch"):
    """Each type with a prefetch (``hook``: or an apply_prefetch) asks the host once for all its
    resources of ``items`` (two or more: one resource asks the same one command itself). Best effort:
    a prefetch that fails leaves each resource to ask for itself, and to report its own error."""
    by_type = {}
    for item in items:
        prefetch = getattr(TYPES.get(item.get("type")), hook, None)
        if prefetch is not None:
            by_type.setdefault(item["type"], (prefetch, []))[1].append(item.get("params") or {})
    for prefetch, params_list in by_type.values():
        if len(params_list) < 2:
            continue
        with suppress(Exception):  # it fills ctx.known only once all of it is known
            prefetch(params_list, ctx)


def op_probe(req, channel):
    ctx = Ctx(facts=gather_facts, want_content=req.get("want_content", True))  # gathered if asked for
    answer = {"resources": {}}
    if req.get("facts", True):
        answer["facts"] = ctx.facts
    remember_names(True)  # a probe only reads: the owners' names cannot change under it
    remember_dirs(True)  # nor the directories its walks found
    try:
        _prefetch(req.get("resources", []), ctx)
        for item in req.get("resources", []):
            answer["resources"][item["id"]] = _observe(item, ctx)
        _watch(req, ctx, answer)
    finally:
        remember_dirs(False)
        remember_names(False)
    if req.get("outbox"):
        # pull mode's recorded runs, collected in this round trip (outbox_collect below); a failure is the
        # outbox's, never the probe's
        try:
            answer["outbox"] = outbox_collect(req["outbox"])
        except Failure as e:
            answer["outbox"] = {"error": str(e), "reports": []}
        except Exception as e:
            answer["outbox"] = {"error": "%s: %s" % (type(e).__name__, e), "reports": []}
    return answer


def _watch(req, ctx, answer):
    """The watch scan, if asked; its failure is reported in the answer, never fatal to the probe."""
    if not req.get("watch") or "scan_watch" not in globals():
        return
    try:
        answer["watch"] = globals()["scan_watch"](req["watch"], ctx)
    except Exception as e:
        answer["watch"] = {"entries": {}, "truncated": [], "missing": [], "error": "%s: %s" % (type(e).__name__, e)}


# ---- pull mode's outbox on the host
# Report documents of ``driftctl pull`` runs, for the controller.
#
# ``driftctl pull`` writes each recorded run as ``<seq>.json`` (mode 0600) into a 0700 directory of the
# user it runs as, with the outbox's identity in ``id`` (driftctl/pull/state.py). A probe that asks
# (``"outbox": {"dir", "id", "after", "max", "max_bytes"}``) gets the reports numbered after ``after``
# (oldest first, at most ``max`` of them and about ``max_bytes``), as ``{"id", "reports": [{"seq",
# "doc"}], "more"}``. Naming ``after`` for the same ``id`` is the controller's acknowledgement: its
# store committed those, so they are removed. A directory or file another user could have written is
# refused (opened by descriptor, links never followed): a report is believed only as far as the
# controller's own checks go, but nobody else gets to plant one.

OUTBOX_MAX = 20
OUTBOX_MAX_BYTES = 4 * 1024 * 1024
OUTBOX_ALONE_BYTES = 32 * 1024 * 1024  # a report over the budget (a host of many thousand resources) comes alone


def _outbox_dir(path):
    """The outbox directory's descriptor, or None when there is none (this host never pulled)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        if e.errno == 2:  # ENOENT: this host never pulled
            return None
        raise Failure("the pull outbox %s cannot be opened: %s" % (path, e.strerror)) from None
    st = os.fstat(fd)
    if st.st_uid != os.geteuid() or st.st_mode & 0o077:
        os.close(fd)
        raise Failure("refusing the pull outbox %s: not a 0700 directory of uid %d" % (path, os.geteuid()))
    return fd


def _outbox_read(dfd, name, limit):
    """A regular file of ours in the outbox, not writable by others, at most ``limit`` bytes; or None."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), dir_fd=dfd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return None
        if st.st_size > limit:
            return b""
        chunks = []
        while True:
            data = os.read(fd, 1 << 20)
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)
    finally:
        os.close(fd)


def outbox_collect(spec):
    """The answer to a probe's ``outbox`` request (see the comment above)."""
    path = str(spec.get("dir") or "/var/lib/driftctl/pull/outbox")
    dfd = _outbox_dir(path)
    if dfd is None:
        return {"id": None, "reports": [], "more": False}
    try:
        ident = (_outbox_read(dfd, "id", 200) or b"").decode("utf-8", "replace").strip()
        after = int(spec.get("after") or 0) if spec.get("id") == ident else 0
        most = max(1, min(int(spec.get("max") or OUTBOX_MAX), 1000))
        budget = int(spec.get("max_bytes") or OUTBOX_MAX_BYTES)
        numbered = []
        for name in os.listdir(dfd):
            if name.endswith(".json") and name[:-5].isdigit():
                numbered.append((int(name[:-5]), name))
        numbered.sort()
        acked = 0
        if spec.get("id") == ident and after > 0:
            for seq, name in numbered:
                if seq <= after:
                    try:
                        os.unlink(name, dir_fd=dfd)
                        acked += 1
                    except OSError:
                        pass
        reports = []
        used = 0
        more = False
        for seq, name in numbered:
            if seq <= after:
                continue
            if len(reports) >= most:
                more = True
                break
            # one over the budget waits for a probe where it comes first, then alone (it was refused for good)
            data = _outbox_read(dfd, name, max(budget, OUTBOX_ALONE_BYTES))
            if data is None:
                continue
            if reports and used + len(data) > budget:
                more = True
                break
            try:
                doc = json_loads(data.decode("utf-8")) if data else None
            except ValueError:
                doc = None
            used += len(data)
            reports.append({"seq": seq, "doc": doc} if doc is not None else
                           {"seq": seq, "doc": None, "error": "unreadable or larger than %d bytes"
                            % max(budget, OUTBOX_ALONE_BYTES)})
        return {"id": ident, "reports": reports, "more": more, "acked": acked}
    finally:
        os.close(dfd)


LOCK_DIR = "/run/driftctl"


def _backup_dir(req, ctx, create=True):
    """The request's backup settings into ``ctx``: root's default directory (/var/lib/driftctl/backup)
    is ~/.local/state/driftctl/backup for an agent that is not root."""
    _backup_settings(req, ctx)
    if os.geteuid() != 0 and ctx.backup_dir == BACKUP_DIR:
        ctx.backup_dir = os.path.join(user_state_dir(create), "backup")


def _lock_dir(req):
    """Where the host lock is: /run/driftctl for root. An agent that is not root cannot use it: its own
    runtime directory /run/user/UID/driftctl when the host has one (it is the host's own, where a home
    may be shared between hosts over NFS), else ~/.local/state/driftctl. One apply at a time per host
    and user, then."""
    if req.get("lock_dir"):
        return req["lock_dir"]
    uid = os.geteuid()
    if uid == 0:
        return LOCK_DIR
    run = "/run/user/%d" % uid
    try:
        st = os.lstat(run)
    except OSError:
        st = None
    if st is not None and stat.S_ISDIR(st.st_mode) and st.st_uid == uid and not st.st_mode & 0o077:
        return os.path.join(run, "driftctl")
    return user_state_dir(create=True)


class Locked(Failure):
    """Another driftctl apply holds this host's lock (answered as ``"locked": true``)."""


def _host_lock(directory):
    """One apply at a time per host: an flock held until this process exits (so never left stale).

    The lock lives in a directory only the agent's user can write (/run/driftctl for root; never /tmp
    or /run/lock, where anyone could plant a symlink for root to follow and truncate), opened without
    following links.
    """
    refused = "refusing the lock directory %s: not a directory owned by us and closed to others"
    try:
        with suppress(FileExistsError):
            os.mkdir(directory, 0o700)
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):  # a link or a file where the directory should be
            raise Failure(refused % directory) from None
        raise Failure("cannot take the host lock in %s: %s" % (directory, e.strerror)) from None
    try:
        st = os.fstat(dfd)
        if st.st_uid != os.getuid() or st.st_mode & 0o022:
            raise Failure(refused % directory)
        fd = os.open("apply.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600,
                     dir_fd=dfd)
    except OSError as e:
        raise Failure("cannot take the host lock in %s: %s" % (directory, e.strerror)) from None
    finally:
        os.close(dfd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise Failure("refusing the host lock: %s/apply.lock is not a regular file" % directory)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
        os.close(fd)
        raise Locked("host is being changed by %s" % holder) from None
    os.ftruncate(fd, 0)
    os.write(fd, ("driftctl apply pid %d" % os.getpid()).encode())
    return fd


def _set_deadline(seconds):
    """The resource's time limit, honoured by every command it runs (see run() in _core)."""
    setter = globals().get("run_set_deadline")
    if setter is not None:
        setter(time.monotonic() + seconds if seconds else None)


def _limit(item, default):
    """A resource's time limit: its own ``timeout`` (exec, service) when it has one, else the run's."""
    own = item.get("timeout") or (item.get("params") or {}).get("timeout")
    return own if isinstance(own, (int, float)) and not isinstance(own, bool) and own > 0 else default


def _expectation(item, before):
    """What the target must still be just before a write (compare-and-swap), or 'no expectation'."""
    unknown = globals().get("CAS_UNKNOWN")
    if before is not None:
        return before.get("_cas", unknown) if isinstance(before, dict) else unknown
    if "expect" in item:
        return item["expect"]
    return unknown


def _backup_settings(req, ctx):
    ctx.backup_dir = req.get("backup_dir") or ctx.backup_dir
    if req.get("backup_keep") is not None:
        ctx.backup_keep = int(req["backup_keep"])
    if req.get("backup_max_age_days") is not None:
        ctx.backup_max_age = float(req["backup_max_age_days"]) * 86400


def _apply_one(item, ctx, results, channel):
    """Converge one item; its outcome goes into ``results`` (and to the controller)."""
    rid = item["id"]
    bad = [d for d in item.get("depends", []) if results.get(d, {}).get("status") in ("failed", "skipped")]
    if bad:
        return {"status": "skipped", "error": "dependency %s did not converge" % ", ".join(bad)}
    if item.get("failed"):  # could not even be observed: nothing after it may run
        return {"status": "failed", "error": item["failed"]}
    changes = item.get("changes")
    before = None
    if item.get("deferred"):
        # not observable at plan time (its user or package did not exist yet): observe it now,
        # after its dependencies, and converge what differs from the desired state sent along
        seen = _observe(item, ctx)
        if "error" in seen:
            return {"status": "failed", "error": seen["error"]}
        before = seen["observed"]
        desired = item["deferred"]["desired"]
        changes = [k for k, v in sorted(desired.items()) if before.get(k) != v]
        if not changes:
            return {"status": "ok", "before": before, "observed": before}
        if seen.get("refuse"):
            return {"status": "failed", "error": seen["refuse"], "before": before}
    if not changes:
        return {"status": "ok"}
    channel.record({"begin": rid})
    ctx.expect = _expectation(item, before)
    try:
        _handler(item).apply(item["params"], changes, ctx)
        result = {"status": "changed"}
    except Failure as e:
        result = {"status": "failed", "error": str(e)}
    except Exception as e:
        result = {"status": "failed", "error": "%s: %s" % (type(e).__name__, e)}
    if channel.cancelled is not None and result["status"] == "failed":
        result["error"] = "%s (stopped: %s)" % (result["error"], channel.cancelled)
    if result["status"] == "changed":
        result.update(_observe(item, ctx))
    if before is not None:
        result["before"] = before
    return result


def op_apply(req, channel):
    blobs = dict((k, binascii.a2b_base64(v)) for k, v in req.get("blobs", {}).items())  # inline (protocol 1)
    ctx = StreamCtx(channel, facts=gather_facts, blobs=blobs)  # gathered if a handler asks
    _host_lock(_lock_dir(req))
    _backup_dir(req, ctx)
    limit = req.get("resource_timeout")
    results = {}
    notified = []
    items = req.get("resources", [])
    framed = bool(req.get("frames"))
    changing = [item for item in items if item.get("changes")]
    if changing:
        _set_deadline(limit)  # the run's limit of one resource: a question for all of them at most that
        _prefetch(changing, ctx, "apply_prefetch")
        _set_deadline(None)
    for item in items:
        if framed:
            channel.settle(results)
        if not channel.alive():
            break
        _set_deadline(_limit(item, limit))
        result = results[item["id"]] = _apply_one(item, ctx, results, channel)
        _set_deadline(None)
        channel.record({"done": item["id"], "result": result})
        if result["status"] == "changed":
            for target in item.get("notify", []):
                if target not in notified:
                    notified.append(target)
    for item in items:
        rid = item["id"]
        if rid not in notified or rid not in results or results[rid]["status"] in ("failed", "skipped"):
            continue
        handler = _handler(item)
        if handler.refresh is None or not channel.alive():
            continue
        channel.record({"begin": rid, "refresh": True})
        _set_deadline(_limit(item, limit))
        try:
            handler.refresh(item["params"], ctx)
            results[rid]["refreshed"] = True
        except Failure as e:
            results[rid].update(status="failed", error="refresh failed: %s" % e)
        except Exception as e:
            results[rid].update(status="failed", error="refresh failed: %s: %s" % (type(e).__name__, e))
        _set_deadline(None)
        channel.record({"done": rid, "result": results[rid], "refresh": True})
    if framed:
        channel.settle(results)
    channel.flush()  # the writes on disk before the answer is made: a failed fsync is in it
    answer = {} if channel.records else {"results": results}
    if channel.cancelled is not None:
        answer["cancelled"] = channel.cancelled
    else:
        _watch(req, ctx, answer)
    return answer


def op_prune(req, channel):
    ctx = Ctx()
    _backup_dir(req, ctx, create=False)
    pruner = globals().get("prune_backups")
    if pruner is None:
        raise Failure("this agent cannot prune backups")
    return {"prune": pruner(ctx)}


OPS = {
    "facts": lambda req, channel: {"facts": gather_facts()},
    "probe": op_probe,
    "apply": op_apply,
    "prune": op_prune,
}


def main():
    channel = _Channel()
    BEFORE_COMMAND[:] = [channel.flush]  # what the controller should know before we wait on a command

    def on_signal(signum, frame):
        channel.cancel("signal %d" % signum)
        if channel.waiting:  # between requests: nothing runs that could stop at a boundary, so leave now
            raise _Leave()

    for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    try:
        line = channel.input.readline()
        while _serve(channel, line):
            try:
                line = _next_request(channel)
            except _Leave:  # the signal came as the wait ended
                return
            if line is None:
                return
    finally:
        DIR_SYNC.flush()  # a run cut short: what it wrote is still put on disk whole


def _serve(channel, line):
    """Answer one request (its head ``line``); whether to wait for another (a request with ``then``)."""
    zipped = stay = False
    channel.records = True
    channel.reset()
    try:
        if line is None:
            raise Failure("no request received")
        req = _request(channel, line)
        zipped = bool(req.get("zip"))
        version = req.get("v")
        if version not in (1, PROTOCOL):
            raise Failure("unsupported protocol version %r (this agent speaks %d)" % (version, PROTOCOL))
        channel.records = version == PROTOCOL
        op = OPS.get(req.get("op"))
        if op is None:
            raise Failure("unknown op %r" % req.get("op"))
        _lease(req, channel)
        answer = op(req, channel)
        answer.update(ok=True)
        stay = bool(req.get("then")) and req.get("op") == "probe" and channel.cancelled is None
    except Locked as e:
        answer = {"ok": False, "locked": True, "error": str(e)}
    except Failure as e:
        answer = {"ok": False, "error": str(e)}
    except Exception:
        import traceback  # only for a bug: kept off every agent's start

        answer = {"ok": False, "error": traceback.format_exc(limit=5)}
    answer["v"] = PROTOCOL if channel.records else 1
    if globals().get("launcher_cached"):  # set by the launcher: this program is in the host's agent cache
        answer["cached"] = True
    if zipped:
        packed = zlib.compress(json_dumps(answer).encode("utf-8"), 6)
        answer = {"v": answer["v"], "z": binascii.b2a_base64(packed).decode("ascii").strip()}
    channel.send(answer)
    return stay


def _lease(req, channel):
    """A request's ``lease`` (D47): that long without a byte from the controller, while we wait for one,
    means it is gone."""
    lease = req.get("lease")
    if isinstance(lease, (int, float)) and not isinstance(lease, bool) and lease > 0:
        channel.input.lease = float(lease)
        channel.input.last = time.monotonic()


def _next_request(channel):
    """After a probe asked to stay (``then``): the head of the next request, or None when the controller
    says ``bye``, cancels, ends its input, goes silent for the lease, or we are signalled. A ``ping``
    is answered at once (``pong``): the controller then knows the agent is still there while it plans."""
    try:
        channel.waiting = True
        while channel.alive():
            line = channel.input.readline()
            if line is None:
                return None
            try:
                head = json_loads(line.decode("utf-8"))
            except ValueError:
                return line  # _serve says what is wrong with it
            if not isinstance(head, dict) or "bye" in head or "cancel" in head:
                return None if isinstance(head, dict) else line
            if "ping" in head:
                channel.send({"pong": head["ping"]})
                continue
            return line
        return None
    except _Leave:
        return None
    finally:
        channel.waiting = False


class _Leave(Exception):
    """A signal came while the agent waited for the next request (``_next_request``)."""


def _request(channel, line):
    """The request: one JSON line, or ``{"z": n}`` followed by n bytes of that JSON, compressed."""
    req = json_loads(line.decode("utf-8"))
    if isinstance(req, dict) and list(req) == ["z"]:
        parts = []
        if not channel.input.read_into(int(req["z"]), parts.append):
            raise Failure("the request ended early")
        req = json_loads(zlib.decompress(b"".join(parts)).decode("utf-8"))
    if not isinstance(req, dict):
        raise Failure("the request is not a JSON object")
    return req


if __name__ == "__main__":
    main()
