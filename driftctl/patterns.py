"""Host patterns: the ``--limit`` language, also used by the manifests' site file.

Ansible's pattern language, evaluated the way Ansible evaluates it:

- ``web1`` a host, ``web`` a group (all its hosts, descendants included), ``all`` or ``*`` every host;
- ``web*`` a glob (``fnmatch``, case-sensitive) over group and host names;
- ``~web\\d+`` a regular expression (``re.match``: anchored at the start) over group and host names;
- ``web[0]``, ``web[-1]``, ``web[0:2]`` (inclusive) a slice of what the rest matches;
- parts joined with ``:`` or ``,`` (``,`` when a part needs ``:``); ``!x`` excludes, ``&x`` intersects.

Order of evaluation, as in Ansible: the plain parts are unioned first, then every ``&`` part
intersects, then every ``!`` part excludes, whatever order they were written in; a pattern made
only of ``&``/``!`` parts starts from ``all``. The result is in inventory order.

A part that matches no host (a typo) is an InventoryError naming it, with the nearest host or
group name as a hint, because acting on the wrong hosts -- or not excluding the ones meant -- is
worse than stopping. Excluding an existing but empty group is fine.
"""

from __future__ import annotations

import bisect
import difflib
import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from driftctl.errors import InventoryError, Location

Op = Literal["", "!", "&"]

_SUBSCRIPT = re.compile(r"^(.+)\[(?:(-?\d+)|(\d+):(-?\d+)?)\]$")
_SPLIT = re.compile(r"(?:[^\s:\[\]]|\[[^\]]*\])+")
_IPV6 = re.compile(r"^[0-9a-fA-F]*:[0-9a-fA-F:]*:[0-9a-fA-F:.]*$")
_SPECIAL = set("*?[.")


@dataclass(frozen=True)
class Subscript:
    """``[start]`` (end is None) or ``[start:end]`` with an inclusive end (-1: to the last)."""

    start: int
    end: int | None = None


@dataclass(frozen=True)
class Term:
    """One part of a pattern: ``op`` is "", "!" (exclude) or "&" (intersect)."""

    text: str  # as written, op included
    op: Op
    expr: str  # without the op and the subscript
    subscript: Subscript | None = None

    @property
    def is_regex(self) -> bool:
        return self.expr.startswith("~")


def split(pattern: str) -> list[str]:
    """The parts of a pattern, as Ansible splits them (``,`` first; ``:`` unless inside ``[...]``)."""
    pattern = pattern.strip()
    if "," in pattern:
        parts = pattern.split(",")
    elif _IPV6.match(pattern):  # an IPv6 address used as a host name
        parts = [pattern]
    else:
        parts = _SPLIT.findall(pattern)
    return [p.strip() for p in parts if p.strip()]


def parse(pattern: str, location: Location | None = None) -> list[Term]:
    """Split and check a pattern (empty parts, bad regular expressions), in evaluation order."""
    parts = split(pattern)
    if not parts:
        raise InventoryError(f"empty host pattern {pattern!r}", location, "use 'all' for every host")
    terms: list[Term] = []
    for part in parts:
        op: Op = ""
        expr = part
        if part[0] in "!&":
            op = "!" if part[0] == "!" else "&"
            expr = part[1:].strip()
        if not expr:
            raise InventoryError(f"host pattern {pattern!r}: {part!r} names nothing", location)
        subscript = None
        if not expr.startswith("~"):
            m = _SUBSCRIPT.match(expr)
            if m:
                expr = m.group(1)
                if m.group(2) is not None:
                    subscript = Subscript(int(m.group(2)))
                else:
                    subscript = Subscript(int(m.group(3)), int(m.group(4)) if m.group(4) else -1)
        else:
            try:
                re.compile(expr[1:])
            except re.error as e:
                raise InventoryError(f"host pattern {part!r}: invalid regular expression: {e}", location) from None
        terms.append(Term(part, op, expr, subscript))
    # Ansible: plain parts, then intersections, then exclusions; only &/! parts start from all.
    plain = [t for t in terms if t.op == ""] or [Term("all", "", "all")]
    return plain + [t for t in terms if t.op == "&"] + [t for t in terms if t.op == "!"]


def _matcher(expr: str) -> re.Pattern[str]:
    return re.compile(expr[1:]) if expr.startswith("~") else re.compile(fnmatch.translate(expr))


def _slice(
    names: list[str], sub: Subscript | None, term: Term, location: Location | None, strict: bool
) -> list[str]:
    if sub is None:
        return names
    try:
        if sub.end is None:
            return [names[sub.start]]
        end = len(names) - 1 if sub.end == -1 else sub.end
        out = names[sub.start : end + 1]
    except IndexError:
        out = []
    if not out and strict:
        raise InventoryError(
            f"host pattern {term.text!r}: the subscript is out of range ({term.expr!r} has {len(names)} hosts)",
            location,
        )
    return out


class Nearest:
    """Did-you-mean over many names: the closest candidate to a word, or None if none is close.

    difflib is slow per comparison and host names are all alike, so only the names next to the
    word in prefix order and in suffix order are compared (a typo sits at one end or the other).
    """

    WINDOW = 10

    def __init__(self, candidates: Iterable[str]) -> None:
        self.by_prefix = sorted(set(candidates))
        self.by_suffix = sorted(c[::-1] for c in self.by_prefix)

    def find(self, word: str) -> str | None:
        pool: list[str] = []
        for names, key, flip in ((self.by_prefix, word, False), (self.by_suffix, word[::-1], True)):
            i = bisect.bisect_left(names, key)
            near = names[max(0, i - self.WINDOW) : i + self.WINDOW]
            pool += [n[::-1] for n in near] if flip else near
        close = difflib.get_close_matches(word, list(dict.fromkeys(pool)), n=1, cutoff=0.5)
        return close[0] if close else None


def nearest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to ``word``, or None (see Nearest)."""
    return Nearest(candidates).find(word)


def _hint(expr: str, names: Sequence[str]) -> str | None:
    close = nearest(expr.lstrip("~"), names)
    return f"did you mean {close!r}?" if close else None


def select(
    pattern: str,
    hosts: Sequence[str],
    groups: Mapping[str, Sequence[str]],
    *,
    strict: bool = True,
    location: Location | None = None,
) -> list[str]:
    """The host names ``pattern`` selects, in the order of ``hosts``.

    ``hosts`` is every host name in inventory order; ``groups`` maps each group name to all of its
    hosts (descendants included). With ``strict`` (the default), a part that matches no host, or a
    pattern that selects nothing, is an InventoryError (carrying ``location`` if given); without it
    such parts simply contribute nothing (for site files evaluated against a --limit'ed fleet).
    """
    order = {name: i for i, name in enumerate(hosts)}
    selected: list[str] = []
    for term in parse(pattern, location):
        matched, known = _match(term, hosts, order, groups)
        matched = _slice(matched, term.subscript, term, location, strict)
        # excluding an existing but empty group is fine; any other part that matches nothing is a typo
        if not matched and strict and not (term.op == "!" and known):
            raise _matches_nothing(term, pattern, known, [*hosts, *groups], location)
        selected = _combine(selected, term.op, matched)
    if not selected and strict and hosts:
        raise InventoryError(f"host pattern {pattern!r} selects no host", location)
    return sorted(set(selected), key=order.__getitem__)


def _match(
    term: Term, hosts: Sequence[str], order: Mapping[str, int], groups: Mapping[str, Sequence[str]]
) -> tuple[list[str], bool]:
    """The hosts one part names, in inventory order (before its subscript), and whether it names an
    existing group (even an empty one)."""
    expr = term.expr
    if expr in ("all", "*") and term.subscript is None:
        return list(hosts), True
    if expr in order and not (_SPECIAL & set(expr)):
        return [expr], False
    rx = _matcher(expr)
    found: set[str] = set()
    group_hits = [g for g in groups if rx.match(g)]
    for g in group_hits:
        found.update(groups[g])
    # Like Ansible: hosts are matched too when no group was, or the part is a glob/regex.
    if not group_hits or term.is_regex or (_SPECIAL & set(expr)):
        found.update(h for h in hosts if rx.match(h))
    return sorted((h for h in found if h in order), key=order.__getitem__), bool(group_hits)


def _matches_nothing(
    term: Term, pattern: str, known: bool, names: Sequence[str], location: Location | None
) -> InventoryError:
    if known:
        return InventoryError(f"host pattern {term.text!r} matches no host: the group is empty", location)
    hint = _hint(term.expr, names)
    if ":" in term.expr and "," in pattern:
        hint = f"a pattern with ',' is split on ',' only: write {term.expr.replace(':', ',')!r}"
    return InventoryError(f"host pattern {term.text!r} matches no host or group", location, hint)


def _combine(selected: list[str], op: Op, matched: list[str]) -> list[str]:
    """Union a plain part, intersect an ``&`` part, take away a ``!`` part."""
    if op == "":
        seen = set(selected)
        return selected + [h for h in matched if h not in seen]
    if op == "&":
        keep = set(matched)
        return [h for h in selected if h in keep]
    drop = set(matched)
    return [h for h in selected if h not in drop]
