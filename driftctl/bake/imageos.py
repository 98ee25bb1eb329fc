"""Run the agent's own observe() code against an image instead of a live host.

The agent program (driftctl/agent/*, concatenated) is executed into a private namespace, and the
names its functions look up at call time (``os``, ``open``, ``pwd``, ``grp``, ``run``) are replaced
by read-only views of the image's flattened filesystem. ``file_observe`` then walks to the image's
/etc/motd by directory descriptor (open with O_NOFOLLOW|O_DIRECTORY relative to each parent, lstat
and readlink with ``dir_fd``, fstat, read), hashes and reads it exactly as it does a host's, so a live
host and its image are judged by the same code and the same ``ResourceType.diff`` and can never
disagree. The view's descriptors are a table of its own; lookups, errnos and inode numbers follow
Linux (tests/unit/test_bake_imageos.py holds the two side by side).

Only reading is possible: every write (os.open for writing, rename, chown...) and every command
raises the agent's Failure. Types whose observe asks a running system (service: systemctl; package:
dpkg-query) get image-specific observers in observe.py that return the same shapes.
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import io
import os as _os
import posixpath
import stat as _stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from driftctl.bake.fs import Entry, ImageFS

_KIND_BITS = {"file": _stat.S_IFREG, "dir": _stat.S_IFDIR, "link": _stat.S_IFLNK, "other": _stat.S_IFCHR}
_O_NOFOLLOW = getattr(_os, "O_NOFOLLOW", 0)
_O_DIRECTORY = getattr(_os, "O_DIRECTORY", 0)
_O_PATH = getattr(_os, "O_PATH", 0)
_READ_FLAGS = _os.O_RDONLY | _O_NOFOLLOW | getattr(_os, "O_NONBLOCK", 0) | _O_DIRECTORY \
    | getattr(_os, "O_CLOEXEC", 0) | _O_PATH | getattr(_os, "O_NOCTTY", 0) | getattr(_os, "O_NOATIME", 0) \
    | getattr(_os, "O_LARGEFILE", 0)
_MAX_LINKS = 40  # symlinks followed in one lookup, as the kernel's MAXSYMLINKS
_DEV = 0xD1F7  # the one device every entry of the view is on
_PASSTHROUGH = {  # pure names with no filesystem access
    "sep", "pathsep", "linesep", "curdir", "pardir", "extsep", "altsep", "devnull", "name",
    "fspath", "fsencode", "fsdecode", "strerror", "stat_result", "error", "statvfs_result", "urandom",
}


def _oserror(code: int, path: Any) -> OSError:
    """The OSError (subclass) the kernel's errno ``code`` gives in Python, naming ``path``."""
    return OSError(code, _os.strerror(code), path)


def _enoent(path: str) -> FileNotFoundError:
    return FileNotFoundError(errno.ENOENT, _os.strerror(errno.ENOENT), path)


def inode(path: str) -> int:
    """A stable inode number for ``path`` in the view: the same for every lookup and every run."""
    digest = hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=6).digest()
    return int.from_bytes(digest, "big") | 1 << 48


def stat_result(entry: Entry, path: str = "") -> _os.stat_result:
    """What lstat (or fstat of a descriptor on it) says of an image entry, as a host's would say."""
    kind = entry.ifmt if entry.kind == "other" and entry.ifmt else _KIND_BITS.get(entry.kind, _stat.S_IFREG)
    mode = kind | entry.mode
    size = len(entry.target.encode("utf-8", "surrogateescape")) if entry.kind == "link" else (
        len(entry.data) if entry.data is not None else entry.size) if entry.kind == "file" else (
        4096 if entry.kind == "dir" else 0)
    nlink = 2 if entry.kind == "dir" else 1
    t, ns = entry.mtime, entry.mtime * 1_000_000_000
    return _os.stat_result((mode, inode(path), _DEV, nlink, entry.uid, entry.gid, size, t, t, t,
                            float(t), float(t), float(t), ns, ns, ns))


@dataclass
class OpenEntry:
    """One open descriptor of the view: the entry it was opened on (as the kernel holds the inode),
    where it was found, and the read offset. ``dup`` shares it, as dup(2) shares the file description."""

    path: str
    entry: Entry
    path_only: bool = False  # O_PATH: fstat and *at() only, no read
    offset: int = 0


class ImagePath:
    """``os.path`` over the image: the string functions of posixpath, the tests against the image."""

    def __init__(self, view: ImageOS) -> None:
        self._view = view

    def __getattr__(self, name: str) -> Any:
        if name in ("join", "dirname", "basename", "normpath", "split", "splitext", "isabs", "relpath",
                    "commonpath", "commonprefix", "sep"):
            return getattr(posixpath, name)
        raise AttributeError(f"os.path.{name} is not available when observing an image")

    def abspath(self, path: str) -> str:
        return posixpath.normpath(posixpath.join("/", path))

    def _get(self, path: str, follow: bool) -> Entry | None:
        try:
            return self._view.lookup(path, None, follow)[1]
        except (OSError, ValueError):
            return None

    def exists(self, path: str) -> bool:
        return self._get(path, True) is not None

    def lexists(self, path: str) -> bool:
        return self._get(path, False) is not None

    def isdir(self, path: str) -> bool:
        e = self._get(path, True)
        return e is not None and e.kind == "dir"

    def isfile(self, path: str) -> bool:
        e = self._get(path, True)
        return e is not None and e.kind == "file"

    def islink(self, path: str) -> bool:
        e = self._get(path, False)
        return e is not None and e.kind == "link"

    def realpath(self, path: str) -> str:
        return self._view.fs.resolve(path, follow_last=True)

    def expanduser(self, path: str) -> str:
        return path


class ImageOS:
    """The read-only part of ``os`` the agent's observers use, answered from the image.

    Paths and descriptors work as on Linux: ``open(name, flags, dir_fd=fd)`` looks ``name`` up
    relative to an open directory of the image, follows symlinks on the way (and at the end unless
    O_NOFOLLOW), and gives a descriptor of a table of its own that fstat, read, listdir, scandir,
    the ``dir_fd=`` of stat/readlink/open and close accept. The errors are the kernel's (ENOENT,
    ENOTDIR, ELOOP, EISDIR, EBADF), so the agent's descriptor walker takes the same branches it would
    on a host. Any flag that could write, and every other call of ``os``, raises the agent's Failure.
    """

    def __init__(self, fs: ImageFS, failure: type[Exception]) -> None:
        self.fs = fs
        self._failure = failure
        self._fds: dict[int, OpenEntry] = {}
        self._next_fd = 1000
        self.path = ImagePath(self)
        self.environ = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}

    def __getattr__(self, name: str) -> Any:
        if name in _PASSTHROUGH or name.startswith(("O_", "R_OK", "W_OK", "X_OK", "F_OK", "SEEK_")):
            return getattr(_os, name)
        failure = self._failure

        def refuse(*_a: Any, **_k: Any) -> Any:
            raise failure(f"os.{name} is not possible when observing an image")

        return refuse

    # ------------------------------------------------------------ lookups

    def _open_entry(self, fd: int) -> OpenEntry:
        try:
            return self._fds[fd]
        except (KeyError, TypeError):
            raise _oserror(errno.EBADF, fd) from None

    def lookup(self, path: Any, dir_fd: int | None, follow_last: bool) -> tuple[str, Entry]:
        """(real path, entry) of ``path`` as the kernel resolves it: relative to ``dir_fd`` (else to
        ``/``), symlinks followed on the way and at the end when ``follow_last``, ``..`` taken from
        the real directory reached. Raises FileNotFoundError, NotADirectoryError or ELOOP."""
        shown = _os.fsdecode(_os.fspath(path))
        if not shown:
            raise _enoent(shown)
        if shown.startswith("/") or dir_fd is None:
            cur = "/"
        else:
            start = self._open_entry(dir_fd)
            if start.entry.kind != "dir":
                raise _oserror(errno.ENOTDIR, shown)
            cur = start.path
        parts = [p for p in shown.split("/") if p]
        must_be_dir = shown.endswith("/")
        hops = 0
        while parts:
            name = parts.pop(0)
            if name == ".":
                continue
            if name == "..":
                cur = posixpath.dirname(cur)
                continue
            nxt = posixpath.join(cur, name)
            entry = self.fs.get(nxt)
            if entry is None:
                raise _enoent(shown)
            if entry.kind == "link" and (parts or follow_last or must_be_dir):
                hops += 1
                if hops > _MAX_LINKS:
                    raise _oserror(errno.ELOOP, shown)
                if entry.target.startswith("/"):
                    cur = "/"
                parts = [p for p in entry.target.split("/") if p] + parts
                continue
            if (parts or must_be_dir) and entry.kind != "dir":
                raise _oserror(errno.ENOTDIR, shown)
            cur = nxt
        entry = self.fs.get(cur)
        if entry is None:  # the root, or a directory removed meanwhile
            raise _enoent(shown)
        return cur, entry

    # ------------------------------------------------------------ by path (or dir_fd)

    def stat(self, path: Any, *, dir_fd: int | None = None, follow_symlinks: bool = True) -> _os.stat_result:
        if isinstance(path, int):
            return self.fstat(path)
        real, entry = self.lookup(path, dir_fd, follow_symlinks)
        return stat_result(entry, real)

    def lstat(self, path: Any, *, dir_fd: int | None = None) -> _os.stat_result:
        return self.stat(path, dir_fd=dir_fd, follow_symlinks=False)

    def readlink(self, path: Any, *, dir_fd: int | None = None) -> str:
        _real, entry = self.lookup(path, dir_fd, False)
        if entry.kind != "link":
            raise _oserror(errno.EINVAL, _os.fsdecode(path))
        return entry.target

    def access(self, path: Any, mode: int, *, dir_fd: int | None = None, effective_ids: bool = False,
               follow_symlinks: bool = True) -> bool:
        """As for root: anything exists-and-readable; X_OK needs an execute bit (or a directory)."""
        try:
            _real, entry = self.lookup(path, dir_fd, follow_symlinks)
        except OSError:
            return False
        return not (mode & _os.X_OK) or bool(entry.mode & 0o111) or entry.kind == "dir"

    def _dir_of(self, path: Any) -> tuple[str, Entry]:
        if isinstance(path, int):
            opened = self._open_entry(path)
            real, entry = opened.path, opened.entry
        else:
            real, entry = self.lookup(path, None, True)
        if entry.kind != "dir":
            raise _oserror(errno.ENOTDIR, path)
        return real, entry

    def listdir(self, path: Any = ".") -> list[str]:
        """Names in a directory (a path, followed, or a descriptor), in the image's sorted order."""
        real, _entry = self._dir_of("/" if path == "." else path)
        return self.fs.listdir(real)

    def scandir(self, path: Any = ".") -> ImageScandir:
        real, _entry = self._dir_of("/" if path == "." else path)
        prefix = None if isinstance(path, int) else _os.fsdecode(path)
        return ImageScandir(self, real, prefix)

    def walk(self, top: str, topdown: bool = True, onerror: Any = None,
             followlinks: bool = False) -> Any:
        """os.walk over the image, top-down, never following links (what the agent's watch uses)."""
        stack = [str(top)]
        while stack:
            current = stack.pop()
            try:
                real, _entry = self._dir_of(current)
                names = self.fs.listdir(real)
            except OSError as e:
                if onerror is not None:
                    onerror(e)
                continue
            dirs: list[str] = []
            files: list[str] = []
            for name in names:
                entry = self.fs.get(posixpath.join(real, name))
                (dirs if entry is not None and entry.kind == "dir" else files).append(name)
            yield current, dirs, files  # the caller may prune dirs in place, as with os.walk
            stack.extend(posixpath.join(current, d) for d in reversed(dirs))

    # ------------------------------------------------------------ descriptors

    def open(self, path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        shown = _os.fsdecode(path)
        if flags & ~_READ_FLAGS or flags & 3 != _os.O_RDONLY:
            raise self._failure(f"cannot write {shown}: an image is observed read-only")
        real, entry = self.lookup(path, dir_fd, not flags & _O_NOFOLLOW)
        path_only = bool(_O_PATH and flags & _O_PATH)
        if entry.kind == "link" and not (path_only and not flags & _O_DIRECTORY):
            # O_NOFOLLOW on a link: ELOOP, or ENOTDIR when a directory was asked for (Linux's answers)
            raise _oserror(errno.ENOTDIR if flags & _O_DIRECTORY else errno.ELOOP, shown)
        if flags & _O_DIRECTORY and entry.kind != "dir":
            raise _oserror(errno.ENOTDIR, shown)
        return self._new_fd(OpenEntry(real, entry, path_only))

    def _new_fd(self, opened: OpenEntry) -> int:
        self._next_fd += 1
        self._fds[self._next_fd] = opened
        return self._next_fd

    def dup(self, fd: int) -> int:
        return self._new_fd(self._open_entry(fd))

    def fstat(self, fd: int) -> _os.stat_result:
        opened = self._open_entry(fd)
        return stat_result(opened.entry, opened.path)

    def fstatvfs(self, fd: int) -> _os.statvfs_result:
        """No free space can be asked of an image (a writer checks first, then is refused)."""
        self._open_entry(fd)
        raise _oserror(errno.EROFS, fd)

    def read(self, fd: int, n: int) -> bytes:
        opened = self._open_entry(fd)
        if opened.path_only:
            raise _oserror(errno.EBADF, fd)
        if opened.entry.kind == "dir":
            raise _oserror(errno.EISDIR, fd)
        if opened.entry.kind != "file":
            return b""  # a device or fifo of an image holds nothing
        data = self.fs.content(opened.entry)
        chunk = data[opened.offset:opened.offset + max(0, n)]
        opened.offset += len(chunk)
        return chunk

    def lseek(self, fd: int, pos: int, how: int) -> int:
        opened = self._open_entry(fd)
        size = len(self.fs.content(opened.entry)) if opened.entry.kind == "file" else 0
        base = {_os.SEEK_SET: 0, _os.SEEK_CUR: opened.offset, _os.SEEK_END: size}.get(how)
        if base is None or base + pos < 0:
            raise _oserror(errno.EINVAL, fd)
        opened.offset = base + pos
        return opened.offset

    def fdopen(self, fd: int, mode: str = "r", *args: Any, **kwargs: Any) -> io.IOBase:
        opened = self._open_entry(fd)
        if any(c in mode for c in "wax+"):
            raise self._failure(f"cannot write {opened.path}: an image is observed read-only")
        self._fds.pop(fd)
        if opened.entry.kind == "dir":
            raise _oserror(errno.EISDIR, opened.path)
        raw = io.BytesIO(self.fs.content(opened.entry) if opened.entry.kind == "file" else b"")
        raw.seek(opened.offset)
        if "b" in mode:
            return raw
        return io.TextIOWrapper(raw, encoding=kwargs.get("encoding") or "utf-8",
                                errors=kwargs.get("errors") or "strict")

    def close(self, fd: int) -> None:
        self._open_entry(fd)
        del self._fds[fd]

    def open_count(self) -> int:
        """Descriptors open now: 0 after every observe, or the agent leaked one (tests check)."""
        return len(self._fds)

    # ------------------------------------------------------------ who the agent is: root

    def getuid(self) -> int:
        return 0

    geteuid = getuid
    getgid = getuid
    getegid = getuid

    def getgroups(self) -> list[int]:
        return [0]


class ImageDirEntry:
    """One entry of ``ImageOS.scandir``, as os.DirEntry: never follows a link unless asked."""

    def __init__(self, view: ImageOS, directory: str, name: str, prefix: str | None) -> None:
        self._view, self._real = view, posixpath.join(directory, name)
        self.name = name
        self.path = name if prefix is None else posixpath.join(prefix, name)

    def _entry(self, follow: bool) -> Entry | None:
        try:
            return self._view.lookup(self._real, None, follow)[1]
        except OSError:
            return None

    def inode(self) -> int:
        return inode(self._real)

    def is_dir(self, *, follow_symlinks: bool = True) -> bool:
        e = self._entry(follow_symlinks)
        return e is not None and e.kind == "dir"

    def is_file(self, *, follow_symlinks: bool = True) -> bool:
        e = self._entry(follow_symlinks)
        return e is not None and e.kind == "file"

    def is_symlink(self) -> bool:
        e = self._entry(False)
        return e is not None and e.kind == "link"

    def stat(self, *, follow_symlinks: bool = True) -> _os.stat_result:
        real, entry = self._view.lookup(self._real, None, follow_symlinks)
        return stat_result(entry, real)


class ImageScandir:
    """The iterator ``scandir`` returns (a context manager too)."""

    def __init__(self, view: ImageOS, directory: str, prefix: str | None) -> None:
        self._it: Iterator[ImageDirEntry] = iter(
            [ImageDirEntry(view, directory, n, prefix) for n in view.fs.listdir(directory)])

    def __iter__(self) -> ImageScandir:
        return self

    def __next__(self) -> ImageDirEntry:
        return next(self._it)

    def __enter__(self) -> ImageScandir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._it = iter(())


def _open_path(
    view: ImageOS, path: str, mode: str, encoding: str | None, errors: str | None, failure: type[Exception]
) -> io.IOBase:
    """``open()`` by path in the image (links followed, as open does)."""
    if any(c in mode for c in "wax+"):
        raise failure(f"cannot write {path}: an image is observed read-only")
    _real, entry = view.lookup(path, None, True)
    if entry.kind == "dir":
        raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
    raw = io.BytesIO(view.fs.content(entry) if entry.kind == "file" else b"")
    if "b" in mode:
        return raw
    return io.TextIOWrapper(raw, encoding=encoding or "utf-8", errors=errors or "strict")


class _Record:
    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


class ImagePwd:
    """``pwd`` answered from the image's /etc/passwd (the host's own users are never consulted)."""

    def __init__(self, fs: ImageFS) -> None:
        self._rows = [ln.split(":") for ln in (fs.read_text("/etc/passwd") or "").splitlines()]
        self._rows = [r for r in self._rows if len(r) == 7 and r[2].isdigit() and r[3].isdigit()]

    def _rec(self, r: list[str]) -> _Record:
        return _Record(pw_name=r[0], pw_passwd=r[1], pw_uid=int(r[2]), pw_gid=int(r[3]), pw_gecos=r[4],
                       pw_dir=r[5], pw_shell=r[6])

    def getpwnam(self, name: str) -> _Record:
        for r in self._rows:
            if r[0] == name:
                return self._rec(r)
        raise KeyError(f"getpwnam(): name not found: {name!r}")

    def getpwuid(self, uid: int) -> _Record:
        for r in self._rows:
            if int(r[2]) == uid:
                return self._rec(r)
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    def getpwall(self) -> list[_Record]:
        return [self._rec(r) for r in self._rows]


class ImageGrp:
    """``grp`` answered from the image's /etc/group."""

    def __init__(self, fs: ImageFS) -> None:
        rows = [ln.split(":") for ln in (fs.read_text("/etc/group") or "").splitlines()]
        self._rows = [r for r in rows if len(r) == 4 and r[2].isdigit()]

    def _rec(self, r: list[str]) -> _Record:
        return _Record(gr_name=r[0], gr_passwd=r[1], gr_gid=int(r[2]), gr_mem=[m for m in r[3].split(",") if m])

    def getgrnam(self, name: str) -> _Record:
        for r in self._rows:
            if r[0] == name:
                return self._rec(r)
        raise KeyError(f"getgrnam(): name not found: {name!r}")

    def getgrgid(self, gid: int) -> _Record:
        for r in self._rows:
            if int(r[2]) == gid:
                return self._rec(r)
        raise KeyError(f"getgrgid(): gid not found: {gid}")

    def getgrall(self) -> list[_Record]:
        return [self._rec(r) for r in self._rows]


def agent_namespace(fs: ImageFS) -> dict[str, Any]:
    """The agent program loaded with its filesystem and account lookups pointed at ``fs``."""
    from driftctl.ship import program_source

    ns: dict[str, Any] = {"__name__": "driftctl_agent_image", "__builtins__": builtins}
    exec(_compiled(program_source()), ns)  # noqa: S102 - our own agent program, run against a view
    failure = ns["Failure"]
    view = ImageOS(fs, failure)

    def image_open(path: str, mode: str = "r", buffering: int = -1, encoding: str | None = None,
                   errors: str | None = None, newline: str | None = None, **_kw: Any) -> io.IOBase:
        return _open_path(view, str(path), mode, encoding, errors, failure)

    def refuse_run(argv: list[str], *args: Any, **kwargs: Any) -> Any:
        raise failure(f"cannot run {argv[0]} when observing an image")

    ns.update(os=view, open=image_open, pwd=ImagePwd(fs), grp=ImageGrp(fs), run=refuse_run)
    # nothing an observer does may reach the controller's own processes or files
    for name in ("subprocess", "tempfile", "shutil", "signal", "socket", "platform"):
        if name in ns:
            ns[name] = _Refusing(name, failure)
    return ns


class _Refusing:
    """A module stand-in: constants and exception classes pass, every call raises Failure."""

    def __init__(self, module: str, failure: type[Exception]) -> None:
        self._module = module
        self._failure = failure

    def __getattr__(self, name: str) -> Any:
        import importlib

        real = getattr(importlib.import_module(self._module), name)
        if isinstance(real, (int, str)) or (isinstance(real, type) and issubclass(real, BaseException)):
            return real
        failure, module = self._failure, self._module

        def refuse(*_a: Any, **_k: Any) -> Any:
            raise failure(f"{module}.{name} is not possible when observing an image")

        return refuse


_CODE_CACHE: dict[str, Any] = {}


def _compiled(source: str) -> Any:
    code = _CODE_CACHE.get(source)
    if code is None:
        code = _CODE_CACHE[source] = compile(source, "driftctl-agent", "exec")
    return code
