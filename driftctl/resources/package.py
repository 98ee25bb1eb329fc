"""The ``package`` resource type (controller side). Host side: driftctl/agent/package.py."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from driftctl.model import Change
from driftctl.resources.base import Param, ResourceType, register

# Debian, RPM and Alpine package names (apt also takes an ":arch" qualifier)
PACKAGE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+._@-]*(:[a-z0-9_-]+)?$")
VERSION_RE = re.compile(r"^[0-9][A-Za-z0-9.+~:_-]*$")
ENSURE_WORDS = ("present", "absent", "latest")
LOCK_TIMEOUT = 60  # seconds, as Ansible's apt module waits


def check_package_name(value: Any) -> str:
    if not PACKAGE_NAME_RE.match(value):
        raise ValueError(f"must be a package name, not {value!r}")
    return str(value)


def check_ensure(value: Any) -> str:
    if value == "installed":
        return "present"
    if value in ENSURE_WORDS or VERSION_RE.match(value):
        return str(value)
    raise ValueError(f"must be present, absent, latest or a version (\"1.24.0-1\"), not {value!r}")


def check_lock_timeout(value: Any) -> int:
    if value < 0:
        raise ValueError(f"must be a number of seconds (0 or more), not {value!r}")
    return int(value)


@register
class Package(ResourceType):
    """A system package, installed or removed with the host's package manager.

    The provider comes from the host's facts (``package_manager``): apt on Debian and Ubuntu,
    dnf on Fedora/RHEL, apk on Alpine; ``provider:`` overrides it. apt installs without
    recommends and keeps changed configuration files; the package lists are refreshed
    (``apt-get update``) once per run when a package is unknown or the lists are missing.
    ``latest`` compares with what the package lists offer now (they are not refreshed for it).

    When another package manager holds the lock (unattended-upgrades, apt-daily, a person running
    apt), an install or removal waits for it at most ``lock_timeout`` seconds, then this resource
    fails with the package manager's own words ("Could not get lock /var/lib/dpkg/lock-frontend. It
    is held by process 1234 (unattended-upgr)"); resources that do not depend on it still converge.
    apt waits with ``-o DPkg::Lock::Timeout`` (apt 1.9.11 or later), and ``apt-get update`` is retried
    while the lists are locked; dnf and yum, which would wait forever, run with ``exit_on_lock`` and are
    retried; apk waits with ``--wait``. Reading the state (plan, check, drift) takes no lock and never
    waits. The resource's time limit (setting ``resource_timeout``) still bounds the whole install.

    Parameters:
      name: the package name (the title)
      ensure: present (default), absent, latest, or a version ("2.10-3")
      provider: apt, dnf or apk (default: from the host's facts)
      lock_timeout: seconds to wait for another package manager's lock (default 60; 0: fail at once)

    Example:
      - package: nginx
      - package: hello
        ensure: "2.10-3"
      - package: telnet
        ensure: absent
      - package: cowsay
        lock_timeout: 600   # a host where unattended-upgrades runs long
    """

    name = "package"
    namevar = "name"
    bake_phase = 0
    bake_in_container = True  # bake converges it in a build container (or finds it in the base)
    params: ClassVar[dict[str, Param]] = {
        "name": Param(str, "the package name", required=True, check=check_package_name),
        "ensure": Param(str, "present, absent, latest or a version", default="present", check=check_ensure),
        "provider": Param(str, "apt, dnf or apk (default: from facts)", choices=("apt", "dnf", "apk")),
        "lock_timeout": Param(int, "seconds to wait for the package manager's lock", default=LOCK_TIMEOUT,
                              check=check_lock_timeout),
    }

    @classmethod
    def desired(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        return {"ensure": params["ensure"]}

    @classmethod
    def diff(cls, desired: Mapping[str, Any], observed: Mapping[str, Any], sensitive: bool = False,
             params: Mapping[str, Any] | None = None) -> list[Change]:
        """One ``ensure`` change, from the installed version (or "absent") to what will be installed.

        The agent states ``ensure`` in the manifest's terms (present, latest, a version), so it is
        in sync exactly when it equals the desired value; the change line then names versions: the
        candidate the package manager reported, or "present"/"latest" when it did not know it yet.
        """
        want = desired["ensure"]
        if observed.get("ensure") == want:
            return []
        have = observed.get("version") or "absent"
        if want == "absent":
            return [Change("ensure", have, "absent")]
        if want in ("present", "latest"):
            return [Change("ensure", have, observed.get("candidate") or want)]
        return [Change("ensure", have, want)]

    @classmethod
    def describe(cls, change: Change) -> str:
        if change.before == "absent":
            return "installed" if change.after in ENSURE_WORDS else f"installed {change.after}"
        if change.after == "absent":
            return f"removed {change.before}"
        return f"version {change.before} -> {change.after}"
