"""Agent core: the registry of resource types and the helpers every type uses.

Runs on the host (python >= 3.8, stdlib only). Shipped first; every later module sees these names.
"""

import contextlib
import grp
import hashlib
import os
import pwd
import stat
import subprocess
import tempfile

TYPES: dict = {}  # type name -> Handler

BACKUP_DIR = "/var/lib/driftctl/backup"
CONTENT_LIMIT = 256 * 1024  # files up to this size are returned as text, so the controller can diff


class Failure(Exception):
    """A resource could not be observed or converged; the message is shown to the user."""


class Handler(object):
    def __init__(self, observe, apply, refresh=None):
        self.observe = observe
        self.apply = apply
        self.refresh = refresh


def register(name, observe, apply, refresh=None):
    """Register a resource type.

    observe(params, ctx) -> dict of the managed attributes as they are now (keys as the controller's
        ``desired()`` of the type). Must not write anything.
    apply(params, changes, ctx) -> None: converge the fields named in ``changes``; raise Failure.
    refresh(params, ctx) -> None: run when notified (service restart/reload, refreshonly exec).
    """
    TYPES[name] = Handler(observe, apply, refresh)


class Ctx(object):
    """What one request gives every handler: the host's facts, the blobs sent, and options."""

    def __init__(self, facts=None, blobs=None, backup_dir=BACKUP_DIR, want_content=True):
        self.facts = facts or {}
        self.blobs = blobs or {}
        self.backup_dir = backup_dir
        self.want_content = want_content

    def blob(self, sha):
        try:
            return self.blobs[sha]
        except KeyError:
            raise Failure("content %s was not sent by the controller" % sha[:12]) from None


def run(argv, stdin=None, env=None, timeout=None, check=False):
    """Run argv (never through a shell). Returns (rc, stdout text, stderr text)."""
    try:
        proc = subprocess.run(
            argv,
            input=stdin.encode("utf-8") if isinstance(stdin, str) else stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            timeout=timeout,
        )
    except FileNotFoundError:
        if check:
            raise Failure("command not found: %s" % argv[0]) from None
        return 127, "", "command not found: %s" % argv[0]
    except subprocess.TimeoutExpired:
        raise Failure("command timed out after %ss: %s" % (timeout, " ".join(argv))) from None
    out = proc.stdout.decode("utf-8", "replace")
    err = proc.stderr.decode("utf-8", "replace")
    if check and proc.returncode != 0:
        raise Failure("%s exited %d: %s" % (argv[0], proc.returncode, (err or out).strip()[-500:]))
    return proc.returncode, out, err


def which(name):
    path = os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").split(os.pathsep)
    for d in [*path, "/usr/sbin", "/sbin"]:
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def user_name(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def group_name(gid):
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


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


def stat_path(path):
    """lstat as a dict (type, mode "0644", owner, group, size), or None when the path does not exist.

    Never follows a symlink: a link is reported as a link.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None
    return {
        "type": FILE_TYPES.get(stat.S_IFMT(st.st_mode), "other"),
        "mode": "%04o" % stat.S_IMODE(st.st_mode),
        "owner": user_name(st.st_uid),
        "group": group_name(st.st_gid),
        "size": st.st_size,
        "mtime": int(st.st_mtime),
    }


def read_text_if_small(path, size):
    """The file's text, if it is small and UTF-8, so the controller can show a diff; else None."""
    if size > CONTENT_LIMIT:
        return None
    try:
        with open(path, "rb") as f:
            data = f.read(CONTENT_LIMIT + 1)
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def read_regular(path, want_text=False):
    """(sha256, text or None) of the regular file at ``path``, read through one descriptor.

    Opened without following a link and without blocking, then checked to be a regular file: a
    link or a FIFO swapped in after an lstat can neither leak another file's content nor hang the
    probe. The text comes back when asked, small and UTF-8 (for diffs).
    """
    try:
        fd = os.open(path, READ_FLAGS)
    except OSError as e:
        raise Failure("cannot read %s: %s" % (path, e.strerror)) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise Failure("%s is no longer a regular file: not read" % path)
    h = hashlib.sha256()
    keep = want_text and st.st_size <= CONTENT_LIMIT
    kept = []
    with os.fdopen(fd, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            if keep:
                kept.append(chunk)
                keep = sum(len(c) for c in kept) <= CONTENT_LIMIT
                if not keep:
                    kept = []
    text = None
    if kept:
        try:
            text = b"".join(kept).decode("utf-8")
        except UnicodeDecodeError:
            text = None
    elif want_text and st.st_size == 0:
        text = ""
    return h.hexdigest(), text


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def backup_file(path, ctx):
    """Keep the file about to be replaced, by checksum, under ctx.backup_dir. Returns the backup path."""
    st = stat_path(path)
    if st is None or st["type"] != "file":
        return None
    digest = sha256_file(path)
    os.makedirs(ctx.backup_dir, mode=0o700, exist_ok=True)
    dest = os.path.join(ctx.backup_dir, digest)
    if not os.path.exists(dest):
        with open(path, "rb") as src:
            data = src.read()
        atomic_write(dest, data, mode=0o600)
    return dest


def atomic_write(path, data, mode=None, uid=-1, gid=-1):
    """Replace ``path`` with ``data`` atomically: private temp file in the same directory, fsync, rename.

    The temp file is created 0600, so nobody else can read it while it is written; owner and final
    mode are set on it just before the rename, so the final path never has the wrong ones. Refuses to replace a
    symlink or a directory (the manifest did not declare that).
    """
    directory = os.path.dirname(path) or "."
    existing = stat_path(path)
    if existing is not None and existing["type"] not in ("file",):
        raise Failure("%s is a %s, not a file: refusing to replace it" % (path, existing["type"]))
    if mode is None and existing is not None:
        mode = int(existing["mode"], 8)
    fd, tmp = tempfile.mkstemp(prefix=".driftctl-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            # on the descriptor, never by name: the name could be swapped for a symlink meanwhile
            if uid != -1 or gid != -1:
                os.fchown(f.fileno(), uid, gid)
            os.fchmod(f.fileno(), mode if mode is not None else 0o644)
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)
