"""Saved plans on the command line: ``driftctl plan -o FILE`` and ``driftctl apply FILE``.

cmd_converge calls ``save_plan`` after a plan run with ``-o/--out``, and routes ``apply`` here when its
INVENTORY argument is a saved plan (``is_saved_plan``). The format and the guarantees are in
docs/plans.md; the checks themselves in driftctl/savedplan.py.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from driftctl import savedplan
from driftctl.cli import ui
from driftctl.cli.common import recorded_argv
from driftctl.engine import Engine, HostPlan, plan_results
from driftctl.errors import ConfigError, Location
from driftctl.model import HostResult, ResourceResult, RunResult
from driftctl.transport.base import Transport

__all__ = ["apply_saved", "is_saved_plan", "save_plan"]


def is_saved_plan(path: Path) -> bool:
    """True when ``path`` is a regular file holding a driftctl saved plan (looks at its first bytes)."""
    return savedplan.is_plan_file(Path(path))


def save_plan(path: Path, run: RunResult, engine: Engine, ctx: Any, inventory: Path) -> None:
    """Write the plan of ``run`` (a ``plan`` run over ``ctx.hosts``) to ``path``, atomically, mode 0600."""
    from driftctl.report.document import current_user

    path = Path(path)
    savedplan.check_out_path(path, Path(inventory))
    manifests = Path(ctx.settings.manifests)
    doc = savedplan.build(
        run, engine.catalogs, ctx.hosts,
        savedplan.inventory_inputs(Path(inventory), exclude=[path]),
        savedplan.manifest_inputs(manifests, exclude=[path]),
        created_by=current_user(), tags=engine.tags,
    )
    savedplan.write(path, doc)
    for h in doc["not_planned"]:
        ui.warn(f"{h['name']} is not in the saved plan ({h['status']}: {h['error'] or 'not planned'}); "
                "applying the plan leaves it alone")
    s = doc["summary"]
    ui.err.print(f"Saved the plan to {path} ({s['add']} to add, {s['change']} to change, {s['remove']} to remove"
                 f" on {len(doc['hosts'])} host(s)). To apply exactly this plan: driftctl apply {path}",
                 markup=False, highlight=False)


def apply_saved(path: Path, flags: dict[str, Any], as_json: bool, show_diff: bool | None, verbose: bool) -> int:
    """``driftctl apply PLAN``: check the plan and its inputs (before any connection), then on each host
    probe again, refuse the host if anything the plan saw has changed, else apply; record the run as
    ``apply`` does. Returns the exit code."""
    from driftctl.cli.cmd_converge import prepare, show
    from driftctl.cli.render import Progress
    from driftctl.cli.runstore import say_saved
    from driftctl.cli.signals import interruptible

    path = Path(path)
    plan = savedplan.load(path)
    _refuse_selection_flags(flags, plan)
    savedplan.check_inputs(plan)
    inventory = Path(plan.inventory.path)
    names = [h.name for h in plan.hosts]
    for h in plan.not_planned:
        ui.warn(f"{h.get('name')} is not in the plan ({h.get('status')} when planned): left alone")
    if not names:
        raise savedplan.PlanFileError("the plan has no host to apply", Location(str(path)),
                                      "every host was unreachable or failed when planned; make a new plan")
    ctx, engine = prepare(inventory, ",".join(names), as_json, Path(plan.manifests.path), _run_flags(flags))
    engine.tags = plan.tags  # the plan's selection: the same resources are examined again
    opts = flags.get("run_opts")
    if opts is not None and opts.steps:  # --serial/--max-fail-percentage: how to apply, not what
        engine.serial, engine.max_fail = opts.steps, opts.max_fail
    wanted = set(names)
    ctx.hosts = [h for h in ctx.hosts if h.name in wanted]  # a host name that is also a group's selects more
    engine.whole_new_contents = as_json or show_diff is True
    engine.preflight(ctx.hosts)  # every catalog now, so a changed one refuses the plan before any connection
    savedplan.check_hosts(plan, ctx.hosts, engine.catalogs)
    s = plan.summary
    ui.err.print(f"Applying the plan saved in {path} ({plan.created} by {plan.created_by or 'unknown'}): "
                 f"{s['add']} to add, {s['change']} to change, {s['remove']} to remove on {len(ctx.hosts)} host(s)",
                 markup=False, highlight=False)
    with Progress(ui.err, [h.name for h in ctx.hosts], ui.interactive() and not as_json) as progress:
        engine.on_event = progress
        with interruptible(engine):
            run, saved, store_url = _apply(ctx, engine, inventory, plan, flags.get("wait_lock"))
    show(run, inventory, as_json, show_diff, verbose)
    return run.exit_code | say_saved(saved, store_url)


def _refuse_selection_flags(flags: dict[str, Any], plan: savedplan.SavedPlan) -> None:
    """The plan fixes the hosts, the manifests and the tags: a --limit, -m or --tags given with it is a
    mistake (``run_opts``, cli/opt_run.RunOptions, when the caller passes them)."""
    opts = flags.get("run_opts")
    if opts is not None and (opts.tags or opts.skip_tags):
        raise ConfigError("--tags/--skip-tags cannot be used with a saved plan: the plan was made with its own",
                          hint="make a new plan with the tags you want")
    if flags.get("limit"):
        raise ConfigError("--limit cannot be used with a saved plan: the plan names its hosts",
                          hint=f"hosts in {plan.path}: {', '.join(h.name for h in plan.hosts)}")
    given = flags.get("manifests")
    if given is not None and Path(given).resolve() != Path(plan.manifests.path).resolve():
        raise ConfigError(f"-m {given} differs from the plan's manifest tree {plan.manifests.path}",
                          hint="a saved plan is applied with the manifests it was made from")


def _run_flags(flags: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in flags.items() if k not in ("limit", "manifests", "run_opts")}


def _apply(ctx: Any, engine: Engine, inventory: Path, plan: savedplan.SavedPlan,
           wait_lock: float | None) -> tuple[RunResult, Any, str]:
    """As cmd_converge._apply: under the inventory's lock, recorded as an apply run."""
    from driftctl.cli.runstore import begin_run, open_run_store
    from driftctl.drift import inventory_key, record_run, run_lock

    key = inventory_key(inventory)
    store = open_run_store(ctx.settings)
    try:
        with run_lock(ctx.settings, store, key, "apply", wait_lock):
            view = begin_run(store, ctx.settings.state_dir, key)
            run = RunResult(command="apply")
            # batches with --serial; marks the run partial when the plan's tags narrowed it
            run.hosts = engine.in_batches(run, ctx.hosts, lambda host, t: apply_host(engine, plan, host, t))
            run.finished = _now()
            record_run(ctx.settings, run, inventory, store=view, argv=recorded_argv(sys.argv[1:]))
            saved = view.finish()
    finally:
        store.close()
    return run, saved, store.url


def _now() -> float:
    import time

    return time.time()


def apply_host(engine: Engine, plan: savedplan.SavedPlan, host: Any, transport: Transport) -> HostResult:
    """One host of a saved plan: probe, compare with what the plan saw, apply or refuse."""
    saved = plan.host(host.name)
    if saved is None:  # ctx.hosts were cut to the plan's: a bug if it happens
        return HostResult(host.name, "failed", error="internal error: this host is not in the plan")
    fresh = engine.plan_host(host, transport)
    stale = savedplan.staleness(saved, fresh.catalog, fresh.facts, plan_results(fresh))
    if stale:
        return _refused(engine, fresh, stale)
    if engine.abort.is_set():
        why = "not started: the run was aborted before this host's changes started"
        results = [replace(r, status="skipped", error=why, reason=why) if r.status == "changed" else r
                   for r in plan_results(fresh)]
        result = engine.host_result(fresh, results)
        result.interrupted = "aborted"
        return result
    return engine.host_result(fresh, engine.apply_plan(fresh, transport))


def _refused(engine: Engine, fresh: HostPlan, stale: savedplan.Staleness) -> HostResult:
    """A stale host: nothing applied; what changed since the plan fails, the rest of its changes are
    skipped, and the host's error says why."""
    moved = set(stale.resources)
    results: list[ResourceResult] = []
    for r in plan_results(fresh):
        if r.id in moved:
            why = "changed on the host since the plan: not applied"
            results.append(replace(r, status="failed", error=why, reason=why))
        elif r.status == "changed":
            why = "not applied: the plan is stale on this host" + (f" ({'; '.join(stale.reasons)})"
                                                                   if stale.reasons else "")
            results.append(replace(r, status="skipped", error=why, reason=why))
        else:
            results.append(r)
    result = engine.host_result(fresh, results)
    result.status = "failed"
    result.error = stale.message()
    return result
