"""What a worker does with one host's task: open the envelope, run the host with the engine's own
code (``Engine.run`` over one host, or ``DriftRun`` for drift, on an inline executor), seal the result.

The catalog comes rendered from the controller (rendered once, there); the worker connects with ITS
settings: its known_hosts (it verifies host keys as the controller does, so it needs the fleet's
known_hosts), its state directory, its store for drift (converged state, open drift episodes, watch
baselines and ignore rules of the inventory). What a drift run would write to the store (a first
watch baseline) is not written here: it travels back with the result, and the controller writes it
with the run's one record.

A task that does not verify is refused and logged, never run; the refusal names no content. A task
whose result is already stored (a message delivered again after its first worker finished) is not
run again: the duplicate is dropped and logged.

Facts: a worker never renders. A catalog whose templates use facts comes rendered with the facts
the controller had (``body["facts"]``: the last stored run's, or those a "facts" task gathered); the
worker's probe asks the host's facts too, and when they differ the task ends before anything else
(before any apply) with ``{"facts_changed": facts}``: the controller renders again and sends it again.
A "facts" task only gathers the host's facts (``{"facts": facts}``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from driftctl.agentcache import HostPrograms
from driftctl.config import Settings
from driftctl.distributed import EnvelopeError
from driftctl.distributed.app import TASK
from driftctl.distributed.envelope import open_sealed, seal
from driftctl.engine import Engine
from driftctl.model import Catalog, Host, HostResult
from driftctl.transport.base import Transport, TransportOptions

log = logging.getLogger("driftctl.worker")

# the run settings the controller decides (what a run does on the host), not the worker's own
RUN_SETTINGS = ("backup_dir", "backup_keep", "backup_max_age_days", "resource_timeout")


@dataclass
class WorkerConfig:
    settings: Settings
    transport_options: TransportOptions
    key: Any  # Fernet
    name: str = field(default_factory=lambda: f"driftctl@{socket.gethostname()}:{os.getpid()}")
    programs: HostPrograms | None = None
    _local: threading.local = field(default_factory=threading.local)

    def __post_init__(self) -> None:
        self.programs = HostPrograms(Path(self.settings.state_dir) / "agent-programs")

    def store(self) -> Any:
        """This thread's connection to the worker's store (opened once per thread)."""
        store = getattr(self._local, "store", None)
        if store is None:
            from driftctl.store import open_store

            store = self._local.store = open_store(self.settings.store_url)
        return store


class RecordingStore:
    """The worker's store for one drift task: reads go to the store, baseline writes are kept for the
    controller (which writes them with the run's record, as an in-process run does)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.baselines: list[dict[str, Any]] = []

    def converged(self, inventory: str, host: str) -> Any:
        return self.store.converged(inventory, host)

    def converged_fingerprints(self, inventory: str, host: str) -> Any:
        return self.store.converged_fingerprints(inventory, host)

    def open_drift(self, inventory: str, host: str | None = None) -> Any:
        return self.store.open_drift(inventory, host)

    def baseline(self, inventory: str, host: str) -> Any:
        return self.store.baseline(inventory, host)

    def ignores(self, inventory: str, now: Any = None, include_expired: bool = False) -> Any:
        return self.store.ignores(inventory, now, include_expired)

    def set_baseline(self, inventory: str, host: str, entries: dict[str, Any], by: str, **kw: Any) -> None:
        self.baselines.append({"inventory": inventory, "host": host, "entries": entries, "by": by, **kw})


def register(app: Any, config: WorkerConfig) -> Any:
    """The host task on ``app``, run with ``config``."""
    from driftctl.resources.base import all_types

    # every resource type imported now, before the pool's threads: the lazy first import in
    # resources/base.py is not thread-safe (a second thread sees a half-filled registry)
    all_types()

    @app.task(name=TASK, bind=True)
    def host_task(self: Any, token: str) -> dict[str, Any]:
        task_id = self.request.id
        before = app.backend.get_task_meta(task_id, cache=False)
        if before.get("status") == "SUCCESS":
            log.warning("task %s delivered again after its result was stored: duplicate dropped", task_id)
            result: dict[str, Any] = before["result"]
            return result
        try:
            # older than a controller waits for it (queued, then delivered again): refused, not run
            max_age = config.settings.queue_timeout + 2 * config.settings.visibility_timeout
            body = open_sealed(config.key, "task", token, max_age=max_age)
        except EnvelopeError as e:
            log.error("REFUSED task %s: %s; not run", task_id, e)
            return {"refused": f"{config.name} refused the task: {e}"}
        host: Host = body["host"]
        self.update_state(state="STARTED", meta={"worker": config.name})
        log.info("task %s: %s %s", task_id, body["command"], host.name)
        payload = handle(config, body)
        done = payload["result"].status if "result" in payload else ", ".join(payload)
        log.info("task %s: %s %s done: %s", task_id, body["command"], host.name, done)
        return {"sealed": seal(config.key, "result", {"run": body["run"], "host": host.name, **payload})}

    return host_task


class FactsChanged(Exception):
    """The host's facts are not those its catalog was rendered with: nothing more is done on it."""

    def __init__(self, facts: dict[str, Any]) -> None:
        super().__init__("the host's facts changed since its catalog was rendered")
        self.facts = facts


class WorkerEngine(Engine):
    """The engine of one task: it never renders. ``_render`` gives the shipped catalog for the facts
    the controller rendered it with, and for other facts records them and raises FactsChanged (which
    ``each_host`` turns into a failed result; ``handle`` answers ``facts_changed`` instead)."""

    def __init__(self, *args: Any, host: Host, shipped: Catalog | None, rendered_with: dict[str, Any] | None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shipped = shipped
        self.rendered_with = rendered_with
        self.facts_changed: dict[str, Any] | None = None
        if shipped is not None:
            self.catalogs[host.name] = shipped
        if rendered_with is not None:
            self.facts_cache[host.name] = rendered_with

    def _render(self, host: Host, facts: dict[str, Any]) -> Catalog:
        if self.shipped is not None and self.rendered_with is not None and facts == self.rendered_with:
            return self.shipped
        self.facts_changed = dict(facts)
        raise FactsChanged(self.facts_changed)

    def preflight_one(self, host: Host) -> Catalog:
        raise RuntimeError("a worker never renders, and this task carries no catalog")


def gather_facts(engine: Engine, host: Host) -> dict[str, Any]:
    """A "facts" task: connect and gather the host's facts only (as ``plan_host`` does without cached
    facts); ``{"facts": ...}``, or ``{"result": HostResult}`` when the host could not be reached."""
    from driftctl import ship

    box: dict[str, Any] = {}

    def work(transport: Transport) -> HostResult:
        box["facts"] = ship.call(transport, {"op": "facts"}, timeout=host.connection.connect_timeout * 3,
                                 programs=engine.programs)["facts"]
        return HostResult(host.name, "ok", round_trips=1)

    result = engine.each_host(host, work)
    return {"facts": box["facts"]} if "facts" in box else {"result": result}


def handle(config: WorkerConfig, body: dict[str, Any]) -> dict[str, Any]:
    """Run one host as the task says; ``{"result": HostResult, "baselines": [...]}``, or for facts
    ``{"facts": ...}`` (a "facts" task) and ``{"facts_changed": ...}`` (the host's facts are not those
    its catalog was rendered with: nothing was done on it). Never raises: a failure is the host's result."""
    from driftctl.parallel import InlineExecutor

    host: Host = body["host"]
    settings = replace(config.settings, **{k: v for k, v in body["settings"].items() if k in RUN_SETTINGS})
    engine = WorkerEngine(None, None, settings, config.transport_options, executor=InlineExecutor(),
                          host=host, shipped=body.get("catalog"), rendered_with=body.get("facts"))
    engine.programs = config.programs or engine.programs
    if body["command"] == "facts":
        return gather_facts(engine, host)
    engine.tags = body.get("tags")
    engine.whole_new_contents = bool(body.get("whole_new_contents", True))
    engine.abort_grace = float(body.get("abort_grace", engine.abort_grace))
    baselines: list[dict[str, Any]] = []
    try:
        if body["command"] == "drift":
            from driftctl.drift import DriftRun, store_reference

            store = RecordingStore(config.store())
            inventory = body["inventory"]
            runner = DriftRun(engine, store, inventory, store_reference(store, inventory),
                              remediate=bool(body.get("remediate")))
            run = runner.run([host])
            baselines = store.baselines
        else:
            run = engine.run(body["command"], [host])
        result = run.hosts[0]
    except Exception as e:  # a worker's bug or a lost store is this host failing
        config._local.store = None
        result = HostResult(host.name, "failed", error=f"worker {config.name}: {type(e).__name__}: {e}")
    if engine.facts_changed is not None:  # raised before anything was applied: the controller renders again
        return {"facts_changed": engine.facts_changed}
    result.secrets = frozenset()  # the controller has them (the catalog's); they do not travel back
    return {"result": result, "baselines": baselines}
