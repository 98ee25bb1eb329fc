"""Resource ordering: require/before/notify/subscribe -> one stable apply order.

An edge ``A -> B`` means "A is applied before B, and B is skipped when A fails":
``B.require: [A]``, ``B.subscribe: [A]``, ``A.before: [B]`` and ``A.notify: [B]`` all make it.
``notify``/``subscribe`` additionally make B refresh (restart, reload) when A changes.

The order is a topological sort in which ties are broken by manifest order (the order of the list
given), so a catalog without relations applies exactly as written and a relation moves only what it
must. A cycle is a ManifestError naming every resource of the cycle with its file:line.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence

from driftctl.errors import ManifestError
from driftctl.model import Resource


class CycleError(ManifestError):
    """A dependency cycle; ``cycle`` lists the resources in order (the first one closes the loop)."""

    def __init__(self, cycle: list[Resource]) -> None:
        self.cycle = cycle
        path = " -> ".join(f"{r.id} ({r.source})" for r in [*cycle, cycle[0]])
        super().__init__(f"dependency cycle: {path}", cycle[0].source,
                         "remove one of these require/before/notify/subscribe relations")


def edges(resources: Sequence[Resource]) -> dict[str, list[str]]:
    """``id -> ids that must come after it`` (each relation once, in the order written).

    An id that is not in ``resources`` is a ManifestError at the resource that names it (the manifest
    stage resolves ids with did-you-mean before; this guards other callers).
    """
    ids: dict[str, Resource] = {}
    for r in resources:
        if r.id in ids:
            raise ManifestError(f"duplicate resource {r.id}: also declared at {ids[r.id].source}", r.source)
        ids[r.id] = r
    after: dict[str, list[str]] = {r.id: [] for r in resources}

    def add(first: str, then: str, named_by: Resource, key: str) -> None:
        for rid in (first, then):
            if rid not in ids:
                raise ManifestError(f"{named_by.id}: {key} names {rid!r}, which is not in the catalog",
                                    named_by.source)
        if then not in after[first] and first != then:
            after[first].append(then)
        elif first == then:
            raise CycleError([named_by])

    for r in resources:
        for dep in r.require:
            add(dep, r.id, r, "require")
        for dep in r.subscribe:
            add(dep, r.id, r, "subscribe")
        for nxt in r.before:
            add(r.id, nxt, r, "before")
        for nxt in r.notify:
            add(r.id, nxt, r, "notify")
    return after


def order(resources: Sequence[Resource]) -> list[Resource]:
    """A topological order of ``resources``; among the resources that are ready, manifest order wins.

    Raises CycleError (a ManifestError) when the relations form a cycle.
    """
    index = {r.id: i for i, r in enumerate(resources)}
    after = edges(resources)
    indegree = dict.fromkeys(index, 0)
    for targets in after.values():
        for t in targets:
            indegree[t] += 1
    ready = [index[rid] for rid, n in indegree.items() if n == 0]
    heapq.heapify(ready)
    out: list[Resource] = []
    while ready:
        i = heapq.heappop(ready)
        r = resources[i]
        out.append(r)
        for t in after[r.id]:
            indegree[t] -= 1
            if indegree[t] == 0:
                heapq.heappush(ready, index[t])
    if len(out) < len(resources):
        left = [r for r in resources if indegree[r.id] > 0]
        raise CycleError(_find_cycle(left, after))
    return out


def _find_cycle(left: Sequence[Resource], after: dict[str, list[str]]) -> list[Resource]:
    """One cycle among the resources the sort could not place (each of them is on or behind a cycle)."""
    by_id = {r.id: r for r in left}
    pos = {rid: i for i, rid in enumerate(by_id)}
    # Walk backwards along unplaced predecessors: every unplaced node has one, so the walk must
    # revisit a node, and the part from its first visit on is a cycle.
    before: dict[str, list[str]] = {rid: [] for rid in by_id}
    for src, targets in after.items():
        if src in by_id:
            for t in targets:
                if t in by_id:
                    before[t].append(src)
    seen: dict[str, int] = {}
    walk: list[str] = []
    node = left[0].id
    while node not in seen:
        seen[node] = len(walk)
        walk.append(node)
        node = min(before[node], key=pos.__getitem__)
    cycle = list(reversed(walk[seen[node]:]))
    # start the message at the resource written first in the manifests
    first = min(range(len(cycle)), key=lambda k: pos[cycle[k]])
    cycle = cycle[first:] + cycle[:first]
    return [by_id[rid] for rid in cycle]


def dependents(resources: Sequence[Resource]) -> dict[str, set[str]]:
    """``id -> every id that (transitively) comes after it``: what to skip when it fails."""
    after = edges(resources)
    out: dict[str, set[str]] = {}

    def visit(rid: str) -> set[str]:
        if rid in out:
            return out[rid]
        out[rid] = set()  # a cycle cannot reach here in a valid catalog; guard against recursion anyway
        found: set[str] = set()
        for t in after[rid]:
            found.add(t)
            found |= visit(t)
        out[rid] = found
        return found

    for r in resources:
        visit(r.id)
    return out


def notify_targets(resources: Sequence[Resource]) -> dict[str, list[str]]:
    """``id -> ids to refresh when it changes`` (its ``notify`` plus everyone subscribing to it),
    each once, in catalog order. Only ids with at least one target are present."""
    position = {r.id: i for i, r in enumerate(resources)}
    targets: dict[str, set[str]] = {}
    for r in resources:
        for t in r.notify:
            targets.setdefault(r.id, set()).add(t)
        for src in r.subscribe:
            targets.setdefault(src, set()).add(r.id)
    return {rid: sorted(ts, key=lambda t: position.get(t, len(position))) for rid, ts in _in_order(targets, position)}


def _in_order(targets: dict[str, set[str]], position: dict[str, int]) -> Iterable[tuple[str, set[str]]]:
    return sorted(targets.items(), key=lambda kv: position.get(kv[0], len(position)))


def reaches(resources: Sequence[Resource], start: str, goal: str) -> bool:
    """Whether ``goal`` comes (transitively) after ``start``: adding ``goal -> start`` would close a cycle."""
    after = edges(resources)
    stack, seen = [start], {start}
    while stack:
        rid = stack.pop()
        if rid == goal:
            return True
        for t in after.get(rid, []):
            if t not in seen:
                seen.add(t)
                stack.append(t)
    return False
