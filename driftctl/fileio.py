"""Atomic file writes on the controller, shared by reports, schedules and the store's spool: readers (a
web server, node_exporter, CI, systemd, the next run) see the old file or the new one, never a partial one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from driftctl.errors import DriftctlError


class FileWriteError(DriftctlError):
    """A file could not be written (the directory is not writable, the disk is full...)."""


ReportWriteError = FileWriteError  # the name reports have always raised


def write_atomic(path: Path, data: str | bytes, mode: int = 0o644) -> Path:
    """Write ``data`` to ``path``: a temp file in the same directory, fsync, chmod, rename, fsync dir.

    The temp name starts with a dot and ends in ``.tmp``, so globbing readers such as node_exporter's
    textfile collector (``*.prom``) never pick it up. Creates missing parent directories.
    """
    path = Path(path)
    body = data.encode("utf-8") if isinstance(data, str) else data
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise FileWriteError(f"cannot write {path}: {e.strerror or e}") from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0600; reports are meant to be read by others (web server, exporter)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as e:
        _unlink_quietly(tmp)
        raise FileWriteError(f"cannot write {path}: {e.strerror or e}") from e
    except BaseException:
        _unlink_quietly(tmp)
        raise
    fsync_dir(path.parent)
    return path


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def fsync_dir(directory: Path) -> None:
    # the rename is durable only once the directory entry is on disk
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
