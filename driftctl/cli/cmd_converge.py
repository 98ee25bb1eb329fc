"""driftctl plan / check / apply."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from driftctl.cli import ui
from driftctl.cli.common import (
    executor_options,
    fleet_options,
    inventory_argument,
    load_context,
    make_engine,
    pass_flags,
    recorded_argv,
)
from driftctl.cli.opt_run import RunOptions, pass_run_options, run_options
from driftctl.cli.options import diff_option, manifests_option, state_option, verbose_option, wait_lock_option
from driftctl.cli.render import Progress, final_line, host_section, summary_table
from driftctl.cli.runstore import begin_run, open_run_store, say_saved
from driftctl.cli.signals import interruptible
from driftctl.engine import Engine
from driftctl.model import RunResult
from driftctl.report import document
from driftctl.store.runstate import Saved


def prepare(inventory: Path, limit: str | None, as_json: bool, manifests: Path | None, flags: dict[str, Any],
            progress: Progress | None = None, run_opts: RunOptions | None = None) -> tuple[Any, Engine]:
    """Load the inventory, settings and manifests (their errors surface here). The catalogs are rendered
    by the run itself while it connects, and any input error in them ends it before any host's work.
    ``run_opts``: --tags, --serial... (an unknown tag is an error here, before any connection)."""
    from driftctl.manifest import load_site

    ctx = load_context(inventory, limit, as_json, manifests=str(manifests) if manifests else None, **flags)
    site = load_site(Path(ctx.settings.manifests), max_render_bytes=ctx.settings.max_render_bytes)
    cache = render_cache(ctx.settings, site) if ctx.settings.render_cache else None
    engine: Engine = make_engine(ctx, site, on_event=progress)
    if run_opts is not None:
        run_opts.configure(engine, site)

    def read_facts_cache(e: Engine) -> None:
        if cache is not None:
            cache.flush()  # every catalog is rendered: what a later run can reuse is written now
        if any(c.uses_facts for c in e.catalogs.values()):
            from driftctl.drift import facts_cache

            e.facts_cache = facts_cache(ctx.settings, inventory)

    engine.on_preflight = read_facts_cache
    return ctx, engine


def render_cache(settings: Any, site: Any) -> Any:
    """The render cache of ``settings.state_dir``, given to the site's renderer (D53); closed (what the
    run rendered since the catalogs were first rendered, with facts, written) when the process ends."""
    import atexit

    from driftctl.manifest.rendercache import RenderCache

    cache, why = RenderCache.open(Path(settings.state_dir) / "render-cache")
    if why:
        ui.warn(why)
    if cache is not None:
        site.render_cache = cache
        atexit.register(cache.close)
    return cache


def show(run: RunResult, inventory: Path, as_json: bool, show_diff: bool | None, verbose: bool) -> None:
    if as_json:
        ui.print_json(document.build(run, str(inventory), recorded_argv(sys.argv[1:])))
        return
    for h in run.hosts:
        host_section(ui.out, h, run.command, show_diff, verbose)
    ui.out.print()
    if len(run.hosts) > 1:
        ui.out.print(summary_table(run))
    ui.out.print(final_line(run), markup=False)


def converge(command: str, inventory: Path, limit: str | None, as_json: bool, manifests: Path | None,
             show_diff: bool | None, verbose: bool, flags: dict[str, Any], run_opts: RunOptions | None = None,
             out: Path | None = None, detailed_exitcode: bool = True) -> int:
    if command == "apply" and _saved_plan(inventory):
        from driftctl.cli.cmd_saved import apply_saved  # `apply plan.json`: exactly that plan (cmd_saved.py)

        return apply_saved(inventory, dict(flags, limit=limit, manifests=manifests, run_opts=run_opts),
                           as_json, show_diff, verbose)
    if out is not None:
        from driftctl.savedplan import check_out_path

        check_out_path(out, inventory)  # a plan file the inventory would read back: refused before any host
    ctx, engine = prepare(inventory, limit, as_json, manifests, flags, run_opts=run_opts)
    engine.whole_new_contents = as_json or show_diff is True  # else a created file's text is not shown
    with Progress(ui.err, [h.name for h in ctx.hosts], ui.interactive() and not as_json) as progress:
        engine.on_event = progress
        with interruptible(engine):
            if command == "apply":
                run, saved, store_url = _apply(ctx, engine, inventory, flags.get("wait_lock"))
            else:
                run = engine.run(command, ctx.hosts)  # type: ignore[arg-type]
    run.changes_exit = detailed_exitcode
    if out is not None:
        from driftctl.cli.cmd_saved import save_plan  # `plan -o FILE` (cmd_saved.py)

        save_plan(out, run, engine, ctx, inventory)
    show(run, inventory, as_json, show_diff, verbose)
    if command == "apply":
        return run.exit_code | say_saved(saved, store_url)
    return run.exit_code


def _saved_plan(path: Path) -> bool:
    """Whether ``apply``'s INVENTORY names a saved plan (a regular file saying ``"kind": "driftctl-plan"``;
    an inventory can be a single file too, so the content decides)."""
    if not Path(path).is_file():
        return False
    try:
        from driftctl.cli.cmd_saved import is_saved_plan
    except ImportError:  # saved plans not built into this copy
        return False
    return is_saved_plan(Path(path))


def _apply(ctx: Any, engine: Engine, inventory: Path, wait_lock: float | None) -> tuple[RunResult, Saved, str]:
    """Apply under the inventory's lock, and record the converged state for drift detection.

    The run's view of the store is read before any host and written once at the end; a store that went
    away meanwhile keeps the results in the local spool (exit bit 32) for the next run to store.
    """
    from driftctl.drift import inventory_key, record_run, run_lock

    key = inventory_key(inventory)
    store = open_run_store(ctx.settings)
    try:
        with run_lock(ctx.settings, store, key, "apply", wait_lock):
            view = begin_run(store, ctx.settings.state_dir, key)
            from driftctl.drift.pulled import attach

            attach(engine, view, key)  # the hosts' pull runs are collected (and stored) in this probe too
            run = engine.run("apply", ctx.hosts)
            # nothing after the run reads the catalogs (results are redacted as they are made): their
            # rendered contents (~0.24 MB a host) go before the report and the store's copy are built
            engine.catalogs.clear()
            record_run(ctx.settings, run, inventory, store=view, argv=recorded_argv(sys.argv[1:]))
            saved = view.finish()
    finally:
        store.close()
    return run, saved, store.url


def register(group: click.Group) -> None:
    for name, help_text in (
        ("plan", "Show what apply would change, per host and resource, with diffs. Changes nothing. Exit 0 "
                 "when the plan was made, with or without changes (as Terraform's plan), unless "
                 "--detailed-exitcode; 4 failed, 8 unreachable."),
        ("check", "Like plan, for automation: exit 0 in sync, 2 changes pending, 4 failed, 8 unreachable."),
        ("apply", "Converge hosts to their manifests, in parallel, and record the converged state. "
                  "INVENTORY may be a plan saved by `plan -o`: that plan is applied."),
    ):
        group.add_command(_make(name, help_text))


def _make(name: str, help_text: str) -> click.Command:
    @click.command(name=name, help=help_text)
    @inventory_argument
    @manifests_option
    @fleet_options
    @executor_options
    @run_options
    @diff_option
    @verbose_option
    @pass_flags
    @pass_run_options
    def command(inventory: Path, limit: str | None, as_json: bool, manifests: Path | None, diff: bool | None,
                verbose: bool, flags: dict[str, Any], run_opts: RunOptions, state: str | None = None,
                wait_lock: float | None = None, out: Path | None = None, detailed_exitcode: bool = True) -> int:
        return converge(name, inventory, limit, as_json, manifests, diff, verbose,
                        dict(flags, state=state, wait_lock=wait_lock), run_opts, out, detailed_exitcode)

    if name == "apply":
        command = wait_lock_option(state_option(command))
    if name == "plan":
        command = click.option(
            "--detailed-exitcode", is_flag=True, default=False,
            help="Exit 2 when changes are pending (as `check` and Terraform's -detailed-exitcode); without it "
                 "a plan with changes exits 0."
        )(command)
        command = click.option(
            "-o", "--out", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
            help="Save the plan to FILE: `driftctl apply FILE` applies exactly it, and refuses hosts that "
                 "changed since (no secret in clear in it)."
        )(command)
    return command
