"""Agent core: the registry of resource types and the helpers every type uses.

Runs on the host (python >= 3.8, stdlib only). Shipped first; every later module sees these names.

Every write goes through directory descriptors (``Target``): the path is walked from ``/`` one
component at a time with O_NOFOLLOW, a symlinked component is followed only when root (or the agent's
own user) planted it in a directory nobody else can write (systemd-tmpfiles' rule), and the final
component is never followed. Temp files, renames, unlinks, chown and chmod all happen relative to the
open parent directory, so no check-then-use by path is left for someone to race.

Compare-and-swap: observe returns ``"_cas"`` for the file it saw (None: it did not exist); the
engine sends it back and ``ctx.expect`` holds it during apply. Just before a rename or an unlink the
target is stat'ed again through the directory descriptor, and if it is not what the probe saw the
resource fails with "changed underneath since the plan" and nothing is written. ``CAS_UNKNOWN``
(the default) means "no expectation": old callers skip the check.

Backups (``backup_save``): one 0700 subdirectory per managed path under ``ctx.backup_dir``, named by
the first 32 hex digits of sha256(path); inside, a ``path`` file naming the original path and one
0600 entry per backup, ``<UTC YYYYmmddTHHMMSS.ffffff>Z-<sha12 of the content>``. Writing one prunes
that path's entries to the newest ``ctx.backup_keep``, none older than ``ctx.backup_max_age``
(the newest is always kept); ``prune_backups`` does the same for the whole tree and also drops
0.1's flat ``<sha256>`` files past the age limit.
"""

import _thread
import errno
import grp
import os
import pwd
import stat
import time

# the C half of signal (for spawn.py and _main): signal.py builds enums, ~4 ms of every agent's start
try:
    import _signal as signal
except ImportError:  # an interpreter without it
    import signal  # noqa: F401

# Kept off every agent's start (~20 ms of a probe's ~60 ms of CPU on a small host): ``re`` (and the enum
# module it imports) by ``pattern``, ``subprocess`` by spawn.py, ``threading`` and ``contextlib``
# (collections, functools) by ``_thread`` and ``suppress``, ``json`` by _main's codec.

TYPES: dict = {}  # type name -> Handler

BACKUP_DIR = "/var/lib/driftctl/backup"
USER_STATE = (".local", "state", "driftctl")  # an agent that is not root: its lock and backups, below its home
BACKUP_KEEP = 5
BACKUP_MAX_AGE = 30 * 86400
CONTENT_LIMIT = 256 * 1024  # files up to this size are returned as text, so the controller can diff
LINK_LIMIT = 40  # symlinks followed in one path, as the kernel's MAXSYMLINKS
CAS_UNKNOWN = object()  # ctx.expect when the caller sent no expectation: the check is skipped
NOT_KNOWN = object()  # Ctx.take_known when no prefetch answered for the key


class Failure(Exception):
    """A resource could not be observed or converged; the message is shown to the user."""


class UnsafePath(Failure):
    """The path crosses a symlink that a user other than root could have planted (or is not allowed)."""


class PathMissing(Failure):
    """A directory on the way to the path does not exist (or is not a directory)."""

    def __init__(self, message, where, kind=None):
        Failure.__init__(self, message)
        self.where = where
        self.kind = kind  # None: missing; else what is there instead of a directory


class Handler(object):
    def __init__(self, observe, apply, refresh=None, precheck=None, prefetch=None, apply_prefetch=None):
        self.observe = observe
        self.apply = apply
        self.refresh = refresh
        self.precheck = precheck
        self.prefetch = prefetch
        self.apply_prefetch = apply_prefetch


def register(name, observe, apply, refresh=None, precheck=None, prefetch=None, apply_prefetch=None):
    """Register a resource type.

    observe(params, ctx) -> dict of the managed attributes as they are now (keys as the controller's
        ``desired()`` of the type). Must not write anything.
    apply(params, changes, ctx) -> None: converge the fields named in ``changes``; raise Failure.
    refresh(params, ctx) -> None: run when notified (service restart/reload, refreshonly exec).
    precheck(params, observed, ctx) -> str | None: the reason apply would refuse for that observed
        state, or None. Apply decides its refusals with the same function, so plan and apply agree.
    prefetch(params_list, ctx) -> None: before a probe observes its resources of this type (two or
        more), ask the host once for all of them (one dpkg-query, one systemctl show) and leave the
        answers in ``ctx.known`` for observe to take. Best effort: whatever it did not learn (or when it
        raises), each observe asks for itself, as without it.
    apply_prefetch(params_list, ctx) -> None: the same before an apply changes anything, for the
        resources of this type it will change (two or more); only for what apply itself asks before
        its change, under keys of its own: an observation after a change must ask afresh.
    """
    TYPES[name] = Handler(observe, apply, refresh, precheck, prefetch, apply_prefetch)


class Ctx(object):
    """What one request gives every handler: the host's facts, the blobs sent, and options.

    ``facts``: a dict, or a function that gathers them when a handler first asks.
    ``expect``: the ``_cas`` the probe saw for the resource being applied (CAS_UNKNOWN: no check).
    ``written``: path -> ``_cas`` of what this run wrote there, so a second resource editing the
    same file in the same run expects our own write, not the probe's view.
    """

    def __init__(self, facts=None, blobs=None, backup_dir=BACKUP_DIR, want_content=True,
                 backup_keep=BACKUP_KEEP, backup_max_age=BACKUP_MAX_AGE):
        # a dict, or a function that gathers them when a handler first asks (most applies never do)
        self._facts = facts
        self.blobs = blobs or {}
        self.backup_dir = backup_dir
        self.want_content = want_content
        self.backup_keep = backup_keep
        self.backup_max_age = backup_max_age
        self.expect = CAS_UNKNOWN
        self.written = {}
        self.known = {}  # what a type's prefetch learnt for several resources at once: see take_known

    @property
    def facts(self):
        if callable(self._facts):
            self._facts = self._facts()
        return self._facts or {}

    def take_known(self, key):
        """What a prefetch learnt for ``key`` (NOT_KNOWN if nothing), taken out so that it is used once:
        an observation after a change asks the host again."""
        return self.known.pop(key, NOT_KNOWN)

    def blob(self, sha):
        try:
            return self.blobs[sha]
        except KeyError:
            raise Failure("content %s was not sent by the controller" % sha[:12]) from None

    def copy_blob(self, sha, fd):
        """Write the content ``sha`` to ``fd``; returns (bytes written, sha256 hex of what was written)."""
        data = self.blob(sha)
        h = new_sha256(size=len(data))
        view = memoryview(data)
        done = 0
        while done < len(view):
            chunk = view[done:done + (1 << 20)]
            n = os.write(fd, chunk)
            h.update(chunk[:n])
            done += n
        return done, h.hexdigest()


# ---- commands, with the per-resource time limit

RUN_DEADLINE = [None]  # monotonic seconds by which the current resource must be done, or None


def run_set_deadline(t):
    """Every later run() ends by ``t`` (time.monotonic() seconds), or has no limit with None."""
    RUN_DEADLINE[0] = t


def run_remaining(timeout=None):
    """(the timeout to use, True when the resource's time limit is what binds it)."""
    deadline = RUN_DEADLINE[0]
    if deadline is None:
        return timeout, False
    left = max(0.0, deadline - time.monotonic())
    if timeout is None or left < timeout:
        return left, True
    return timeout, False


# called before the agent waits on a command it starts (the channel writes the records it holds)
BEFORE_COMMAND = []


def before_command():
    for hook in BEFORE_COMMAND:
        hook()


class suppress(object):  # contextlib's, whose import is collections and functools
    """``with suppress(OSError): ...``: the exceptions named end the block quietly."""

    def __init__(self, *kinds):
        self.kinds = kinds

    def __enter__(self):
        return None

    def __exit__(self, kind, value, tb):
        return kind is not None and issubclass(kind, self.kinds)


def pattern(text):
    """The compiled regular expression ``text`` (re keeps it in its cache); only agents that match
    anything import ``re``."""
    import re

    return re.compile(text)


def which(name):
    path = os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").split(os.pathsep)
    for d in [*path, "/usr/sbin", "/sbin"]:
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


try:  # the interpreter's own sha256 (python <= 3.11, then >= 3.12): no OpenSSL library to load
    from _sha256 import sha256 as _own_sha256
except ImportError:
    try:
        from _sha2 import sha256 as _own_sha256
    except ImportError:  # a build without it (FIPS): hashlib's
        _own_sha256 = None
SHA256_OWN_LEFT = [1 << 20]  # bytes left to hash with it before hashlib takes over


def new_sha256(data=b"", size=None):
    """A sha256 object (``size``: the bytes it will be given, default ``len(data)``). The first MiB an
    agent hashes goes through the interpreter's own sha256: hashlib's loads OpenSSL, ~3 ms of every
    agent start, for a probe that hashes a few hundred KB; past that OpenSSL's, several times faster."""
    n = len(data) if size is None else size
    if _own_sha256 is not None and n <= SHA256_OWN_LEFT[0]:
        SHA256_OWN_LEFT[0] -= n
        return _own_sha256(data)
    import hashlib

    return hashlib.sha256(data)


def sha256_bytes(data):
    return new_sha256(data).hexdigest()


# uid and gid -> name while a probe runs (it changes nothing on the host, so the names cannot move);
# None otherwise: an apply creates users, and a name looked up before must not outlive that
_names = None


def remember_names(on):
    """Keep the names found until ``remember_names(False)``: each lookup reads /etc/passwd or
    /etc/group again (~17 us a pair), and a probe of 100 files asks for the same two names 100 times."""
    global _names
    _names = {} if on else None


def _name(kind, number, lookup):
    if _names is not None and (kind, number) in _names:
        return _names[kind, number]
    try:
        name = lookup(number)
    except KeyError:
        name = str(number)
    if _names is not None:
        _names[kind, number] = name
    return name


def user_name(uid):
    return _name("u", uid, lambda n: pwd.getpwuid(n).pw_name)


def group_name(gid):
    return _name("g", gid, lambda n: grp.getgrgid(n).gr_name)


def resolve_uid(owner):
    if owner is None:
        return -1
    if str(owner).isdigit():
        return int(owner)
    try:
        return pwd.getpwnam(owner).pw_uid
    except KeyError:
        raise Failure("no such user: %s" % owner) from None


def resolve_gid(group):
    if group is None:
        return -1
    if str(group).isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise Failure("no such group: %s" % group) from None


FILE_TYPES = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "directory",
    stat.S_IFLNK: "link",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
    stat.S_IFCHR: "chardev",
    stat.S_IFBLK: "blockdev",
}


def file_kind(st):
    return FILE_TYPES.get(stat.S_IFMT(st.st_mode), "other")


def stat_dict(st):
    return {
        "type": file_kind(st),
        "mode": "%04o" % stat.S_IMODE(st.st_mode),
        "owner": user_name(st.st_uid),
        "group": group_name(st.st_gid),
        "size": st.st_size,
        "mtime": int(st.st_mtime),
    }


def stat_path(path):
    """lstat as a dict (type, mode "0644", owner, group, size), or None when the path does not exist.

    Never follows a symlink: a link is reported as a link. (By path: for the watch scan only.)
    """
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return stat_dict(st)


def human_bytes(n, unit=None):
    """``2.0 GB``; with ``unit`` (a divisor) in that unit."""
    units = ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB"))
    for size, name in units:
        if (unit or n) >= size:
            return "%.1f %s" % (n / size, name)
    return "%d bytes" % n


# ---- the descriptor walker

O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | O_NOFOLLOW | O_CLOEXEC
READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC
TEMP_FLAGS = os.O_CREAT | os.O_EXCL | os.O_WRONLY | O_NOFOLLOW | O_CLOEXEC


def lstat_at(dfd, name):
    """lstat of ``name`` in the directory ``dfd``, or None when it does not exist."""
    try:
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _walk_parts(path):
    return [p for p in path.split("/") if p and p != "."]


def walk_link_refusal(whole, link, st, holder, holder_path):
    """Why the symlink ``link`` (lstat ``st``, in a directory with fstat ``holder``) is not followed, or None.

    systemd-tmpfiles' unsafe-transition rule: the link and its directory belong to root (or the
    agent's own user), and nobody else can write that directory unless it is sticky (where others
    cannot replace root's link; a sticky directory does not save a link someone else owns).
    """
    me = os.geteuid()
    others_write = holder.st_mode & 0o022
    sticky_saves = holder.st_mode & stat.S_ISVTX and st.st_uid == 0  # only root's link, in a sticky dir
    if st.st_uid in (0, me) and holder.st_uid in (0, me) and (not others_write or sticky_saves):
        return None
    return (
        "%s: %s is a symlink that a user other than root could have planted (link owner uid %d, in %s "
        "owned by uid %d, mode %04o): driftctl does not write or read through it"
        % (whole, link, st.st_uid, holder_path, holder.st_uid, stat.S_IMODE(holder.st_mode))
    )


O_PATH = getattr(os, "O_PATH", 0)


def _walk_open(name, dfd):
    """Open a directory component without following it; a directory we may search but not read
    (0711) is opened O_PATH, which the *at() calls accept all the same."""
    try:
        return os.open(name, DIR_FLAGS, dir_fd=dfd)
    except PermissionError:
        if not O_PATH:
            raise
        return os.open(name, O_PATH | getattr(os, "O_DIRECTORY", 0) | O_NOFOLLOW | O_CLOEXEC, dir_fd=dfd)


_dirs = None  # path -> (fd, shown) of the directories walked from /, while remember_dirs is on
DIRS_KEPT = 256  # at most this many kept open (a probe of thousands of directories walks the rest)


def remember_dirs(on):
    """Keep the directories walked from / open until ``remember_dirs(False)``: a probe of 100 files in 10
    directories walked each file's parents again (4 opens and 4 closes a file). Only while nothing is
    changed (a probe): a kept descriptor is the directory as the first walk found it, by the same rules."""
    global _dirs
    for fd, _ in (_dirs or {}).values():
        with suppress(OSError):
            os.close(fd)
    _dirs = {} if on else None


def walk_dir(path, base=None, strict=False, create=False, whole=None):
    """Open the directory ``path`` by descriptor, one component at a time; returns (fd, shown path).

    ``base``: (fd, path) to start from instead of ``/`` (``path`` is then relative to it). ``strict``:
    follow no symlink at all and no ``..`` (below a user's home). ``create``: make missing
    directories 0700 on the way. Raises UnsafePath for a link that is not followed, PathMissing for a
    missing or non-directory component; messages name ``whole`` (default ``path``). The caller closes
    the fd.
    """
    keep = _dirs is not None and base is None and not strict and not create
    if keep and path in _dirs:
        fd, shown = _dirs[path]
        return os.dup(fd), shown
    cur, shown = _walk_dir(path, base, strict, create, whole or path)
    if keep and len(_dirs) < DIRS_KEPT:
        with suppress(OSError):  # out of descriptors: the walk is still good, only not kept
            _dirs[path] = (os.dup(cur), shown)
    return cur, shown


def _walk_dir(path, base, strict, create, whole):
    if base is None:
        if not path.startswith("/"):
            raise Failure("%s is not an absolute path" % path)
        cur, shown = os.open("/", DIR_FLAGS), "/"
    else:
        cur, shown = os.dup(base[0]), base[1]
    todo = list(reversed(_walk_parts(path)))
    links = 0
    try:
        while todo:
            name = todo.pop()
            here = os.path.normpath(os.path.join(shown, name))
            if strict and name == "..":
                raise UnsafePath("%s: .. is not followed below %s" % (whole, base[1] if base else "/"))
            try:
                fd = _walk_open(name, cur)
            except OSError as e:
                st = lstat_at(cur, name)
                if st is None and create:
                    os.mkdir(name, 0o700, dir_fd=cur)
                    todo.append(name)
                    continue
                if st is None:
                    raise PathMissing("%s does not exist" % here, here) from None
                if stat.S_ISDIR(st.st_mode):  # a directory we may not open (EACCES), or one swapped in
                    raise Failure("cannot open %s: %s" % (here, e.strerror)) from None
                if not stat.S_ISLNK(st.st_mode):
                    raise PathMissing("%s is a %s, not a directory" % (here, file_kind(st)), here,
                                      file_kind(st)) from None
                if strict:
                    raise UnsafePath("%s: %s is a symlink: driftctl follows no symlink below %s"
                                     % (whole, here, base[1] if base else "/")) from None
                why = walk_link_refusal(whole, here, st, os.fstat(cur), shown)
                if why:
                    raise UnsafePath(why) from None
                links += 1
                if links > LINK_LIMIT:
                    raise UnsafePath("%s: too many levels of symbolic links" % whole) from None
                target = os.readlink(name, dir_fd=cur)
                todo.extend(reversed(_walk_parts(target)))
                if target.startswith("/"):
                    os.close(cur)
                    cur, shown = os.open("/", DIR_FLAGS), "/"
                continue
            os.close(cur)
            cur, shown = fd, here
        return cur, shown
    except BaseException:
        os.close(cur)
        raise


class Target(object):
    """A path's parent directory, open by descriptor, and the final name in it (never followed).

    ``Target("/etc/app.conf")``; below a user's home: ``Target(rel, base=(home_fd, home), strict=True)``.
    Use as a context manager (closes the descriptor).
    """

    def __init__(self, path, base=None, strict=False, create=False):
        parts = _walk_parts(path)
        if not parts or parts[-1] == "..":
            raise Failure("%s does not name a file driftctl can manage" % path)
        self.path = path if base is None else os.path.join(base[1], path)
        self.name = parts[-1]
        parent = "/".join(parts[:-1])
        self.dfd, self.dir = walk_dir(("/" if base is None else "") + parent, base=base, strict=strict,
                                      create=create, whole=self.path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        if self.dfd is not None:
            os.close(self.dfd)
            self.dfd = None

    def lstat(self):
        return lstat_at(self.dfd, self.name)

    def readlink(self):
        try:
            return os.readlink(self.name, dir_fd=self.dfd)
        except OSError:
            return None

    def open_read(self):
        """A read descriptor on the regular file at the name (never a link, never blocking on a FIFO)."""
        try:
            fd = os.open(self.name, READ_FLAGS, dir_fd=self.dfd)
        except OSError as e:
            raise Failure("cannot read %s: %s" % (self.path, e.strerror)) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise Failure("%s is no longer a regular file: not read" % self.path)
        return fd

    def open_meta(self, expect_dir=False):
        """A descriptor to chown/chmod the entry through, opened without following a link."""
        flags = os.O_RDONLY | O_NOFOLLOW | os.O_NONBLOCK | O_CLOEXEC
        if expect_dir:
            flags |= getattr(os, "O_DIRECTORY", 0)
        try:
            return os.open(self.name, flags, dir_fd=self.dfd)
        except OSError as e:
            raise Failure("cannot open %s to set owner/mode without following links: %s"
                          % (self.path, e.strerror)) from None

    def read(self, want_text=False, keep_all=False):
        """(sha256, text or None, data or None, fstat) of the regular file; data only with ``keep_all``."""
        fd = self.open_read()
        try:
            st = os.fstat(fd)
            h = new_sha256(size=st.st_size)
            keep = keep_all or (want_text and st.st_size <= CONTENT_LIMIT)
            kept = []
            size = 0
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                h.update(chunk)
                size += len(chunk)
                if keep:
                    kept.append(chunk)
                    if not keep_all and size > CONTENT_LIMIT:
                        keep, kept = False, []
        finally:
            os.close(fd)
        data = b"".join(kept) if (keep or keep_all) else None
        text = None
        if want_text and data is not None and size <= CONTENT_LIMIT:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        return h.hexdigest(), text, data if keep_all else None, st

    def cas(self):
        """The ``_cas`` of what is at the name now: None when nothing is there."""
        st = self.lstat()
        if st is None:
            return None
        sha = self.read()[0] if stat.S_ISREG(st.st_mode) else None
        return cas_dict(st, sha)

    def replace(self, fill, mode, uid=-1, gid=-1, ctx=None, size=None):
        """Write a new file over the name: private temp file in the directory, fill(fd), owner/mode, fsync,
        compare-and-swap check (with ``ctx``), rename, fsync the directory. Returns fill's result."""
        result, st, sha = write_at(self.dfd, self.name, self.path, fill, mode, uid, gid, size=size,
                                   verify=(lambda: cas_verify(self, ctx)) if ctx is not None else None,
                                   sync_dir=DIR_SYNC.later)
        if ctx is not None:
            ctx.written[self.path] = cas_dict(st, sha)
        return result

    def unlink(self, ctx=None):
        if ctx is not None:
            cas_verify(self, ctx)
        try:
            os.unlink(self.name, dir_fd=self.dfd)
        except OSError as e:
            raise Failure("removing %s: %s" % (self.path, e.strerror)) from None
        if ctx is not None:
            ctx.written[self.path] = None
        DIR_SYNC.later(self.dfd)


def user_state_dir(create=False):
    """~/.local/state/driftctl of the user the agent runs as, where an agent that is not root keeps its
    backups (and its host lock when it has no runtime directory); with ``create``, its missing parts
    below the home are made 0700. None for root, whose lock and backups are in /run/driftctl and
    /var/lib/driftctl/backup."""
    uid = os.geteuid()
    if uid == 0:
        return None
    try:
        path = pwd.getpwuid(uid).pw_dir
    except KeyError:
        raise Failure("user %d has no entry in the password database, so no home for the "
                      "host lock and backups" % uid) from None
    for name in USER_STATE:
        path = os.path.join(path, name)
        if create:
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                pass
            except OSError as e:
                raise Failure("cannot create %s for the host lock and backups: %s" % (path, e.strerror)) from None
    return path


# what fsync of a directory answers where the file system cannot do it (nothing to do then)
_CANNOT_FSYNC = (errno.EINVAL, errno.EROFS, errno.EBADF, getattr(errno, "ENOTSUP", errno.EINVAL),
                 getattr(errno, "EOPNOTSUPP", errno.EINVAL))


def fsync_fd(fd):
    """fsync a directory; OSError only when it failed (EIO, ENOSPC, ...), not where it cannot be done."""
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in _CANNOT_FSYNC:
            raise


def sync_dir_now(dfd):
    """fsync_fd, its failure a Failure: the change is made, but may not survive a crash."""
    try:
        fsync_fd(dfd)
    except OSError as e:
        raise Failure("fsync of %s failed: %s (the change is made, but may not survive a crash)"
                      % (fd_path(dfd), e.strerror)) from None


def fd_path(fd):
    try:
        return os.readlink("/proc/self/fd/%d" % fd)
    except OSError:
        return "a directory"


class _DirSync(object):
    """Directories whose new entries (a rename, a link, an unlink, a mkdir) must reach the disk before
    the controller hears of them. Each is fsynced once, in ``flush``, which runs before any record
    leaves the agent, before it starts a command, and as it exits: a hundred files written in ten
    directories cost ten directory fsyncs, not a hundred. Each file's data is still fsynced before its
    rename, so after a crash a name holds the old file or the whole new one; what the controller was
    told is on disk."""

    KEEP = 64  # directories waiting at most; past that a directory is synced at once

    def __init__(self):
        self._lock = _thread.allocate_lock()
        self._dirs = {}  # (st_ino, st_dev) -> a duplicate descriptor of the directory

    def later(self, dfd):
        try:
            key = os.fstat(dfd)[1:3]  # (st_ino, st_dev)
        except OSError:
            sync_dir_now(dfd)
            return
        with self._lock:
            if key in self._dirs:
                return
            if len(self._dirs) < self.KEEP:
                try:
                    self._dirs[key] = os.dup(dfd)
                    return
                except OSError:  # out of descriptors: sync it now instead
                    pass
        sync_dir_now(dfd)

    def flush(self):
        """fsync every directory that waits; what failed, as messages (empty when all went well)."""
        with self._lock:
            dirs, self._dirs = self._dirs, {}
        failed = []
        stopped = None
        for fd in dirs.values():
            try:
                if stopped is None:
                    fsync_fd(fd)
            except OSError as e:
                failed.append("fsync of %s failed: %s" % (fd_path(fd), e.strerror))
            except BaseException as e:  # a signal's exception: every descriptor is still closed
                stopped = e
            finally:
                os.close(fd)
        if stopped is not None:
            raise stopped
        return failed


DIR_SYNC = _DirSync()


def check_space(dfd, size, path):
    """Fail before writing when the file system under ``dfd`` has less than ``size`` bytes free."""
    try:
        vfs = os.fstatvfs(dfd)
    except OSError:
        return
    free = vfs.f_bavail * vfs.f_frsize
    if size > free:
        raise Failure("%s needs %s, the file system has %s free"
                      % (path, human_bytes(size), human_bytes(free, unit=size)))


def write_at(dfd, name, shown, fill, mode, uid=-1, gid=-1, size=None, verify=None, sync_dir=sync_dir_now):
    """Atomically put a new file at ``name`` in ``dfd``; returns (fill's result, fstat, sha256 or None).

    The temp file is created 0600 with O_EXCL|O_NOFOLLOW under a random name in the same directory;
    owner, then mode, are set on the descriptor, and its data fsynced; ``verify()`` runs just before
    the rename; then ``sync_dir(dfd)`` (at once by default, ``DIR_SYNC.later`` to share it). Any
    OSError becomes a Failure naming the path, and the temp file is always removed.
    """
    if size is not None:
        check_space(dfd, size, shown)
    tmp = ".driftctl-%s" % os.urandom(8).hex()
    try:
        fd = os.open(tmp, TEMP_FLAGS, 0o600, dir_fd=dfd)
    except OSError as e:
        raise Failure("writing %s: %s (the file was left untouched)" % (shown, e.strerror)) from None
    try:
        try:
            result = fill(fd)
            if uid != -1 or gid != -1:
                os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
            os.fsync(fd)
            st = os.fstat(fd)
        finally:
            os.close(fd)
        if verify is not None:
            verify()
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except OSError as e:
        with suppress(OSError):
            os.unlink(tmp, dir_fd=dfd)
        raise Failure("writing %s: %s (the file was left untouched)" % (shown, e.strerror)) from None
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp, dir_fd=dfd)
        raise
    sync_dir(dfd)
    sha = result[1] if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], str) else None
    return result, st, sha


def fill_bytes(data):
    """A ``fill`` for write_at/Target.replace that writes ``data``; returns (n, sha256)."""
    def fill(fd):
        view = memoryview(data)
        done = 0
        while done < len(view):
            done += os.write(fd, view[done:done + (1 << 20)])
        return done, sha256_bytes(data)
    return fill


# ---- compare-and-swap


def cas_dict(st, sha):
    return {
        "sha256": sha,
        "size": st.st_size,
        "mode": "%04o" % stat.S_IMODE(st.st_mode),
        "uid": st.st_uid,
        "gid": st.st_gid,
        "ino": st.st_ino,
        "mtime_ns": st.st_mtime_ns,
    }


def cas_expected(ctx, path):
    """What ``path`` should look like now: this run's own write, else the probe's view (or CAS_UNKNOWN)."""
    if ctx.expect is CAS_UNKNOWN:
        return CAS_UNKNOWN
    return ctx.written.get(path, ctx.expect)


def cas_differences(expect, now):
    """What differs between two ``_cas`` (a list of words, empty when they agree)."""
    if expect is None and now is None:
        return []
    if expect is None:
        return ["it appeared (the plan saw no file)"]
    if now is None:
        return ["it disappeared"]
    out = []
    if now.get("sha256") != expect.get("sha256"):
        out.append("content")
    if now.get("mode") != expect.get("mode"):
        out.append("mode %s -> %s" % (expect.get("mode"), now.get("mode")))
    if now.get("uid") != expect.get("uid"):
        out.append("owner %s -> %s" % (expect.get("uid"), now.get("uid")))
    if now.get("gid") != expect.get("gid"):
        out.append("group %s -> %s" % (expect.get("gid"), now.get("gid")))
    return out


def cas_fail(path, diffs):
    if diffs:
        raise Failure("%s changed underneath since the plan: %s (nothing written)" % (path, ", ".join(diffs)))


def cas_verify(target, ctx):
    """Fail unless the target is what the probe (or this run's own write) saw; hashes only when the
    inode, size or mtime moved."""
    expect = cas_expected(ctx, target.path)
    if expect is CAS_UNKNOWN:
        return
    st = target.lstat()
    if st is None or expect is None:
        cas_fail(target.path, cas_differences(expect, None if st is None else cas_dict(st, None)))
        return
    same = (st.st_ino, st.st_size, st.st_mtime_ns) == (expect.get("ino"), expect.get("size"), expect.get("mtime_ns"))
    if same or not stat.S_ISREG(st.st_mode):
        sha = expect.get("sha256") if same else None
    else:
        sha = target.read()[0]
    cas_fail(target.path, cas_differences(expect, cas_dict(st, sha)))


def cas_check_read(path, seen, ctx):
    """For edits: fail unless the file just read (its ``_cas`` ``seen``) is what the probe saw."""
    expect = cas_expected(ctx, path)
    if expect is not CAS_UNKNOWN:
        cas_fail(path, cas_differences(expect, seen))


# ---- backups


BACKUP_ENTRY = r"^(\d{8}T\d{6})\.\d{6}Z-[0-9a-f]{12}$"
BACKUP_FLAT = r"^[0-9a-f]{64}$"
BACKUP_SUBDIR = r"^[0-9a-f]{32}$"


def backup_check_dir(fd, shown):
    st = os.fstat(fd)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise Failure(
            "refusing the backup directory %s: not a directory owned by uid %d and closed to others "
            "(owner uid %d, mode %04o); nothing was written"
            % (shown, os.geteuid(), st.st_uid, stat.S_IMODE(st.st_mode))
        )


def backup_open_sub(dfd, name, shown, create=True):
    """Open (making it 0700 when missing) the directory ``name`` in ``dfd``, checked like the lock dir."""
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=dfd)
    except FileNotFoundError:
        if not create:
            return None
        os.mkdir(name, 0o700, dir_fd=dfd)
        fd = os.open(name, DIR_FLAGS, dir_fd=dfd)
    except OSError as e:
        st = lstat_at(dfd, name)
        what = "a symlink" if st is not None and stat.S_ISLNK(st.st_mode) else e.strerror
        raise Failure("refusing the backup directory %s: %s; nothing was written" % (shown, what)) from None
    try:
        backup_check_dir(fd, shown)
    except BaseException:
        os.close(fd)
        raise
    return fd


def backup_open(ctx, create=True):
    """The backup directory, open by descriptor (created 0700 when missing), or None (create=False)."""
    try:
        with Target(ctx.backup_dir, create=create) as t:
            return backup_open_sub(t.dfd, t.name, ctx.backup_dir, create=create)
    except PathMissing:
        if create:
            raise
        return None
    except UnsafePath as e:
        raise Failure("refusing the backup directory: %s; nothing was written" % e) from None
    except OSError as e:
        raise Failure("cannot open the backup directory %s: %s; nothing was written"
                      % (ctx.backup_dir, e.strerror)) from None


def backup_key(path):
    return sha256_bytes(path.encode("utf-8", "surrogateescape"))[:32]


def _sync_below(dfd):
    """No directory fsync: the caller's own, below, covers this entry."""


def backup_save(target, ctx):
    """Keep the regular file at ``target`` (a Target) under the backup directory; returns the backup's path.

    Read through an O_NOFOLLOW descriptor and copied in chunks; None when there is no regular file.
    """
    st = target.lstat()
    if st is None or not stat.S_ISREG(st.st_mode):
        return None
    top = backup_open(ctx)
    try:
        key = backup_key(target.path)
        shown = os.path.join(ctx.backup_dir, key)
        sub = backup_open_sub(top, key, shown)
        try:
            if lstat_at(sub, "path") is None:
                named = (target.path + "\n").encode("utf-8", "surrogateescape")
                write_at(sub, "path", shown + "/path", fill_bytes(named), 0o600, sync_dir=_sync_below)
            src = target.open_read()
            try:
                size = os.fstat(src).st_size

                def copy(fd):
                    h = new_sha256(size=size)
                    while True:
                        chunk = os.read(src, 1 << 20)
                        if not chunk:
                            return h.hexdigest()
                        h.update(chunk)
                        view = memoryview(chunk)
                        while view:
                            view = view[os.write(fd, view):]

                now = time.time()
                stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + ".%06dZ" % int((now % 1) * 1e6)
                tmp_name = stamp + "-tmp"
                try:
                    digest, _st, _sha = write_at(sub, tmp_name, shown, copy, 0o600, size=size, sync_dir=_sync_below)
                except Failure as e:
                    cause = str(e).replace(" (the file was left untouched)", "")
                    raise Failure("backing up %s into %s failed, so it was left untouched: %s"
                                  % (target.path, shown, cause)) from None
            finally:
                os.close(src)
            name = "%s-%s" % (stamp, digest[:12])
            os.rename(tmp_name, name, src_dir_fd=sub, dst_dir_fd=sub)
            sync_dir_now(sub)  # at once, and for the path file too: the backup is on disk before the file changes
            backup_prune_sub(sub, ctx, keep_newest=name)
            return os.path.join(shown, name)
        finally:
            os.close(sub)
    except OSError as e:
        raise Failure("backing up %s: %s (the file was left untouched)" % (target.path, e.strerror)) from None
    finally:
        os.close(top)


def _backup_age(name, now):
    m = pattern(BACKUP_ENTRY).match(name)
    if not m:
        return None
    import calendar  # only pruning needs it: kept off every agent's start

    try:
        return now - calendar.timegm(time.strptime(m.group(1), "%Y%m%dT%H%M%S"))
    except ValueError:
        return None


def backup_prune_sub(sub, ctx, keep_newest=None, totals=None):
    """Keep this path's newest ``ctx.backup_keep`` backups, none older than ``ctx.backup_max_age``."""
    totals = totals if totals is not None else {"removed": 0, "kept": 0, "bytes_freed": 0}
    now = time.time()
    entries = sorted((n for n in os.listdir(sub) if pattern(BACKUP_ENTRY).match(n)), reverse=True)
    keep = max(1, int(ctx.backup_keep))
    for name in os.listdir(sub):  # temp files of a backup that was killed midway, after an hour
        if name.startswith(".driftctl-") or name.endswith("-tmp"):
            st = lstat_at(sub, name)
            if st is not None and stat.S_ISREG(st.st_mode) and now - st.st_mtime > 3600:
                with suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=sub)
                    totals["removed"] += 1
                    totals["bytes_freed"] += st.st_size
    for i, name in enumerate(entries):
        age = _backup_age(name, now)
        newest = i == 0 or name == keep_newest
        if newest or (i < keep and (age is None or age <= ctx.backup_max_age)):
            totals["kept"] += 1
            continue
        st = lstat_at(sub, name)
        with suppress(FileNotFoundError):
            os.unlink(name, dir_fd=sub)
            totals["removed"] += 1
            totals["bytes_freed"] += st.st_size if st is not None else 0
    return totals


def prune_backups(ctx):
    """Prune the whole backup tree: {"removed": n, "kept": m, "bytes_freed": b}."""
    totals = {"removed": 0, "kept": 0, "bytes_freed": 0}
    top = backup_open(ctx, create=False)
    if top is None:
        return totals
    now = time.time()
    try:
        for name in sorted(os.listdir(top)):
            st = lstat_at(top, name)
            if st is None:
                continue
            if pattern(BACKUP_FLAT).match(name) and stat.S_ISREG(st.st_mode):  # 0.1's flat <sha256> backups
                if now - st.st_mtime > ctx.backup_max_age:
                    os.unlink(name, dir_fd=top)
                    totals["removed"] += 1
                    totals["bytes_freed"] += st.st_size
                else:
                    totals["kept"] += 1
            elif pattern(BACKUP_SUBDIR).match(name) and stat.S_ISDIR(st.st_mode):
                sub = backup_open_sub(top, name, os.path.join(ctx.backup_dir, name), create=False)
                if sub is None:
                    continue
                try:
                    before = totals["kept"]
                    backup_prune_sub(sub, ctx, totals=totals)
                    if totals["kept"] == before and all(n == "path" for n in os.listdir(sub)):
                        with suppress(FileNotFoundError):
                            os.unlink("path", dir_fd=sub)
                        with suppress(OSError):
                            os.rmdir(name, dir_fd=top)
                finally:
                    os.close(sub)
    finally:
        os.close(top)
    return totals


# ---- by path, for callers that have only a path: every one walks safely


def read_regular(path, want_text=False):
    """(sha256, text or None) of the regular file at ``path``, through the descriptor walker."""
    with Target(path) as t:
        sha, text, _data, st = t.read(want_text=want_text)
    if want_text and text is None and st.st_size == 0:
        text = ""
    return sha, text


def atomic_write(path, data, mode=None, uid=-1, gid=-1, ctx=None):
    """Replace ``path`` with ``data`` atomically through the descriptor walker.

    Refuses to replace a symlink or a directory; a new file without ``mode`` is 0644, an existing one
    keeps its mode.
    """
    with Target(path) as t:
        st = t.lstat()
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise Failure("%s is a %s, not a file: refusing to replace it" % (path, file_kind(st)))
        if mode is None:
            mode = stat.S_IMODE(st.st_mode) if st is not None else 0o644
        t.replace(fill_bytes(data), mode, uid, gid, ctx=ctx, size=len(data))
