"""The pull cache: a private directory of root (or of the user running pull) and the pull lock.

The directory holds the git mirror of SOURCE, the checkouts, the host's state and its report outbox:
what decides what runs as root on this host. It is refused when anyone else could write it (a
directory writable by group or others, or owned by another user), checked by descriptor on the
directory itself, never following a symbolic link (as the agent checks its own directories).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from driftctl.errors import LockedError
from driftctl.pull import PullError


def _refuse(path: Path, why: str) -> PullError:
    return PullError(f"refusing the pull cache {path}: {why}",
                     hint="it decides what runs as root: it must be a directory of root or yours, mode 0700 "
                          "(chmod 700, chown), or give another with --cache-dir")


def private_dir(path: Path, create: bool = True) -> Path:
    """``path`` as a private directory: created 0700 when missing, refused when it is a link, not a
    directory, owned by another user than root or us, or writable by group or others."""
    path = Path(os.path.abspath(path))
    me = os.geteuid()
    _safe_parents(path, me)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if not create:
            raise _refuse(path, "it does not exist") from None
        parent = path.parent
        try:
            os.makedirs(parent, mode=0o755, exist_ok=True)
            os.mkdir(path, 0o700)
        except OSError as e:
            raise PullError(f"cannot create the pull cache {path}: {e.strerror}",
                            hint="run pull as root, or give a directory of yours with --cache-dir") from None
        st = os.lstat(path)
    except OSError as e:
        raise _refuse(path, e.strerror or str(e)) from None
    if stat.S_ISLNK(st.st_mode):
        raise _refuse(path, "it is a symbolic link")
    if not stat.S_ISDIR(st.st_mode):
        raise _refuse(path, "it is not a directory")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as e:
        raise _refuse(path, e.strerror or str(e)) from None
    try:
        st = os.fstat(fd)
        if st.st_uid not in (0, me):
            raise _refuse(path, f"it is owned by uid {st.st_uid}, not by root or you (uid {me})")
        if st.st_mode & 0o022:
            raise _refuse(path, f"it is writable by {'others' if st.st_mode & 0o002 else 'its group'} "
                                f"(mode {stat.S_IMODE(st.st_mode):04o})")
        if st.st_uid == me and st.st_mode & 0o077:
            os.fchmod(fd, 0o700)  # readable by others: ours to close (the reports name every resource)
    finally:
        os.close(fd)
    return path


def _safe_parents(path: Path, me: int) -> None:
    """Refuse ``path`` when another user could replace it: one of the directories above it (as written
    and as resolved) is owned by someone else than root or us, or writable by group or others without
    the sticky bit (/tmp is fine: nobody else may rename what is ours in it)."""
    chains = [path.parents, Path(os.path.realpath(path.parent)).joinpath("x").parents]
    for chain in chains:
        for parent in chain:
            try:
                st = os.stat(parent)
            except FileNotFoundError:
                continue  # made below, by us
            except OSError as e:
                raise _refuse(path, f"{parent}: {e.strerror}") from None
            if st.st_uid not in (0, me):
                raise _refuse(path, f"{parent} above it is owned by uid {st.st_uid}, who could replace it")
            if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
                raise _refuse(path, f"{parent} above it is writable by "
                                    f"{'others' if st.st_mode & 0o002 else 'its group'} "
                                    f"(mode {stat.S_IMODE(st.st_mode):04o}), who could replace it")


def subdir(cache: Path, name: str) -> Path:
    """A private directory inside the cache (created 0700; refused like the cache when tampered with)."""
    return private_dir(cache / name)


@dataclass
class Cache:
    """The checked cache directory and what lives in it."""

    root: Path

    @classmethod
    def open(cls, path: Path) -> Cache:
        return cls(private_dir(path))

    @property
    def mirror(self) -> Path:
        return self.root / "repo.git"

    @property
    def checkouts(self) -> Path:
        return subdir(self.root, "checkouts")

    @property
    def outbox(self) -> Path:
        return subdir(self.root, "outbox")

    @property
    def store(self) -> Path:
        return self.root / "state.sqlite"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    def sweep(self) -> None:
        """Remove what a run that died left (under the lock): a GnuPG home of --verify-commit, a mirror
        being made. A link is removed, never followed."""
        for entry in os.scandir(self.root):
            if entry.name.startswith((".gnupg.", ".repo.")):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """One pull at a time on this cache: a second one gets LockedError (exit 75), never waits.
        An flock, released by the kernel when the process dies (never stale)."""
        fd = os.open(self.root / "pull.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise PullError(f"refusing {self.root}/pull.lock: not a regular file")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another pull"
                raise LockedError(f"the pull cache {self.root}", holder) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"driftctl pull pid {os.getpid()}".encode(), 0)
            yield
        finally:
            os.close(fd)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a regular file of the cache (empty when missing or unreadable)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return {}
    with os.fdopen(fd, "rb") as f:
        try:
            value = json.loads(f.read().decode("utf-8"))
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}
