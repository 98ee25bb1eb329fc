"""``driftctl worker``: run host tasks from the task queue (docs/scale.md); ``--new-key`` makes the key
tasks and results are sealed with; ``--beat --schedule FILE`` also runs scheduled drift runs."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from driftctl.cli import ui
from driftctl.cli.common import settings_from, transport_options
from driftctl.cli.options import (
    accept_new_host_keys_option,
    known_hosts_option,
    options,
    ssh_config_option,
    state_dir_option,
    state_option,
)
from driftctl.errors import ConfigError

SCHEDULED_QUEUE = "driftctl-scheduled"


@click.command("worker")
@click.option("--broker", metavar="URL", help="The broker (and result backend): redis://HOST:PORT/DB.")
@state_option
@click.option("--queue", "queues", multiple=True, metavar="ZONE",
              help="Take the tasks of this zone's queue (repeatable; default: driftctl). Hosts choose theirs "
                   "with the variable driftctl_zone.")
@click.option("--concurrency", type=click.IntRange(min=1), metavar="N",
              help="Hosts this worker runs at once (default: the parallel setting).")
@click.option("--worker-key", "worker_key", metavar="FILE", help="The key tasks and results are sealed with.")
@click.option("--new-key", "new_key", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Make a new key in FILE (mode 0600) for the controller and its workers, and exit.")
@click.option("--name", metavar="NAME", help="This worker's name in logs and results (default driftctl@HOST:PID).")
@click.option("--beat", is_flag=True, help="Also run the scheduled drift runs of --schedule (Celery beat); "
                                           "run exactly one such worker.")
@click.option("--schedule", "schedule_file", type=click.Path(dir_okay=False, path_type=Path),
              metavar="FILE", help="With --beat: the drift runs to schedule (docs/scale.md).")
@options(known_hosts_option, accept_new_host_keys_option, ssh_config_option, state_dir_option)
def worker_cmd(broker: str | None, state: str | None, queues: tuple[str, ...], concurrency: int | None,
               worker_key: str | None, new_key: Path | None, name: str | None, beat: bool,
               schedule_file: Path | None, known_hosts: tuple[str, ...], accept_new_host_keys: bool | None,
               ssh_config: str | None, state_dir: str | None) -> int:
    """Run the hosts of plan, check, apply and drift runs sent with --executor celery.

    The worker connects to hosts with its own settings: it verifies host keys against its known_hosts
    (give it the fleet's), and reads drift's converged state from --state (the controller's store).
    Every task is verified with the shared key before anything in it is used; one that does not verify
    is refused and logged, never run.
    """
    from driftctl.distributed.envelope import load_key
    from driftctl.distributed.envelope import new_key as make_key

    if new_key is not None:
        make_key(new_key)
        ui.out.print(f"wrote {new_key} (mode 0600): give it to the controller and every worker", markup=False)
        return 0
    settings = settings_from(state=state, known_hosts=known_hosts, accept_new_host_keys=accept_new_host_keys,
                             ssh_config=ssh_config, state_dir=state_dir, broker=broker, worker_key=worker_key)
    if not settings.broker:
        raise ConfigError("a worker needs --broker (or the broker: setting)")
    if not settings.worker_key:
        raise ConfigError("a worker needs --worker-key (or the worker_key: setting)",
                          hint="`driftctl worker --new-key FILE` makes one; the controller uses the same file")
    if not settings.state:
        raise ConfigError("a worker needs --state: the controller's store (postgresql://...), which drift reads")
    if schedule_file is not None and not beat:
        raise ConfigError("--schedule needs --beat")
    if beat and schedule_file is None:
        raise ConfigError("--beat needs --schedule FILE")
    key = load_key(settings.worker_key)
    entries = read_schedule(schedule_file) if schedule_file is not None else []
    from driftctl.distributed.app import DEFAULT_QUEUE, check_broker, make_app
    from driftctl.distributed.task import WorkerConfig, register
    from driftctl.store import open_store

    app = make_app(settings.broker, settings.visibility_timeout)
    check_broker(app)
    open_store(settings.store_url).close()  # unreachable: StoreUnavailable now, not on the first task
    config = WorkerConfig(settings, transport_options(settings), key)
    if name:
        config.name = name
    register(app, config)
    queue_names = list(queues) or [DEFAULT_QUEUE]
    argv = ["worker", "--pool", "threads", "--concurrency", str(concurrency or settings.parallel),
            "--queues", ",".join(queue_names), "--hostname", config.name, "--loglevel", "INFO",
            "--without-gossip", "--without-mingle"]
    if beat:
        from driftctl.distributed.beat import schedule_on

        schedule_on(app, config, entries, settings)
        argv += ["--beat", "--schedule", str(Path(settings.state_dir) / "celerybeat-schedule")]
        argv[argv.index("--queues") + 1] += f",{SCHEDULED_QUEUE}"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for logger_name in ("driftctl.worker", "driftctl.beat"):  # each line once, with its level
        logger = logging.getLogger(logger_name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    Path(settings.state_dir).mkdir(parents=True, exist_ok=True)
    app.worker_main(argv=argv)
    return 0


def read_schedule(path: Path) -> list[dict[str, Any]]:
    from driftctl.distributed.beat import load_schedule

    return load_schedule(path)


def register(group: click.Group) -> None:
    group.add_command(worker_cmd)
