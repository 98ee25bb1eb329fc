"""Host definitions as Ansible writes them: ``web[01:03].example.com``, ``db1:2222``, ``[::1]:22``.

``expand(text, where)`` turns one host definition into host names plus an optional port, exactly as
Ansible's inventory plugins do: ``[01:03]`` keeps the zero padding, ``[a:c]`` is alphabetic,
``[0:10:2]`` has a step, several ranges multiply, ``host:port`` sets ``ansible_port``.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

from driftctl.errors import InventoryError, Location

_RANGE = re.compile(r"\[([^\]\[]*)\]")
_IPV6_BRACKETED = re.compile(r"^\[([0-9a-fA-F:.]*:[0-9a-fA-F:.]*:[0-9a-fA-F:.]*)\](?::(\d+))?$")


@dataclass
class HostDefinition:
    """The host names one definition stands for, and the port it names (``host:port``), if any."""

    names: list[str]
    port: int | None = None


def _outside_brackets(text: str) -> str:
    return _RANGE.sub("", text)


def _split_port(text: str, where: Location) -> tuple[str, int | None]:
    m = _IPV6_BRACKETED.match(text)
    if m:  # [2001:db8::1]:22
        return m.group(1), int(m.group(2)) if m.group(2) else None
    bare = _outside_brackets(text)
    colons = bare.count(":")
    if colons == 0:
        return text, None
    if colons > 1:  # a bare IPv6 address: no port possible
        return text, None
    head, _, port = text.rpartition(":")
    if not port.isdigit() or not head or ":" in _outside_brackets(head):
        raise InventoryError(f"invalid host definition {text!r}: expected NAME or NAME:PORT", where)
    value = int(port)
    if not 0 < value < 65536:
        raise InventoryError(f"invalid port {value} in host definition {text!r}", where)
    return head, value


def _expand_one(bounds: str, text: str, where: Location) -> list[str]:
    parts = bounds.split(":")
    if len(parts) not in (2, 3):
        raise InventoryError(f"host range [{bounds}] in {text!r} must be [begin:end] or [begin:end:step]", where)
    begin, end = parts[0] or "0", parts[1]
    step_text = parts[2] if len(parts) == 3 else "1"
    if not end:
        raise InventoryError(f"host range [{bounds}] in {text!r} has no end", where)
    if not step_text.isdigit() or int(step_text) < 1:
        raise InventoryError(f"host range [{bounds}] in {text!r}: the step must be a positive integer", where)
    step = int(step_text)
    letters = string.ascii_letters
    if len(begin) == 1 and len(end) == 1 and begin in letters and end in letters:
        first, last = letters.index(begin), letters.index(end)
        if first > last:
            raise InventoryError(f"host range [{bounds}] in {text!r} runs backwards", where)
        return list(letters[first : last + 1 : step])
    if not (begin.isdigit() and end.isdigit()):
        raise InventoryError(
            f"host range [{bounds}] in {text!r} must be numbers ([01:10]) or single letters ([a:f])", where
        )
    if begin.startswith("0") and len(begin) > 1:
        # Ansible: a leading zero asks for fixed-width names, so both ends must have the same width.
        if len(begin) != len(end):
            raise InventoryError(
                f"host range [{bounds}] in {text!r}: begin and end must have the same width when zero-padded", where
            )
        width = len(begin)
    else:
        width = 0
    first, last = int(begin), int(end)
    if first > last:
        raise InventoryError(f"host range [{bounds}] in {text!r} runs backwards", where)
    return [str(i).zfill(width) for i in range(first, last + 1, step)]


def expand(text: str, where: Location) -> HostDefinition:
    """Expand one host definition. Raises InventoryError (at ``where``) for a malformed range or port."""
    text = text.strip()
    if not text:
        raise InventoryError("empty host name", where)
    if "[" not in text and ":" not in text:  # a plain name (most of them): no range, no port
        return HostDefinition([text])
    name, port = _split_port(text, where)
    names = [name]
    # Expand the leftmost range first, then the rest of each result: cartesian product, in order.
    while any(":" in m.group(1) for m in _RANGE.finditer(names[0])):
        expanded: list[str] = []
        for n in names:
            m = next(m for m in _RANGE.finditer(n) if ":" in m.group(1))
            for piece in _expand_one(m.group(1), text, where):
                expanded.append(n[: m.start()] + piece + n[m.end() :])
        names = expanded
    return HostDefinition(names, port)
