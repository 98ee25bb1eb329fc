"""Ansible's INI inventory format.

```ini
bastion ansible_host=203.0.113.5          # before any section: the group 'ungrouped'
[web]
web[01:03] http_port=8080                  # a range and inline host variables
[web:vars]
ntp_server=ntp.example.com
[prod:children]
web
```

Values are parsed as Ansible does: a Python literal if it is one (``8080`` is an int, ``True`` a
bool, ``"x"`` the string x, ``[1, 2]`` a list), otherwise the text as written (``yes`` stays the
string "yes"). Host lines are split like a shell line (quotes, ``#`` comments); ``[x:vars]`` lines
are ``key=value`` with everything after the first ``=`` as the value. ``[x:vars]`` and
``[x:children]`` may only name groups that the file defines (with ``[x]`` or ``[x:children]``),
before or after; anything else is an error at the line that names it.
"""

from __future__ import annotations

import ast
import re
import shlex
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from driftctl.errors import InventoryError, Location
from driftctl.inventory import hostpattern
from driftctl.inventory.builder import ALL, UNGROUPED, Builder
from driftctl.secret import conceal

_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:[#;].*)?$")
_GROUP_NAME = re.compile(r"^([^:\]\s]+)\s*(?:[#;].*)?$")
_COMMENT = ("#", ";")
# A word that cannot be a Python literal: a name, maybe dotted or dashed (``rack12``, ``db.example.com``,
# ``web-01``). literal_eval refuses every one of them (a Name, an Attribute or a BinOp of names), so it
# stays text; only True, False and None are literals among such words.
_PLAIN_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_LITERAL_WORDS = {"True": True, "False": False, "None": None}
# Numbers with two dots or more (``10.0.0.42``, ``1.2.3``) are no literal either: text, as literal_eval says.
_DOTTED_NUMBERS = re.compile(r"[0-9]+(?:\.[0-9]+){2,}")
_DECIMAL = re.compile(r"[1-9][0-9]{0,17}|0")  # an int as literal_eval reads it (``0123`` is not one)
# shlex.split(line, comments=True) splits on these only; a line without quotes or backslashes is split
# on them alone, with '#' starting a comment anywhere (as shlex does in posix mode).
_SHLEX_SPACE = re.compile(r"[ \t\r\n]+")


def parse_value(text: str) -> Any:
    """A value from an INI file, the way Ansible reads it (``ast.literal_eval``, else the text)."""
    if _PLAIN_WORD.fullmatch(text):  # most values; literal_eval costs ~20 us each
        return _LITERAL_WORDS.get(text, text)
    if _DECIMAL.fullmatch(text):
        return int(text)
    if _DOTTED_NUMBERS.fullmatch(text):
        return text
    return _literal(text)


def split_host_line(line: str) -> list[str]:
    """``shlex.split(line, comments=True)``, as Ansible splits a host line, without shlex's cost on plain lines."""
    if "'" in line or '"' in line or "\\" in line:
        return shlex.split(line, comments=True)
    return [t for t in _SHLEX_SPACE.split(line.partition("#")[0]) if t]


def _literal(text: str) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value


@dataclass
class _Pending:
    """A group named by [x:vars] or [x:children] that the file has not defined (yet)."""

    section: str  # the [..] header or the parent section that names it
    kind: str  # "vars" or "children"
    where: Location


def load(path: Path, builder: Builder, text: str, secret: bool = False) -> None:
    """Read one INI inventory file (already read as ``text``) into ``builder``. ``secret``: the file was
    vault-encrypted as a whole, so every value it sets is a Secret (as in a vaulted YAML file)."""
    file = str(path)
    value_of = (lambda text: conceal(parse_value(text))) if secret else parse_value
    q = _hidden if secret else repr  # a vaulted file's lines are not quoted in errors: they hold its secrets
    defined: set[str] = {g for g in builder.groups if builder.groups[g].location is not None} | {ALL, UNGROUPED}
    pending: dict[str, _Pending] = {}
    group, state = UNGROUPED, "hosts"
    for number, raw in enumerate(text.splitlines(), start=1):
        where = Location(file, number)
        line = raw.strip()
        if not line or line.startswith(_COMMENT):
            continue
        m = _SECTION.match(line)
        if m:
            group, state = m.group(1), m.group(2) or "hosts"
            if state not in ("hosts", "children", "vars"):
                raise InventoryError(
                    f"section [{group}:{state}] has an unknown type {state!r}",
                    where,
                    "use [group], [group:vars] or [group:children]",
                )
            if state == "vars":
                if group not in defined and group not in pending:
                    pending[group] = _Pending(f"[{group}:vars]", "vars", where)
            else:
                builder.group(group, where)
                defined.add(group)
                pending.pop(group, None)
            continue
        if line.startswith("[") and line.endswith("]"):
            raise InventoryError(
                f"invalid section header {q(line)}",
                where,
                "a header is [name], [name:vars] or [name:children], with no spaces",
            )
        if state == "hosts":
            _host_line(builder, group, line, where, value_of, q)
        elif state == "vars":
            key, sep, value = line.partition("=")
            if not sep or not key.strip():
                raise InventoryError(f"expected key=value in [{group}:vars], got {q(line)}", where)
            builder.set_group_var(group, key.strip(), value_of(value.strip()), where)
        else:
            cm = _GROUP_NAME.match(line)
            if not cm:
                raise InventoryError(f"expected a group name in [{group}:children], got {q(line)}", where)
            child = cm.group(1)
            if child not in defined and child not in pending:
                pending[child] = _Pending(f"[{group}:children]", "children", where)
            builder.add_child(group, child, where)
    for name, p in pending.items():
        if p.kind == "vars":
            raise InventoryError(f"section {p.section} is for group {name!r}, which is not defined", p.where,
                                 f"define it with a [{name}] or [{name}:children] section")
        raise InventoryError(f"section {p.section} names group {name!r}, which is not defined", p.where,
                             f"define it with a [{name}] or [{name}:children] section")


def _hidden(_text: str) -> str:
    return "a line not shown (the file is vault-encrypted)"


def _host_line(builder: Builder, group: str, line: str, where: Location,
               value_of: Callable[[str], Any] = parse_value, q: Callable[[str], str] = repr) -> None:
    try:
        tokens = split_host_line(line)
    except ValueError as e:
        raise InventoryError(f"cannot parse host line {q(line)}: {e}", where) from None
    if not tokens:
        return
    definition = hostpattern.expand(tokens[0], where)
    variables: dict[str, Any] = {}
    for token in tokens[1:]:
        key, sep, value = token.partition("=")
        if not sep or not key:
            raise InventoryError(f"expected key=value after host {tokens[0]!r}, got {q(token)}", where)
        variables[key] = value_of(value)
    for host in definition.names:
        new = host not in builder.hosts
        builder.add_host(group, host, where)
        if definition.port is not None and new:  # Ansible sets the port of NAME:PORT only where the host first appears
            builder.set_host_var(host, "ansible_port", definition.port, where)
        for key, value in variables.items():
            builder.set_host_var(host, key, value, where)
