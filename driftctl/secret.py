"""Secret values: marked in YAML with ``!secret``, redacted in every output.

A Secret is a str (templates use it like any string), but its repr hides it. Rendering may copy
the value into a bigger string, so outputs are redacted by value with ``redact()`` as well.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

REDACTED = "********"
# the title of a resource whose title holds a secret: this prefix and 12 hex digits of a sha256
SECRET_TITLE_PREFIX = "secret-"  # noqa: S105 (a label, not a password)


class Secret(str):
    __slots__ = ()

    def __repr__(self) -> str:
        return f"Secret({REDACTED!r})"


def secret_title(type_name: str, title: str) -> str:
    """The title shown for a resource whose own title holds a secret: ``secret-3f9a1c2b7e4d``.

    A sha256 of the type and the whole, unredacted title: the same resource gets the same id run
    after run (drift history follows it) and on every host with the same value, and the id says
    nothing about the secret unless the rest of the title is known and the secret is guessable.
    The id changes when the secret does.
    """
    text = f"driftctl secret title\0{type_name}\0{title}".encode()
    return SECRET_TITLE_PREFIX + hashlib.sha256(text).hexdigest()[:12]


def mentions(text: str, secrets: Iterable[str]) -> bool:
    """Whether any (non-empty) secret value occurs in ``text``."""
    return isinstance(text, str) and any(s and s in text for s in secrets)


def collect(value: Any, found: set[str] | None = None) -> set[str]:
    """Every Secret inside nested dicts/lists."""
    found = set() if found is None else found
    if isinstance(value, Secret):
        if value:
            found.add(str(value))
    elif isinstance(value, dict):
        for v in value.values():
            collect(v, found)
    elif isinstance(value, (list, tuple)):
        for v in value:
            collect(v, found)
    return found


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret value in ``text``; longest first so a secret inside another goes too."""
    for s in sorted(secrets, key=len, reverse=True):
        if s:
            text = text.replace(s, REDACTED)
    return text


def redact_data(value: Any, secrets: Iterable[str]) -> Any:
    """redact() applied to every string inside nested data (for JSON reports and the store)."""
    secrets = list(secrets)
    if not secrets:
        return value
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {k: redact_data(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_data(v, secrets) for v in value]
    return value
