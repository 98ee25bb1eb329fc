"""The loaded inventory: groups, hosts with merged variables, and where every variable came from."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from driftctl import patterns
from driftctl.errors import InventoryError, Location
from driftctl.model import Host


@dataclass
class VarSet:
    """Variables together with the place (file:line) each one was set."""

    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, Location] = field(default_factory=dict)

    def set(self, key: str, value: Any, where: Location) -> None:
        self.values[key] = value
        self.sources[key] = where

    def update(self, other: VarSet) -> None:
        """Later wins, key by key: Ansible's default ``hash_behaviour = replace``."""
        self.values.update(other.values)
        self.sources.update(other.sources)

    def __bool__(self) -> bool:
        return bool(self.values)


@dataclass
class Group:
    """One inventory group.

    ``hosts`` are the hosts listed directly in the group (inventory order); ``children`` and
    ``parents`` are direct group names. ``vars`` is the group's effective variables: the inventory
    file's, then ``group_vars/<name>`` over them. ``depth`` is the longest path from ``all`` and,
    with ``priority`` (``ansible_group_priority``) and the name, orders groups for precedence.
    """

    name: str
    vars: dict[str, Any] = field(default_factory=dict)
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    location: Location | None = None
    priority: int = 1
    depth: int = 0
    inventory_vars: VarSet = field(default_factory=VarSet, repr=False)  # from the hosts file
    file_vars: VarSet = field(default_factory=VarSet, repr=False)  # from group_vars/
    var_files: list[str] = field(default_factory=list)

    @property
    def precedence_key(self) -> tuple[int, int, str]:
        """Ansible's ``sort_groups``: shallow before deep, then low priority first, then by name."""
        return (self.depth, self.priority, self.name)


@dataclass
class Built:
    """One host as the loader builds it: the Host, where each of its variables was set, and what to warn."""

    host: Host
    sources: dict[str, Location]
    warnings: list[str]


class Hosts(Mapping[str, Host]):
    """The inventory's hosts by name, in inventory order; a Host (merged variables, connection) is built
    the first time it is read, so selecting one host of 10,000 builds one.

    ``groups_of(name)`` is the host's group list without building it (selection needs only that).
    Building can raise InventoryError (a bad connection variable): for that host, when it is read.
    """

    def __init__(self, names: Iterable[str], groups_of: Callable[[str], tuple[str, ...]],
                 build: Callable[[str], Built]) -> None:
        self._names = dict.fromkeys(names)
        self._groups_of = groups_of
        self._build = build
        self._built: dict[str, Built] = {}

    def built(self, name: str) -> Built:
        done = self._built.get(name)
        if done is None:
            if name not in self._names:
                raise KeyError(name)
            done = self._built[name] = self._build(name)
        return done

    def __getitem__(self, name: str) -> Host:
        return self.built(name).host

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def groups_of(self, name: str) -> tuple[str, ...]:
        return self._groups_of(name)


class _Sources(Mapping[str, dict[str, Location]]):
    """``var_sources`` of an Inventory whose hosts are built on demand: a host's sources build it."""

    def __init__(self, hosts: Hosts) -> None:
        self._hosts = hosts

    def __getitem__(self, name: str) -> dict[str, Location]:
        return self._hosts.built(name).sources

    def __iter__(self) -> Iterator[str]:
        return iter(self._hosts)

    def __len__(self) -> int:
        return len(self._hosts)

    def __contains__(self, name: object) -> bool:
        return name in self._hosts


def _groups_of(hosts: Mapping[str, Host]) -> Callable[[str], tuple[str, ...]]:
    if isinstance(hosts, Hosts):
        return hosts.groups_of
    return lambda name: hosts[name].groups


@dataclass
class Inventory:
    """An Ansible-compatible inventory, loaded and validated by ``load_inventory``.

    ``hosts`` is in inventory order (the order hosts first appear in the files). Each Host's
    ``groups`` lists every group it belongs to, ``all`` first, then in variable-precedence order.
    ``var_sources[host][var]`` is where the winning value of each variable was written.
    """

    path: Path
    hosts: Mapping[str, Host] = field(default_factory=dict)  # a Hosts (built on demand) from the loader
    groups: dict[str, Group] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    var_sources: Mapping[str, dict[str, Location]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)  # every file read, in the order read

    _cache: dict[Any, Any] = field(default_factory=dict, init=False, repr=False, compare=False)
    # every variable set as written (groups' and hosts', before merging); set by the loader
    _written: list[VarSet] = field(default_factory=list, init=False, repr=False, compare=False)

    def written_vars(self) -> Iterator[tuple[str, Any]]:
        """Every variable (name, value) as the files wrote it, for every group and host, without building
        a host (a loaded Host's variables are made of these)."""
        if not self._written:  # an Inventory made by hand
            for g in self.groups.values():
                yield from g.vars.items()
            for h in self.hosts.values():
                yield from h.vars.items()
            return
        for vs in self._written:
            yield from vs.values.items()

    def members(self, group: str) -> list[str]:
        """Every host in ``group`` or any of its descendants, in inventory order."""
        return list(self.membership().get(group, []))

    def membership(self) -> dict[str, list[str]]:
        """Group name -> its hosts (descendants included): the input the pattern language needs.

        Computed once: an Inventory is not meant to change after ``load_inventory``.
        """
        if "membership" not in self._cache:
            out: dict[str, list[str]] = {name: [] for name in self.groups}
            groups_of = _groups_of(self.hosts)
            for name in self.hosts:
                for g in groups_of(name):
                    out.setdefault(g, []).append(name)
            self._cache["membership"] = out
        return {g: list(names) for g, names in self._cache["membership"].items()}

    def select(self, pattern: str | None, *, strict: bool = True, location: Location | None = None) -> list[Host]:
        """The hosts a ``--limit`` pattern selects, in inventory order (all hosts for None).

        Raises InventoryError when the pattern, or (with ``strict``) any part of it, matches no host;
        ``strict=False`` suits a site file shared by several inventories. ``location`` is where the
        pattern was written, for the error. Results are cached per pattern (site files ask often).
        A lazily loaded inventory builds the selected hosts here (their errors are raised here too).
        """
        return [self.hosts[n] for n in self.select_names(pattern, strict=strict, location=location)]

    def select_names(self, pattern: str | None, *, strict: bool = True,
                     location: Location | None = None) -> list[str]:
        """``select`` without building any host: the names, in inventory order."""
        if pattern is None:
            return list(self.hosts)
        key = ("select", pattern, strict)
        if key not in self._cache:
            if "membership" not in self._cache:
                self.membership()
            try:
                self._cache[key] = patterns.select(
                    pattern, list(self.hosts), self._cache["membership"], strict=strict, location=location
                )
            except InventoryError as e:
                self._cache[key] = e
        found = self._cache[key]
        if isinstance(found, InventoryError):  # a fresh error each time, at this caller's location
            raise InventoryError(found.message, location or found.location, found.hint)
        return list(found)

    def groups_var(self) -> dict[str, list[str]]:
        """The ``groups`` variable of templates: ``all`` (every host), then each group with hosts, in the
        order hosts first name them; hosts in inventory order. Builds no host."""
        if "groups_var" not in self._cache:
            out: dict[str, list[str]] = {"all": list(self.hosts)}
            groups_of = _groups_of(self.hosts)
            for name in self.hosts:
                for g in groups_of(name):
                    if g != "all":
                        out.setdefault(g, []).append(name)
            self._cache["groups_var"] = out
        return {g: list(names) for g, names in self._cache["groups_var"].items()}

    def var_source(self, host: str, var: str) -> Location | None:
        return self.var_sources.get(host, {}).get(var)

    def names(self) -> Iterable[str]:
        """Every host and group name (for did-you-mean hints)."""
        yield from self.hosts
        yield from self.groups
