"""File contents the controller sends without holding them in memory.

A ``source:`` file larger than ``INLINE_LIMIT`` is not read into the catalog: it becomes a
``FileContent`` (its path, size and sha256, hashed once per run in 1 MiB chunks) and is streamed to
the host in chunks when a resource needs it. Smaller contents stay ``bytes`` (or ``str`` for
templates): they are diffed as text and cost nothing to keep.

``Blob`` is one content as the apply call sends it: its sha256, size and chunks.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from driftctl.errors import DriftctlError

INLINE_LIMIT = 256 * 1024  # the agent's CONTENT_LIMIT: larger contents are never shown as text
CHUNK = 1 << 20


@dataclass(frozen=True)
class FileContent:
    """The bytes of a file on the controller, known by path, size and sha256."""

    path: str
    size: int
    sha256: str

    def __repr__(self) -> str:  # the catalog digest's canonical form (stable, no path)
        return f"FileContent(sha256={self.sha256}, size={self.size})"

    def chunks(self) -> Iterator[bytes]:
        """The file's bytes, checked against the hash taken at compile time as they are read."""
        h = hashlib.sha256()
        sent = 0
        try:
            with open(self.path, "rb") as f:
                while chunk := f.read(CHUNK):
                    h.update(chunk)
                    sent += len(chunk)
                    yield chunk
        except OSError as e:
            raise DriftctlError(f"cannot read {self.path}: {e.strerror or e}") from e
        if sent != self.size or h.hexdigest() != self.sha256:
            raise DriftctlError(f"{self.path} changed on the controller during the run: not sent")


_cache: dict[tuple[str, int, int, int], FileContent] = {}
_cache_lock = threading.Lock()


def file_content(path: Path) -> FileContent:
    """``path`` as a FileContent; hashed once per (path, inode, size, mtime) however many hosts use it."""
    st = path.stat()
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    fc = FileContent(str(path), st.st_size, h.hexdigest())
    with _cache_lock:
        _cache[key] = fc
    return fc


def read_source(path: Path) -> bytes | FileContent:
    """A ``source:`` file: its bytes when small, else a FileContent streamed at apply time."""
    if os.path.getsize(path) <= INLINE_LIMIT:
        return path.read_bytes()
    return file_content(path)


@dataclass(frozen=True)
class Blob:
    """One content the agent needs: sha256, size, and where its bytes come from."""

    sha256: str
    size: int
    data: bytes | None = None
    source: FileContent | None = None
    # text held as the catalog holds it and encoded only when sent: the contents of every host applying
    # at once are not kept a second time as bytes (100 hosts x 100 files of 2 KB: ~20 MB)
    text: str | None = None

    def chunks(self) -> Iterator[bytes]:
        if self.source is not None:
            yield from self.source.chunks()
            return
        data = self.data if self.data is not None else self.text.encode("utf-8") if self.text is not None else b""
        for i in range(0, len(data), CHUNK):
            yield data[i : i + CHUNK]


def blob_of(content: str | bytes | FileContent) -> Blob:
    if isinstance(content, FileContent):
        return Blob(content.sha256, content.size, source=content)
    if isinstance(content, str):
        data = content.encode("utf-8")
        return Blob(hashlib.sha256(data).hexdigest(), len(data), text=content)
    return Blob(hashlib.sha256(content).hexdigest(), len(content), data=content)
