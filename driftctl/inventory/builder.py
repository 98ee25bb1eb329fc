"""The inventory graph while the files are being read: both the YAML and the INI reader fill one of these.

It enforces what every format shares: ``all`` is the root, a child group cannot be its own
ancestor (the error names the line that closes the cycle), and after reading, groups without a
parent hang under ``all`` and hosts in no group go to ``ungrouped`` (Ansible's reconcile step).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from driftctl.errors import InventoryError, Location
from driftctl.inventory.model import Group, VarSet

ALL = "all"
UNGROUPED = "ungrouped"


@dataclass
class HostEntry:
    """A host as the files define it, before variables are merged."""

    name: str
    location: Location
    groups: list[str] = field(default_factory=list)  # direct groups, in order of appearance
    inventory_vars: VarSet = field(default_factory=VarSet)
    file_vars: VarSet = field(default_factory=VarSet)
    var_files: list[str] = field(default_factory=list)


class Builder:
    """Collects groups, hosts and variables from one or more inventory files."""

    def __init__(self) -> None:
        self.groups: dict[str, Group] = {ALL: Group(ALL), UNGROUPED: Group(UNGROUPED)}
        self.hosts: dict[str, HostEntry] = {}
        self.edge_locations: dict[tuple[str, str], Location] = {}
        self._listed: dict[str, set[str]] = {}  # group -> its hosts, for a quick "already listed?"

    def group(self, name: str, where: Location) -> Group:
        """The group called ``name``, created on first mention (which is where it is 'defined')."""
        g = self.groups.get(name)
        if g is None:
            g = self.groups[name] = Group(name, location=where)
        elif g.location is None and name not in (ALL, UNGROUPED):
            g.location = where
        return g

    def _path(self, start: str, goal: str) -> list[str] | None:
        """A chain of children from ``start`` down to ``goal``, if there is one."""
        stack: list[list[str]] = [[start]]
        seen: set[str] = set()
        while stack:
            chain = stack.pop()
            node = chain[-1]
            if node == goal:
                return chain
            if node in seen:
                continue
            seen.add(node)
            for child in self.groups[node].children:
                stack.append([*chain, child])
        return None

    def add_child(self, parent: str, child: str, where: Location) -> None:
        if child == ALL:
            raise InventoryError(f"group 'all' cannot be a child of {parent!r}: every group is already under it", where)
        p, c = self.group(parent, where), self.group(child, where)
        if child in p.children:
            return
        loop = self._path(child, parent)
        if loop is not None:
            cycle = " -> ".join([parent, *loop])
            raise InventoryError(f"group {child!r} as a child of {parent!r} makes a cycle: {cycle}", where)
        p.children.append(child)
        c.parents.append(parent)
        self.edge_locations[(parent, child)] = where

    def add_host(self, group: str, name: str, where: Location) -> HostEntry:
        host = self.hosts.get(name)
        if host is None:
            host = self.hosts[name] = HostEntry(name, where)
        g = self.group(group, where)
        listed = self._listed.setdefault(group, set())
        if name not in listed:  # 10,000 hosts in one group: a list lookup each would be quadratic
            listed.add(name)
            g.hosts.append(name)
        if group not in host.groups:
            host.groups.append(group)
        return host

    def set_group_var(self, group: str, key: Any, value: Any, where: Location) -> None:
        self.group(group, where).inventory_vars.set(_var_name(key, where), value, where)

    def set_host_var(self, host: str, key: Any, value: Any, where: Location) -> None:
        self.hosts[host].inventory_vars.set(_var_name(key, where), value, where)

    def reconcile(self) -> None:
        """Top-level groups go under ``all``; hosts in no group go to ``ungrouped``; compute depths."""
        root = self.groups[ALL]
        for name, g in self.groups.items():
            if name != ALL and not g.parents:
                root.children.append(name)
                g.parents.append(ALL)
        ungrouped = self.groups[UNGROUPED]
        # removals are collected and done once per list (one list.remove per host is quadratic)
        not_ungrouped: set[str] = set()
        newly_ungrouped: list[str] = []
        not_under_all: set[str] = set()
        for name, host in self.hosts.items():
            real = [g for g in host.groups if g not in (ALL, UNGROUPED)]
            if real:
                if UNGROUPED in host.groups:  # listed at the top of an INI file and in a group too
                    host.groups.remove(UNGROUPED)
                    not_ungrouped.add(name)
            elif UNGROUPED not in host.groups:
                host.groups.append(UNGROUPED)
                newly_ungrouped.append(name)
            if ALL in host.groups:  # hosts under all: are members of all like every host; keep one list
                host.groups.remove(ALL)
                not_under_all.add(name)
        ungrouped.hosts[:] = [h for h in ungrouped.hosts if h not in not_ungrouped] + newly_ungrouped
        root.hosts[:] = [h for h in root.hosts if h not in not_under_all]
        depth: dict[str, int] = {}

        def depth_of(name: str) -> int:
            if name not in depth:
                parents = self.groups[name].parents
                depth[name] = 0 if name == ALL else 1 + max(depth_of(p) for p in parents)
            return depth[name]

        for name, g in self.groups.items():
            g.depth = depth_of(name)

    def ancestors(self, groups: list[str]) -> set[str]:
        """The given groups and every group above them (``all`` included)."""
        out: set[str] = set()
        todo = list(groups)
        while todo:
            g = todo.pop()
            if g not in out:
                out.add(g)
                todo.extend(self.groups[g].parents)
        out.add(ALL)
        return out


def _var_name(key: Any, where: Location) -> str:
    if not isinstance(key, str) or not key:
        raise InventoryError(f"variable name {key!r} must be a non-empty string", where)
    return key
