"""The ``exec`` resource type (controller side). Host side: driftctl/agent/exec.py."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any, ClassVar

from driftctl.errors import Location, ManifestError
from driftctl.model import Change
from driftctl.resources.base import Param, ResourceType, check_abs_path, register

SHELL = "/bin/sh"


def check_returns(value: Any) -> list[int]:
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in values):
        raise ValueError(f"must be an exit code or a list of exit codes (0-255), not {value!r}")
    return sorted(set(values))


def check_environment(value: Any) -> dict[str, str]:
    out = {}
    for key, val in value.items():
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise ValueError(f"has a bad variable name {key!r}")
        if isinstance(val, bool) or not isinstance(val, (str, int, float)):
            raise ValueError(f"{key} must be a string or a number, not {type(val).__name__}")
        out[key] = str(val)
    return out


def check_timeout(value: Any) -> float:
    if value <= 0:
        raise ValueError(f"must be a positive number of seconds, not {value!r}")
    return float(value)


def check_user_ref(value: Any) -> str:
    if isinstance(value, int):
        return str(value)
    if not value or ":" in value or "/" in value or any(c.isspace() for c in value):
        raise ValueError(f"must be a user name or uid, not {value!r}")
    return str(value)


def to_argv(what: str, value: Any, shell: bool, location: Location) -> list[str]:
    """A command as given in the manifest -> argv: a list as it is, a string split like a shell
    would (no shell runs), or a string run by /bin/sh -c when ``shell: true``."""
    if isinstance(value, list):
        if shell:
            raise ManifestError(f"exec: {what} must be a string when shell is true", location)
        if not value or not all(isinstance(v, str) for v in value):
            raise ManifestError(f"exec: {what} must be a non-empty list of strings", location)
        return [str(v) for v in value]
    if shell:
        return [SHELL, "-c", value]
    try:
        argv = shlex.split(value)
    except ValueError as e:
        raise ManifestError(f"exec: {what} cannot be split into words: {e}", location) from None
    if not argv:
        raise ManifestError(f"exec: {what} is empty", location)
    return argv


@register
class Exec(ResourceType):
    """Run a command, when its guards say it is needed.

    ``command`` is an argv list, or a string split into words like a shell would (quotes work,
    but no shell runs: no pipes, variables or globs), or, with ``shell: true``, a string run
    by ``/bin/sh -c``. The guards take commands in the same form:

    - ``creates``: in sync when this path exists;
    - ``unless``: in sync when this command succeeds (exit 0);
    - ``onlyif``: run only when this command succeeds;
    - ``refreshonly``: run only when notified by a resource that changed.

    Without a guard the command runs on every apply. **Guard commands run during plan, check and
    drift as well: they must only read, never change the host.**
    The command fails when it exits with a code not in ``returns``; the end of its output is
    shown. When notified, an exec runs (again) unless a guard says it is not needed.
    A command or guard that runs longer than ``timeout`` (or than the resource's time limit, setting
    ``resource_timeout``, when that comes first) fails "timed out after Ns", and is ended together
    with everything it started, its own daemons included (SIGTERM, then SIGKILL after 2 s); only
    this resource fails, the host's other resources go on.

    A title that holds a secret (a command with a ``!secret`` in it and no ``name``) is shown as
    ``exec:secret-<hash>`` everywhere; give such an exec a ``name`` to refer to it in relations.

    Parameters:
      name: a free name (the title); the command when ``command`` is not given
      command: argv list or string
      shell: run command and guards with /bin/sh -c (default false)
      creates: an absolute path; in sync when it exists
      unless: a command; in sync when it succeeds
      onlyif: a command; run only when it succeeds
      refreshonly: run only when notified (default false)
      cwd: working directory
      user: run as this user (name or uid)
      environment: variables added to the environment (a mapping)
      timeout: seconds before the command (or a guard) is ended (default: the resource's time limit)
      returns: allowed exit codes (default [0])

    Example:
      - exec: build-site
        command: [make, -C, /srv/site, install]
        creates: /srv/site/public/index.html
        user: www-data
        environment: {LANG: C.UTF-8}
      - exec: reload-firewall
        command: nft -f /etc/nftables.conf
        refreshonly: true
        subscribe: [file:/etc/nftables.conf]
    """

    name = "exec"
    namevar = "name"
    bake_phase = 0
    bake_in_container = True  # bake converges it in a build container (or finds it in the base)
    refreshable = True
    verify_after_apply = False  # a command that ran is done for this apply, guards or not
    params: ClassVar[dict[str, Param]] = {
        "name": Param(str, "a free name; the command when command is not given", required=True),
        "command": Param((str, list), "argv list or string"),
        "shell": Param(bool, "run with /bin/sh -c", default=False),
        "creates": Param(str, "in sync when this path exists", check=check_abs_path),
        "unless": Param((str, list), "in sync when this command succeeds"),
        "onlyif": Param((str, list), "run only when this command succeeds"),
        "refreshonly": Param(bool, "run only when notified", default=False),
        "cwd": Param(str, "working directory", check=check_abs_path),
        "user": Param((str, int), "run as this user", check=check_user_ref),
        "environment": Param(dict, "variables added to the environment", default=None, check=check_environment),
        "timeout": Param((int, float), "seconds", check=check_timeout),
        "returns": Param((int, list), "allowed exit codes", default=[0], check=check_returns),
    }

    @classmethod
    def normalize(cls, params: dict[str, Any], location: Location) -> dict[str, Any]:
        shell = params["shell"]
        params["command"] = to_argv(
            "command", params["command"] if params["command"] is not None else params["name"], shell, location
        )
        for guard in ("unless", "onlyif"):
            if params[guard] is not None:
                params[guard] = to_argv(guard, params[guard], shell, location)
        params["returns"] = list(params["returns"] or [0])
        return params

    @classmethod
    def autorequire(cls, params: Mapping[str, Any]) -> list[str]:
        out = []
        user = params.get("user")
        if user is not None and not str(user).isdigit():
            out.append(f"user:{user}")
        if params.get("cwd"):
            out.append(f"directory:{params['cwd']}")
        return out

    @classmethod
    def stateful(cls, params: Mapping[str, Any]) -> bool:
        # only guards leave something to compare; refreshonly and unguarded commands are events
        guarded = any(params.get(g) is not None for g in ("creates", "unless", "onlyif"))
        return guarded and not params.get("refreshonly")

    @classmethod
    def desired(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        return {"state": "done"}

    @classmethod
    def diff(cls, desired: Mapping[str, Any], observed: Mapping[str, Any], sensitive: bool = False,
             params: Mapping[str, Any] | None = None) -> list[Change]:
        if observed.get("state") == "done":
            return []
        return [Change("state", observed.get("why") or "pending", "ran")]

    @classmethod
    def describe(cls, change: Change) -> str:
        return f"ran ({change.before})" if change.before else "ran"
