"""What the store answers: plain dataclasses, times as timezone-aware UTC datetimes."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

DriftClass = Literal["corrective", "pending", "both", "unmanaged"]
SubjectKind = Literal["resource", "path"]
EventKind = Literal["applied", "failed", "host-failed", "unreachable", "drift-found", "drift-resolved"]


def to_dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def iso(value: datetime | float | None) -> str | None:
    """ISO 8601 in UTC with a ``Z``, to the second (the format of every time the store hands out)."""
    if value is None:
        return None
    dt = to_dt(value) if isinstance(value, (int, float)) else value.astimezone(UTC)
    return dt.isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class ConvergedState:
    """The state of one resource as the last successful apply of it left the host."""

    resource: str
    type: str
    fingerprint: str | None  # of the state observed right after that apply
    desired_fingerprint: str | None  # of the manifest at that apply
    observed: dict[str, Any]
    run_id: int | None
    converged_at: datetime


@dataclass(frozen=True)
class DriftEpisode:
    """One continuous stretch of drift of a resource (``kind="resource"``) or a watched path.

    ``subject`` is the resource id (``file:/etc/motd``) or the path (``/etc/ssh/sshd_config``); the two
    never collide because a resource id always contains ``type:`` and a path always starts with ``/``.
    ``drift_class`` is that of the latest run that saw it; ``fields`` every field (for a path: the
    change, then the attributes) seen drifting during the episode; ``runs`` counts the drift
    runs it has lasted (1 on the run that found it). ``closed`` is None while it is open.
    """

    id: int
    inventory: str
    host: str
    kind: SubjectKind
    subject: str
    drift_class: DriftClass
    fields: list[str]
    first_seen: datetime
    last_seen: datetime
    runs: int
    first_run: int
    last_run: int
    closed: datetime | None = None
    closed_run: int | None = None
    close_reason: str | None = None

    @property
    def open(self) -> bool:
        return self.closed is None


@dataclass(frozen=True)
class HistoryEvent:
    """One line of a host's timeline.

    ``kind``: ``applied`` (an apply changed a resource), ``failed`` (a resource failed),
    ``host-failed`` / ``unreachable`` (a whole host), ``drift-found`` / ``drift-resolved``
    (a drift episode opened or closed). ``subject`` is the resource id or watched path (None for a host
    event); ``detail`` says what, in words, never a managed value.
    """

    time: datetime
    kind: EventKind
    inventory: str
    host: str
    subject: str | None
    run_id: int | None
    command: str | None
    detail: str
    drift_class: str | None = None
    fields: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "time": iso(self.time), "kind": self.kind, "inventory": self.inventory, "host": self.host,
            "subject": self.subject, "run_id": self.run_id, "command": self.command, "detail": self.detail,
            "drift_class": self.drift_class, "fields": list(self.fields),
        }


@dataclass(frozen=True)
class RunInfo:
    """One stored run, without its per-host detail (``Store.run_document(id)`` has that)."""

    id: int
    command: str
    inventory: str
    started: datetime
    finished: datetime | None
    exit_code: int | None
    user: str | None
    controller: str | None
    driftctl_version: str | None
    argv: list[str]
    summary: dict[str, int]
    mode: str = "push"  # "pull": made by `driftctl pull` on the host (docs/pull.md)
    commit: str | None = None  # the source commit of a pull run


@dataclass(frozen=True)
class IgnoreRule:
    """Drift to leave out of reports until ``expires`` (inclusive, UTC date).

    ``host_pattern`` is a glob over host names; ``target`` is a glob over resource ids
    (``file:/etc/motd``, ``package:*``) or watched paths (``/etc/ssh/*``).
    """

    id: int
    inventory: str
    host_pattern: str
    target: str
    reason: str
    expires: date
    created_by: str
    created_at: datetime

    def active(self, now: datetime | None = None) -> bool:
        today = (now or datetime.now(UTC)).astimezone(UTC).date()
        return today <= self.expires

    def matches(self, host: str, subject: str) -> bool:
        return fnmatch.fnmatchcase(host, self.host_pattern) and fnmatch.fnmatchcase(subject, self.target)


@dataclass(frozen=True)
class SeriesPoint:
    """How many subjects of one drift class one drift run found on one host (for charts)."""

    time: datetime
    run_id: int
    host: str
    drift_class: DriftClass
    count: int


@dataclass(frozen=True)
class BaselineWrite:
    """A watch baseline to store: ``entries`` (path -> file state, or None to drop the path) become the
    host's whole baseline (``replace``) or are merged in; accepted ``at`` (epoch seconds) ``by`` whom."""

    inventory: str
    host: str
    entries: dict[str, dict[str, Any] | None]
    by: str
    replace: bool = True
    at: float = 0.0

    def check(self) -> None:
        from driftctl.errors import InputError

        if not self.by:
            raise InputError("a baseline must say who accepted it")
        for path in self.entries:
            if not path.startswith("/"):
                raise InputError(f"baseline path must be absolute: {path}")

    def to_json(self) -> dict[str, Any]:
        return {"inventory": self.inventory, "host": self.host, "entries": self.entries, "by": self.by,
                "replace": self.replace, "at": self.at}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BaselineWrite:
        return cls(str(data["inventory"]), str(data["host"]), dict(data["entries"]), str(data["by"]),
                   bool(data["replace"]), float(data["at"]))


@dataclass(frozen=True)
class PruneResult:
    """What ``Store.prune`` removed (or, with ``dry_run``, would remove) from one inventory.

    ``document_bytes``: the compressed report documents, the bulk of a store. ``kept_runs``: runs older
    than the cutoff kept because they are a host's latest run or where an open drift episode began.
    """

    inventory: str
    cutoff: datetime
    dry_run: bool
    runs: int = 0
    host_results: int = 0
    resource_results: int = 0
    unmanaged_results: int = 0
    documents: int = 0
    document_bytes: int = 0
    episodes: int = 0
    kept_runs: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "inventory": self.inventory, "cutoff": iso(self.cutoff), "dry_run": self.dry_run, "runs": self.runs,
            "host_results": self.host_results, "resource_results": self.resource_results,
            "unmanaged_results": self.unmanaged_results, "documents": self.documents,
            "document_bytes": self.document_bytes, "episodes": self.episodes, "kept_runs": self.kept_runs,
        }
