"""Tags: which resources a run examines (``--tags`` / ``--skip-tags``), with Ansible's rules.

A resource runs when ``TagSelection.selects(resource.tags)`` (Ansible's ``Taggable.evaluate_tags``,
tested against ansible-core itself): ``--tags`` defaults to ``all``; the special tags are

- ``all``: every resource, except those tagged ``never``;
- ``tagged`` / ``untagged``: resources with at least one tag / with none;
- ``always``: selected whatever ``--tags`` says, unless ``--skip-tags always`` (or ``all``; another of
  its own tags skipped also skips it);
- ``never``: left out unless one of its tags (``never`` itself, or another) is asked for by name.

``--skip-tags`` wins over ``--tags``. Relations are not followed (as in Puppet): a selected resource
runs as if what it requires were in place, and a refresh it would send to a resource left out is
dropped (see ``select_catalog``). Unlike Ansible, which warns, a tag that no resource anywhere has is
an input error (``check_known``): a typo would otherwise turn a run into a no-op that reports success.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from driftctl.errors import ConfigError
from driftctl.model import Catalog, Resource
from driftctl.resources.base import did_you_mean

log = logging.getLogger("driftctl.tags")

SPECIAL = ("all", "tagged", "untagged", "always", "never")
UNTAGGED = frozenset({"untagged"})


@dataclass(frozen=True)
class TagSelection:
    """``only``: --tags (default ``all``); ``skip``: --skip-tags."""

    only: frozenset[str] = frozenset({"all"})
    skip: frozenset[str] = frozenset()

    @property
    def default(self) -> bool:
        """Nothing asked for: every resource but those tagged ``never``."""
        return self.only == {"all"} and not self.skip

    def selects(self, tags: Iterable[str]) -> bool:
        """Ansible's rule (ansible/playbook/taggable.py ``evaluate_tags``), for one resource's tags."""
        have = frozenset(tags) or UNTAGGED
        tagged = have != UNTAGGED
        run = not self.only or (
            "always" in have
            or ("all" in self.only and "never" not in have)
            or not have.isdisjoint(self.only)
            or ("tagged" in self.only and tagged and "never" not in have)
        )
        if run and self.skip:
            if "all" in self.skip:
                run = "always" in have and "always" not in self.skip
            else:
                run = have.isdisjoint(self.skip) and not ("tagged" in self.skip and tagged)
        return run

    def named(self) -> set[str]:
        """The tags the user named that are not special."""
        return {t for t in self.only | self.skip if t not in SPECIAL}


def parse_tags(values: Sequence[str], option: str) -> list[str]:
    """``--tags a,b --tags c`` -> ``["a", "b", "c"]``; an empty name (``a,,b``, ``""``) is an error."""
    out: list[str] = []
    for value in values:
        for part in value.split(","):
            name = part.strip()
            if not name:
                raise ConfigError(f"{option} {value!r}: an empty tag name",
                                  hint="tags are separated by commas: --tags web,db")
            if name not in out:
                out.append(name)
    return out


def selection(tags: Sequence[str], skip_tags: Sequence[str]) -> TagSelection:
    only = parse_tags(tags, "--tags") if tags else ["all"]
    skip = parse_tags(skip_tags, "--skip-tags") if skip_tags else []
    return TagSelection(frozenset(only), frozenset(skip))


def check_known(chosen: TagSelection, known: Iterable[str], where: str) -> None:
    """An input error for a tag named on the command line that no resource has (with a did-you-mean)."""
    known = set(known)
    unknown = sorted(chosen.named() - known)
    if not unknown:
        return
    option = "--skip-tags" if unknown[0] in chosen.skip and unknown[0] not in chosen.only else "--tags"
    hint = did_you_mean(unknown[0], sorted(known | set(SPECIAL)))
    names = ", ".join(repr(t) for t in unknown)
    listed = ", ".join(sorted(known)) if known else "none"
    raise ConfigError(
        f"{option}: no resource in {where} has the tag(s) {names} (tags there: {listed})",
        hint=hint or "special tags: " + ", ".join(SPECIAL),
    )


@dataclass
class Dropped:
    """A relation to a resource left out by the tags (for the warning)."""

    source: str
    target: str
    kind: str


@dataclass
class Selected:
    catalog: Catalog
    dropped: list[Dropped] = field(default_factory=list)


def select_catalog(catalog: Catalog, chosen: TagSelection) -> Selected:
    """``catalog`` with only the resources ``chosen`` selects; the others in ``Catalog.excluded``.

    Relations to a resource left out are removed from the copies (the selected resource runs as if its
    dependencies were in place; a notify to a resource left out is dropped: it is not refreshed in this
    run). A catalog where something is left out has no watch paths: its host's unmanaged changes are
    not examined (null in the report), so their episodes are neither extended nor closed.
    """
    keep = [r for r in catalog.resources if chosen.selects(r.tags)]
    if len(keep) == len(catalog.resources):
        return Selected(catalog)
    ids = {r.id for r in keep}
    dropped: list[Dropped] = []
    copies: list[Resource] = []
    for r in keep:
        for kind in ("require", "before", "notify", "subscribe"):
            dropped += [Dropped(r.id, t, kind) for t in getattr(r, kind) if t not in ids]
        copies.append(replace(r, require=[t for t in r.require if t in ids], before=[t for t in r.before if t in ids],
                              notify=[t for t in r.notify if t in ids],
                              subscribe=[t for t in r.subscribe if t in ids]))
    excluded = [r for r in catalog.resources if r.id not in ids]
    return Selected(replace(catalog, resources=copies, watch=[], excluded=excluded), dropped)


def warn_dropped(host: str, dropped: Sequence[Dropped]) -> None:
    """One warning per host for refreshes lost to the tags (require/before are silent: by design)."""
    lost = [d for d in dropped if d.kind in ("notify", "subscribe")]
    if not lost:
        return
    pairs = ", ".join(f"{d.source} -> {d.target}" if d.kind == "notify" else f"{d.target} -> {d.source}"
                      for d in lost)
    log.warning("%s: notified resources are left out by the tags (%s): a change will not refresh them in "
                "this run; select their tag too to restart or reload them", host, pairs)
