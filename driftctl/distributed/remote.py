"""The controller side: ``RemoteEngine`` is the engine with its fan-out sent to the task queue.

Everything before the fan-out is the engine's own: the catalogs are rendered once, here (an input
error ends the run before any task is sent), the store is read and written by the CLI around the run,
``--serial`` batches and ``--tags`` work as in-process. The fan-out seals one task per host (its
rendered catalog, its connection, the command and the run's settings) and sends it to the queue of the
host's zone (host variable ``driftctl_zone``, default queue ``driftctl``); it then follows the tasks'
states in the result backend and emits the same ``start``/``done`` events an in-process run does.

Facts: a catalog whose templates use facts is rendered here with the host's facts before its task
is sent: those of the last stored run (``facts_cache``, as an in-process run), or, without them, those
a small "facts" task gathered on a worker first. The task carries the facts it was rendered with; a
worker whose probe finds other facts does nothing more and answers them (``facts_changed``): the host
is rendered again with them and sent again, at most ``MAX_RESENDS`` times. Workers never render.

Every host is reported exactly once: the first result that verifies wins; a host whose task started
and gave no result within its timeout (connect + command timeout + the redelivery time, or the
``task_timeout`` setting) is failed and its task revoked; a task no worker took within
``queue_timeout`` is failed the same way (no worker serves its zone).

A task lost between the broker and a worker (taken from its queue by a worker killed before it
recorded it as taken: in no queue, in no worker's hands, not started; driftctl/distributed/lost.py)
is sent again, with its task id, at most ``MAX_LOST`` times; the next loss fails its host.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from driftctl.distributed import EnvelopeError
from driftctl.distributed.app import DEFAULT_QUEUE, TASK, ZONE_VAR
from driftctl.distributed.envelope import open_sealed, seal
from driftctl.distributed.lost import LostWatch, watch_broker
from driftctl.distributed.task import RUN_SETTINGS
from driftctl.engine import Command, Engine, Event
from driftctl.errors import ConfigError, DriftctlError
from driftctl.model import Catalog, Host, HostResult
from driftctl.secret import redact
from driftctl.transport.base import Transport

log = logging.getLogger("driftctl.distributed")

POLL = 0.2  # seconds between two reads of the pending tasks' states (one MGET)
MAX_RESENDS = 2  # a host whose facts changed under its task is rendered and sent again at most this often
MAX_LOST = 3  # a host whose task was lost between the broker and a worker is sent again at most this often


@dataclass
class _Pending:
    host: Host
    task_id: str
    sent: float
    started: float | None = None
    worker: str = ""
    stage: str = "run"  # "facts": a task that gathers the host's facts only; "run": the command
    tries: int = 1  # the command's tasks sent for this host (a facts change sends it again)
    round_trips: int = 0  # of the host's earlier tasks (facts gathered, a probe that found other facts)
    facts: dict[str, Any] | None = None  # what its catalog was rendered with (a lost task is sealed again)


def zone_of(host: Host) -> str:
    """The queue of ``host``'s zone: its ``driftctl_zone`` variable, else the default queue."""
    zone = host.vars.get(ZONE_VAR)
    if zone is None or zone == "":
        return DEFAULT_QUEUE
    if not isinstance(zone, str) or not zone.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ConfigError(f"host {host.name}: {ZONE_VAR} must be a name (letters, digits, - _ .), not {zone!r}",
                          host.source)
    return zone


class RemoteEngine(Engine):
    """An Engine whose hosts run on Celery workers (driftctl/distributed). ``app``: the Celery app of
    the broker, ``key``: the shared Fernet key."""

    def __init__(self, *args: Any, app: Any, key: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app = app
        self.key = key
        self.command: Command | None = None
        self.run_id = uuid.uuid4().hex[:12]
        self.task_timeout: float | None = None  # per host; None: connect + command + visibility timeout
        self.visibility_timeout = 600.0
        self.queue_timeout = 3600.0
        self.duplicates = 0  # results that came for a host already reported (dropped)
        self._announced: set[str] = set()  # hosts whose start event was emitted
        self._lost: dict[str, int] = {}  # host -> its tasks lost between the broker and a worker
        self._job: dict[str, Any] = {}

    def run(self, command: Command, hosts: Sequence[Host]) -> Any:
        self.command = command
        return super().run(command, hosts)

    def preflight(self, hosts: Sequence[Host],
                  on_catalog: Callable[[str, Catalog], None] | None = None) -> dict[str, Catalog]:
        catalogs = super().preflight(hosts, on_catalog)
        for h in hosts:
            zone_of(h)
        return catalogs

    # ---- the seam
    def fan_out(self, hosts: Sequence[Host], work: Callable[[Host, Transport], HostResult],
                render: Sequence[Host] | None = None) -> list[HostResult]:
        missing = [h for h in (render if render is not None else hosts) if h.name not in self.catalogs]
        if missing:
            self.preflight(missing)  # input errors end the run here: no task is sent
        self._job = self._job_of(work)
        if self.abort.is_set():
            return [self._report(HostResult(h.name, "failed", error="not started: the run was aborted",
                                            interrupted="aborted")) for h in hosts]
        pending = {}
        results: dict[str, HostResult] = {}
        for h in hosts:
            p = self._begin(h)
            if isinstance(p, HostResult):
                results[h.name] = self._report(p)
            else:
                pending[p.task_id] = p
        self._follow(pending, results)
        return [results[h.name] for h in hosts]

    def _job_of(self, work: Callable[[Host, Transport], HostResult]) -> dict[str, Any]:
        from driftctl.drift import DriftRun

        runner = getattr(work, "__self__", None)
        if isinstance(runner, DriftRun):
            if not runner.use_baselines or runner.store is None:
                raise ConfigError("the celery executor runs drift against the store only (not --against, "
                                  "not accept)", hint="use --executor threads for it")
            self._drift_store = runner.store
            return {"command": "drift", "inventory": runner.inventory, "remediate": runner.remediate}
        if self.command in ("plan", "check", "apply"):
            return {"command": self.command}
        raise ConfigError("this command does not run on the celery executor", hint="use --executor threads")

    def _begin(self, host: Host) -> _Pending | HostResult:
        """The host's first task: its command, rendered with the cached facts when its catalog uses
        facts; without cached facts, a "facts" task first (``_result`` goes on from its answer)."""
        if not self.catalogs[host.name].uses_facts:
            return self._send(host)
        cached = self.facts_cache.get(host.name)
        if cached:
            return self._render_and_send(host, cached, tries=1, round_trips=0)
        return self._send(host, stage="facts")

    def _render_and_send(self, host: Host, facts: dict[str, Any], tries: int,
                         round_trips: int) -> _Pending | HostResult:
        """Render ``host`` with ``facts`` (here: workers never render) and send its command's task."""
        from driftctl.manifest import compile_catalog

        if self.abort.is_set():
            return HostResult(host.name, "failed", error="not started: the run was aborted", interrupted="aborted")
        try:
            self.catalogs[host.name] = compile_catalog(self.site, self.inventory, host, facts)
        except DriftctlError as e:  # as in-process: a template that fails with the real facts fails its host
            return HostResult(host.name, "failed", error=str(e))
        return self._send(host, facts=facts, tries=tries, round_trips=round_trips)

    def _send(self, host: Host, stage: str = "run", facts: dict[str, Any] | None = None, tries: int = 1,
              round_trips: int = 0) -> _Pending | HostResult:
        task_id = f"driftctl-{self.run_id}-{host.name}"
        task_id += "-facts" if stage == "facts" else (f"-{tries}" if tries > 1 else "")
        p = _Pending(host, task_id, time.monotonic(), stage=stage, tries=tries, round_trips=round_trips, facts=facts)
        try:
            self._publish(p)
        except Exception as e:  # the broker went away since the run started
            return HostResult(host.name, "failed", error=f"not started: its task could not be queued: {e}")
        return p

    def _publish(self, p: _Pending) -> None:
        """Seal ``p``'s task (its host's command, or "facts") and send it to its zone's queue."""
        body: dict[str, Any] = {
            "run": self.run_id, "host": p.host, "tags": self.tags,
            "whole_new_contents": self.whole_new_contents, "abort_grace": self.abort_grace,
            "settings": {k: getattr(self.settings, k) for k in RUN_SETTINGS}, **self._job,
        }
        if p.stage == "facts":
            body["command"] = "facts"
        else:
            body["catalog"] = self.catalogs[p.host.name]
            body["facts"] = p.facts  # what the catalog was rendered with (None: it uses no facts)
        self.app.send_task(TASK, args=[seal(self.key, "task", body)], task_id=p.task_id, queue=zone_of(p.host))

    # ---- following the tasks
    def _follow(self, pending: dict[str, _Pending], results: dict[str, HostResult]) -> None:
        try:
            watch: LostWatch | None = watch_broker(self.app)
        except ValueError as e:  # a broker URL redis-py cannot open itself: the queue_timeout still bounds a loss
            log.warning("broker: %s: tasks lost between the broker and a worker are not looked for", e)
            watch = None
        try:
            self._follow_with(watch, pending, results)
        finally:
            if watch is not None:
                watch.close()

    def _follow_with(self, watch: LostWatch | None, pending: dict[str, _Pending],
                     results: dict[str, HostResult]) -> None:
        backend = self.app.backend
        aborted_at: float | None = None
        while pending:
            ids = list(pending)
            unseen: list[str] = []  # no state in the backend: waiting in a queue, in a worker's hands, or lost
            try:
                raw = backend.mget([backend.get_key_for_task(t) for t in ids])
            except Exception as e:  # the backend is away for a moment: try again, timeouts still run
                log.warning("result backend: %s", e)
                raw = [False] * len(ids)  # unknown: none of them is looked for as lost
            now = time.monotonic()
            for task_id, value in zip(ids, raw, strict=True):
                p = pending[task_id]
                meta = backend.decode_result(value) if value else None
                status = meta.get("status") if meta else None
                if value is None and p.started is None:
                    unseen.append(task_id)
                if status == "STARTED":
                    # Celery's own STARTED (task_track_started) names the node; the task's update names the
                    # worker: either will do, and an unnamed one never restarts the clock
                    info = (meta.get("result") or {}) if meta else {}
                    worker = str(info.get("worker") or info.get("hostname") or "") if isinstance(info, dict) else ""
                    if p.host.name not in self._announced:
                        self._announced.add(p.host.name)
                        self.on_event(Event("start", p.host.name))
                    # first seen started, or delivered again to another worker: its clock starts (again)
                    if p.started is None or (worker and p.worker and worker != p.worker):
                        p.started, p.worker = now, worker
                    elif worker and not p.worker:
                        p.worker = worker
                elif status in ("SUCCESS", "FAILURE"):
                    del pending[task_id]
                    out = self._result(p, meta or {})
                    if isinstance(out, _Pending):  # facts known, or changed: the host's (next) task went
                        pending[out.task_id] = out
                    else:
                        results[p.host.name] = self._report(out)
                    continue
                why = self._late(p, now, aborted_at)
                if why:
                    del pending[task_id]
                    self.app.control.revoke(task_id)
                    r = HostResult(p.host.name, "failed", error=why,
                                   interrupted="aborted" if aborted_at is not None else None)
                    results[p.host.name] = self._report(r)
            if watch is not None and unseen and aborted_at is None and not self.abort.is_set():
                self._send_lost(watch, {t: pending[t] for t in unseen if t in pending}, pending, results)
            if self.abort.is_set() and aborted_at is None:
                aborted_at = now
            if pending:
                time.sleep(POLL)

    def _send_lost(self, watch: LostWatch, unseen: dict[str, _Pending], pending: dict[str, _Pending],
                   results: dict[str, HostResult]) -> None:
        """Send again the tasks of ``unseen`` the broker lost (``watch``), with the same task id: a
        copy that was not lost after all (a worker stopped, not killed, between taking it and recording
        it) is the same task, so the first result wins and a worker drops a later copy as a duplicate,
        as it does a task kombu delivers again. A host lost ``MAX_LOST`` times already fails."""
        lost = watch.check({t: zone_of(p.host) for t, p in unseen.items()})
        if not lost:
            return
        backend = self.app.backend
        try:  # still not started now? (a task that finished was acknowledged after its result was stored)
            raw = backend.mget([backend.get_key_for_task(t) for t in lost])
        except Exception as e:
            log.warning("result backend: %s", e)
            return
        for task_id, value in zip(lost, raw, strict=True):
            if value is not None:
                continue
            p = pending[task_id]
            name, queue = p.host.name, zone_of(p.host)
            times = self._lost[name] = self._lost.get(name, 0) + 1
            if times > MAX_LOST:
                del pending[task_id]
                self.app.control.revoke(task_id)
                results[name] = self._report(HostResult(name, "failed", error=(
                    f"not started: its task was lost {times} times between the broker and a worker (taken from "
                    f"queue {queue!r}, then in no queue, held by no worker and never started: workers killed as "
                    f"they took it, or a worker that drops it?); sent again {MAX_LOST} times")))
                continue
            try:
                self._publish(p)
            except Exception as e:  # the broker is away for a moment: it is seen lost again, and sent then
                self._lost[name] -= 1
                log.warning("%s: its task %s was lost between the broker and a worker; sending it again failed: %s",
                            name, task_id, e)
                continue
            watch.forget(task_id)
            p.sent = time.monotonic()  # waiting in its queue again: queue_timeout counts from now
            log.warning("%s: its task %s was lost between the broker and a worker (taken from queue %r, then in "
                        "no queue and held by no worker: a worker killed as it took it?): sent again (%d of %d)",
                        name, task_id, queue, times, MAX_LOST)

    def _late(self, p: _Pending, now: float, aborted_at: float | None) -> str | None:
        if aborted_at is not None and p.started is None:
            return "not started: the run was aborted"
        if aborted_at is not None and now - aborted_at > self.abort_grace:
            return f"aborted: no result from {p.worker or 'its worker'} within {self.abort_grace:g}s"
        if p.started is None:
            if now - p.sent > self.queue_timeout:
                return (f"not started: no worker took its task in {self.queue_timeout:g}s "
                        f"(queue {zone_of(p.host)!r}: is a worker serving it?)")
            return None
        limit = self.task_timeout or (p.host.connection.connect_timeout + p.host.connection.command_timeout
                                      + self.visibility_timeout)
        if now - p.started > limit:
            return f"no result from {p.worker or 'its worker'} in {limit:g}s: the host is marked failed"
        return None

    def _result(self, p: _Pending, meta: dict[str, Any]) -> HostResult | _Pending:
        name = p.host.name
        value = meta.get("result")
        if meta.get("status") == "FAILURE":
            return HostResult(name, "failed", error=f"the worker's task failed: {type(value).__name__}")
        if isinstance(value, dict) and "refused" in value:
            log.error("%s: %s", name, value["refused"])
            return HostResult(name, "failed", error=str(value["refused"]))
        try:
            body = open_sealed(self.key, "result", (value or {}).get("sealed") if isinstance(value, dict) else None)
        except EnvelopeError as e:
            log.error("%s: result refused: %s", name, e)
            return HostResult(name, "failed", error=f"its result was refused: {e}")
        if body.get("run") != self.run_id or body.get("host") != name:
            return HostResult(name, "failed", error="its result was refused: it is another run's or host's")
        if "facts" in body and "result" not in body:  # a facts task: render with them, send the command
            return self._render_and_send(p.host, body["facts"], tries=1, round_trips=p.round_trips + 1)
        if "facts_changed" in body:  # nothing was done on the host: render with its facts, send again
            if p.tries > MAX_RESENDS:
                return HostResult(name, "failed", error=f"not run: the host's facts changed under every task sent "
                                                        f"to it ({p.tries}), rendered again each time; run it again")
            log.info("%s: its facts changed since its catalog was rendered: rendered again, sent again", name)
            return self._render_and_send(p.host, body["facts_changed"], tries=p.tries + 1,
                                         round_trips=p.round_trips + 1)
        result: HostResult = body["result"]
        result.round_trips += p.round_trips
        catalog = self.catalogs.get(name)
        result.secrets = catalog.secrets if catalog is not None else frozenset()
        for b in body.get("baselines", []):
            self._drift_store.set_baseline(b.pop("inventory"), b.pop("host"), b.pop("entries"), b.pop("by"), **b)
        return result

    def _report(self, result: HostResult) -> HostResult:
        """The done event of a host (a start first, when none of its tasks was seen started)."""
        if result.error and result.host in self.catalogs:
            result.error = redact(result.error, self.catalogs[result.host].secrets)
        if result.host not in self._announced:
            self._announced.add(result.host)
            self.on_event(Event("start", result.host))
        self.on_event(Event("done", result.host, result=result))
        return result
