"""Drift runs: probe every host (read-only), classify each resource against its converged state, report
unmanaged changes under watched paths, and keep the history in the store.

``--remediate`` re-applies corrective drift only (the state the last apply converged, Puppet's
behaviour); pending changes are intentional and wait for ``driftctl apply``. ``--against IMAGE``
takes the state baked into an image as the converged state instead of the last apply.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from driftctl.config import Settings
from driftctl.drift.classify import classify, rebaseline, unmanaged_changes
from driftctl.drift.reference import Reference
from driftctl.engine import Engine, HostPlan, planned_result
from driftctl.errors import AgentError
from driftctl.model import Host, HostResult, ResourceResult, RunResult, UnmanagedChange
from driftctl.report import document
from driftctl.report.document import current_user
from driftctl.transport.base import Transport


def inventory_key(inventory: str | os.PathLike[str]) -> str:
    from driftctl.store.report import inventory_key as key

    return key(inventory)


def open_store(settings: Settings) -> Any:
    from driftctl.store import open_store as _open

    return _open(settings.store_url)


def run_lock(
    settings: Settings, store: Any, inventory: str, command: str, wait: float | None
) -> AbstractContextManager[Any]:
    """The controller-side lock of one inventory: one apply or drift run at a time."""
    from driftctl.store.lock import holder_info, lock

    return lock(store, f"inventory:{inventory}", holder_info(command), wait)


def facts_cache(settings: Settings, inventory: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """The facts each host had in the inventory's latest stored run (empty when there is none).

    Never creates a store: a plan on a new controller leaves no state behind. A store that cannot
    be read costs the extra facts round trip, nothing else.
    """
    if settings.state is None and not Path(settings.store_url).exists():
        return {}
    try:
        store = open_store(settings)
    except Exception:
        return {}
    try:
        doc = store.latest_run(inventory_key(inventory))
    except Exception:
        return {}
    finally:
        store.close()
    if not doc:
        return {}
    return {h["name"]: h["facts"] for h in doc.get("hosts", []) if h.get("facts")}


class DriftRun:
    """One drift run over many hosts. Writes to hosts only with ``remediate``."""

    def __init__(self, engine: Engine, store: Any, inventory: str, reference: Reference,
                 remediate: bool = False, use_baselines: bool = True, collect_pulled: bool = True) -> None:
        self.engine = engine
        self.store = store
        self.inventory = inventory
        self.reference = reference
        self.remediate = remediate
        self.use_baselines = use_baselines
        self.now = datetime.now(UTC)
        self.ignores = [r for r in store.ignores(inventory, self.now)] if store is not None else []
        # the probe also collects each host's recorded pull runs (driftctl/drift/pulled.py), stored
        # before its drift is classified; not by a pull run on the host itself (collect_pulled=False)
        self.collect_pulled = collect_pulled and store is not None and hasattr(store, "save_pulled")
        if self.collect_pulled:
            from driftctl.drift.pulled import attach

            attach(engine, store, inventory)

    def run(self, hosts: Sequence[Host]) -> RunResult:
        run = RunResult(command="drift")
        run.hosts = self.engine.in_batches(run, hosts, self.host)  # --serial batches, --tags like any run
        run.finished = time.time()
        return run

    def host(self, host: Host, transport: Transport) -> HostResult:
        plan = self.engine.plan_host(host, transport)  # pull runs it collected are stored by now
        converged = self.reference.converged(host, plan)
        episodes = self._open_episodes(host.name)
        results = [planned_result(p) for p in plan.items]
        corrective = []
        for p, r in zip(plan.items, results, strict=True):
            r.converged_fingerprint = converged.get(p.id)
            if r.status == "failed" and p.refusal is None:  # a refusal is apply's business: here it is drift
                continue
            if p.observed is None:  # deferred: what it depends on has drifted; it cannot be seen now
                r.status, r.changes = "failed", []
                r.error = r.reason = f"not observable: {p.error or 'no observation'}"
                continue
            if not p.rtype.stateful(p.resource.params):
                r.status, r.changes, r.reason = "ok", [], "no state to compare (runs on apply)"
                continue
            # the result carries the plan's fingerprints (computed once: a JSON encoding and a sha256 each)
            r.drift = classify(r.desired_fingerprint or p.desired_fingerprint, r.observed_fingerprint,
                               r.converged_fingerprint)
            r.status = "ok"
            if r.drift is None:
                r.reason = "in sync"
                r.changes = []
                continue
            r.reason = f"{r.drift} drift"
            self._since(r, episodes.get(p.id))
            r.ignored = self._ignored(host.name, p.id)
            if r.drift == "corrective" and not r.ignored:
                corrective.append(p.id)
        if self.remediate and corrective:
            applied = {r.id: r for r in self.engine.apply_plan(plan, transport, only=corrective)}
            for r in results:
                if r.id in applied and r.id in corrective:
                    new = applied[r.id]
                    r.status, r.error = new.status, new.error
                    r.reason = "remediated" if new.status == "changed" else new.reason
                    r.observed_fingerprint = new.observed_fingerprint
        result = self.engine.host_result(plan, results)  # its status from these results, as every command's
        result.unmanaged = self._unmanaged(host.name, plan, episodes)
        # a host the tags narrowed has no watch this run: its unmanaged changes are unknown, not none
        result.unmanaged_examined = self.store is not None and self.use_baselines and not plan.catalog.excluded
        return result

    # ---- helpers
    def _open_episodes(self, host: str) -> dict[str, Any]:
        if self.store is None:
            return {}
        return {e.subject: e for e in self.store.open_drift(self.inventory, host)}

    def _since(self, r: ResourceResult | UnmanagedChange, episode: Any) -> None:
        if episode is not None:
            r.since = episode.first_seen.timestamp()
            r.runs = episode.runs + 1
        else:
            r.since = self.now.timestamp()
            r.runs = 1

    def _ignored(self, host: str, subject: str) -> str | None:
        for rule in self.ignores:
            if rule.matches(host, subject):
                return f"{rule.reason} (until {rule.expires.isoformat()})"
        return None

    def _unmanaged(self, host: str, plan: HostPlan, episodes: Mapping[str, Any]) -> list[UnmanagedChange]:
        if not plan.catalog.watch or self.store is None or not self.use_baselines:
            return []
        if plan.watch.get("error"):
            # an empty scan is not "everything was removed": say the watch could not be examined
            raise AgentError(host, f"the watch scan failed: {plan.watch['error']}")
        entries = plan.watch.get("entries", {})
        baseline = self.store.baseline(self.inventory, host)
        if not baseline:
            # first look at this host: what is there now is the baseline (AIDE's --init)
            self.store.set_baseline(self.inventory, host, entries, by=f"{current_user()} (first drift run)")
            return []
        changes = unmanaged_changes(baseline, entries, roots=list(plan.catalog.watch))
        for u in changes:
            self._since(u, episodes.get(u.path))
            u.ignored = self._ignored(host, u.path)
        return changes


def record_run(settings: Settings, run: RunResult, inventory: str | os.PathLike[str],
               store: Any | None = None, argv: list[str] | None = None,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Save a run's report document in the store; after an apply, move the watch baselines forward.
    ``extra``: top-level fields added to the document (a pull run's ``mode``, ``source``, ``commit``)."""
    doc = document.build(run, str(inventory), argv)
    doc.update(extra or {})
    own = store is None
    store = store or open_store(settings)
    try:
        key = inventory_key(inventory)
        doc["inventory"] = key
        store.save_run(document.for_store(doc))
        if run.command == "apply":
            for h in run.hosts:
                if not h.watch or h.status in ("unreachable", "failed") or h.watch.get("error") or (
                        h.watch_after or {}).get("error"):
                    continue
                old = store.baseline(key, h.host) or None
                pre = h.watch.get("entries", {})
                # no apply call (nothing to change): the probe's scan is the state after the apply
                post = (h.watch_after if h.watch_after is not None else h.watch).get("entries", {})
                store.set_baseline(key, h.host, rebaseline(old, pre, post), by=f"{current_user()} (apply)")
    finally:
        if own:
            store.close()
    return doc


def accept(store: Any, inventory: str, result: HostResult, paths: Sequence[str] | None, by: str) -> int:
    """Take the observed state under watched paths as the new baseline (all, or ``paths`` and below)."""
    entries = result.watch.get("entries", {})
    if paths:
        current = dict(store.baseline(inventory, result.host))

        def selected(p: str) -> bool:
            return any(p == x or p.startswith(x.rstrip("/") + "/") for x in paths)

        for p in [p for p in current if selected(p)]:
            current.pop(p)
        current.update({p: e for p, e in entries.items() if selected(p)})
        entries = current
    store.set_baseline(inventory, result.host, entries, by=by)
    return len(entries)
