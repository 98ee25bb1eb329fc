"""Run the agent's own observe() code against an image instead of a live host.

The agent program (driftctl/agent/*, concatenated) is executed into a private namespace, and the
names its functions look up at call time (``os``, ``open``, ``pwd``, ``grp``, ``run``) are replaced
by read-only views of the image's flattened filesystem. ``file_observe`` then lstat()s, hashes and
reads the image's /etc/motd exactly as it does a host's, so a live host and its image are judged by
the same code and the same ``ResourceType.diff`` and can never disagree.

Only reading is possible: every write (os.open for writing, rename, chown...) and every command
raises the agent's Failure. Types whose observe asks a running system (service: systemctl; package:
dpkg-query) get image-specific observers in observe.py that return the same shapes.
"""

from __future__ import annotations

import builtins
import errno
import io
import os as _os
import posixpath
import stat as _stat
from typing import Any

from driftctl.bake.fs import Entry, ImageFS

_KIND_BITS = {"file": _stat.S_IFREG, "dir": _stat.S_IFDIR, "link": _stat.S_IFLNK, "other": _stat.S_IFCHR}
_READ_FLAGS = _os.O_RDONLY | getattr(_os, "O_NOFOLLOW", 0) | getattr(_os, "O_NONBLOCK", 0) \
    | getattr(_os, "O_DIRECTORY", 0) | getattr(_os, "O_CLOEXEC", 0)
_PASSTHROUGH = {  # pure names with no filesystem access
    "sep", "pathsep", "linesep", "curdir", "pardir", "extsep", "altsep", "devnull", "name",
    "fspath", "fsencode", "fsdecode", "strerror", "stat_result", "error",
}


def _enoent(path: str) -> FileNotFoundError:
    return FileNotFoundError(errno.ENOENT, _os.strerror(errno.ENOENT), path)


def stat_result(entry: Entry) -> _os.stat_result:
    mode = _KIND_BITS.get(entry.kind, _stat.S_IFREG) | entry.mode
    size = len(entry.target) if entry.kind == "link" else (
        len(entry.data) if entry.data is not None else entry.size)
    return _os.stat_result((mode, 0, 0, 1, entry.uid, entry.gid, size, entry.mtime, entry.mtime, entry.mtime))


class ImagePath:
    """``os.path`` over the image: the string functions of posixpath, the tests against the image."""

    def __init__(self, fs: ImageFS) -> None:
        self._fs = fs

    def __getattr__(self, name: str) -> Any:
        if name in ("join", "dirname", "basename", "normpath", "split", "splitext", "isabs", "relpath",
                    "commonpath", "commonprefix", "sep"):
            return getattr(posixpath, name)
        raise AttributeError(f"os.path.{name} is not available when observing an image")

    def abspath(self, path: str) -> str:
        return posixpath.normpath(posixpath.join("/", path))

    def _get(self, path: str, follow: bool) -> Entry | None:
        try:
            return self._fs.get(self._fs.resolve(path, follow_last=follow))
        except Exception:
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
        return self._fs.resolve(path, follow_last=True)

    def expanduser(self, path: str) -> str:
        return path


class ImageOS:
    """The read-only part of ``os`` the agent's observers use, answered from the image."""

    def __init__(self, fs: ImageFS, failure: type[Exception]) -> None:
        self._fs = fs
        self._failure = failure
        self._fds: dict[int, str] = {}
        self._next_fd = 1000
        self.path = ImagePath(fs)
        self.environ = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}

    def __getattr__(self, name: str) -> Any:
        if name in _PASSTHROUGH or name.startswith(("O_", "R_OK", "W_OK", "X_OK", "F_OK", "SEEK_")):
            return getattr(_os, name)
        failure = self._failure

        def refuse(*_a: Any, **_k: Any) -> Any:
            raise failure(f"os.{name} is not possible when observing an image")

        return refuse

    def _entry(self, path: str, follow: bool) -> tuple[str, Entry]:
        real = self._fs.resolve(str(path), follow_last=follow)
        entry = self._fs.get(real)
        if entry is None:
            raise _enoent(str(path))
        return real, entry

    def lstat(self, path: str) -> _os.stat_result:
        return stat_result(self._entry(path, False)[1])

    def _at(self, path: str, dir_fd: int | None) -> str:
        """``path`` relative to a directory descriptor, as the agent's fd-based walks use it."""
        if dir_fd is None or posixpath.isabs(path):
            return path
        return posixpath.join(self._fds[dir_fd], path)

    def stat(self, path: str | int, *, dir_fd: int | None = None, follow_symlinks: bool = True) -> _os.stat_result:
        if isinstance(path, int):
            return self.fstat(path)
        return stat_result(self._entry(self._at(path, dir_fd), follow_symlinks)[1])

    def readlink(self, path: str) -> str:
        _real, entry = self._entry(path, False)
        if entry.kind != "link":
            raise OSError(errno.EINVAL, "Invalid argument", path)
        return entry.target

    def listdir(self, path: str | int = ".") -> list[str]:
        if isinstance(path, int):
            path = self._fds[path]
        real, entry = self._entry(path, True)
        if entry.kind != "dir":
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", path)
        return self._fs.listdir(real)

    def walk(self, top: str, topdown: bool = True, onerror: Any = None,
             followlinks: bool = False) -> Any:
        """os.walk over the image, top-down, never following links (what the agent's watch uses)."""
        stack = [str(top)]
        while stack:
            current = stack.pop()
            try:
                names = self.listdir(current)
            except OSError as e:
                if onerror is not None:
                    onerror(e)
                continue
            dirs: list[str] = []
            files: list[str] = []
            for name in names:
                entry = self._fs.get(self._fs.resolve(posixpath.join(current, name)))
                (dirs if entry is not None and entry.kind == "dir" else files).append(name)
            yield current, dirs, files  # the caller may prune dirs in place, as with os.walk
            stack.extend(posixpath.join(current, d) for d in reversed(dirs))

    def access(self, path: str, mode: int) -> bool:
        try:
            _real, entry = self._entry(path, True)
        except OSError:
            return False
        return not (mode & _os.X_OK) or bool(entry.mode & 0o111) or entry.kind == "dir"

    def getuid(self) -> int:
        return 0

    geteuid = getuid

    def open(self, path: str, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        if flags & ~_READ_FLAGS:
            raise self._failure(f"cannot write {path}: an image is observed read-only")
        follow = not flags & getattr(_os, "O_NOFOLLOW", 0)
        real, entry = self._entry(self._at(path, dir_fd), follow)
        if entry.kind == "link":
            raise OSError(errno.ELOOP, "Too many levels of symbolic links", path)
        if flags & getattr(_os, "O_DIRECTORY", 0) and entry.kind != "dir":
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", path)
        self._next_fd += 1
        self._fds[self._next_fd] = real
        return self._next_fd

    def fstat(self, fd: int) -> _os.stat_result:
        return stat_result(self._entry(self._fds[fd], False)[1])

    def fdopen(self, fd: int, mode: str = "r", *args: Any, **kwargs: Any) -> io.IOBase:
        path = self._fds.pop(fd)
        return _open_entry(self._fs, path, mode, kwargs.get("encoding"), kwargs.get("errors"), self._failure)

    def close(self, fd: int) -> None:
        self._fds.pop(fd, None)


def _open_entry(
    fs: ImageFS, path: str, mode: str, encoding: str | None, errors: str | None, failure: type[Exception]
) -> io.IOBase:
    if any(c in mode for c in "wax+"):
        raise failure(f"cannot write {path}: an image is observed read-only")
    real = fs.resolve(path, follow_last=True)
    entry = fs.get(real)
    if entry is None:
        raise _enoent(path)
    if entry.kind == "dir":
        raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
    raw = io.BytesIO(fs.read(real) or b"")
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
    from driftctl.agent import program_source

    ns: dict[str, Any] = {"__name__": "driftctl_agent_image", "__builtins__": builtins}
    exec(_compiled(program_source()), ns)  # noqa: S102 - our own agent program, run against a view
    failure = ns["Failure"]

    def image_open(path: str, mode: str = "r", buffering: int = -1, encoding: str | None = None,
                   errors: str | None = None, newline: str | None = None, **_kw: Any) -> io.IOBase:
        return _open_entry(fs, str(path), mode, encoding, errors, failure)

    def refuse_run(argv: list[str], *args: Any, **kwargs: Any) -> Any:
        raise failure(f"cannot run {argv[0]} when observing an image")

    ns.update(os=ImageOS(fs, failure), open=image_open, pwd=ImagePwd(fs), grp=ImageGrp(fs), run=refuse_run)
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
