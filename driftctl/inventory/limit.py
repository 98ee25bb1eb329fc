"""``--limit`` as Ansible reads it, with ``@FILE`` parts: Ansible's retry files, one pattern per line.

``--limit @site.retry``, ``--limit 'web,@failed.txt'`` or ``--limit '@failed.txt:!db1'``: the limit is
split into parts as any pattern is (on ``,`` if it has one, else on ``:``); a part starting with
``@`` is replaced by the lines of that file (relative to the current directory), each line one
pattern part (Ansible does not split a line on ``:`` or ``,``, so ``web1:db1`` on a line names nothing:
an error here). Blank lines and the spaces around a pattern are skipped.

As for any ``--limit`` part, a line that matches no host or group is an error, here naming the file
and line (Ansible warns and ignores it). A missing file is an error naming it, as in Ansible. A file
with no pattern at all is an error too: Ansible then applies no limit, i.e. runs on every host.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from driftctl import patterns
from driftctl.errors import InventoryError, Location
from driftctl.inventory.model import Inventory
from driftctl.yamlsrc import read_text

_WHERE = Location("--limit")


class LimitFileError(InventoryError):
    """A ``@FILE`` of a --limit that cannot be used (missing, a directory, unreadable, no pattern, a
    line with several patterns): about the file, not about the inventory."""


@dataclass
class Limit:
    """A ``--limit`` with its ``@FILE`` parts read: ``parts`` are the pattern parts in order, ``locations``
    where each came from (a file and line for a file's lines, None for a part given on the command line)."""

    text: str
    parts: list[str] = field(default_factory=list)
    locations: list[Location | None] = field(default_factory=list)

    @property
    def pattern(self) -> str:
        """One pattern with the same meaning: parts joined with ``,`` (so a line's ``:`` stays in it)."""
        return ",".join(self.parts)

    @property
    def from_files(self) -> bool:
        return any(loc is not None for loc in self.locations)


def read(text: str, cwd: Path | None = None) -> Limit:
    """Split ``text`` and read its ``@FILE`` parts. Raises LimitFileError for a missing or unreadable
    file, a directory, a file without any pattern, and a line that holds ``,`` (one pattern per line)."""
    out = Limit(text)
    for part in patterns.split(text):
        if not part.startswith("@"):
            out.parts.append(part)
            out.locations.append(None)
            continue
        name = part[1:]
        path = Path(name) if cwd is None or Path(name).is_absolute() else cwd / name
        if not name:
            raise LimitFileError("'@' names no limit file", _WHERE, "give --limit @FILE, one host pattern per line")
        if path.is_dir():
            raise LimitFileError(f"limit file {name} is a directory, not a file", _WHERE)
        if not path.exists():
            raise LimitFileError(f"limit file {name} not found", _WHERE)
        lines = read_text(path, LimitFileError).split("\n")
        before = len(out.parts)
        for number, line in enumerate(lines, 1):
            line = line.strip()
            if not line:
                continue
            where = Location(str(path), number)
            if line.startswith("#"):
                raise LimitFileError("a limit file has no comments: this line is read as a host pattern", where,
                                     "remove it; Ansible reads it as a host name, which matches nothing")
            if len(patterns.split(line)) != 1:  # web1:db1, web1,db1 (web[0:2] and IPv6 addresses are one)
                raise LimitFileError(f"{line!r}: one host pattern per line", where,
                                     "Ansible reads the whole line as one name, which matches nothing")
            out.parts.append(line)
            out.locations.append(where)
        if len(out.parts) == before:
            raise LimitFileError(f"limit file {name} names no host", Location(str(path)),
                                 "Ansible would then apply no limit at all, acting on every host")
    return out


def select_names(inv: Inventory, text: str | None, cwd: Path | None = None) -> list[str]:
    """The host names ``--limit text`` selects, in inventory order (all hosts for None), reading ``@FILE``
    parts. An error in a file's line (a pattern that matches nothing) names its file and line."""
    if text is None or "@" not in text:
        return inv.select_names(text)
    limit = read(text, cwd)
    for part, where in zip(limit.parts, limit.locations, strict=True):
        if where is not None:  # each line alone, so that a mistake is reported at its line
            inv.select_names(part, location=where)
    try:
        return inv.select_names(limit.pattern)
    except InventoryError as e:
        if e.message.endswith("selects no host"):  # say so with the limit as the user wrote it
            raise InventoryError(f"--limit {text!r} selects no host", e.location, e.hint) from None
        raise
