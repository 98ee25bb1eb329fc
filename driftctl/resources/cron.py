"""The ``cron`` resource type (controller side). Rendering and editing are in driftctl.agent.cron."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from driftctl.agent import cron as agent_cron
from driftctl.errors import Location, ManifestError
from driftctl.model import Change
from driftctl.resources.base import Param, ResourceType, register
from driftctl.resources.file import check_one_line, check_owner, require_given

SPECIALS = ("@reboot", "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
TIME_FIELDS = ("minute", "hour", "day", "month", "weekday")
_FIELD_RE = re.compile(r"^[0-9A-Za-z*/,\-]+$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# run-parts rules: cron ignores /etc/cron.d files whose names hold dots or other characters
_CRON_D_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def check_time_field(value: Any) -> str:
    """A crontab time field: ``*``, ``5``, ``*/15``, ``1-5``, ``mon,wed``; YAML ints are accepted."""
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"must not be negative, not {value}")
        return str(value)
    if not _FIELD_RE.match(value):
        raise ValueError(f"must be one crontab field (digits, names, * / , -), not {value!r}")
    return str(value)


def check_environment(value: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, val in value.items():
        if not isinstance(key, str) or not _ENV_NAME_RE.match(key):
            raise ValueError(f"names must be shell variable names, not {key!r}")
        if isinstance(val, bool) or not isinstance(val, (str, int)):
            raise ValueError(f"{key} must be a string, not {type(val).__name__}")
        if "\n" in str(val) or "\r" in str(val):
            raise ValueError(f"{key} must be one line")
        out[key] = str(val)
    return out


def check_cron_file(value: Any) -> str:
    path = value if value.startswith("/") else f"/etc/cron.d/{value}"
    base = path.rsplit("/", 1)[-1]
    if not _CRON_D_NAME_RE.match(base) or "/../" in path + "/":
        raise ValueError(
            f"must be a name of letters, digits, - and _ (cron ignores /etc/cron.d files with dots), not {value!r}"
        )
    return path


@register
class Cron(ResourceType):
    """A cron job, in a user's crontab or in an /etc/cron.d file.

    The title is a free name. In a crontab the job is identified by a ``# driftctl: <name>`` comment
    line above it, so hand-written jobs around it are kept; ``environment`` lines go between that
    comment and the job (cron applies them to every job below them in the same crontab). User
    crontabs are changed through ``crontab -u USER`` on stdin. With ``file`` the job goes to an
    /etc/cron.d file (created root-owned 0644, removed when its last job is), and its line carries
    the user column. Time fields default to ``*``; ``special`` (@daily, @reboot, ...) replaces them.
    The command is written as it is: cron runs it with /bin/sh and turns an unescaped ``%`` into a
    newline.

    Example::

        - cron: logrotate-app
          user: app
          minute: 15
          hour: 3
          command: /usr/local/bin/rotate-app-logs
          environment:
            MAILTO: ops@example.com
        - cron: backup
          file: driftctl-backup          # /etc/cron.d/driftctl-backup
          special: "@daily"
          command: /usr/local/sbin/backup
    """

    name = "cron"
    namevar = "name"
    bake_phase = 5
    bake_writer = "driftctl.bake.writers:bake_cron"
    params = {
        "name": Param(str, "A free name for the job (the title), written in its marker comment.", required=True,
                      check=check_one_line),
        "user": Param((str, int), "User whose crontab holds the job (or the user column in a cron.d file).",
                      default="root", check=check_owner),
        **{f: Param((str, int), f"Crontab {f} field.", default="*", check=check_time_field) for f in TIME_FIELDS},
        "special": Param(str, "A schedule such as @daily or @reboot instead of the time fields.", choices=SPECIALS),
        "command": Param(str, "The command line. Required unless ensure is absent.", check=check_one_line),
        "environment": Param(dict, "Variables set for the job (NAME: value), e.g. MAILTO, PATH.",
                             check=check_environment),
        "ensure": Param(str, "present or absent.", default="present", choices=("present", "absent")),
        "file": Param(str, "An /etc/cron.d file (a name or an absolute path) instead of the user's crontab.",
                      check=check_cron_file),
    }

    @classmethod
    def normalize(cls, params: dict[str, Any], location: Location) -> dict[str, Any]:
        require_given(cls, params, location)
        if params.get("special") is not None:
            set_fields = [f for f in TIME_FIELDS if params.get(f) != "*"]
            if set_fields:
                raise ManifestError(f"cron: special {params['special']} takes no {', '.join(set_fields)}", location)
        if params["ensure"] == "present" and params.get("command") is None:
            raise ManifestError("cron: parameter 'command' is required", location)
        return params

    @classmethod
    def claims(cls, params: Mapping[str, Any]) -> list[str]:
        where = params.get("file") or f"user:{params.get('user') or 'root'}"
        return [f"cron:{where}:{params['name']}"]

    @classmethod
    def managed_paths(cls, params: Mapping[str, Any]) -> list[str]:
        file = params.get("file")
        if file:
            return [file if str(file).startswith("/") else f"/etc/cron.d/{file}"]
        return [f"/var/spool/cron/crontabs/{params.get('user') or 'root'}"]

    @classmethod
    def autorequire(cls, params: Mapping[str, Any]) -> list[str]:
        user = str(params.get("user") or "root")
        return [] if user.isdigit() else [f"user:{user}"]

    @classmethod
    def desired(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        if params.get("ensure") == "absent":
            return {"ensure": "absent", "entry": None}
        return {"ensure": "present", "entry": "\n".join(agent_cron.cron_entry_lines(dict(params)))}

    @classmethod
    def diff(cls, desired: Mapping[str, Any], observed: Mapping[str, Any], sensitive: bool = False,
             params: Mapping[str, Any] | None = None) -> list[Change]:
        have, old = observed.get("ensure"), observed.get("entry")
        if desired["ensure"] == "absent":
            return [Change("entry", old, None)] if have == "present" else []
        if have == "present" and old == desired["entry"]:
            return []
        return [Change("entry", old if have == "present" else None, desired["entry"])]

    @classmethod
    def describe(cls, change: Change) -> str:
        def one(v: Any) -> str:
            return " | ".join(str(v).splitlines())

        if change.after is None:
            return f"entry removed: {one(change.before)}"
        if change.before is None:
            return f"entry added: {one(change.after)}"
        return f"entry changed: {one(change.before)} -> {one(change.after)}"
