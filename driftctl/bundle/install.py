"""The catalog that puts the bundle and its pull schedule on a host (``driftctl bundle install``), and
the same catalog with every resource absent (``driftctl bundle remove``).

It is an ordinary catalog of ``directory``, ``file`` and ``unit`` resources applied by the Engine over
SSH, as Chef's bootstrap installs chef-client and its schedule: plan, diffs, the per-host lock, exit
codes and idempotency (a second install changes nothing) come from the resources themselves.

On each host::

    /usr/local/lib/driftctl/               directory, 0755
    /usr/local/lib/driftctl/driftctl.pyz   the bundle, 0644 (streamed; not backed up when replaced)
    /usr/local/bin/driftctl                #!/bin/sh wrapper: exec PYTHON -I the bundle "$@", 0755
    driftctl-NAME.service + .timer         systemd hosts (the timer enabled and started), or
    /etc/cron.d/driftctl-NAME              hosts without systemd, or with --cron; log /var/log/driftctl/

The unit files and the cron file are the text ``driftctl schedule install --pull`` writes on a host
(driftctl/schedule/pull.py), with ``--host`` set to the host's inventory name, so ``schedule list`` and
``schedule remove`` on the host know them. Which of the two is decided per host from its facts
(``init``); a host whose python3 is older than the bundle needs is refused before anything is written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from driftctl.content import FileContent
from driftctl.errors import ConfigError, Location
from driftctl.graph import order
from driftctl.manifest.canonical import digest
from driftctl.model import Catalog, Host, Resource
from driftctl.resources.base import get_type
from driftctl.schedule.pull import WRAPPER, PullJob, pull_cron_file, pull_unit_files

INSTALL_DIR = "/usr/local/lib/driftctl"
BUNDLE_PATH = f"{INSTALL_DIR}/driftctl.pyz"
CRON_DIR = "/etc/cron.d"
LOCATION = Location("driftctl bundle")  # where these resources were "written": shown in reports


@dataclass(frozen=True)
class Placement:
    """How one host gets the bundle: its scheduler and the python3 the wrapper runs."""

    scheduler: str  # "systemd" or "cron"
    python: str
    systemd: bool = True  # systemd runs the host (a --cron install there removes the timer of an earlier one)


def wrapper_text(python: str) -> str:
    """``/usr/local/bin/driftctl``: the bundle run by ``python`` in isolated mode (no PYTHONPATH, no user
    site-packages: a root command does not pick up modules from the caller's environment)."""
    return (
        "#!/bin/sh\n"
        "# driftctl from its bundle: installed by `driftctl bundle install`, removed by `driftctl bundle remove`\n"
        f'exec {python} -I {BUNDLE_PATH} "$@"\n'
    )


def _resource(type_name: str, raw: Mapping[str, Any], require: Sequence[str] = (),
              content: bytes | FileContent | None = None) -> Resource:
    """A resource validated by its type, as the manifest compiler would produce it (``content`` given
    after validation: a streamed file is neither text nor bytes)."""
    rtype = get_type(type_name)
    assert rtype is not None, type_name
    params = rtype.validate(dict(raw), LOCATION)
    if content is not None:
        params["content"] = content
    return Resource(type_name, rtype.title(params), params, LOCATION, require=list(require))


def _catalog(host: str, resources: list[Resource]) -> Catalog:
    catalog = Catalog(host=host, resources=order(resources))
    catalog.digest = digest(catalog)
    return catalog


def host_job(job: PullJob, host: Host) -> PullJob:
    """The host's own pull: ``--host`` its inventory name, unless the command line gave one."""
    return job if job.host else dataclasses.replace(job, host=host.name)


def install_catalog(host: Host, bundle: bytes | FileContent, job: PullJob, placement: Placement) -> Catalog:
    """Everything ``bundle install`` puts on ``host``. The other scheduler's files are absent, so
    switching between systemd and cron leaves one schedule."""
    job = host_job(job, host)
    root = {"owner": "root", "group": "root"}
    bundle_file = f"file:{BUNDLE_PATH}"
    resources = [
        _resource("directory", {"path": INSTALL_DIR, "mode": "0755", **root}),
        _resource("file", {"path": BUNDLE_PATH, "mode": "0644", "backup": False, **root},
                  require=[f"directory:{INSTALL_DIR}"], content=bundle),
        _resource("file", {"path": WRAPPER, "mode": "0755", "content": wrapper_text(placement.python), **root},
                  require=[bundle_file]),
    ]
    installed = [bundle_file, f"file:{WRAPPER}"]
    cron_path = f"{CRON_DIR}/{job.cron_file}"
    if placement.scheduler == "systemd":
        units = pull_unit_files(job)
        service, timer = f"driftctl-{job.name}.service", f"driftctl-{job.name}.timer"
        resources += [
            _resource("unit", {"name": service, "content": units[service]}, require=installed),
            _resource("unit", {"name": timer, "content": units[timer], "enabled": True, "state": "started"},
                      require=[f"unit:{service}"]),
            _resource("file", {"path": cron_path, "ensure": "absent"}),
        ]
    else:
        log_dir = str(job.log_dir)
        if placement.systemd:
            previous: list[str] = []
            for unit in (f"driftctl-{job.name}.timer", f"driftctl-{job.name}.service"):
                resources.append(_resource("unit", {"name": unit, "ensure": "absent"}, require=previous))
                previous = [f"unit:{unit}"]
        resources += [
            _resource("directory", {"path": log_dir, "mode": "0750", **root}),
            _resource("file", {"path": cron_path, "mode": "0644", "content": pull_cron_file(job, job.host or host.name),
                               **root}, require=[*installed, f"directory:{log_dir}"]),
        ]
    return _catalog(host.name, resources)


def remove_catalog(host: Host, name: str, scheduler: str) -> Catalog:
    """What ``bundle remove`` takes away: the schedule first, then the wrapper, the bundle and its
    directory. The pull's cache and records (/var/lib/driftctl) and the cron log stay: they are the host's
    history, not part of the installation. The units are only touched on a systemd host."""
    job_units = (f"driftctl-{name}.timer", f"driftctl-{name}.service")
    resources = []
    previous: list[str] = []
    if scheduler == "systemd":
        for unit in job_units:
            resources.append(_resource("unit", {"name": unit, "ensure": "absent"}, require=previous))
            previous = [f"unit:{unit}"]
    cron = _resource("file", {"path": f"{CRON_DIR}/driftctl-{name}", "ensure": "absent", "backup": False})
    resources.append(cron)
    schedule_gone = [*previous, cron.id]
    resources += [
        _resource("file", {"path": WRAPPER, "ensure": "absent", "backup": False}, require=schedule_gone),
        _resource("file", {"path": BUNDLE_PATH, "ensure": "absent", "backup": False}, require=schedule_gone),
        _resource("directory", {"path": INSTALL_DIR, "ensure": "absent"},
                  require=[f"file:{WRAPPER}", f"file:{BUNDLE_PATH}"]),
    ]
    return _catalog(host.name, resources)


def placement_for(facts: Mapping[str, Any], host: Host, min_python: str, python: str | None,
                  cron: bool) -> Placement:
    """The host's scheduler (cron when asked or when systemd does not run it) and the wrapper's python3;
    ConfigError when the host's python3 is older than the bundle needs."""
    have = str(facts.get("python") or "")
    want = tuple(int(x) for x in min_python.split("."))
    try:
        version = tuple(int(x) for x in have.split(".")[:2])
    except ValueError:
        version = ()
    if version and version < want:
        raise ConfigError(f"{host.name}: python3 is {have}; the bundle needs {min_python} or newer", None,
                          "install a newer python3 there (and give its path with --python), or leave the host out "
                          "with -l")
    if python is None:
        configured = host.connection.python
        python = configured if configured.startswith("/") else "/usr/bin/python3"
    systemd = facts.get("init") == "systemd"
    return Placement("cron" if cron or not systemd else "systemd", python, systemd)
