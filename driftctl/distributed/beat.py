"""Scheduled drift runs by Celery beat: ``driftctl worker --beat --schedule FILE``.

The schedule file is a YAML list of runs::

    - name: web                    # unique
      inventory: /srv/infra/web.yaml
      every: 1800                  # seconds
      args: [--manifests, /srv/infra/manifests, --report-dir, /var/lib/driftctl/reports/web]

Beat sends one sealed task per run and period to the ``driftctl-scheduled`` queue, which the beat
worker serves itself; the task runs ``driftctl drift INVENTORY --executor celery`` with the worker's
broker, key and store and the entry's args: a controller on that machine, whose hosts go to the zone
queues like any run, with the same reports and the same one store record as a drift run from cron.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

from driftctl.distributed import EnvelopeError
from driftctl.distributed.envelope import open_sealed, seal
from driftctl.errors import ConfigError, Location

log = logging.getLogger("driftctl.beat")
TASK = "driftctl.scheduled"
QUEUE = "driftctl-scheduled"
KEYS = {"name", "inventory", "every", "args"}


def load_schedule(path: Path) -> list[dict[str, Any]]:
    """The entries of a schedule file; ConfigError at the entry's file:line for a mistake."""
    from driftctl.yamlsrc import load_file, location_of

    data = load_file(path, ConfigError)
    top = Location(str(path), 1)
    if not isinstance(data, list) or not data:
        raise ConfigError("a schedule is a list of runs (name, inventory, every, args)", location_of(data, top))
    out: list[dict[str, Any]] = []
    names: set[str] = set()
    for item in data:
        where = location_of(item, top)
        if not isinstance(item, dict):
            raise ConfigError("a scheduled run is a mapping (name, inventory, every, args)", where)
        unknown = sorted(set(map(str, item)) - KEYS)
        if unknown:
            raise ConfigError(f"unknown key {unknown[0]!r} in a scheduled run", where,
                              hint="keys: " + ", ".join(sorted(KEYS)))
        name, inventory, every, args = item.get("name"), item.get("inventory"), item.get("every"), item.get("args", [])
        if not isinstance(name, str) or not name or name in names:
            raise ConfigError(f"each scheduled run needs a unique name, not {name!r}", where)
        if not isinstance(inventory, str) or not inventory:
            raise ConfigError(f"run {name}: inventory must be a path", where)
        if isinstance(every, bool) or not isinstance(every, (int, float)) or every <= 0:
            raise ConfigError(f"run {name}: every must be a number of seconds > 0, not {every!r}", where)
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise ConfigError(f"run {name}: args must be a list of strings", where)
        names.add(name)
        out.append({"name": name, "inventory": inventory, "every": float(every), "args": [str(a) for a in args]})
    return out


def schedule_on(app: Any, config: Any, entries: list[dict[str, Any]], settings: Any) -> None:
    """Register the scheduled-run task on ``app`` and put ``entries`` in its beat schedule."""

    @app.task(name=TASK)
    def scheduled(token: str) -> dict[str, Any]:
        try:
            entry = open_sealed(config.key, "scheduled", token)
        except EnvelopeError as e:
            log.error("REFUSED scheduled run: %s; not run", e)
            return {"refused": str(e)}
        argv = [sys.executable, "-m", "driftctl", "drift", entry["inventory"], "--executor", "celery",
                "--broker", settings.broker, "--worker-key", str(settings.worker_key), "--state",
                str(settings.state), *entry["args"]]
        log.info("scheduled run %s: %s", entry["name"], " ".join(argv[3:5]))
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, check=False)
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        log.info("scheduled run %s: exit %d %s", entry["name"], proc.returncode, tail[0])
        return {"name": entry["name"], "exit": proc.returncode}

    app.conf.beat_schedule = {
        e["name"]: {"task": TASK, "schedule": e["every"], "args": [seal(config.key, "scheduled", e)],
                    "options": {"queue": QUEUE}}
        for e in entries
    }
