"""The ``sysctl`` resource type (controller side). Key paths and file edits are in driftctl.agent.sysctl."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from driftctl.agent import sysctl as agent_sysctl
from driftctl.errors import Location, ManifestError
from driftctl.model import Change
from driftctl.resources.base import Param, ResourceType, check_abs_path, register
from driftctl.resources.file import require_given

_KEY_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:/@+\-]*$")


def check_key(value: Any) -> str:
    if not _KEY_RE.match(value) or ".." in value or "//" in value or value.endswith((".", "/")):
        raise ValueError(f"must be a kernel parameter such as net.ipv4.ip_forward, not {value!r}")
    return str(value)


def check_value(value: Any) -> str:
    """Values are strings; numbers are accepted, and whitespace is normalised to single spaces."""
    if isinstance(value, float):
        raise ValueError(f"must be a string or an integer, not {value!r} (quote it)")
    text = " ".join(str(value).split())
    if not text:
        raise ValueError("must not be empty")
    return text


def check_conf_file(value: Any) -> str:
    path = check_abs_path(value)
    if not path.endswith(".conf"):
        raise ValueError(f"must end in .conf (systemd-sysctl reads only *.conf files), not {value!r}")
    return path


@register
class Sysctl(ResourceType):
    """A kernel parameter: its live value (/proc/sys) and the value persisted for the next boot.

    The title is the key (``net.ipv4.ip_forward``, or the slash form ``net/ipv4/conf/eth0.100/rp_filter``
    for names holding dots, as in sysctl.d(5)). Values are strings compared with whitespace
    normalised ("4096 87380 6291456" matches the kernel's tab-separated form). Apply writes the live
    value to /proc/sys and, with ``persist`` (default), sets the key once in ``file`` (written
    atomically; other keys in it are kept). Inside containers /proc/sys is usually read-only and
    many keys belong to the host: the live value then fails with that reason while the file is
    still written.

    Example::

        - sysctl: net.ipv4.ip_forward
          value: "1"
        - sysctl: net.ipv4.tcp_rmem
          value: "4096 87380 6291456"
          file: /etc/sysctl.d/60-tcp.conf
        - sysctl: kernel.sysrq
          value: 0
          persist: false
    """

    name = "sysctl"
    namevar = "key"
    bake_phase = 5
    bake_writer = "driftctl.bake.writers:bake_sysctl"
    params = {
        "key": Param(str, "The kernel parameter (the title).", required=True, check=check_key),
        "value": Param((str, int), "The value, as a string.", required=True, check=check_value),
        "persist": Param(bool, "Also set the key in file, so it survives a reboot.", default=True),
        "file": Param(str, "The sysctl.d file the value is persisted in.", default="/etc/sysctl.d/99-driftctl.conf",
                      check=check_conf_file),
    }

    @classmethod
    def normalize(cls, params: dict[str, Any], location: Location) -> dict[str, Any]:
        require_given(cls, params, location)
        if "\n" in params["value"]:  # unreachable after whitespace normalisation; kept as the invariant
            raise ManifestError("sysctl: value must be one line", location)
        return params

    @classmethod
    def managed_paths(cls, params: Mapping[str, Any]) -> list[str]:
        return [params["file"]] if params.get("persist", True) and params.get("file") else []

    @classmethod
    def claims(cls, params: Mapping[str, Any]) -> list[str]:
        return [f"sysctl:{agent_sysctl.sysctl_relpath(params['key'])}"]

    @classmethod
    def desired(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        value = params["value"]
        return {"value": value, "persisted": value if params.get("persist", True) else None}

    @classmethod
    def describe(cls, change: Change) -> str:
        if change.field == "persisted":
            return f"persisted {change.before if change.before is not None else '(not set)'} -> {change.after}"
        before = change.before if change.before is not None else "(no such key)"
        return f"value {before} -> {change.after}"
