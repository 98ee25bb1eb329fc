"""A private cache of parsed big YAML files: a 10,000-host inventory is parsed once, not on every run.

libyaml composes a 900 KB hosts file in ~0.45 s and the constructors take ~0.1 s more; the same data
unpickled takes ~0.03 s. Entries are keyed by the sha256 of the file's name and whole text (and of
this format), so an edited file is parsed again, never served stale; nothing is trusted by time.

What is never cached: files under ``MIN_SIZE`` (they parse faster than a cache lookup pays), text
that was vault-encrypted as a whole, and any parse that met a ``!secret`` or ``!vault`` value (the
caller says so): no secret, decrypted or not, is ever written here.

The directory (``$DRIFTCTL_CACHE_DIR``, else ``$XDG_CACHE_HOME/driftctl/yaml``, else
``~/.cache/driftctl/yaml``; ``DRIFTCTL_CACHE_DIR=off`` turns the cache off) must be the user's own,
not a symlink and writable by nobody else; otherwise it is not used (a cache only ever saves time).
It is opened once and every entry is read and written relative to that descriptor, so a link
planted meanwhile cannot redirect a read or a write. Entries are written 0600 under a temporary
name and renamed into place; at most ``MAX_ENTRIES`` are kept, the least recently used go first.
An unreadable or corrupt entry is a miss.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pickle
import secrets
import stat
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MIN_SIZE = 64 * 1024  # characters of YAML below which parsing is cheaper than the cache
MAX_ENTRIES = 32
FORMAT = b"driftctl-yaml-cache 1"  # bump when YamlMap, YamlSeq, Location or the loader's output change
_SUFFIX = ".pickle"

MISS = object()


def directory() -> Path | None:
    """Where the cache lives, or None when it is turned off."""
    own = os.environ.get("DRIFTCTL_CACHE_DIR")
    if own is not None:
        return None if own.strip().lower() in ("", "off", "0", "no", "false") else Path(own)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "driftctl" / "yaml"


def wanted(text: str) -> bool:
    return len(text) >= MIN_SIZE and directory() is not None


def _key(filename: str, text: str) -> str:
    from driftctl import __version__

    h = hashlib.sha256(FORMAT + b"\0" + __version__.encode() + b"\0" + filename.encode("utf-8", "surrogateescape"))
    h.update(b"\0" + text.encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _open_dir(create: bool) -> int | None:
    """A descriptor of the cache directory if it is safe to use (see the module's docstring)."""
    path = directory()
    if path is None:
        return None
    if create:
        with contextlib.suppress(OSError):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    st = os.fstat(fd)
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        os.close(fd)
        log.debug("YAML cache %s not used: it must be yours and private (mode 0700)", path)
        return None
    return fd


def get(filename: str, text: str) -> Any:
    """The cached parse of ``text`` (read from ``filename``), or MISS."""
    fd = _open_dir(create=False)
    if fd is None:
        return MISS
    name = _key(filename, text) + _SUFFIX
    try:
        entry = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    except OSError:
        os.close(fd)
        return MISS
    try:
        st = os.fstat(entry)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
            return MISS
        with os.fdopen(entry, "rb", closefd=False) as f:
            data = pickle.load(f)  # noqa: S301 (written by this user into a directory only it can write)
        with contextlib.suppress(OSError):
            os.utime(name, dir_fd=fd)  # recently used: kept longest
        return data
    except Exception as e:  # a corrupt or foreign entry is only a miss
        log.debug("YAML cache entry for %s not used: %s", filename, e)
        return MISS
    finally:
        os.close(entry)
        os.close(fd)


def put(filename: str, text: str, data: Any) -> None:
    """Keep ``data``, the parse of ``text``; any failure only means no cache."""
    fd = _open_dir(create=True)
    if fd is None:
        return
    name = _key(filename, text) + _SUFFIX
    tmp = f".{name}.{secrets.token_hex(4)}.tmp"
    try:
        entry = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=fd)
        try:
            with os.fdopen(entry, "wb", closefd=False) as f:
                pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
        finally:
            os.close(entry)
        os.rename(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
        _prune(fd)
    except Exception as e:
        log.debug("YAML cache entry for %s not written: %s", filename, e)
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=fd)
    finally:
        os.close(fd)


def _prune(fd: int) -> None:
    entries = []
    for name in os.listdir(fd):
        if name.endswith(_SUFFIX) and not name.startswith("."):
            with contextlib.suppress(OSError):
                entries.append((os.stat(name, dir_fd=fd, follow_symlinks=False).st_mtime, name))
    for _, name in sorted(entries)[: max(0, len(entries) - MAX_ENTRIES)]:
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=fd)
