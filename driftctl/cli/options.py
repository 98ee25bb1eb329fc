"""Every option more than one command takes, declared once: the same flag means the same thing, with the
same help, wherever a user meets it.

Each is a decorator (``@json_option``); ``options(a, b, ...)`` stacks several in the order given, as
``--help`` lists them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def options(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """Several options as one decorator, listed by ``--help`` in the order given."""

    def apply(f: F) -> F:
        for decorator in reversed(decorators):
            f = decorator(f)
        return f

    return apply


def inventory_argument(f: F) -> F:
    return click.argument("inventory", type=click.Path(path_type=Path))(f)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")(f)


def limit_option(f: F) -> F:
    return click.option("-l", "--limit", metavar="PATTERN",
                        help="Hosts to act on: names, groups, globs, ~regex, !exclude, &and; @FILE reads "
                             "one pattern per line (an Ansible retry file).")(f)


# -- what the inventory means: extra variables and vault passwords -------------------------------------


def extra_vars_option(f: F) -> F:
    return click.option("-e", "--extra-vars", "extra_vars", multiple=True, metavar="VARS",
                        help="Variables above all others: key=value pairs, @FILE.yaml or a JSON/YAML mapping "
                             "(repeatable; a later one wins).")(f)


def vault_options(f: F) -> F:
    """--vault-password-file, --vault-id and --ask-vault-pass, as ansible-playbook takes them."""
    return options(
        click.option("--vault-password-file", "--vault-pass-file", "vault_password_file", multiple=True,
                     metavar="FILE", help="Ansible Vault password file, or an executable printing it (repeatable)."),
        click.option("--vault-id", "vault_id", multiple=True, metavar="LABEL@SOURCE",
                     help="A vault id and its password source: a file, an executable or 'prompt' (repeatable)."),
        click.option("-J", "--ask-vault-pass", "--ask-vault-password", "ask_vault_pass", is_flag=True, default=None,
                     help="Ask for the vault password (as --vault-id default@prompt)."),
    )(f)


def inventory_input_options(f: F) -> F:
    """-e and the vault options: every command that loads an inventory takes them."""
    return options(extra_vars_option, vault_options)(f)


def state_option(f: F) -> F:
    return click.option("--state", metavar="URL",
                        help="State store: a SQLite path or postgresql://... (default <state-dir>/driftctl.sqlite).")(f)


def state_dir_option(f: F) -> F:
    return click.option("--state-dir", type=click.Path(file_okay=False),
                        help="Where driftctl keeps its state (store, locks, logs).")(f)


def store_options(f: F) -> F:
    """--state-dir and --state: which store to use (settings and DRIFTCTL_* apply as usual)."""
    return options(state_dir_option, state_option)(f)


def manifests_option(f: F) -> F:
    return click.option("-m", "--manifests", type=click.Path(file_okay=False, path_type=Path),
                        help="The manifest tree (default: manifests/, or the 'manifests' setting).")(f)


def diff_option(f: F) -> F:
    return click.option(
        "--diff/--no-diff", default=None,
        help="Unified diffs of file contents. By default of files that exist (a new file is one line: "
             "its size); --diff also shows new files in full; --no-diff shows none.",
    )(f)


def verbose_option(f: F) -> F:
    return click.option("-v", "--verbose", is_flag=True, help="List resources in sync too.")(f)


def wait_lock_option(f: F) -> F:
    return click.option("--wait-lock", type=float, default=None, metavar="SECONDS",
                        help="Wait this long for another run's lock (default: exit 75 at once).")(f)


def remediate_option(f: F) -> F:
    return click.option("--remediate", is_flag=True, help="Re-apply corrective drift (changes made by hand).")(f)


def report_dir_option(f: F) -> F:
    return click.option("--report-dir", type=click.Path(file_okay=False, path_type=Path),
                        help="Also write the report as json, junit, markdown, html and prometheus files here "
                             "(atomically).")(f)


def unit_dir_option(f: F) -> F:
    return click.option("--unit-dir", type=click.Path(file_okay=False, path_type=Path),
                        help="The systemd units' directory instead of systemd's own "
                             "(install then does not enable them).")(f)


def crontab_user_option(f: F) -> F:
    return click.option("--user", metavar="USER", help="(root) The crontab of USER instead of your own.")(f)


def bake_host_option(f: F) -> F:
    return click.option("--host", "host_name", required=True, metavar="NAME", help="The inventory host.")(f)


# -- connecting to hosts ------------------------------------------------------------------------------


def accept_new_host_keys_option(f: F) -> F:
    return click.option("--accept-new-host-keys", is_flag=True, default=None,
                        help="Trust unknown host keys on first use (recorded); changed keys are still refused.")(f)


def known_hosts_option(f: F) -> F:
    return click.option("--known-hosts", multiple=True, type=click.Path(dir_okay=False),
                        help="Extra known_hosts file (repeatable).")(f)


def connect_timeout_option(f: F) -> F:
    return click.option("--connect-timeout", type=float, help="Seconds to connect and authenticate (default 10).")(f)


def ssh_config_option(f: F) -> F:
    return click.option("--ssh-config", type=click.Path(dir_okay=False),
                        help="ssh config file (default ~/.ssh/config).")(f)


def command_timeout_option(f: F) -> F:
    return click.option("--timeout", "command_timeout", type=float,
                        help="Seconds per remote command (default 300).")(f)


def parallel_option(f: F) -> F:
    return click.option("-p", "--parallel", type=click.IntRange(1, 512), help="Hosts at once (default 10).")(f)


def connect_options(f: F) -> F:
    """How to reach and trust hosts: host keys and the connect timeout."""
    return options(accept_new_host_keys_option, known_hosts_option, connect_timeout_option)(f)
