"""The ``service`` resource type (controller side). Host side: driftctl/agent/service.py."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from driftctl.model import Change
from driftctl.resources.base import Param, ResourceType, register

SERVICE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9@._:\\-]*$")


def check_timeout(value: Any) -> int | float:
    if value <= 0:
        raise ValueError(f"must be a positive number of seconds, not {value!r}")
    return value  # an int stays one: "timed out after 90s", not "90.0s"


def check_service_name(value: Any) -> str:
    if not SERVICE_NAME_RE.match(value):
        raise ValueError(f"must be a service or unit name (\"nginx\", \"getty@tty1.service\"), not {value!r}")
    return str(value)


@register
class Service(ResourceType):
    """A system service: whether it starts at boot (``enabled``) and whether it runs now (``running``).

    The provider comes from the host's facts: systemd when the host runs systemd, else sysv
    (``service`` and ``update-rc.d``); ``provider:`` overrides it. Only what you set is managed:
    a service with neither ``enabled`` nor ``running`` is still a target for ``notify``.
    When notified it is restarted (``refresh: restart``, the default), reloaded (``reload``) or
    reloaded when the service supports it and restarted otherwise (``reload-or-restart``); a
    service that should be stopped (``running: false``), or is stopped and has no ``running``, is
    left stopped. A service that does not exist on the host is a failure, not "stopped".

    Each change (start, stop, enable, restart...) may take ``timeout`` seconds, by default the
    resource's time limit (setting ``resource_timeout``); reading the state at most 60 s.
    ``systemctl start`` waits for the unit to be started, and a oneshot unit has no time limit of its
    own: when the time is up this resource fails (systemd may still be running the job, and says so
    in ``systemctl status``), and the host's other resources go on.

    Parameters:
      name: the service, or systemd unit, name (the title)
      enabled: start at boot (true/false; default unmanaged)
      running: running now (true/false; default unmanaged)
      refresh: restart (default), reload or reload-or-restart, when notified
      provider: systemd or sysv (default: from the host's facts)
      timeout: seconds each change may take (default: the resource's time limit)

    Example:
      - service: nginx
        enabled: true
        running: true
        refresh: reload
        require: [package:nginx]
        subscribe: [file:/etc/nginx/nginx.conf]
    """

    name = "service"
    namevar = "name"
    bake_phase = 7
    bake_writer = "driftctl.bake.writers:bake_service"
    refreshable = True
    params: ClassVar[dict[str, Param]] = {
        "name": Param(str, "service or unit name", required=True, check=check_service_name),
        "enabled": Param(bool, "start at boot"),
        "running": Param(bool, "running now"),
        "refresh": Param(
            str, "what a notification does", default="restart", choices=("restart", "reload", "reload-or-restart")
        ),
        "provider": Param(str, "systemd or sysv (default: from facts)", choices=("systemd", "sysv")),
        "timeout": Param((int, float), "seconds each change may take", check=check_timeout),
    }

    @classmethod
    def autorequire(cls, params: Mapping[str, Any]) -> list[str]:
        # a service usually comes from the package of the same name
        return [f"package:{params['name']}"]

    @classmethod
    def desired(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        return {"enabled": params.get("enabled"), "running": params.get("running")}

    @classmethod
    def describe(cls, change: Change) -> str:
        if change.field == "running":
            return "started" if change.after else "stopped"
        if change.field == "enabled":
            return "enabled" if change.after else "disabled"
        return super().describe(change)
