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
from driftctl.model import Host, HostResult
from driftctl.transport.base import TransportOptions

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
        log.info("task %s: %s %s done: %s", task_id, body["command"], host.name, payload["result"].status)
        return {"sealed": seal(config.key, "result", {"run": body["run"], "host": host.name, **payload})}

    return host_task


def handle(config: WorkerConfig, body: dict[str, Any]) -> dict[str, Any]:
    """Run one host as the task says; ``{"result": HostResult, "baselines": [...]}``. Never raises: a
    failure is the host's result."""
    from driftctl.engine import Engine
    from driftctl.parallel import InlineExecutor

    host: Host = body["host"]
    settings = replace(config.settings, **{k: v for k, v in body["settings"].items() if k in RUN_SETTINGS})
    engine = Engine(None, None, settings, config.transport_options, executor=InlineExecutor())
    engine.programs = config.programs or engine.programs
    engine.catalogs[host.name] = body["catalog"]
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
    result.secrets = frozenset()  # the controller has them (the catalog's); they do not travel back
    return {"result": result, "baselines": baselines}
