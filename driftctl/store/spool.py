"""The local spool: a run's store writes kept on the controller while the store is unreachable.

A run whose save fails because the store's server is away (``StoreUnavailable``, after the retries of
``Store.retrying``) writes everything it meant to store, the report document and the watch baselines,
to ``<state_dir>/spool/<started>-<run key>.json.xz``: written to a temporary file, fsynced, renamed
(a spool file is whole or absent), mode 0600 in a 0700 directory. The next run that reaches the store
ingests the spool first (``ingest``): oldest first, each file in its own transaction, the file removed
only after that commit. Each spooled run carries its run key, so a file ingested twice (two
controllers, or a crash between the commit and the unlink) is stored once.

A file that cannot be read, or that the store refuses, is moved to ``spool/corrupt/`` with a warning:
it never blocks the next run, and stays there for a person to look at.
"""

from __future__ import annotations

import json
import lzma
import os
import uuid
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftctl.errors import StoreError
from driftctl.fileio import FileWriteError, write_atomic
from driftctl.store.db import StoreUnavailable
from driftctl.store.report import parse_time
from driftctl.store.types import BaselineWrite

if TYPE_CHECKING:
    from driftctl.store.store import Store

FORMAT = "driftctl.spool/v1"
SUFFIX = ".json.xz"


@dataclass(frozen=True)
class Pending:
    """One run's writes to the store: its report document and the baselines that move with it."""

    report: dict[str, Any]
    run_key: str = field(default_factory=lambda: uuid.uuid4().hex)
    baselines: tuple[BaselineWrite, ...] = ()

    def save(self, store: Store, checked: bool = False) -> int:
        """Store it (one transaction; idempotent by run key). Returns the run id. ``checked``: the report
        has passed ``report.check`` already."""
        return store.save_run(self.report, run_key=self.run_key, baselines=self.baselines, checked=checked)

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "run_key": self.run_key, "report": self.report,
                "baselines": [b.to_json() for b in self.baselines]}

    @classmethod
    def from_json(cls, data: Any) -> Pending:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file")
        if not isinstance(data.get("report"), dict) or not isinstance(data.get("run_key"), str):
            raise ValueError("no report or run key")
        return cls(data["report"], data["run_key"], tuple(BaselineWrite.from_json(b) for b in data["baselines"]))


@dataclass
class Ingested:
    """What ``ingest`` did: runs stored (file, run id), files moved aside (file, why), files left."""

    stored: list[tuple[Path, int]] = field(default_factory=list)
    corrupt: list[tuple[Path, str]] = field(default_factory=list)
    left: list[Path] = field(default_factory=list)
    error: StoreError | None = None  # why files were left: the store went away again


def spool_dir(state_dir: str | os.PathLike[str]) -> Path:
    return Path(state_dir) / "spool"


def pending_files(state_dir: str | os.PathLike[str]) -> list[Path]:
    """Spooled runs, oldest first (file names start with the run's start time)."""
    d = spool_dir(state_dir)
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if p.is_file() and p.name.endswith(SUFFIX))


def write(state_dir: str | os.PathLike[str], pending: Pending) -> Path:
    """Spool ``pending`` atomically; returns the file. Raises StoreError when even that fails."""
    d = spool_dir(state_dir)
    try:
        started = parse_time(pending.report.get("started"), "started")
    except StoreError:
        started = 0.0
    path = d / f"{int(started * 1000):015d}-{pending.run_key}{SUFFIX}"
    data = lzma.compress(json.dumps(pending.to_json(), separators=(",", ":"), default=str).encode("utf-8"),
                         preset=1)
    try:
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(d, 0o700)
        write_atomic(path, data, mode=0o600)
    except (OSError, FileWriteError) as e:
        raise StoreError(f"cannot keep the run in the spool {d}: {getattr(e, 'strerror', None) or e}") from e
    return path


def read(path: Path) -> Pending:
    """A spooled run. Raises ValueError (or OSError) for a file that is not one."""
    try:
        data = lzma.decompress(path.read_bytes())
        return Pending.from_json(json.loads(data.decode("utf-8")))
    except (lzma.LZMAError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{type(e).__name__}: {e}") from e


def ingest(store: Store, state_dir: str | os.PathLike[str]) -> Ingested:
    """Store every spooled run, oldest first, each in its own transaction; remove each file after its
    commit. Stops at the first StoreUnavailable (the rest stay for the next run); never raises it."""
    done = Ingested()
    files = pending_files(state_dir)
    for i, path in enumerate(files):
        try:
            pending = read(path)
        except (ValueError, OSError) as e:
            done.corrupt.append((path, _aside(path, f"unreadable ({e})")))
            continue
        try:
            run_id = pending.save(store)
        except StoreUnavailable as e:
            done.left, done.error = files[i:], e
            break
        except StoreError as e:  # the store refuses this document: it will refuse it every time
            done.corrupt.append((path, _aside(path, f"refused by the store ({e})")))
            continue
        with suppress(OSError):
            path.unlink()
        done.stored.append((path, run_id))
    return done


def _aside(path: Path, why: str) -> str:
    """Move a bad spool file to spool/corrupt/ (never deleted: it may be the only copy of a run)."""
    corrupt = path.parent / "corrupt"
    target = corrupt / path.name
    try:
        corrupt.mkdir(mode=0o700, exist_ok=True)
        os.replace(path, target)
    except OSError as e:
        return f"{why}; could not be moved aside: {e.strerror or e}"
    return f"{why}: moved to {target}"
