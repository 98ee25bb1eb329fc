"""The state store: run history, converged state, drift episodes, watch baselines, ignore rules.

``open_store(url)``: a path or ``sqlite:///path`` opens SQLite (created with its directory on first use,
WAL mode, a busy timeout, owner-only permissions); ``postgresql://...`` opens PostgreSQL through
psycopg 3. Both run the same versioned migrations (driftctl/store/migrations.py) and behave the same.
Everything the store is given has been redacted by the engine; the store never logs values.

The API (all inventories are keyed by ``inventory_key(name)``; hosts by (inventory, host)):

Runs
    ``save_run(report) -> int``            store a report document (``driftctl.report/v1``) and derive,
                                            in one transaction, host/resource results, converged state
                                            (apply) and drift episodes (drift). On a drift run it fills
                                            ``since``/``runs`` into the given document. Returns the run id.
    ``runs(inventory, limit=20, command=None) -> list[RunInfo]``   newest first
    ``latest_run(inventory, command=None) -> dict | None``       the stored report document
    ``run_document(run_id) -> dict | None``
    ``prune(inventory, before) -> int``    delete old runs (not converged state, episodes, baselines)
Converged state
    ``converged(inventory, host) -> dict[resource_id, ConvergedState]``
Drift
    ``open_drift(inventory, host=None) -> list[DriftEpisode]``
    ``drift_since(inventory, host) -> dict[subject, DriftEpisode]``  open episodes by resource id / path
    ``episodes(inventory, host=None, subject=None, open_only=False, since=None) -> list[DriftEpisode]``
    ``drift_series(inventory, since=None) -> list[SeriesPoint]``     per drift run, host and class
    ``history(inventory, host=None, resource=None, since=None, limit=100) -> list[HistoryEvent]``
Watch baseline
    ``baseline(inventory, host) -> dict[path, dict]``
    ``set_baseline(inventory, host, entries, by, replace=True)``
Ignore rules
    ``add_ignore(inventory, host_pattern, target, reason, expires, by) -> IgnoreRule``
    ``ignores(inventory, now=None, include_expired=False) -> list[IgnoreRule]``
    ``remove_ignore(rule_id, inventory=None) -> bool``
The store does not apply ignore rules: the engine filters drift with ``IgnoreRule.matches`` before it
builds the document, so a report says what was ignored and why.

Locks for runs live in driftctl/store/lock.py. docs/store.md has the tables and the rules.
"""

from __future__ import annotations

import os

from driftctl.store.db import StoreURL, parse_url
from driftctl.store.report import SCHEMA_ID, inventory_key, json_schema
from driftctl.store.store import Store
from driftctl.store.types import (
    ConvergedState,
    DriftEpisode,
    HistoryEvent,
    IgnoreRule,
    RunInfo,
    SeriesPoint,
)

__all__ = [
    "SCHEMA_ID",
    "ConvergedState",
    "DriftEpisode",
    "HistoryEvent",
    "IgnoreRule",
    "RunInfo",
    "SeriesPoint",
    "Store",
    "StoreURL",
    "inventory_key",
    "json_schema",
    "open_store",
    "parse_url",
]


def open_store(url: str | os.PathLike[str]) -> Store:
    """Open (creating and migrating as needed) the store at ``url``. Raises StoreError."""
    from driftctl.store.db import connect

    db = connect(url)
    try:
        return Store(db)
    except BaseException:
        db.close()
        raise
