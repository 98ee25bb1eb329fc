"""Each resource's past, for the HTML report: the store's history grouped by host and subject.

One query for the whole inventory (``Store.history``, the latest ``window`` events), not one per
resource: a page of 40 hosts x 100 resources would otherwise cost 4,000 queries. Each subject keeps its
latest ``per_subject`` events; whole-host events (unreachable, failed as a whole) are under the
subject None. Event details come from the store, which keeps redacted documents only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from driftctl.store.types import HistoryEvent

PER_SUBJECT = 10
WINDOW = 20_000


@dataclass
class Past:
    """The latest events of one resource (or watched path, or the host itself), oldest first, and how many
    the store holds for it within the window."""

    events: list[HistoryEvent] = field(default_factory=list)
    total: int = 0


# (host, subject) -> its past; subject None: events of the whole host
History = Mapping[tuple[str, str | None], Past]


def group(events: list[HistoryEvent], until: datetime | None = None, per_subject: int = PER_SUBJECT
          ) -> dict[tuple[str, str | None], Past]:
    """Events (oldest first) by host and subject, each keeping its latest ``per_subject``; events after
    ``until`` (a report of an older run) are left out."""
    out: dict[tuple[str, str | None], Past] = {}
    for ev in events:
        if until is not None and ev.time > until:
            continue
        past = out.setdefault((ev.host, ev.subject), Past())
        past.events.append(ev)
        past.total += 1
    for past in out.values():
        del past.events[:-per_subject]
    return out


def history_from_store(store: Any, inventory: str, until: datetime | None = None,
                       per_subject: int = PER_SUBJECT, window: int = WINDOW) -> dict[tuple[str, str | None], Past]:
    """The past of every host and subject of an inventory, from ``store`` (a Store)."""
    return group(store.history(inventory, limit=window), until, per_subject)
