"""``group_vars/`` and ``host_vars/`` next to the inventory, found the way Ansible finds them.

For a name ``web`` Ansible takes the first of ``web`` (a file, or a directory whose files are all
read, recursively, in lexical order), ``web.yml``, ``web.yaml``, ``web.json``. Files and directories
that belong to no known group or host are ignored with a warning (Ansible ignores them silently,
so refusing them would break existing inventories; a warning still catches ``group_vars/wbe.yaml``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from driftctl import yamlsrc
from driftctl.errors import InventoryError, Location
from driftctl.inventory.model import VarSet
from driftctl.patterns import Nearest

EXTENSIONS = (".yml", ".yaml", ".json")


@dataclass
class VarFiles:
    """What one of ``group_vars/`` or ``host_vars/`` holds for the known names."""

    by_name: dict[str, VarSet] = field(default_factory=dict)
    files: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _skipped(name: str) -> bool:
    return name.startswith(".") or name.endswith("~")


def _dir_files(path: Path) -> list[Path]:
    """Ansible's ``_get_dir_vars_files``: lexical order, recursing into directories without a dot."""
    found: list[Path] = []
    for entry in sorted(path.iterdir(), key=lambda p: p.name):
        if _skipped(entry.name):
            continue
        if entry.is_dir() and not entry.suffix:
            found.extend(_dir_files(entry))
        elif entry.is_file() and (not entry.suffix or entry.suffix in EXTENSIONS):
            found.append(entry)
    return found


@dataclass
class _Found:
    first: Path | None  # the candidate Ansible reads
    files: list[Path]  # the files it stands for (several for a directory)
    shadowed: list[Path]  # candidates that exist but lose to ``first``


def _find(directory: Path, name: str, present: set[str]) -> _Found:
    """``present``: the entries of ``directory``, lower-cased (listed once: 10,000 hosts would be 40,000 stat
    calls). Each candidate listed is still checked with exists(), which decides as before: a dangling link
    does not exist, and a case-insensitive file system finds ``Web.yaml`` for ``web``."""
    candidates = [name] + [name + ext for ext in EXTENSIONS]
    unlisted = "/" in name or name in (".", "..")  # a path the listing cannot show: ask the file system
    existing = [directory / c for c in candidates if unlisted or c.lower() in present]
    existing = [p for p in existing if p.exists()]
    if not existing:
        return _Found(None, [], [])
    first = existing[0]
    return _Found(first, _dir_files(first) if first.is_dir() else [first], existing[1:])


def read_vars_file(path: Path) -> VarSet:
    """One variables file: a mapping of names to values (an empty file is no variables). A whole
    vault-encrypted file is decrypted and its string values are secrets (see yamlsrc.load_vars_file)."""
    data = yamlsrc.load_vars_file(path, InventoryError)
    out = VarSet()
    if data is None:
        return out
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else "a string" if isinstance(data, str) else type(data).__name__
        raise InventoryError(
            f"a variables file must be a mapping of names to values, not {kind}",
            yamlsrc.location_of(data, Location(str(path), 1)),
        )
    for key, value in data.items():
        where = data.loc(key) if isinstance(data, yamlsrc.YamlMap) else Location(str(path))
        if not isinstance(key, str) or not key:
            raise InventoryError(f"variable name {key!r} must be a non-empty string", where)
        out.set(key, value, where)
    return out


def load(directory: Path, names: Iterable[str], kind: str) -> VarFiles:
    """Variables for each of ``names`` from ``directory`` (``group_vars`` or ``host_vars``)."""
    result = VarFiles()
    if not directory.is_dir():
        return result
    known = list(names)
    what = kind[:-5]  # "group" or "host"
    claimed: set[str] = set()
    present = {entry.lower() for entry in os.listdir(directory)}
    for name in known:
        found = _find(directory, name, present)
        if found.first is None:
            continue
        claimed.update([name] + [name + ext for ext in EXTENSIONS])
        for p in found.shadowed:
            result.warnings.append(
                f"{p}: ignored, {found.first} is read for {what} {name!r} "
                "(like Ansible, only the first of NAME, NAME.yml, NAME.yaml, NAME.json is read)"
            )
        merged = VarSet()
        for f in found.files:
            merged.update(read_vars_file(f))
        result.by_name[name] = merged
        result.files[name] = [str(f) for f in found.files]
    hints = Nearest(known)
    for entry in sorted(directory.iterdir(), key=lambda p: p.name):
        if _skipped(entry.name) or entry.name in claimed:
            continue
        stem = entry.name
        for ext in EXTENSIONS:
            if entry.is_file() and stem.endswith(ext):
                stem = stem[: -len(ext)]
                break
        close = hints.find(stem)
        hint = f"; did you mean {close!r}?" if close else ""
        result.warnings.append(f"{entry}: there is no {what} named {stem!r}, so it is ignored{hint}")
    return result
