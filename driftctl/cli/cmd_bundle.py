"""``driftctl bundle -o driftctl.pyz`` (one zipapp a host's python3 runs) and ``driftctl bundle install|remove
INVENTORY``: the bundle and its pull schedule put on hosts over SSH, or taken away (docs/pull-setup.md)."""

from __future__ import annotations

import json
import os
import time
import zipfile
from pathlib import Path
from typing import Any

import click

from driftctl.cli import ui
from driftctl.cli.common import fleet_options, inventory_argument, load_context, pass_flags
from driftctl.cli.options import diff_option, verbose_option
from driftctl.errors import ConfigError, Location
from driftctl.model import HostResult, RunResult


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.0f} kB"


@click.group("bundle", invoke_without_command=True)
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Build the bundle into FILE (replaced atomically).")
@click.option("--python", "python", default=None, metavar="PATH",
              help="The interpreter of the bundle's #! line (default /usr/bin/python3).")
@click.option("--no-bytecode", is_flag=True,
              help="Leave out the compiled modules: a smaller file, a slower start (every run compiles).")
@click.pass_context
def bundle_group(ctx: click.Context, out: Path | None, python: str | None, no_bytecode: bool) -> int:
    """Build driftctl.pyz: driftctl and the pure-Python libraries pull mode needs, one file that a host's
    python3 runs (no pip, no internet, no SSH library). Or put it on hosts with its pull schedule
    (install), or take it away (remove).

    The same inputs give a byte-identical file (SOURCE_DATE_EPOCH sets its timestamps).
    """
    if ctx.invoked_subcommand is not None:
        if out is not None or python is not None or no_bytecode:
            raise ConfigError(f"-o, --python and --no-bytecode build a bundle; `bundle {ctx.invoked_subcommand}` "
                              "does not take them here", None,
                              "bundle install builds its own, or takes --bundle FILE and --python PATH")
        return 0
    if out is None:
        raise ConfigError("give the file to build: driftctl bundle -o driftctl.pyz", Location("-o"),
                          "or `driftctl bundle install INVENTORY --source URL` to put it on hosts")
    from driftctl.bundle.build import DEFAULT_PYTHON, build

    built = build(out, python or DEFAULT_PYTHON, bytecode=not no_bytecode)
    libs = ", ".join(f"{p.name} {p.version}" for p in built.packages)
    code = f"bytecode for Python {built.bytecode}" if built.bytecode else "no bytecode"
    ui.out.print(f"wrote {built.path}: {_size(built.size)}, {built.entries} files, sha256 {built.sha256}",
                 markup=False, highlight=False)
    ui.out.print(f"runs with python3 >= {built.min_python} (#!{built.python}); {code}", markup=False,
                 highlight=False)
    ui.out.print(f"inside: {libs}", markup=False, highlight=False)
    return 0


def _schedule_options(f: Any) -> Any:
    from driftctl.cli.options import options

    return options(
        click.option("--source", required=True, metavar="URL",
                     help="The git repository the hosts pull from (a URL or a path on the hosts)."),
        click.option("--ref", metavar="REF", help="The branch, tag or commit to pull."),
        click.option("--every", default="30m", show_default=True, metavar="INTERVAL", help="How often to pull."),
        click.option("--splay", metavar="INTERVAL",
                     help="Each run waits up to this long (systemd: random each run; cron: stable per host)."),
        click.option("--check", "mode", flag_value="check", help="Scheduled pulls are read-only checks."),
        click.option("--drift", "mode", flag_value="drift", help="Scheduled pulls are read-only drift runs."),
        click.option("--only-if-changed", is_flag=True,
                     help="Apply only when the commit or the facts changed since the last apply."),
        click.option("--cron", is_flag=True,
                     help="/etc/cron.d/driftctl-NAME everywhere (default: a systemd timer where systemd runs, cron "
                          "elsewhere)."),
        click.option("--name", default="pull", show_default=True, help="The schedule's name (driftctl-NAME.timer)."),
        click.option("-i", "pull_inventory", metavar="PATH",
                     help="The inventory's path in the repository (the pull's default: inventory)."),
        click.option("-m", "manifests", metavar="PATH",
                     help="The manifest tree's path in the repository (the pull's default: manifests)."),
        click.option("--verify-commit", "verify_keys", multiple=True, metavar="KEYFILE",
                     help="Pulls refuse commits not signed by these keys: paths ON THE HOSTS (repeatable)."),
        click.option("--cache-dir", metavar="DIR", help="The pull's cache directory on the hosts."),
        click.option("--bundle", "bundle_file", type=click.Path(dir_okay=False, path_type=Path),
                     metavar="FILE", help="Install this bundle (default: build one now from this driftctl)."),
        click.option("--python", "python", metavar="PATH",
                     help="The hosts' python3 for the wrapper (default: the inventory's absolute "
                          "ansible_python_interpreter, else /usr/bin/python3)."),
        click.option("--plan", "plan_only", is_flag=True, help="Show what install would change; change nothing."),
    )(f)


@bundle_group.command("install")
@inventory_argument
@_schedule_options
@fleet_options
@diff_option
@verbose_option
@pass_flags
def install_cmd(inventory: Path, source: str, ref: str | None, every: str, splay: str | None, mode: str | None,
                only_if_changed: bool, cron: bool, name: str, pull_inventory: str | None, manifests: str | None,
                verify_keys: tuple[str, ...], cache_dir: str | None, bundle_file: Path | None, python: str | None,
                plan_only: bool, limit: str | None, as_json: bool, diff: bool | None, verbose: bool,
                flags: dict[str, Any]) -> int:
    """Install the bundle and its pull schedule on the hosts of INVENTORY over SSH (Chef's bootstrap).

    Each host gets /usr/local/lib/driftctl/driftctl.pyz, the /usr/local/bin/driftctl wrapper and a
    systemd timer running `driftctl pull SOURCE --host ITS_NAME` (cron where systemd does not run, or
    with --cron). An ordinary apply: a second install changes nothing; --plan shows the changes first.
    """
    from driftctl.schedule import make_pull_job
    from driftctl.schedule.pull import WRAPPER

    if python is not None and not python.startswith("/"):
        raise ConfigError(f"--python {python!r}: the absolute path of the hosts' python3", Location("--python"))
    for what, paths in (("--verify-commit", verify_keys), ("--cache-dir", (cache_dir,) if cache_dir else ())):
        for path in paths:
            if not path.startswith("/"):
                raise ConfigError(f"{what} {path!r}: a path on the hosts, so an absolute one", Location(what))
    job = make_pull_job(source, every, splay, name=name, ref=ref, inventory=pull_inventory,
                        manifests=manifests, mode=mode or "apply",
                        only_if_changed=only_if_changed, verify_keys=verify_keys, cache_dir=cache_dir,
                        executable=(WRAPPER,))
    if job.source.startswith("/") and not source.startswith("/"):
        raise ConfigError(f"--source {source!r}: a relative path means nothing on the hosts", Location("--source"),
                          "give a URL, or the repository's absolute path on the hosts")
    ctx = load_context(inventory, limit, as_json, **flags)
    bundle, min_python = _bundle_for(bundle_file, Path(ctx.settings.state_dir))

    def catalog_for(host: Any, facts: dict[str, Any]) -> Any:
        from driftctl.bundle.install import install_catalog, placement_for

        return install_catalog(host, bundle, job, placement_for(facts, host, min_python, python, cron))

    run = _converge(ctx, "plan" if plan_only else "apply", catalog_for, as_json)
    return _show(run, inventory, as_json, diff, verbose, "install")


@bundle_group.command("remove")
@inventory_argument
@click.option("--name", default="pull", show_default=True, help="The schedule's name (driftctl-NAME.timer).")
@click.option("--plan", "plan_only", is_flag=True, help="Show what remove would change; change nothing.")
@fleet_options
@verbose_option
@pass_flags
def remove_cmd(inventory: Path, name: str, plan_only: bool, limit: str | None, as_json: bool, verbose: bool,
               flags: dict[str, Any]) -> int:
    """Remove what `bundle install` put on the hosts of INVENTORY: the schedule, the wrapper and the bundle.

    The pulls' cache and records under /var/lib/driftctl and the cron log stay (the host's history).
    """
    from driftctl.schedule import validate_name

    validate_name(name)
    ctx = load_context(inventory, limit, as_json, **flags)

    def catalog_for(host: Any, facts: dict[str, Any]) -> Any:
        from driftctl.bundle.install import remove_catalog

        return remove_catalog(host, name, "systemd" if facts.get("init") == "systemd" else "cron")

    run = _converge(ctx, "plan" if plan_only else "apply", catalog_for, as_json)
    return _show(run, inventory, as_json, False, verbose, "remove")


def _bundle_for(given: Path | None, state_dir: Path) -> tuple[Any, str]:
    """The bundle to install (built into the state directory unless given) and the python3 it needs."""
    from driftctl.bundle.build import MANIFEST_NAME, build
    from driftctl.content import file_content

    path = given
    if path is not None and not path.is_file():
        raise ConfigError(f"--bundle {path}: no such file", Location("--bundle"),
                          "build one with driftctl bundle -o driftctl.pyz, or leave --bundle out")
    if path is None:
        path = build(state_dir / "bundle" / "driftctl.pyz").path
    try:
        with zipfile.ZipFile(path) as z:
            manifest = json.loads(z.read(MANIFEST_NAME))
        min_python = str(manifest["python"]).lstrip(">=")
        tuple(int(x) for x in min_python.split("."))
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, TypeError) as e:
        raise ConfigError(f"{path}: not a driftctl bundle ({e})", Location("--bundle"),
                          "build one with driftctl bundle -o driftctl.pyz") from None
    return file_content(Path(os.path.abspath(path))), min_python


def _converge(ctx: Any, command: str, catalog_for: Any, as_json: bool) -> RunResult:
    """Facts of every host (its init and python3), then each host's catalog planned or applied by the
    Engine. A host that is unreachable, or refused (python3 too old), gets no catalog; the rest go on."""
    from driftctl.engine import Engine
    from driftctl.errors import InputError
    from driftctl.facts import gather

    results: dict[str, HostResult] = {}
    catalogs = {}
    for found in gather(ctx.hosts, ctx.transport_options, ctx.parallel):
        host = next(h for h in ctx.hosts if h.name == found.host)
        if found.status != "ok":
            results[host.name] = found
            continue
        try:
            catalogs[host.name] = catalog_for(host, found.facts)
        except InputError as e:
            results[host.name] = HostResult(host.name, "failed", error=f"not installed: {e}")
    run = RunResult(command=command)
    ready = [h for h in ctx.hosts if h.name in catalogs]
    if ready:
        from driftctl.cli.render import Progress

        engine = Engine(None, ctx.inventory, ctx.settings, ctx.transport_options)
        engine.catalogs.update(catalogs)
        with Progress(ui.err, [h.name for h in ready], ui.interactive() and not as_json) as progress:
            engine.on_event = progress
            done = engine.run(command, ready)  # type: ignore[arg-type]
        run.aborted = done.aborted
        results.update({h.host: h for h in done.hosts})
    run.hosts = [results[h.name] for h in ctx.hosts]
    run.finished = done.finished if ready else time.time()
    return run


def _show(run: RunResult, inventory: Path, as_json: bool, show_diff: bool | None, verbose: bool, what: str) -> int:
    from driftctl.cli.cmd_converge import show

    show(run, inventory, as_json, show_diff, verbose)
    ok = all(h.status in ("ok", "changed") for h in run.hosts)
    if not as_json and ok and not any(r.status == "changed" for h in run.hosts for r in h.resources):
        ui.out.print(f"bundle {what}: no changes", markup=False, highlight=False)
    return run.exit_code


def register(group: click.Group) -> None:
    group.add_command(bundle_group)

