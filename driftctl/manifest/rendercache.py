"""Rendered template files kept across runs, keyed by everything their text depends on (D53).

A drift run every fifteen minutes renders the same templates with the same variables as the run before:
at 40 hosts of 100 templated files that was half of a catalog's compile, on the run's serial start. A
template whose text can depend only on its own source and on the variables it names is rendered once;
later runs (and the apply after a plan) read its text back by a key of those inputs.

**Which templates.** Only those whose output is a function of what the key holds (``cache_names``):
- no ``{% include %}``, ``{% import %}``, ``{% from %}`` or ``{% extends %}`` (other files' text);
- no filter outside the pure ones (``random`` is not), no ``map('random')``, no filter named by a
  variable;
- every name it reads from outside is a variable whose value is plain data (str, int, float, bool,
  None, and lists and dicts of those, as YAML gives them), or a global in ``PURE_GLOBALS``; a name
  that is neither (``lipsum``, ``hostvars``, a fact not known yet) leaves that render uncached.
The key is a sha256 of: this module's format, driftctl's rendering code (the bytes of its modules),
Jinja's version, the size cap, the template's options and whole source, and each named variable's
value as ``repr`` gives it (types and dict order included: ``1`` is not ``"1"`` nor ``True``).

**Secrets.** A sensitive file is never cached, nor is a render whose inputs or output hold any of the
host's secret values: the cache holds nothing the store would not show.

**Where, and who may write it.** ``<state_dir>/render-cache/texts.db`` (SQLite): the texts decide what root
writes on every host, so the directory must be ours and writable by nobody else, nor its parent
(checked on open: else no cache, and a warning says why); the file is 0600. One row per manifest tree
and host (a *shard*), read with one query when the host's catalog is first rendered: a lookup per file
would let the connecting threads take the interpreter at every query (200 us each, measured with 40
hosts connecting). A shard that gained texts is written back in one transaction per flush, without the
texts no render asked for that are older than ``MAX_AGE_S``; a shard not written for that long is
dropped (its host is rendered again once a week, or it left the inventory).

**Faults.** The cache only ever saves time. Any error of SQLite (a full disk, a locked or corrupt
file) or a shard it cannot parse turns it off for the rest of the run, and the run renders as before;
a file SQLite cannot read is replaced by an empty one on the next open.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import stat
import struct
import threading
import time
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame

from driftctl.secret import mentions
from driftctl.yamlsrc import YamlMap, YamlSeq

FORMAT = b"driftctl render cache 1"
MAX_AGE_S = 7 * 24 * 3600
MAX_TEXT = 1 << 20  # a larger text is rendered each time: reading it back saves little, storing it costs
FILE_NAME = "texts.db"

# Jinja's filters, tests and globals, and driftctl's (driftctl/manifest/filters.py), sorted by whether
# their result depends only on their arguments. tests/unit/test_rendercache.py fails when one is added
# to an environment without being sorted here.
IMPURE_FILTERS = frozenset({"random"})
IMPURE_GLOBALS = frozenset({"lipsum"})
PURE_GLOBALS = frozenset({"range", "dict", "namespace", "cycler", "joiner"})
# filters whose arguments name another filter (map) or a test (select, reject, selectattr, rejectattr)
_NAMING_FILTERS = frozenset({"map", "select", "reject", "selectattr", "rejectattr"})

_DICTS = (dict, YamlMap)
_LISTS = (list, YamlSeq)
_SCALARS = frozenset({str, int, float, bool, type(None)})
_ENTRY = struct.Struct("<32sqI")  # key, made (unix seconds), length of the UTF-8 text that follows


def _short(name: str) -> str:
    return name.removeprefix("ansible.builtin.")


def cache_names(ast: nodes.Template, environment: jinja2.Environment) -> tuple[str, ...] | None:
    """The names a template (``ast``, parsed by ``environment``) reads from outside, sorted, or None
    when its output can depend on more than those names' values (see the module's docstring)."""
    if any(True for _ in ast.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends))):
        return None
    for f in ast.find_all(nodes.Filter):
        name = _short(f.name)
        if name in IMPURE_FILTERS:
            return None
        if name in _NAMING_FILTERS:
            # every positional argument that can name a filter or test must be written out, and pure
            for arg in f.args:
                if not isinstance(arg, nodes.Const):
                    return None
                if isinstance(arg.value, str) and _short(arg.value) in IMPURE_FILTERS:
                    return None
    tracker = _NameTracker(environment)
    tracker.visit(ast)
    if tracker.names & IMPURE_GLOBALS:
        return None
    return tuple(sorted(tracker.names))


class _NameTracker(CodeGenerator):
    """Every name a template looks up in its context, globals included (jinja2.meta's own
    find_undeclared_variables leaves out the names of globals: a variable of that name, which hides
    the global, and ``lipsum`` would go unseen)."""

    def __init__(self, environment: jinja2.Environment) -> None:
        super().__init__(environment, "<names>", "<names>")
        self.names: set[str] = set()

    def write(self, x: str) -> None:
        """Nothing is written: only the lookups are wanted."""

    def enter_frame(self, frame: Frame) -> None:
        super().enter_frame(frame)
        for action, param in frame.symbols.loads.values():
            if action == "resolve":
                self.names.add(param)


_code: bytes | None = None


def _code_digest() -> bytes:
    """What the rendering code is: the bytes of the modules a template's text comes from (read once)."""
    global _code
    if _code is None:
        from driftctl.manifest import filters, render, sandbox

        h = hashlib.sha256(FORMAT)
        for module in (render, sandbox, filters):
            h.update(Path(module.__file__ or "").read_bytes())
        h.update(jinja2.__version__.encode())
        _code = h.digest()
    return _code


def template_key(source: str, options: Any, max_bytes: int) -> bytes:
    """The part of every key that the renders of one compiled template share."""
    h = hashlib.sha256(_code_digest())
    h.update(repr((options, max_bytes)).encode())
    h.update(b"\0")
    h.update(source.encode("utf-8", "surrogatepass"))
    return h.digest()


def _plain(value: Any, secrets: Collection[str]) -> bool:
    """Whether ``value`` is plain data holding none of ``secrets``."""
    stack = [value]
    while stack:
        v = stack.pop()
        kind = type(v)
        if kind is str:
            if secrets and mentions(v, secrets):
                return False
        elif kind in _SCALARS:
            continue
        elif kind in _DICTS:
            for k in v:
                if type(k) not in _SCALARS:
                    return False
            stack.extend(v)
            stack.extend(v.values())
        elif kind in _LISTS:
            stack.extend(v)
        else:
            return False
    return True


def render_key(template: bytes, names: tuple[str, ...], variables: Mapping[str, Any],
               env_globals: Mapping[str, Any], secrets: Collection[str]) -> bytes | None:
    """The key of one render, or None when it must not be cached (a value that is not plain data or
    holds a secret, an impure global)."""
    h = hashlib.sha256(template)
    for name in names:
        if name in variables:
            value = variables[name]
            if not _plain(value, secrets):
                return None
            h.update(b"\0v")
            h.update(repr(value).encode("utf-8", "surrogatepass"))
        elif name in PURE_GLOBALS:
            h.update(b"\0g")
        elif name in env_globals:
            return None
        else:
            h.update(b"\0u")  # undefined: the text may say so ({% if x is defined %})
    return h.digest()


def pack(entries: Mapping[bytes, tuple[str, int]]) -> bytes:
    """A shard's entries (key -> (text, made)) as one blob."""
    out = bytearray()
    for key, (text, made) in entries.items():
        data = text.encode("utf-8", "surrogatepass")
        out += _ENTRY.pack(key, made, len(data))
        out += data
    return bytes(out)


def unpack(blob: bytes) -> dict[bytes, tuple[str, int]]:
    """What ``pack`` made; ValueError when ``blob`` is not that."""
    entries: dict[bytes, tuple[str, int]] = {}
    view, at, end = memoryview(blob), 0, len(blob)
    try:
        while at < end:
            key, made, size = _ENTRY.unpack_from(blob, at)
            at += _ENTRY.size
            if at + size > end:
                raise ValueError("a text runs past the end of its shard")
            entries[key] = (str(view[at:at + size], "utf-8", "surrogatepass"), made)
            at += size
    except (struct.error, UnicodeDecodeError) as e:
        raise ValueError(str(e)) from None
    return entries


class Shard:
    """One host's texts under one manifest tree, and the host's secret values (never cached)."""

    def __init__(self, cache: RenderCache, scope: bytes, secrets: Collection[str]) -> None:
        self.cache = cache
        self.scope = scope
        self.secrets = secrets

    def get(self, key: bytes) -> str | None:
        return self.cache.get(self.scope, key)

    def put(self, key: bytes, text: str) -> None:
        """Keep ``text`` for the next runs (written by ``RenderCache.flush``), unless it holds a secret or
        is large."""
        if len(text) > MAX_TEXT or (self.secrets and mentions(text, self.secrets)):
            return
        self.cache.put(self.scope, key, text)

    def release(self) -> None:
        """The host's catalog is compiled: its texts need not be held here any more (see ``release``)."""
        self.cache.release(self.scope)


class RenderCache:
    """The texts of earlier renders, in shards. Thread-safe; every method fails soft (see ``broken``)."""

    def __init__(self, path: Path, db: sqlite3.Connection) -> None:
        self.path = path
        self._db = db
        self._lock = threading.Lock()
        self._shards: dict[bytes, dict[bytes, tuple[str, int]]] = {}
        self._used: dict[bytes, set[bytes]] = {}
        self._dirty: set[bytes] = set()
        self.broken: str | None = None  # why the cache was turned off during this run
        self.hits = 0
        self.misses = 0

    # ---- opening
    @classmethod
    def open(cls, directory: Path) -> tuple[RenderCache | None, str | None]:
        """The cache in ``directory`` (made 0700 when missing), or None and why it cannot be used."""
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            parent = directory.parent.stat()
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError as e:
            return None, f"render cache off: {directory}: {e.strerror or e}"
        try:
            st = os.fstat(fd)
            # SQLite opens the file by its path: nobody else may be able to swap the directory either
            swappable = parent.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not parent.st_mode & stat.S_ISVTX
            if st.st_uid != os.geteuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) or swappable:
                where, mode = (directory.parent, parent.st_mode) if swappable else (directory, st.st_mode)
                return None, (f"render cache off: {where} is writable by users other than you (mode "
                              f"{stat.S_IMODE(mode):04o}, owner uid {st.st_uid}): whoever can write it would "
                              "decide what is written on your hosts")
            path = directory / FILE_NAME
            try:
                return cls(path, _connect(fd, path)), None
            except sqlite3.DatabaseError:
                # not a database SQLite can read (torn, truncated, another program's): it is only a cache
                for suffix in ("", "-wal", "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(FILE_NAME + suffix, dir_fd=fd)
                return cls(path, _connect(fd, path)), None
        except (OSError, sqlite3.Error) as e:
            return None, f"render cache off: {directory / FILE_NAME}: {e}"
        finally:
            os.close(fd)

    def shard(self, tree: Path, host: str, secrets: Collection[str]) -> Shard:
        scope = hashlib.sha256(f"{tree}\0{host}".encode("utf-8", "surrogatepass")).digest()
        return Shard(self, scope, secrets)

    # ---- texts
    def _entries(self, scope: bytes) -> dict[bytes, tuple[str, int]] | None:
        """The shard's entries, read with one query the first time (the lock is held)."""
        entries = self._shards.get(scope)
        if entries is None and not self.broken:
            try:
                row = self._db.execute("SELECT data FROM shard WHERE scope = ?", (scope,)).fetchone()
                entries = unpack(row[0]) if row else {}
            except (sqlite3.Error, ValueError) as e:
                self._off(e)
                return None
            self._shards[scope] = entries
            self._used[scope] = set()
        return entries

    def get(self, scope: bytes, key: bytes) -> str | None:
        with self._lock:
            entries = None if self.broken else self._entries(scope)
            found = entries.get(key) if entries is not None else None
            if found is None:
                self.misses += 1
                return None
            self.hits += 1
            self._used[scope].add(key)
            return found[0]

    def put(self, scope: bytes, key: bytes, text: str) -> None:
        with self._lock:
            entries = self._entries(scope)
            if entries is not None:
                entries[key] = (text, int(time.time()))
                self._used[scope].add(key)
                self._dirty.add(scope)

    def release(self, scope: bytes) -> None:
        """Let go of a shard's texts once its host's catalog holds them (an apply lets go of each catalog
        when its host is done: a cache holding every text would keep them all, ~25 MB at 100 hosts of
        the bench); a shard that gained texts is kept until ``flush`` has written it."""
        with self._lock:
            if scope not in self._dirty:
                self._shards.pop(scope, None)
                self._used.pop(scope, None)

    def flush(self) -> None:
        """Write the shards that gained texts, in one transaction; drop old texts and shards. The shards
        written are let go of (a later render of their host reads them again)."""
        with self._lock:
            if self.broken or not self._dirty:
                return
            now = int(time.time())

            def rows() -> Iterator[tuple[bytes, bytes, int]]:  # one packed shard in memory at a time
                for scope in self._dirty:
                    used = self._used[scope]
                    kept = {k: (t, now if k in used else made) for k, (t, made) in self._shards[scope].items()
                            if k in used or made >= now - MAX_AGE_S}
                    yield scope, pack(kept), now

            try:
                with self._db:
                    self._db.executemany("INSERT OR REPLACE INTO shard (scope, data, made) VALUES (?, ?, ?)", rows())
                    self._db.execute("DELETE FROM shard WHERE made < ?", (now - MAX_AGE_S,))
            except sqlite3.Error as e:
                self._off(e)
            for scope in self._dirty:
                self._shards.pop(scope, None)
                self._used.pop(scope, None)
            self._dirty.clear()

    def close(self) -> None:
        self.flush()
        with self._lock:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self.broken = self.broken or "closed"

    def _off(self, e: Exception) -> None:
        self.broken = f"{self.path}: {e}"
        self._dirty.clear()
        self._shards.clear()
        self._used.clear()


def _connect(dir_fd: int, path: Path) -> sqlite3.Connection:
    """The database at ``path`` (in the checked directory ``dir_fd``), made 0600 when new."""
    # made with our mode before SQLite makes it with the umask's; never opened through a link
    os.close(os.open(FILE_NAME, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd))
    st = os.stat(FILE_NAME, dir_fd=dir_fd, follow_symlinks=False)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise OSError(f"not a private regular file of yours (mode {stat.S_IMODE(st.st_mode):04o}, "
                      f"owner uid {st.st_uid})")
    db = sqlite3.connect(path, timeout=2.0, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE IF NOT EXISTS shard (scope BLOB PRIMARY KEY, data BLOB NOT NULL, "
                   "made INTEGER NOT NULL)")
    except BaseException:
        db.close()
        raise
    db.isolation_level = "DEFERRED"  # transactions again, for `with db:`
    return db
