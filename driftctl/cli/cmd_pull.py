"""``driftctl pull``: run on a host, converge it from a git repository (pull mode, docs/pull.md).

Imports nothing that needs an SSH library: a host runs it with its own python3 (the work is done by
driftctl/pull/, applied with the local transport).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from driftctl.cli.opt_run import skip_tags_option, tags_option
from driftctl.cli.options import diff_option, inventory_input_options, json_option, options, verbose_option

DEFAULT_CACHE = "/var/lib/driftctl/pull"


def pull_options(f: Any) -> Any:
    return options(
        click.option("--ref", metavar="REF",
                     help="Branch, tag or commit to converge to (default: the repository's default branch)."),
        click.option("--host", "host_name", metavar="NAME",
                     help="This machine's name in the inventory (default: the one inventory host whose name or "
                          "ansible_host is this machine's hostname, FQDN or one of its addresses)."),
        click.option("-i", "--inventory", "inventory_path", default="inventory", show_default=True, metavar="PATH",
                     help="The inventory, as a path inside the repository."),
        click.option("-m", "--manifests", "manifests_path", default="manifests", show_default=True, metavar="PATH",
                     help="The manifest tree, as a path inside the repository."),
        click.option("--check", "mode", flag_value="check",
                     help="Read-only: what an apply would change (exit 2 when changes are pending)."),
        click.option("--drift", "mode", flag_value="drift",
                     help="Read-only: classify drift against the last apply on this host, and record it."),
        click.option("--only-if-changed", is_flag=True,
                     help="Skip the apply when neither the commit nor the facts changed since the last successful "
                          "apply (a read-only drift run is done and recorded instead)."),
        click.option("--verify-commit", "verify_keys", multiple=True, metavar="KEYFILE",
                     type=click.Path(dir_okay=False, path_type=Path),
                     help="Refuse a commit whose signature git does not verify against the public keys in KEYFILE "
                          "(an armored export or a keyring; repeatable)."),
        click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_CACHE,
                     show_default=True,
                     help="The private cache: the repository, checkouts, this host's state and report outbox "
                          "(owned by you or root, closed to others)."),
        json_option,
        inventory_input_options,
        tags_option,
        skip_tags_option,
        diff_option,
        verbose_option,
    )(f)


@click.command("pull")
@click.argument("source")
@pull_options
def pull_cmd(source: str, ref: str | None, host_name: str | None, inventory_path: str, manifests_path: str,
             mode: str | None, only_if_changed: bool, verify_keys: tuple[Path, ...], cache_dir: Path,
             as_json: bool, extra_vars: tuple[str, ...], vault_password_file: tuple[str, ...],
             vault_id: tuple[str, ...], ask_vault_pass: bool | None, tags: tuple[str, ...],
             skip_tags: tuple[str, ...], diff: bool | None, verbose: bool) -> int:
    """Converge THIS host from a git repository of manifests and inventory (pull mode).

    SOURCE (a git URL or path) is fetched into a private cache and checked out at --ref; the host finds
    itself in the inventory, renders its own catalog and applies it locally, under the same per-host
    lock as a push apply. When SOURCE cannot be reached the last good checkout is used; a commit that
    does not validate is never applied. Every apply and drift run is recorded on the host and collected
    by the controller's next probe (docs/pull.md). Exit codes as apply/check/drift; 75 locked.
    """
    from driftctl.pull.run import PullRequest, pull

    request = PullRequest(
        source=source, ref=ref, host=host_name, inventory=inventory_path, manifests=manifests_path,
        mode=mode or "apply", only_if_changed=only_if_changed, verify_keys=tuple(verify_keys),
        cache_dir=cache_dir, extra_vars=tuple(extra_vars), vault_password_file=tuple(vault_password_file),
        vault_id=tuple(vault_id), ask_vault_pass=bool(ask_vault_pass), tags=tuple(tags), skip_tags=tuple(skip_tags),
        argv=list(sys.argv[1:]),
    )
    outcome = pull(request)
    _show(outcome, as_json, diff, verbose)
    return outcome.exit_code


def _show(outcome: Any, as_json: bool, show_diff: bool | None, verbose: bool) -> None:
    from driftctl.cli import ui
    from driftctl.cli.render import final_line, host_section

    for note in outcome.notes:
        ui.warn(note)
    if as_json:
        ui.print_json(outcome.doc)
        return
    what = {"apply": "apply", "check": "check (read-only)", "drift": "drift (read-only)"}[outcome.mode]
    ui.err.print(f"pull {outcome.source} at {outcome.commit[:12]}: {what} of {outcome.host}",
                 markup=False, highlight=False)
    for h in outcome.run.hosts:
        host_section(ui.out, h, outcome.run.command, show_diff, verbose)
    ui.out.print(final_line(outcome.run), markup=False)


def register(group: click.Group) -> None:
    group.add_command(pull_cmd)
