"""Turn the changes bake made to an ImageFS into one reproducible layer (tar + gzip).

Reproducibility rules, each one a bug someone hit:
- entries sorted by path components, parents before children;
- numeric owners only (no user/group names), fixed mtimes (the epoch) on everything bake creates;
- every parent directory of a changed path is written with the *image's* metadata: a layer that omits
  a parent makes the runtime create it 0755 root (``/tmp`` would lose its sticky 1777, ``/root``
  would become world-readable);
- gzip without a file name and with mtime 0 (gzip otherwise embeds both).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import posixpath
import tarfile
from pathlib import Path
from typing import IO

from driftctl.bake.fs import WHITEOUT_PREFIX, Entry, ImageFS, ancestors
from driftctl.bake.ociwrite import NewLayer
from driftctl.errors import BakeError

GZIP_LEVEL = 6


class _HashingWriter(io.RawIOBase):
    """Writes through to a file while hashing and counting what passes."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.size

    def write(self, b: bytes) -> int:  # type: ignore[override]
        data = bytes(b)
        self.hash.update(data)
        self.size += len(data)
        self.out.write(data)
        return len(data)


def _tarinfo(path: str, entry: Entry, mtime: int | None) -> tarfile.TarInfo:
    info = tarfile.TarInfo(path.lstrip("/"))
    info.mode = entry.mode
    info.uid = entry.uid
    info.gid = entry.gid
    info.uname = info.gname = ""
    info.mtime = entry.mtime if mtime is None else mtime
    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
    elif entry.kind == "link":
        info.type = tarfile.SYMTYPE
        info.linkname = entry.target
    elif entry.kind == "file":
        info.type = tarfile.REGTYPE
        info.size = len(entry.data or b"")
    else:
        raise BakeError(f"{path}: bake cannot write a {entry.kind}")
    if entry.xattrs:
        info.pax_headers = dict(entry.xattrs)
    return info


def layer_entries(fs: ImageFS) -> list[tuple[str, Entry | None]]:
    """What the new layer holds: bake's changes plus every parent with the image's metadata.

    (path, None) is a whiteout for path. Sorted parents-first.
    """
    out: dict[str, Entry | None] = {}
    for path, entry in fs.changes():
        if entry is None and not fs.in_base(path):
            continue
        out[path] = entry
        for anc in ancestors(path):
            if anc in out:
                continue
            parent = fs.get(anc)
            if parent is None or parent.kind != "dir":
                raise BakeError(f"{path}: parent {anc} is not a directory in the image")
            out[anc] = parent
    return sorted(out.items(), key=lambda kv: kv[0].split("/"))


def write_layer(fs: ImageFS, workdir: Path, name: str = "layer") -> NewLayer | None:
    """Write bake's changes as ``<workdir>/<name>.tar`` and ``.tar.gz``; None when nothing changed."""
    entries = layer_entries(fs)
    if not entries:
        return None
    tar_path = workdir / f"{name}.tar"
    gz_path = workdir / f"{name}.tar.gz"
    with tar_path.open("wb") as raw:
        plain = _HashingWriter(raw)
        with tarfile.open(fileobj=plain, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8",
                          errors="surrogateescape") as tar:
            for path, entry in entries:
                if entry is None:
                    wh = tarfile.TarInfo(posixpath.join(posixpath.dirname(path), WHITEOUT_PREFIX
                                                        + posixpath.basename(path)).lstrip("/"))
                    wh.mtime = 0
                    wh.mode = 0o644
                    wh.uname = wh.gname = ""
                    tar.addfile(wh)
                    continue
                info = _tarinfo(path, entry, None)
                data = fs.read(path) if entry.kind == "file" and entry.data is None else entry.data
                if entry.kind == "file":
                    info.size = len(data or b"")
                    tar.addfile(info, io.BytesIO(data or b""))
                else:
                    tar.addfile(info)
    diff_id = "sha256:" + plain.hash.hexdigest()
    with tar_path.open("rb") as src, gz_path.open("wb") as raw:
        packed = _HashingWriter(raw)
        # filename="" and mtime=0: the gzip header then holds no name and no time
        with gzip.GzipFile(filename="", mode="wb", fileobj=packed, compresslevel=GZIP_LEVEL, mtime=0) as gz:
            while chunk := src.read(1 << 20):
                gz.write(chunk)
    return NewLayer(gz_path, "sha256:" + packed.hash.hexdigest(), packed.size, diff_id, tar_path)
