"""The data that flows between driftctl's modules.

inventory -> [Host];  manifest -> Catalog (per host);  engine -> HostResult -> RunResult.
Everything here is plain data (dataclasses); behaviour lives in the modules that produce it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from driftctl.errors import ExitCode, Location


@dataclass(frozen=True)
class ConnectionSpec:
    """How to reach a host. Built by the inventory from driftctl's own variables or ansible_* aliases.

    ``transport`` picks the implementation in driftctl/transport/ by name: "ssh", "local", "podman".
    Secrets (``password``, ``become_password``) are never shown in repr.
    """

    address: str
    port: int = 22
    user: str | None = None
    key_file: str | None = None
    password: str | None = field(default=None, repr=False)
    become: bool = False
    become_user: str = "root"
    become_password: str | None = field(default=None, repr=False)
    python: str = "python3"
    proxy_jump: str | None = None
    known_hosts: str | None = None  # an extra known_hosts file for this host (driftctl_known_hosts)
    transport: str = "ssh"
    connect_timeout: float = 10.0
    command_timeout: float = 300.0
    link_timeout: float = 60.0  # silence that makes a connection lost mid-command (D47)
    ssh_algorithms: str | None = None  # weak algorithms this host may use (driftctl_ssh_algorithms)


@dataclass
class Host:
    """One inventory host with its merged variables (all < parent group < child group < host)."""

    name: str
    vars: dict[str, Any]
    groups: tuple[str, ...]
    connection: ConnectionSpec
    source: Location | None = None


@dataclass
class Resource:
    """One desired resource after rendering and validation.

    ``params`` are the normalised parameters of the type (see driftctl/resources/), ``require`` etc.
    are resource ids (``type:name``). ``sensitive`` hides values in every output (hashes only).
    """

    type: str
    name: str
    params: dict[str, Any]
    source: Location
    require: list[str] = field(default_factory=list)
    before: list[str] = field(default_factory=list)
    notify: list[str] = field(default_factory=list)
    subscribe: list[str] = field(default_factory=list)
    sensitive: bool = False
    tags: list[str] = field(default_factory=list)  # for --tags/--skip-tags (driftctl/tags.py)

    @cached_property
    def id(self) -> str:
        """``type:name``, made once: a 40-host run asks ~150,000 times, and kept ids are one string each."""
        return f"{self.type}:{self.name}"


@dataclass
class Catalog:
    """Everything one host should be: resources in a valid apply order, plus drift watch paths.

    ``secrets`` holds the rendered values of variables marked secret; every renderer redacts them.
    ``digest`` is a sha256 over the rendered catalog (changes when the manifest or variables move).
    """

    host: str
    resources: list[Resource]
    watch: list[str] = field(default_factory=list)
    secrets: frozenset[str] = frozenset()
    digest: str = ""
    uses_facts: bool = False  # some value depends on the host's facts: render again once they are known
    # left out of this run by --tags/--skip-tags (driftctl/tags.py): not probed, not changed, not
    # reported; still what purge keeps and what the watch excludes
    excluded: list[Resource] = field(default_factory=list)

    def managed_resources(self) -> list[Resource]:
        """Every resource the manifests give this host, those the tags leave out included."""
        return [*self.resources, *self.excluded] if self.excluded else self.resources

    def by_id(self) -> dict[str, Resource]:
        return {r.id: r for r in self.resources}


@dataclass
class Change:
    """One attribute that differs: ``field`` goes from ``before`` to ``after``.

    ``diff`` is a unified diff for contents (None when not text or sensitive).
    """

    field: str
    before: Any
    after: Any
    diff: str | None = None


ResourceStatus = Literal["ok", "changed", "failed", "skipped"]
HostStatus = Literal["ok", "changed", "failed", "unreachable"]


@dataclass
class ResourceResult:
    """What happened (or would happen, in plan/check) to one resource on one host.

    ``ok`` comes with a ``reason`` ("in sync"); ``changed`` with ``changes``; ``failed`` with ``error``;
    ``skipped`` with the reason (a dependency failed).
    """

    id: str
    status: ResourceStatus
    changes: list[Change] = field(default_factory=list)
    reason: str = ""
    error: str | None = None
    source: Location | None = None
    type: str = ""
    # drift: corrective (host changed by hand), pending (manifest moved), both; None = in sync
    drift: str | None = None
    since: float | None = None  # when this drift was first seen (epoch seconds)
    runs: int | None = None  # for how many drift runs it has lasted
    ignored: str | None = None  # the reason of the ignore rule that covers it
    desired_fingerprint: str | None = None
    observed_fingerprint: str | None = None
    converged_fingerprint: str | None = None
    observed: dict[str, Any] | None = None  # managed attributes as observed (redacted, no contents)


@dataclass
class UnmanagedChange:
    """A change under a ``watch:`` path that no resource manages, against the accepted baseline."""

    path: str
    change: Literal["added", "removed", "changed"]
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    since: float | None = None
    runs: int | None = None
    ignored: str | None = None


@dataclass
class HostResult:
    host: str
    status: HostStatus
    resources: list[ResourceResult] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    round_trips: int = 0
    duration: float = 0.0
    fingerprint: str | None = None
    catalog_digest: str | None = None
    unmanaged: list[UnmanagedChange] = field(default_factory=list)
    watch: dict[str, Any] = field(default_factory=dict)  # the probe's watch scan (agent/watch.py)
    watch_after: dict[str, Any] | None = None  # the scan right after an apply, for re-baselining
    secrets: frozenset[str] = frozenset()
    locked: bool = False  # another driftctl was changing this host
    unmanaged_examined: bool = False  # the watch paths were compared with a baseline in this run
    # the run on this host was cut short: "connection lost" (exit bit 8) or "aborted" (bit 16, SIGINT/SIGTERM)
    interrupted: Literal["connection lost", "aborted"] | None = None
    excluded: list[str] = field(default_factory=list)  # ids of the resources --tags/--skip-tags left out
    batch: int | None = None  # the --serial batch (1-based) the host belonged to

    @property
    def exit_code(self) -> int:
        code = ExitCode.OK
        if self.status == "unreachable":
            return ExitCode.UNREACHABLE
        if any(r.status == "changed" or (r.drift and not r.ignored) for r in self.resources):
            code |= ExitCode.CHANGES
        if any(not u.ignored for u in self.unmanaged):
            code |= ExitCode.CHANGES
        if self.status == "failed" or any(r.status == "failed" for r in self.resources):
            code |= ExitCode.FAILED
        if self.interrupted == "connection lost":
            code |= ExitCode.UNREACHABLE
        elif self.interrupted == "aborted":
            code |= ExitCode.ABORTED
        return code


@dataclass
class Batches:
    """A run in ``--serial`` batches: their hosts, in order, and where it stopped (``--max-fail-percentage``)."""

    hosts: list[list[str]]
    max_fail_percentage: float | None = None
    stopped_after: int | None = None  # the batch after which no other started
    reason: str = ""
    not_started: list[str] = field(default_factory=list)


@dataclass
class RunResult:
    """One command over a fleet: ``command`` is plan, check, apply, drift or facts."""

    command: str
    hosts: list[HostResult] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    finished: float | None = None
    aborted: bool = False  # SIGINT/SIGTERM arrived, or --max-fail-percentage stopped the batches: exit bit 16
    tags: list[str] = field(default_factory=list)  # --tags as given (empty: all)
    skip_tags: list[str] = field(default_factory=list)
    serial: Batches | None = None  # --serial: the batches and whether they were stopped
    # whether pending changes set exit bit 2: not for `plan` (it succeeded; Terraform's plan and Ansible's
    # --check exit 0 too) unless --detailed-exitcode; `check` is the command for automation (D41)
    changes_exit: bool = True

    @property
    def partial(self) -> bool:
        """Some resource of some host was left out by the tags: the run says nothing about it."""
        return any(h.excluded for h in self.hosts)

    @property
    def exit_code(self) -> int:
        """Bits of every host's code; 75 when a host was locked by another run (retry later)."""
        if any(h.locked for h in self.hosts):
            return ExitCode.LOCKED
        code = ExitCode.ABORTED if self.aborted else ExitCode.OK
        for h in self.hosts:
            code |= h.exit_code
        return code if self.changes_exit else code & ~ExitCode.CHANGES
