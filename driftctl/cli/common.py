"""Options every fleet command shares, and the context they load before any host is contacted."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from driftctl import config
from driftctl.cli import ui
from driftctl.cli.options import (
    accept_new_host_keys_option,
    command_timeout_option,
    connect_timeout_option,
    inventory_argument,
    inventory_input_options,
    json_option,
    known_hosts_option,
    limit_option,
    options,
    parallel_option,
    ssh_config_option,
    state_dir_option,
)
from driftctl.config import Settings
from driftctl.errors import ConfigError, InventoryError
from driftctl.model import Host
from driftctl.transport.base import TransportOptions

if TYPE_CHECKING:
    from driftctl.store import Store

__all__ = [
    "Context",
    "executor_options",
    "fleet_options",
    "inventory_argument",
    "load_context",
    "load_inventory_from_flags",
    "make_engine",
    "open_from_flags",
    "pass_flags",
    "recorded_argv",
    "settings_from",
    "transport_options",
]

F = TypeVar("F", bound=Callable[..., Any])


def fleet_options(f: F) -> F:
    """--limit, -e, the vault passwords, --parallel, --json and the connection settings."""
    return options(limit_option, inventory_input_options, parallel_option, json_option, accept_new_host_keys_option,
                   known_hosts_option, ssh_config_option, connect_timeout_option, command_timeout_option,
                   state_dir_option)(f)


@dataclass
class Context:
    settings: Settings
    inventory: Any  # driftctl.inventory.Inventory
    hosts: list[Host]
    transport_options: TransportOptions
    as_json: bool = False

    @property
    def parallel(self) -> int:
        return self.settings.parallel


def settings_from(**flags: Any) -> Settings:
    overrides = {
        "parallel": flags.get("parallel"),
        "accept_new_host_keys": flags.get("accept_new_host_keys"),
        "known_hosts": tuple(flags["known_hosts"]) if flags.get("known_hosts") else None,
        "ssh_config": flags.get("ssh_config"),
        "connect_timeout": flags.get("connect_timeout"),
        "command_timeout": flags.get("command_timeout"),
        "state_dir": flags.get("state_dir"),
        "state": flags.get("state"),
        "manifests": flags.get("manifests"),
        "vault_password_file": tuple(flags["vault_password_file"]) if flags.get("vault_password_file") else None,
        "vault_ids": _vault_ids(flags),
        "executor": flags.get("executor"),
        "broker": flags.get("broker"),
        "worker_key": flags.get("worker_key"),
    }
    return config.load(overrides, warn=ui.warn)


def _vault_ids(flags: dict[str, Any]) -> tuple[str, ...] | None:
    """--vault-id LABEL@SOURCE, in order, and --ask-vault-pass as ``default@prompt`` (as Ansible reads it)."""
    ids = list(flags.get("vault_id") or ())
    if flags.get("ask_vault_pass"):
        if flags.get("vault_password_file"):
            raise ConfigError("--ask-vault-pass and --vault-password-file exclude each other (as in ansible-playbook)",
                              hint="give either, or --vault-id LABEL@prompt beside the password file")
        ids.append("default@prompt")
    return tuple(ids) if ids else None


def load_inventory_from_flags(inventory: Path, settings: Settings, flags: dict[str, Any], *, lazy: bool) -> Any:
    """The inventory with the command line's extra variables, its vault passwords installed first (the
    inventory's and the extra variables files' ``!vault`` values need them). Raises input errors."""
    from driftctl import vault
    from driftctl.inventory import extravars, load_inventory

    vault.install_from(settings)
    extra = extravars.read(flags.get("extra_vars") or ())
    return load_inventory(inventory, lazy=lazy, extra_vars=extra)


def open_from_flags(state_dir: str | None, state: str | None) -> Store:
    """The store named by --state-dir/--state (and the settings), for commands that contact no host."""
    from driftctl.store import open_store

    return open_store(settings_from(state_dir=state_dir, state=state).store_url)


def transport_options(settings: Settings) -> TransportOptions:
    """Every transport's settings from driftctl's (only SSH has any)."""
    from driftctl.transport import sshpolicy
    from driftctl.transport.options import SSHOptions

    sshpolicy.parse(settings.ssh_algorithms)  # a bad value is an input error before any host is contacted
    return TransportOptions(ssh=SSHOptions(
        known_hosts=list(settings.known_hosts),
        own_known_hosts=settings.own_known_hosts,
        accept_new_host_keys=settings.accept_new_host_keys,
        ssh_config=settings.ssh_config,
        ssh_algorithms=settings.ssh_algorithms,
    ))


def apply_timeouts(hosts: list[Host], settings: Settings, flags: dict[str, Any]) -> list[Host]:
    """Timeouts: a command-line flag wins, then the inventory's own value, then settings, then defaults.

    A host whose inventory left a timeout at the built-in default takes the configured one
    (driftctl.yaml, DRIFTCTL_CONNECT_TIMEOUT, ...).
    """
    import dataclasses

    from driftctl.model import ConnectionSpec

    defaults = ConnectionSpec(address="")
    out = []
    for h in hosts:
        conn = h.connection
        for name in ("connect_timeout", "command_timeout", "link_timeout"):
            configured = getattr(settings, name)
            if flags.get(name) is not None or getattr(conn, name) == getattr(defaults, name):
                conn = dataclasses.replace(conn, **{name: configured})
        out.append(dataclasses.replace(h, connection=conn) if conn is not h.connection else h)
    return out


def load_context(inventory: Path, limit: str | None = None, as_json: bool = False, **flags: Any) -> Context:
    """Settings, the inventory and the selected hosts. Raises input errors; contacts no host."""
    from driftctl.inventory import limit as limits

    settings = settings_from(**flags)
    if "manifests" in flags:  # a command that reads the manifest tree (plan, apply, drift, bake)
        from driftctl.fsperms import tree_warning

        warning = tree_warning(Path(settings.manifests), "manifest tree")
        if warning:
            ui.warn(warning)
    from driftctl.inventory.loader import warnings_for

    inv = load_inventory_from_flags(inventory, settings, flags, lazy=True)  # --limit selects before any host is built
    try:
        names = limits.select_names(inv, limit)
    except limits.LimitFileError:
        raise
    except InventoryError as e:
        for warning in inv.warnings:
            ui.warn(warning)
        raise InventoryError(f"{inventory}: {e.message}", e.location, e.hint) from None
    selected = [inv.hosts[n] for n in names]  # built here: a mistake in their variables is an error here
    for warning in warnings_for(inv, selected):  # as `driftctl inventory` shows them (two names for one host, ...)
        ui.warn(warning)
    if not selected:
        # a scheduled drift run on an empty inventory would say "no drift" forever: nothing is never success
        raise InventoryError(f"{inventory} selects no hosts: it has none",
                             hint="an empty run would report no drift forever; add hosts or fix the path")
    hosts = apply_timeouts(selected, settings, flags)
    return Context(settings, inv, hosts, transport_options(settings), as_json)


def executor_options(f: F) -> F:
    """--executor, --broker, --worker-key: where the hosts of a plan, check, apply or drift run."""
    import click

    f = click.option("--worker-key", "worker_key", metavar="FILE",
                     help="With --executor celery: the key tasks and results are sealed with "
                          "(`driftctl worker --new-key FILE`).")(f)
    f = click.option("--broker", metavar="URL",
                     help="With --executor celery: the broker, redis://HOST:PORT/DB (also the result backend).")(f)
    return click.option("--executor", type=click.Choice(config.EXECUTORS),
                        help="threads: hosts run on this machine (default); celery: on `driftctl worker`s, "
                             "routed by the host variable driftctl_zone (docs/scale.md).")(f)


def make_engine(ctx: Context, site: Any, on_event: Any = None) -> Any:
    """The run's engine: in-process, or with ``executor: celery`` a RemoteEngine whose hosts run on
    workers. The broker is checked here: unreachable, the run ends (exit 1) before any host is touched."""
    from driftctl.engine import Engine

    s = ctx.settings
    if s.executor != "celery":
        return Engine(site, ctx.inventory, s, ctx.transport_options, on_event=on_event)
    if not s.broker:
        raise ConfigError("the celery executor needs a broker",
                          hint="--broker redis://HOST:PORT/0 or the broker: setting")
    if not s.worker_key:
        raise ConfigError("the celery executor needs the workers' key",
                          hint="--worker-key FILE or the worker_key: setting; "
                               "`driftctl worker --new-key FILE` makes one")
    from driftctl.distributed.app import check_broker, make_app
    from driftctl.distributed.envelope import load_key
    from driftctl.distributed.remote import RemoteEngine

    key = load_key(s.worker_key)
    app = make_app(s.broker, s.visibility_timeout)
    check_broker(app, timeout=min(s.connect_timeout, 10.0))
    engine = RemoteEngine(site, ctx.inventory, s, ctx.transport_options, on_event=on_event, app=app, key=key)
    engine.task_timeout = s.task_timeout or None
    engine.queue_timeout = s.queue_timeout
    engine.visibility_timeout = s.visibility_timeout
    return engine


def pass_flags(f: F) -> F:
    """Collect the fleet options into one ``flags`` dict argument (keeps command signatures short)."""
    names = ("accept_new_host_keys", "known_hosts", "ssh_config", "connect_timeout", "command_timeout",
             "state_dir", "parallel", "extra_vars", "vault_password_file", "vault_id", "ask_vault_pass",
             "executor", "broker", "worker_key")

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        flags = {n: kwargs.pop(n, None) for n in names}
        return f(*args, flags=flags, **kwargs)

    return wrapper  # type: ignore[return-value]


def recorded_argv(argv: list[str]) -> list[str]:
    """``argv`` for the run document and the store, with every ``-e`` value's values hidden: an extra
    variable may be a password (``-e ansible_become_password=...``), and a record is not the place for it.
    ``-e @FILE`` keeps the file's name; ``-e a=1 b=2`` keeps the names (``a=******** b=********``); one rule
    with ``inventory --host`` (driftctl.inventory.extravars.hidden)."""
    from driftctl.inventory.extravars import hidden

    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(hidden(arg))
            hide_next = False
        elif arg in ("-e", "--extra-vars"):
            out.append(arg)
            hide_next = True
        elif arg.startswith("--extra-vars="):
            out.append("--extra-vars=" + hidden(arg[len("--extra-vars="):]))
        elif arg.startswith("-") and not arg.startswith("--") and arg.lstrip("-").lstrip(_SHORT_FLAGS)[:1] == "e":
            cluster = len(arg) - len(arg[1:].lstrip(_SHORT_FLAGS))  # -ve VALUE, -Je@f.yaml: flags, then -e
            value = arg[cluster + 1 :]
            out.append(arg[: cluster + 1] + (hidden(value) if value else ""))
            hide_next = not value
        else:
            out.append(arg)
    return out


_SHORT_FLAGS = "vJh"  # the one-letter options without a value, which may come before -e in one word
