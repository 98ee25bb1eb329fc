"""The engine: per host, connect -> (facts) -> probe -> diff -> (apply -> verify) -> fingerprint.

Round trips per host: plan/check/drift = 1 (probe, which also returns facts), or 2 when templates
use facts (facts first, then render, then probe); apply = one more (the change list and the changed
contents in one agent call, which also re-observes what it touched). Never one per resource.

``plan``/``check`` go through ``plan_host()`` only, which sends nothing but the read-only "facts" and
"probe" ops; the "apply" op is sent from ``apply_plan()`` alone.

The engine never prints: it emits ``Event``s that the CLI renders.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from driftctl import batches, fingerprint, ship
from driftctl.agentcache import HostPrograms
from driftctl.config import Settings
from driftctl.content import Blob
from driftctl.errors import (
    AgentError,
    CommandAborted,
    CommandTimeout,
    ConnectError,
    DriftctlError,
    HostError,
    HostLockedError,
    InputError,
    ManifestError,
)
from driftctl.model import (
    Batches,
    Catalog,
    Change,
    Host,
    HostResult,
    HostStatus,
    Resource,
    ResourceResult,
    ResourceStatus,
    RunResult,
)
from driftctl.parallel import Executor, ThreadExecutor, run_hosts
from driftctl.resources.base import ResourceType, get_type
from driftctl.secret import REDACTED, redact, redact_data
from driftctl.tags import TagSelection, check_known, select_catalog, warn_dropped
from driftctl.transport.base import Transport, TransportOptions, get_transport

log = logging.getLogger(__name__)

Command = Literal["plan", "check", "apply", "drift"]


@dataclass
class Event:
    """Progress of one host: ``start``, ``phase`` (connect, facts, render, probe, apply), ``resource``
    (during apply: each resource the agent starts, ``current`` its id, and each it finished, ``phase``
    its id; ``done`` of ``total`` to change), ``done``; and of a ``--serial`` run: ``batch`` (``host``
    empty, ``phase`` "k/n", ``hosts`` the batch's)."""

    kind: Literal["start", "phase", "resource", "done", "batch"]
    host: str
    phase: str = ""
    result: HostResult | None = None
    hosts: list[str] = field(default_factory=list)
    done: int = 0
    total: int = 0
    current: str = ""  # ``resource`` events: the resource the agent is working on now ("": none)


EventFn = Callable[[Event], None]


@dataclass
class Planned:
    """One resource after the probe: what it should be, what it is, and what differs."""

    resource: Resource
    rtype: type[ResourceType]
    desired: dict[str, Any]
    observed: dict[str, Any] | None = None
    error: str | None = None
    changes: list[Change] = field(default_factory=list)
    # not observable yet because a resource it depends on is about to change (its user, its package):
    # observed and converged inside the apply call, after those dependencies
    deferred_by: list[str] = field(default_factory=list)
    # apply would refuse this (a directory where a file should be...): the agent's own reason, from the probe
    refusal: str | None = None

    @property
    def id(self) -> str:
        return self.resource.id

    def result(self, status: ResourceStatus, observed: bool = True, **fields: Any) -> ResourceResult:
        """A result for this resource, with what every result carries (source, type, fingerprints and
        the observed view; ``observed=False`` for a result that has no trustworthy observation)."""
        common: dict[str, Any] = {"source": self.resource.source, "type": self.resource.type}
        if observed:
            common.update(desired_fingerprint=self.desired_fingerprint, observed_fingerprint=self.observed_fingerprint,
                          observed=observed_view(self))
        return ResourceResult(self.id, status, **common, **fields)

    @property
    def desired_fingerprint(self) -> str:
        return fingerprint.of(fingerprint.desired_state(self.desired))

    @property
    def observed_fingerprint(self) -> str | None:
        if self.observed is None:
            return None
        return fingerprint.of(fingerprint.managed_state(self.desired, self.observed))


@dataclass
class HostPlan:
    host: Host
    catalog: Catalog
    facts: dict[str, Any]
    items: list[Planned]
    watch: dict[str, Any] = field(default_factory=dict)
    watch_after: dict[str, Any] | None = None
    round_trips: int = 0
    interrupted: Literal["connection lost", "aborted"] | None = None
    # pull mode: the host's recorded pull runs, collected in this probe (``Engine.outbox_for``; the
    # agent's answer, agent/_main.py outbox_collect): {"id", "reports": [{"seq", "doc"}], "more"}; None: not asked
    outbox: dict[str, Any] | None = None

    def changed(self) -> list[Planned]:
        return [p for p in self.items if (p.changes and p.error is None) or p.deferred_by]


class Engine:
    """Plans and converges hosts from a manifest site and an inventory."""

    def __init__(
        self,
        site: Any,
        inventory: Any,
        settings: Settings,
        transport_options: TransportOptions,
        on_event: EventFn | None = None,
        transport_factory: Callable[[Host, TransportOptions], Transport] = get_transport,
        executor: Executor | None = None,
        observer_factory: Callable[[Transport], Observer] | None = None,
    ) -> None:
        self.site = site
        self.inventory = inventory
        self.settings = settings
        self.transport_options = transport_options
        self.on_event = on_event or (lambda event: None)
        self.transport_factory = transport_factory
        # how host tasks run (threads here, inline for a host that runs itself, a queue for many)
        self.executor: Executor = executor or ThreadExecutor(settings.parallel)
        # what answers a probe on a connected host (the agent; tests give a fake)
        # which agent programs each host already holds (a hint that saves resending them)
        self.programs = HostPrograms(Path(settings.state_dir) / "agent-programs")
        self.observer_for: Callable[[Transport], Observer] = observer_factory or (
            lambda transport: AgentObserver(transport, self.programs, getattr(self._local, "session", None)))
        self.catalogs: dict[str, Catalog] = {}
        self.facts_cache: dict[str, dict[str, Any]] = {}  # host -> facts of the last stored run
        # False: a created file's diff keeps its header only (its line count), not the whole new text,
        # which nothing shows by default and the store does not keep (100 hosts x 100 files: ~23 MB)
        self.whole_new_contents = True
        # called once every catalog is rendered, before any host's work (the CLI reads the facts cache)
        self.on_preflight: Callable[[Engine], None] | None = None
        # set on SIGINT/SIGTERM: nothing new starts; in-flight agents stop at their next resource
        self.abort = threading.Event()
        self.kill = threading.Event()  # a second interrupt: in-flight commands are killed now
        self.abort_grace = 30.0
        # --tags/--skip-tags (None: every resource, as before tags existed); ``tags_known``: the tags the
        # manifests spell out, set when some are templated: the unknown-tag check then waits for the
        # rendered catalogs (still before any host's work)
        self.tags: TagSelection | None = None
        self.tags_known: set[str] | None = None
        # --serial steps and --max-fail-percentage (driftctl/batches.py)
        self.serial: list[batches.Step] | None = None
        self.max_fail: float | None = None
        # pull mode: what a probe asks the host's outbox for (None: nothing), per host; set by runs that
        # store what they collect (drift), see driftctl/drift/pulled.py
        self.outbox_for: Callable[[Host], dict[str, Any] | None] | None = None
        self.on_outbox: Callable[[Host, dict[str, Any]], None] | None = None
        # the gate of the fan_out whose host this thread works on (see ``each_host``, ``plan_host``)
        self._local = threading.local()

    # ---- before any connection
    def preflight(self, hosts: Sequence[Host],
                  on_catalog: Callable[[str, Catalog], None] | None = None) -> dict[str, Catalog]:
        """Render and validate the catalogs of ``hosts`` (added to those rendered before), then call
        ``on_preflight``. Raises the user's input errors; contacts no host. ``on_catalog`` is told of
        each catalog as soon as it is rendered (before the others are). An abort (SIGINT, SIGTERM) stops
        the rendering at the next host: ten thousand catalogs take minutes, and the hosts whose catalog
        was not rendered are not started anyway (``each_host``)."""
        from driftctl.manifest import preflight

        self.catalogs.update(preflight(self.site, self.inventory, list(hosts), on_catalog=on_catalog,
                                       stop=self.abort.is_set))
        # after an abort the catalogs left out may hold the tags asked for: nothing more runs anyway
        if self.tags is not None and self.tags_known is not None and not self.abort.is_set():
            rendered = {t for c in self.catalogs.values() for r in c.resources for t in r.tags}
            check_known(self.tags, self.tags_known | rendered, "the manifests")
        if self.on_preflight is not None:
            self.on_preflight(self)
        return self.catalogs

    # ---- whole runs
    def run(self, command: Command, hosts: Sequence[Host]) -> RunResult:
        """plan, check or apply on every host in parallel (see ``fan_out``), in batches with --serial."""
        run = RunResult(command=command)
        run.hosts = self.in_batches(run, hosts, lambda host, t: self._plan_or_apply(host, t, command))
        run.finished = time.time()
        return run

    def in_batches(self, run: RunResult, hosts: Sequence[Host],
                   work: Callable[[Host, Transport], HostResult]) -> list[HostResult]:
        """``work`` on every host: all at once (``fan_out``), or batch after batch with ``serial``.

        Every catalog is rendered (and checked) while the first batch connects, before its work: an
        input error on a host of the last batch stops the run before the first changes anything. After
        a batch that fails past ``max_fail`` (batches.judge), the hosts of later batches are reported
        not started, untouched, and the run is aborted (exit bit 16).
        """
        if self.tags is not None:
            run.tags = sorted(self.tags.only) if self.tags.only != {"all"} else []
            run.skip_tags = sorted(self.tags.skip)
        if not self.serial:
            everyone = self.fan_out(hosts, work)
            run.aborted = self.abort.is_set()
            return everyone
        groups = batches.split(hosts, self.serial)
        info = run.serial = Batches([[h.name for h in g] for g in groups], self.max_fail)
        results: list[HostResult] = []
        ran = 0
        for k, group in enumerate(groups, 1):
            if self.abort.is_set():
                break
            ran = k
            self.on_event(Event("batch", "", f"{k}/{len(groups)}", hosts=[h.name for h in group]))
            done = self.fan_out(group, work, render=hosts if k == 1 else None)
            for r in done:
                r.batch = k
            results += done
            verdict = batches.judge(sum(r.status in ("failed", "unreachable") for r in done), len(group),
                                    self.max_fail)
            if verdict.stop and k < len(groups):
                info.stopped_after, info.reason = k, f"batch {k}: {verdict.why}"
                break
        for k, group in enumerate(groups[ran:], ran + 1):
            for h in group:
                why = info.reason or "the run was aborted"
                r = HostResult(h.name, "failed", error=f"not started: {why}", interrupted="aborted", batch=k)
                info.not_started.append(h.name)
                self.on_event(Event("done", h.name, result=r))
                results.append(r)
        run.aborted = self.abort.is_set() or info.stopped_after is not None
        return results

    def fan_out(self, hosts: Sequence[Host], work: Callable[[Host, Transport], HostResult],
                render: Sequence[Host] | None = None) -> list[HostResult]:
        """``work`` on every host, each on its own connection, through the executor.

        Catalogs not rendered yet (of ``render``, default ``hosts``) are rendered here, in this thread,
        while the hosts connect (the executor's threads wait on the network meanwhile). A host whose own
        catalog is ready may probe before the others are rendered (``_plan_host``: read-only, and only
        with the agent program its cache already holds), so the hosts' work overlaps the rendering; but
        nothing is judged, stored or changed before every catalog is valid (``plan_host`` waits), and an
        input error ends the run with the connections cancelled and no host changed. ``on_preflight``
        runs once the catalogs are known, before any of that.
        """
        missing = [h for h in (render if render is not None else hosts) if h.name not in self.catalogs]

        def one(host: Host) -> HostResult:
            if self.abort.is_set():
                return not_started(host)
            return self.each_host(host, lambda t: work(host, t), gate)

        if not missing or not self.executor.concurrent:
            gate = _Gate(opened=True)
            if missing:
                self.preflight(missing)
            return collect(run_hosts(hosts, one, executor=self.executor))
        gate = _Gate(opened=False)
        box: dict[str, Any] = {}

        def hosts_thread() -> None:
            try:
                box["results"] = collect(run_hosts(hosts, one, executor=self.executor))
            except BaseException as e:  # a bug: raised in the caller's thread below
                box["error"] = e

        def rendered(name: str, catalog: Catalog) -> None:
            self.catalogs[name] = catalog
            if not catalog.uses_facts:  # rendered again with the host's facts: that waits for the gate
                gate.ready(name)

        runner = threading.Thread(target=hosts_thread, name="hosts", daemon=True)
        runner.start()
        try:
            self.preflight(missing, on_catalog=rendered)
        except BaseException:
            gate.close()
            runner.join()
            raise
        gate.open()
        runner.join()
        if "error" in box:
            raise box["error"]
        return box["results"]

    def each_host(self, host: Host, work: Callable[[Transport], HostResult], gate: _Gate | None = None) -> HostResult:
        """Connect, run ``work`` (once ``gate`` opens), close; any failure becomes this host's result,
        never an exception. A closed gate (the run ended before any work) reports nothing."""
        started = time.monotonic()
        gate = gate or _Gate(opened=True)
        self.on_event(Event("start", host.name))
        try:
            self.on_event(Event("phase", host.name, "connect"))
            transport = self.transport_factory(host, self.transport_options)
            with gate.tracking(transport), transport:
                gate.wait_own(host.name)
                # interrupted while the catalogs were rendered: connected, but nothing starts
                self._local.gate = gate
                try:
                    result = not_started(host) if self.abort.is_set() else work(transport)
                finally:
                    self._local.gate = None
        except _Cancelled:
            return HostResult(host.name, "failed", error="not run: the run ended before any host's work")
        except ConnectError as e:
            result = HostResult(host.name, "unreachable", error=e.message)
        except CommandAborted as e:
            result = HostResult(host.name, "failed", error=e.message, interrupted="aborted")
        except (AgentError, CommandTimeout, HostError) as e:
            result = HostResult(host.name, "failed", error=e.message, locked=isinstance(e, HostLockedError))
        except InputError as e:
            result = HostResult(host.name, "failed", error=str(e))
        except DriftctlError as e:
            result = HostResult(host.name, "failed", error=str(e))
        except Exception as e:  # a bug must not take the fleet down with it
            result = HostResult(host.name, "failed", error=f"internal error: {type(e).__name__}: {e}")
        result.duration = time.monotonic() - started
        if result.error:
            secrets = self.catalogs[host.name].secrets if host.name in self.catalogs else frozenset()
            result.error = redact(result.error, secrets)
        self.on_event(Event("done", host.name, result=result))
        return result

    def probe_host(self, host: Host) -> tuple[HostPlan | None, HostResult]:
        """The read-only half of check for one host: (its plan, or None when it failed; its result)."""
        if host.name not in self.catalogs:
            self.preflight([host])
        box: dict[str, HostPlan] = {}

        def work(transport: Transport) -> HostResult:
            plan = box["plan"] = self.plan_host(host, transport)
            return self.host_result(plan, plan_results(plan))

        result = self.each_host(host, work)
        return box.get("plan"), result

    def _plan_or_apply(self, host: Host, transport: Transport, command: Command) -> HostResult:
        if command != "apply":
            return self._plan_then_apply(host, transport, command)
        # one agent probes and applies (D50): the probe's agent waits for the plan
        catalog = self.catalogs.get(host.name)
        timeout = self.silence(host, catalog) if catalog is not None else None
        with ship.Session(transport, self.programs, timeout, abort=self.abort, kill=self.kill,
                          grace=self.abort_grace) as self._local.session:
            try:
                return self._plan_then_apply(host, transport, command)
            finally:
                self._local.session = None

    def _plan_then_apply(self, host: Host, transport: Transport, command: Command) -> HostResult:
        plan = self.plan_host(host, transport)
        if command == "apply" and self.abort.is_set():
            results = [_not_started(r, "the run was aborted before this host's changes started")
                       for r in plan_results(plan)]
            result = self.host_result(plan, results)
            result.interrupted = "aborted"
            return result
        if command == "apply":
            results = self.apply_plan(plan, transport)
        else:
            results = plan_results(plan)
        return self.host_result(plan, results)

    # ---- one host: the read-only half
    def plan_host(self, host: Host, transport: Transport) -> HostPlan:
        """``_plan_host``, then what the probe collected from the host's pull outbox goes to ``on_outbox``
        (stored before anything is judged from this probe: driftctl/drift/pulled.py)."""
        plan = self._plan_host(host, transport)
        gate: _Gate | None = getattr(self._local, "gate", None)
        if gate is not None:
            gate.wait()  # every catalog is valid before anything is judged, stored or changed
        if plan.outbox is not None and self.on_outbox is not None:
            try:
                self.on_outbox(host, plan.outbox)
            except DriftctlError as e:  # the store said no: the host's reports wait for the next probe
                log.warning("%s: its pull runs were not collected: %s", host.name, e)
        return plan

    def _plan_host(self, host: Host, transport: Transport) -> HostPlan:
        """Render, one probe round trip, and the diff.

        Templates that use facts are rendered with the facts of the last stored run when there are
        some; the probe returns fresh facts, and only if they differ is the catalog rendered again
        and probed once more. Without cached facts, a facts round trip comes first.

        Before the other hosts' catalogs are rendered (the fan_out's gate still closed), only a catalog
        without facts is probed, read-only and with the program the host's agent cache holds (nothing on
        the host is written: an input error in another host's catalog must leave every host as it was);
        else this waits for the gate first.
        """
        catalog = self.catalogs.get(host.name)
        if catalog is None:
            catalog = self.preflight_one(host)
        round_trips = 0
        select = self.selected
        cached = None
        facts: dict[str, Any] = {}
        observer = self.observer_for(transport)
        outbox = self.outbox_for(host) if self.outbox_for is not None else None
        early = self._pending_gate()
        if early is not None and (catalog.uses_facts or not isinstance(observer, AgentObserver)):
            early.wait()
            early = None
        if catalog.uses_facts:
            cached = self.facts_cache.get(host.name)
            if cached:
                catalog = self._render(host, cached)
                self.on_event(Event("phase", host.name, "probe"))
                plan = plan_catalog(host, select(catalog, warn=True), observer, want_facts=True, outbox=outbox)
                round_trips += 1
                if plan.facts == cached:
                    plan.round_trips = round_trips
                    return plan
                facts = plan.facts
            else:
                self.on_event(Event("phase", host.name, "facts"))
                facts = ship.call(transport, {"op": "facts"}, timeout=host.connection.connect_timeout * 3,
                                  programs=self.programs)["facts"]
                round_trips += 1
            catalog = self._render(host, facts)
        self.on_event(Event("phase", host.name, "probe"))
        probe = functools.partial(plan_catalog, host, select(catalog, warn=not cached), observer,
                                  want_facts=not facts, outbox=outbox)
        if early is None:
            plan = probe()
        else:
            assert isinstance(observer, AgentObserver)
            try:
                with observer.reading_only():
                    plan = probe()
            except ship.NotCached:  # the host's cache lacks the program: sent once the gate opens
                early.wait()
                plan = probe()
        plan.round_trips = round_trips + 1
        if facts:
            plan.facts = facts
        if not self.whole_new_contents:
            for p in plan.items:
                p.changes = [replace(c, diff=diff_head(c.diff)) if c.before is None and c.diff else c
                             for c in p.changes]
        return plan

    def _pending_gate(self) -> _Gate | None:
        """The gate of the fan_out this thread works for, while it is still closed (else None)."""
        gate: _Gate | None = getattr(self._local, "gate", None)
        return gate if gate is not None and gate.pending else None

    def selected(self, catalog: Catalog, warn: bool = False) -> Catalog:
        """``catalog`` narrowed to the resources the tags select (``Catalog.excluded``: the others)."""
        if self.tags is None:
            return catalog
        chosen = select_catalog(catalog, self.tags)
        if warn:
            warn_dropped(catalog.host, chosen.dropped)
        return chosen.catalog

    def _render(self, host: Host, facts: dict[str, Any]) -> Catalog:
        from driftctl.manifest import compile_catalog

        self.on_event(Event("phase", host.name, "render"))
        catalog: Catalog = compile_catalog(self.site, self.inventory, host, facts)
        self.catalogs[host.name] = catalog
        return catalog

    def preflight_one(self, host: Host) -> Catalog:
        from driftctl.manifest import compile_catalog

        catalog: Catalog = compile_catalog(self.site, self.inventory, host, None)
        self.catalogs[host.name] = catalog
        return catalog

    # ---- one host: the write half
    def apply_plan(
        self, plan: HostPlan, transport: Transport, only: Iterable[str] | None = None
    ) -> list[ResourceResult]:
        """Ship the changes of ``plan`` (all, or the ids in ``only``) in one agent call; verify them."""
        wanted = set(only) if only is not None else None
        to_change = {p.id for p in plan.changed() if wanted is None or p.id in wanted}
        if not to_change:
            return plan_results(plan)
        self.on_event(Event("phase", plan.host.name, "apply"))
        depends, notify = edges(plan.catalog.resources)
        blobs: list[tuple[str, Blob]] = []
        items = []
        managed = ManagedPaths(plan.catalog.managed_resources())
        for p in plan.items:
            item = probe_item(p, plan.catalog, managed)
            item["changes"] = [c.field for c in p.changes] if p.id in to_change else []
            if p.deferred_by and p.id in to_change:
                item["deferred"] = {"desired": fingerprint.desired_state(p.desired)}
            elif p.error is not None:
                item["failed"] = p.error  # its dependents must be skipped, as if its apply had failed
            if p.observed is not None and "_cas" in p.observed:
                item["expect"] = p.observed["_cas"]  # a write checks the target is still what was planned
            item["depends"] = depends.get(p.id, [])
            item["notify"] = notify.get(p.id, [])
            items.append(item)
            if p.id in to_change:
                blobs.extend((p.id, b) for b in p.rtype.contents(p.resource.params))
        request: dict[str, Any] = {
            "op": "apply", "resources": items, "backup_dir": self.settings.backup_dir,
            "backup_keep": self.settings.backup_keep, "backup_max_age_days": self.settings.backup_max_age_days,
            "resource_timeout": self.settings.resource_timeout,
        }
        if plan.catalog.watch:
            request["watch"] = watch_request(plan.catalog)
        silence = self.silence(plan.host, plan.catalog)
        name, total = plan.host.name, len(to_change)
        finished: set[str] = set()

        def on_record(record: dict[str, Any]) -> None:
            observed = (record.get("result") or {}).get("observed") if "done" in record else None
            if isinstance(observed, dict):
                # what a later write would compare against: this run writes no more, so it is not kept
                # (~1 KB of each file's record while its host's apply lasts: ~6 MB of a 100-host first
                # converge's peak)
                observed.pop("_cas", None)
            if record.get("refresh"):
                return
            if (begun := str(record.get("begin", ""))) in to_change:
                self.on_event(Event("resource", name, "", done=len(finished), total=total, current=begun))
            elif (rid := str(record.get("done", ""))) in to_change:
                finished.add(rid)
                self.on_event(Event("resource", name, rid, done=len(finished), total=total))

        self.on_event(Event("resource", name, "", done=0, total=total))
        session: ship.Session | None = getattr(self._local, "session", None)
        applied = None
        if session is not None and session.transport is transport:
            applied = session.apply(request, blobs, timeout=silence, on_record=on_record)
        if applied is None:  # no agent waits for this plan: one is started for it
            applied = ship.apply(transport, request, blobs, abort=self.abort, kill=self.kill,
                                 grace=self.abort_grace, timeout=silence, on_record=on_record)
        plan.round_trips += 1
        plan.interrupted = ("aborted" if applied.aborted else "connection lost") if applied.cut else None
        answer = applied.answer or {}
        plan.watch_after = answer.get("watch")
        results = []
        by_target = notified_by(notify)
        for p in plan.items:
            r = applied.done.get(p.id)
            if r is None and applied.cut:
                if p.id in applied.begun:
                    r = {"status": "failed", "error": f"interrupted while it ran ({applied.cut}): its outcome is "
                                                      "unknown until the next check"}
                elif p.id in to_change and applied.answer is None:
                    # the agent's last line never came, so neither may a record before it: the agent
                    # stops at its next resource boundary once it notices (at once after a reset, within
                    # its lease on a silent link, D47) and may have started this first
                    r = {"status": "skipped", "error": f"not reported ({applied.cut}): it may have started before "
                                                      "the agent stopped; the next check shows whether it ran"}
                elif p.id in to_change:
                    r = {"status": "skipped", "error": f"not started: {applied.cut}"}
                else:
                    results.append(planned_result(p))
                    continue
            if r is None:
                r = {"status": "failed", "error": "the agent did not report this resource"}
            if p.id in applied.unsent and r.get("status") == "failed":  # the agent saw only a bad checksum
                r = {**r, "error": applied.unsent[p.id]}
            results.append(self._applied_result(p, r, p.id in to_change, notifiers(p.id, by_target, to_change)))
        return results

    def silence(self, host: Host, catalog: Catalog) -> float:
        """How long an apply's agent may be silent: the last resort above its per-resource limit."""
        own = [t for r in catalog.resources if isinstance(t := r.params.get("timeout"), (int, float))]
        return float(max(host.connection.command_timeout, max([self.settings.resource_timeout, *own]) + 60))

    def _applied_result(self, p: Planned, r: dict[str, Any], was_changed: bool, by: list[str]) -> ResourceResult:
        status = r.get("status", "failed")
        if p.deferred_by and "before" in r:
            # observed only now, after its dependencies: this is what it was, and what changed (the
            # plan's "known after ..." placeholder is not what happened)
            p.error = None
            p.deferred_by = []
            p.observed = r["before"]
            p.changes = diff_planned(p, p.observed)
            if status == "ok":
                return planned_result(p)
        if status in ("failed", "skipped"):
            return p.result(status, changes=p.changes if was_changed else [], error=r.get("error"),
                            reason=r.get("error", ""))
        if not was_changed:
            result = planned_result(p)
            if r.get("refreshed"):
                result.status = "changed"
                result.changes = [refresh_change(by)]
            return result
        after = r.get("observed")
        if after is None:
            return p.result("failed", changes=p.changes, error=r.get("error") or "not observed after the change",
                            observed=False)
        remaining = diff_planned(p, after) if p.rtype.verify_after_apply else []
        p.observed = after
        if remaining:
            fields = ", ".join(p.rtype.describe(c) for c in remaining)
            return p.result("failed", changes=p.changes, error=f"did not converge: {fields}")
        return p.result("changed", changes=p.changes, reason="refreshed" if r.get("refreshed") else "")

    # ---- results
    def host_result(self, plan: HostPlan, results: list[ResourceResult]) -> HostResult:
        secrets = plan.catalog.secrets
        results = [redact_result(r, secrets) for r in results]
        fps = {r.id: r.observed_fingerprint for r in results if r.observed_fingerprint}
        return HostResult(
            plan.host.name,
            host_status(results),
            resources=results,
            facts=plan.facts,
            round_trips=plan.round_trips,
            fingerprint=fingerprint.host_root(fps) if fps else None,
            catalog_digest=plan.catalog.digest,
            watch=plan.watch,
            watch_after=plan.watch_after,
            secrets=secrets,
            interrupted=plan.interrupted,
            excluded=[r.id for r in plan.catalog.excluded],
        )


# ---- the observer seam: one way from observations to a plan, for hosts and images alike


class Observer(Protocol):
    """What answers a probe: the agent over a transport, or the agent's code over an image's layers.

    ``probe(request)`` takes ``{"facts": bool, "resources": [probe items], "watch"?: [...]}`` and answers
    as the agent's probe op does: ``{"resources": {id: {"observed": {...}, "refuse"?: "..."} |
    {"error": "..."}}, "facts"?: {...}, "watch"?: {...}}`` (docs/agent protocol, agent/_main.py).
    """

    def probe(self, request: dict[str, Any]) -> dict[str, Any]: ...


class _Cancelled(Exception):
    """A host's connect was cancelled because the run ended before any work (an input error)."""


class _Gate:
    """Holds every host's work until the catalogs are known; cancels their connects if they never are."""

    def __init__(self, opened: bool) -> None:
        self._decided = threading.Event()
        self._open = opened
        self._lock = threading.Lock()
        self._connecting: set[Transport] = set()
        self._ready: dict[str, threading.Event] = {}  # host -> set once its own catalog is known
        if opened:
            self._decided.set()

    @property
    def pending(self) -> bool:
        """Not decided yet: some catalogs are still being rendered."""
        return not self._decided.is_set()

    def ready(self, host: str) -> None:
        """``host``'s own catalog is known (the others may not be yet)."""
        with self._lock:
            self._ready.setdefault(host, threading.Event()).set()

    def open(self) -> None:
        with self._lock:
            self._open = True
            self._decided.set()
            for event in self._ready.values():
                event.set()

    def close(self) -> None:
        with self._lock:
            self._open = False
            self._decided.set()
            for event in self._ready.values():
                event.set()
            for t in list(self._connecting):
                t.cancel()

    def wait(self) -> None:
        """Until the catalogs are known; _Cancelled when they never will be."""
        self._decided.wait()
        if not self._open:
            raise _Cancelled

    def wait_own(self, host: str) -> None:
        """Until ``host``'s own catalog is known (or every catalog is); _Cancelled when the run ended."""
        with self._lock:
            event = None if self._decided.is_set() else self._ready.setdefault(host, threading.Event())
        if event is not None:
            event.wait()
        if self._decided.is_set() and not self._open:
            raise _Cancelled

    @contextlib.contextmanager
    def tracking(self, transport: Transport) -> Iterator[None]:
        """While ``transport`` connects, close() cancels it; a connect cancelled that way raises _Cancelled."""
        with self._lock:
            if self._decided.is_set() and not self._open:
                raise _Cancelled
            self._connecting.add(transport)
        try:
            yield
        except ConnectError:
            if self._decided.is_set() and not self._open:
                raise _Cancelled from None
            raise
        finally:
            with self._lock:
                self._connecting.discard(transport)


class AgentObserver:
    """The agent on a host: one probe round trip over ``transport``."""

    def __init__(self, transport: Transport, programs: HostPrograms | None = None,
                 session: ship.Session | None = None) -> None:
        self.transport = transport
        self.programs = programs
        self.session = session if session is not None and session.transport is transport else None
        self.read_only = False

    @contextlib.contextmanager
    def reading_only(self) -> Iterator[None]:
        """Probes that write nothing on the host (no agent cache): ship.NotCached when they cannot."""
        self.read_only = True
        try:
            yield
        finally:
            self.read_only = False

    def probe(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.session is not None:  # the agent stays for the apply (D50)
            return self.session.call({"op": "probe", **request}, read_only=self.read_only)
        return ship.call(self.transport, {"op": "probe", **request}, programs=self.programs,
                         read_only=self.read_only)


def diff_head(diff: str) -> str:
    """A unified diff cut to its header: ``--- /dev/null``, ``+++ path``, ``@@ -0,0 +1,N @@``."""
    return "".join(diff.splitlines(keepends=True)[:3])


def planned(resource: Resource) -> Planned:
    rtype = get_type(resource.type)
    if rtype is None:  # validated in preflight; only a broken install gets here
        raise ManifestError(f"unknown resource type {resource.type!r}", resource.source)
    return Planned(resource, rtype, rtype.desired(resource.params))


def diff_planned(p: Planned, observed: dict[str, Any]) -> list[Change]:
    """The type's own diff, with secret fields and sensitive values masked."""
    changes = p.rtype.diff(p.desired, observed, sensitive=p.resource.sensitive, params=p.resource.params)
    return [mask_change(c, p) for c in changes]


def probe_item(p: Planned, catalog: Catalog, managed: ManagedPaths | None = None) -> dict[str, Any]:
    """One resource as the agent gets it: id, type and the type's agent params (plus what purge keeps;
    ``managed``: the catalog's index, built once by a caller that asks for every resource)."""
    params = dict(p.rtype.agent_params(p.resource.params))
    params["_want_content"] = not p.resource.sensitive
    params["_sensitive"] = p.resource.sensitive
    if p.rtype.keeps_managed_below:
        index = managed if managed is not None else ManagedPaths(catalog.managed_resources())
        params["_managed"] = index.below(str(p.resource.params.get("path", "")))
    return {"id": p.id, "type": p.resource.type, "params": params}


def plan_catalog(host: Host, catalog: Catalog, observer: Observer, want_facts: bool = False,
                 outbox: dict[str, Any] | None = None) -> HostPlan:
    """Observe ``catalog`` with ``observer`` and diff it: the one plan loop of plan, check, apply, drift,
    bake-verify and drift --against IMAGE. ``outbox``: also collect the host's recorded pull runs (the
    request's ``outbox``, agent/_main.py outbox_collect), answered in ``HostPlan.outbox``."""
    items = [planned(r) for r in catalog.resources]
    managed = ManagedPaths(catalog.managed_resources())
    request: dict[str, Any] = {"facts": want_facts, "resources": [probe_item(p, catalog, managed) for p in items]}
    if catalog.watch:
        request["watch"] = watch_request(catalog)
    if outbox is not None:
        request["outbox"] = outbox
    answer = observer.probe(request)
    observed = answer.get("resources", {})
    for p in items:
        got = observed.get(p.id)
        if got is None:
            p.error = "the agent did not report this resource"
        elif "error" in got:
            p.error = got["error"]
        else:
            p.observed = got["observed"]
            p.changes = diff_planned(p, p.observed)
            if p.changes and got.get("refuse"):
                p.refusal = str(got["refuse"])
    defer(items, catalog.resources)
    return HostPlan(host, catalog, answer.get("facts", {}), items, answer.get("watch", {}),
                    outbox=answer.get("outbox") if outbox is not None else None)


def defer(items: Sequence[Planned], resources: Sequence[Resource]) -> None:
    """Mark items whose probe failed, or that apply would refuse as they are now, while something they
    depend on (transitively) will change: the line of a file the same run creates is judged after it."""
    depends, _ = edges(resources)
    by_id = {p.id: p for p in items}
    moving: set[str] = set()
    for p in items:  # catalog order is a topological order: dependencies come first
        if p.error is not None:
            p.deferred_by = [d for d in depends.get(p.id, []) if d in moving]
        elif p.refusal is not None:
            # a missing file may come from any dependency that changes (a package installs it, an exec
            # writes it); an obstacle in the way only from one that manages the same path
            missing = (p.observed or {}).get("file") == "missing"
            p.deferred_by = [d for d in depends.get(p.id, [])
                             if d in moving and (missing or _same_path(by_id[d], p))]
            if p.deferred_by:
                p.refusal = None  # the agent decides again when those have converged
        if p.changes or p.deferred_by:
            moving.add(p.id)


def _same_path(dep: Planned, p: Planned) -> bool:
    """Whether ``dep`` manages one of ``p``'s paths."""
    theirs = set(dep.rtype.managed_paths(dep.resource.params))
    return any(path in theirs for path in p.rtype.managed_paths(p.resource.params))


def collect(outcomes: Sequence[Any]) -> list[HostResult]:
    """Every host's result, in order; a worker that raised anyway (a renderer's bug) is that host failing."""
    results = []
    for o in outcomes:
        if o.value is not None:
            results.append(o.value)
        else:
            error = f"internal error: {type(o.error).__name__}: {o.error}"
            results.append(HostResult(o.host.name, "failed", error=error))
    return results


def notifiers(rid: str, notified_by: dict[str, list[str]], changed: set[str]) -> list[str]:
    """The resources that changed and notify ``rid`` (``notified_by``: see notified_by())."""
    return [src for src in notified_by.get(rid, []) if src in changed]


def notified_by(notify: dict[str, list[str]]) -> dict[str, list[str]]:
    """target -> the resources that notify it, in catalog order."""
    out: dict[str, list[str]] = {}
    for src, targets in notify.items():
        for target in targets:
            out.setdefault(target, []).append(src)
    return out


def refresh_change(by: list[str]) -> Change:
    return Change("refresh", None, "notified by " + ", ".join(by))


def plan_results(plan: HostPlan) -> list[ResourceResult]:
    """What apply would do: the changes, and the refreshes those changes would trigger."""
    results = [planned_result(p) for p in plan.items]
    depends, notify = edges(plan.catalog.resources)
    changed = {p.id for p in plan.changed()}
    by_target = notified_by(notify)
    broken: set[str] = set()  # what apply will fail or skip: its dependents are skipped, as apply does
    for i, (p, r) in enumerate(zip(plan.items, results, strict=True)):
        bad = [d for d in depends.get(p.id, []) if d in broken]
        if bad:  # the agent checks dependencies first: a dependent is skipped, whatever else it would do
            why = f"dependency {', '.join(bad)} will not converge"
            results[i] = r = replace(r, status="skipped", error=why, reason=why)
        if r.status in ("failed", "skipped"):
            broken.add(p.id)
            continue
        by = notifiers(p.id, by_target, changed - broken)
        if by and r.status == "ok" and p.rtype.refreshable:
            r.status = "changed"
            r.reason = ""
            r.changes = [refresh_change(by)]
    return results


def planned_result(p: Planned) -> ResourceResult:
    """The result of a probed resource before (plan) or without (in sync) any change."""
    if p.deferred_by:
        return p.result("changed", reason=f"known after {', '.join(p.deferred_by)} converge(s)",
                        changes=[Change("pending", None, "known after " + ", ".join(p.deferred_by))])
    if p.error is not None:
        return p.result("failed", error=p.error, reason=p.error)
    if p.changes and p.refusal:
        return p.result("failed", changes=p.changes, error=p.refusal, reason=p.refusal)
    if p.changes:
        return p.result("changed", changes=p.changes)
    return p.result("ok", reason="in sync")


def host_status(results: Sequence[ResourceResult]) -> HostStatus:
    """A host's status from its resources' (plan, apply and drift alike)."""
    if any(r.status == "failed" for r in results):
        return "failed"
    return "changed" if any(r.status == "changed" for r in results) else "ok"


def not_started(host: Host) -> HostResult:
    """A host the run never reached because it was aborted first."""
    return HostResult(host.name, "failed", error="not started: the run was aborted", interrupted="aborted")


def _not_started(r: ResourceResult, why: str) -> ResourceResult:
    if r.status != "changed":
        return r
    return replace(r, status="skipped", error=f"not started: {why}", reason=f"not started: {why}")


def observed_view(p: Planned) -> dict[str, Any] | None:
    """What is kept of an observation in results and the store: managed attributes, no contents."""
    if p.observed is None:
        return None
    state = fingerprint.managed_state(p.desired, p.observed)
    for key, value in state.items():
        secret = key in p.rtype.secret_fields or (p.resource.sensitive and key not in SENSITIVE_SAFE_FIELDS)
        if secret and value is not None and not (isinstance(value, str) and value.startswith("sha256:")):
            state[key] = "sha256:" + fingerprint.of({"v": value})[:12]
    return state


# Metadata a sensitive resource still shows: what it is and who may read it, never what it holds.
SENSITIVE_SAFE_FIELDS = frozenset({"ensure", "mode", "owner", "group", "enabled", "running", "refresh", "pending",
                                   "needs_reload"})


def mask_change(change: Change, p: Planned) -> Change:
    """Secret fields (a password hash) and the values of sensitive resources show only hashes."""
    sensitive_value = p.resource.sensitive and change.field not in SENSITIVE_SAFE_FIELDS
    if change.field in p.rtype.secret_fields or sensitive_value:
        def h(v: Any) -> Any:
            if v is None or (isinstance(v, str) and v.startswith("sha256:")):
                return v
            return "sha256:" + fingerprint.of({"v": v})[:12]

        return Change(change.field, h(change.before), h(change.after), None)
    return change


def redact_result(r: ResourceResult, secrets: frozenset[str]) -> ResourceResult:
    if not secrets:
        return r
    changes = [
        Change(c.field, redact_data(c.before, secrets), redact_data(c.after, secrets),
               redact(c.diff, secrets) if c.diff else c.diff)
        for c in r.changes
    ]
    return replace(
        r,
        changes=changes,
        error=redact(r.error, secrets) if r.error else r.error,
        reason=redact(r.reason, secrets),
        observed=redact_data(r.observed, secrets),
    )


def edges(resources: Sequence[Resource]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(depends, notify) per resource id: what must converge first, and whom a change refreshes.

    The ordering rules live in driftctl/graph.py; this only turns them around for the agent.
    """
    from driftctl import graph

    depends: dict[str, list[str]] = {r.id: [] for r in resources}
    for first, thens in graph.edges(resources).items():
        for then in thens:
            depends[then].append(first)
    notify = graph.notify_targets(resources)
    return depends, {r.id: notify.get(r.id, []) for r in resources}


def managed_below(directory: str, resources: Sequence[Resource]) -> list[str]:
    """Paths under ``directory`` that some resource of the catalog manages (kept by purge)."""
    return ManagedPaths(resources).below(directory)


class ManagedPaths:
    """Every path a catalog manages, sorted once, so each directory's share is a bisect away (a scan
    of the catalog per directory made 10,000 resources in 100 directories quadratic)."""

    def __init__(self, resources: Sequence[Resource]) -> None:
        paths: set[str] = set()
        for r in resources:
            rtype = get_type(r.type)
            paths.update(rtype.managed_paths(r.params) if rtype is not None else [])
        self.paths = sorted(paths)

    def below(self, directory: str) -> list[str]:
        prefix = directory.rstrip("/") + "/"
        start = bisect.bisect_left(self.paths, prefix)
        end = bisect.bisect_left(self.paths, prefix[:-1] + chr(ord("/") + 1))
        return self.paths[start:end]


def watch_request(catalog: Catalog) -> list[dict[str, Any]]:
    """Watched paths with the managed paths under them excluded (those are reported per resource)."""
    managed = ManagedPaths(catalog.managed_resources())
    return [{"path": w, "exclude": managed.below(w)} for w in catalog.watch]


__all__ = ["REDACTED", "Engine", "Event", "HostPlan", "Planned", "edges", "planned_result"]
