"""The flattened filesystem of an image, read from its layers without a container.

``ImageFS`` applies an image's layer tars in order (whiteouts and opaque directories included) into
an index of paths, and keeps the contents of the files a caller asked for. Bake then writes its
changes into an upper level (``put``/``remove``), like overlayfs, and ``changes()`` lists them so
``layer.py`` can turn them into one layer. Paths are absolute and normalised (``/etc/motd``).
"""

from __future__ import annotations

import posixpath
import stat as _stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from driftctl.bake.oci import Image
from driftctl.errors import BakeError

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
MAX_CONTENT = 8 << 20  # file contents kept in memory when wanted; larger ones are read on demand
MAX_LINK_HOPS = 40


@dataclass
class Entry:
    """One path of the image: kind is file, dir, link (symlink) or other (devices, fifos).

    ``mode`` holds the permission bits with setuid/setgid/sticky (0o7777). File contents are in
    ``data`` when loaded; otherwise ``layer``/``member`` say where to read them.
    """

    kind: str
    mode: int
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    size: int = 0
    data: bytes | None = None
    target: str = ""  # a symlink's target
    layer: int = -1
    member: str = ""
    xattrs: dict[str, str] | None = None
    ifmt: int = 0  # for kind "other": the stat file type (S_IFIFO, S_IFCHR, S_IFBLK) the tar gave


def norm(path: str) -> str:
    """``etc/motd``, ``./etc/motd/``, ``/etc//motd`` -> ``/etc/motd``."""
    out = posixpath.normpath("/" + path)
    while out.startswith("//"):
        out = out[1:]
    return out


def ancestors(path: str) -> list[str]:
    """``/a/b/c`` -> ``["/a", "/a/b"]`` (the root excluded)."""
    parts = path.strip("/").split("/")[:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def _member_path(name: str) -> str:
    if name in (".", "./", "/"):
        return "/"
    while name.startswith("./"):
        name = name[2:]
    return norm("/" + name)


class ImageFS:
    """The flattened view of an image's layers, plus an upper level of changes made by bake."""

    def __init__(self, image: Image | None = None) -> None:
        self.image = image
        self.base: dict[str, Entry] = {"/": Entry("dir", 0o755)}
        self.upper: dict[str, Entry | None] = {}  # None: removed (a whiteout in the new layer)
        self._children: dict[str, set[str]] = {"/": set()}
        self.version = 0  # bumped by every change to the upper level

    # ---------------------------------------------------------------- loading

    @classmethod
    def load(cls, image: Image, want: Callable[[str], bool] | None = None) -> ImageFS:
        """Index every layer of ``image``; keep the contents of the files ``want(path)`` accepts."""
        fs = cls(image)
        for index in range(len(image.layers)):
            fs._apply_layer(index, want or (lambda _p: False))
        return fs

    def _apply_layer(self, index: int, want: Callable[[str], bool]) -> None:
        assert self.image is not None
        seen: set[str] = set()
        try:
            with self.image.open_layer(index) as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
                for member in tar:
                    path = _member_path(member.name)
                    base = posixpath.basename(path)
                    parent = posixpath.dirname(path)
                    if base == OPAQUE:
                        for child in list(self._children.get(parent, ())):
                            if child not in seen:
                                self._drop(child)
                        continue
                    if base.startswith(WHITEOUT_PREFIX):
                        self._drop(posixpath.join(parent, base[len(WHITEOUT_PREFIX):]))
                        continue
                    entry = self._entry_from(member, index, want, path, tar)
                    if entry is None:
                        continue
                    seen.add(path)
                    self._set_base(path, entry)
        except (tarfile.TarError, OSError, EOFError) as e:
            raise BakeError(f"{self.image.name}: cannot read layer {self.image.layers[index].digest}: {e}") from e

    def _entry_from(
        self, m: tarfile.TarInfo, index: int, want: Callable[[str], bool], path: str, tar: tarfile.TarFile
    ) -> Entry | None:
        mode, uid, gid, mtime = m.mode & 0o7777, m.uid, m.gid, int(m.mtime)
        xattrs = {k: v for k, v in (m.pax_headers or {}).items() if k.startswith("SCHILY.xattr.")} or None
        if m.isdir():
            return Entry("dir", mode, uid, gid, mtime, xattrs=xattrs)
        if m.issym():
            return Entry("link", mode, uid, gid, mtime, target=m.linkname)
        if m.islnk():
            target = self.base.get(_member_path(m.linkname))
            if target is None or target.kind != "file":
                return None  # a hard link to nothing we know: ignore rather than invent contents
            return replace(target, mode=mode, uid=uid, gid=gid, mtime=mtime)
        if m.isreg():
            data = None
            if m.size <= MAX_CONTENT and want(path):
                f = tar.extractfile(m)
                data = f.read() if f is not None else b""
            return Entry("file", mode, uid, gid, mtime, m.size, data, layer=index, member=m.name, xattrs=xattrs)
        ifmt = _stat.S_IFIFO if m.isfifo() else _stat.S_IFBLK if m.isblk() else _stat.S_IFCHR
        return Entry("other", mode, uid, gid, mtime, ifmt=ifmt)

    def _set_base(self, path: str, entry: Entry) -> None:
        old = self.base.get(path)
        if old is not None and old.kind == "dir" and entry.kind != "dir":
            for child in list(self._children.get(path, ())):
                self._drop(child)
        if old is not None and old.kind == "dir" and entry.kind == "dir":
            entry = replace(entry)  # a dir entry in a later layer changes metadata only
        self.base[path] = entry
        parent = posixpath.dirname(path)
        if path != "/":
            self._children.setdefault(parent, set()).add(path)
        if entry.kind == "dir":
            self._children.setdefault(path, set())

    def _drop(self, path: str) -> None:
        for child in list(self._children.pop(path, ())):
            self._drop(child)
        self.base.pop(path, None)
        self._children.get(posixpath.dirname(path), set()).discard(path)

    # ---------------------------------------------------------------- reading the view

    def get(self, path: str) -> Entry | None:
        """The entry at ``path`` (never following a symlink at the last component), or None."""
        path = norm(path)
        if path in self.upper:
            return self.upper[path]
        for anc in ancestors(path):
            if anc in self.upper and self.upper[anc] is None:
                return None
        return self.base.get(path)

    def in_base(self, path: str) -> bool:
        return norm(path) in self.base

    def exists(self, path: str) -> bool:
        return self.get(path) is not None

    def listdir(self, path: str) -> list[str]:
        """Names in the directory ``path`` (not following a symlink at ``path``), sorted."""
        path = norm(path)
        names = {posixpath.basename(c) for c in self._children.get(path, ()) if self.get(c) is not None}
        for p, e in self.upper.items():
            if posixpath.dirname(p) == path and p != "/":
                if e is None:
                    names.discard(posixpath.basename(p))
                else:
                    names.add(posixpath.basename(p))
        return sorted(names)

    def resolve(self, path: str, follow_last: bool = False) -> str:
        """``path`` with the symlinks in its parents resolved inside the image (``/bin/sh`` ->
        ``/usr/bin/sh`` on a merged-/usr system). The last component is followed only if asked.
        """
        queue = [p for p in norm(path).split("/") if p]
        cur = "/"
        hops = 0
        while queue:
            name = queue.pop(0)
            if name == "..":
                cur = posixpath.dirname(cur) or "/"
                continue
            if name == ".":
                continue
            nxt = posixpath.join(cur, name)
            entry = self.get(nxt)
            if entry is not None and entry.kind == "link" and (queue or follow_last):
                hops += 1
                if hops > MAX_LINK_HOPS:
                    raise BakeError(f"{path}: too many levels of symbolic links in the image")
                if entry.target.startswith("/"):
                    cur = "/"
                queue = [p for p in entry.target.split("/") if p] + queue
                continue
            cur = nxt
        return cur

    def read(self, path: str) -> bytes | None:
        """The contents of the regular file at ``path`` (no link followed at the end), or None."""
        entry = self.get(path)
        if entry is None or entry.kind != "file":
            return None
        return self.content(entry)

    def content(self, entry: Entry) -> bytes:
        """The contents of a file entry (read from its layer the first time)."""
        if entry.data is None:
            entry.data = self._read_member(entry)
        return entry.data

    def read_text(self, path: str) -> str | None:
        data = self.read(path)
        return None if data is None else data.decode("utf-8", "surrogateescape")

    def _read_member(self, entry: Entry) -> bytes:
        if self.image is None or entry.layer < 0:
            return b""
        with self.image.open_layer(entry.layer) as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
            for member in tar:
                if member.name == entry.member:
                    f = tar.extractfile(member)
                    return f.read() if f is not None else b""
        raise BakeError(f"{self.image.name}: {entry.member} vanished from layer {entry.layer}")

    # ---------------------------------------------------------------- changing (the upper level)

    def put(self, path: str, entry: Entry) -> None:
        """Create or replace ``path`` in the upper level (bake's new layer)."""
        path = norm(path)
        if path == "/":
            raise BakeError("bake never replaces the root directory")
        old = self.get(path)
        if old is not None and old.kind == "dir" and entry.kind != "dir":
            raise BakeError(f"{path} is a directory in the image: refusing to replace it with a {entry.kind}")
        self.upper[path] = entry
        self.version += 1

    def remove(self, path: str) -> None:
        """Remove ``path`` (and what is under it) from the view: a whiteout in the new layer."""
        path = norm(path)
        for p in [p for p in self.upper if p == path or p.startswith(path + "/")]:
            del self.upper[p]
        if path in self.base:
            self.upper[path] = None
        self.version += 1

    def changes(self) -> Iterator[tuple[str, Entry | None]]:
        """The upper level, in path order: (path, entry) or (path, None) for a removal."""
        for path in sorted(self.upper, key=lambda p: p.split("/")):
            yield path, self.upper[path]
