"""Who else could have written the files driftctl reads: settings, manifests and inventories decide
what runs as root on every host, so a file another user can change is worth a warning (or, for
settings, is not read at all).

``writable_by_others(path)`` looks at one path; ``first_writable_by_others(root)`` walks a tree once,
stopping at the first offending path, and remembers the answer for the process (a command that loads
the same tree twice does not walk it twice).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

_OTHERS = stat.S_IWGRP | stat.S_IWOTH
_walked: dict[Path, Path | None] = {}


def writable_by_others(st: os.stat_result) -> bool:
    """Group or world may write it (a symlink's own mode means nothing and is never asked about)."""
    return bool(st.st_mode & _OTHERS) and not stat.S_ISLNK(st.st_mode)


def mode_text(path: Path) -> str:
    try:
        return f"{stat.S_IMODE(path.lstat().st_mode):04o}"
    except OSError:
        return "?"


def first_writable_by_others(root: Path) -> Path | None:
    """The first path in ``root`` (itself included) that users other than its owner can write, or None.

    Directories whose names start with a dot (``.git``) are not entered: driftctl reads nothing there.
    Symlinks are not followed.
    """
    key = root.resolve()
    if key in _walked:
        return _walked[key]
    found: Path | None = None
    try:
        if writable_by_others(root.lstat()):
            found = root
    except OSError:
        return None
    if found is None and root.is_dir():
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in (*dirnames, *sorted(filenames)):
                path = Path(dirpath) / name
                try:
                    if writable_by_others(path.lstat()):
                        found = path
                        break
                except OSError:
                    continue
            if found is not None:
                break
    _walked[key] = found
    return found


def tree_warning(root: Path, what: str) -> str | None:
    """One warning for ``root`` naming its first path others can write, or None."""
    path = first_writable_by_others(root)
    if path is None:
        return None
    return (f"{path}: writable by users other than its owner (mode {mode_text(path)}), in the {what} {root}: "
            "whoever can write it decides what runs on your hosts")
