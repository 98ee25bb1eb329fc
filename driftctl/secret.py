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


def conceal(value: Any) -> Any:
    """Every string value inside nested data made a Secret, in place where the data is a dict or a
    list (so a loader's dict and list subclasses keep their locations); keys stay as they are.
    Used for a whole vault-encrypted variables file: all of it is secret, as in Ansible."""
    if isinstance(value, Secret):
        return value
    if isinstance(value, str):
        return Secret(value)
    if isinstance(value, dict):
        for k in list(value):
            value[k] = conceal(value[k])
    elif isinstance(value, list):
        for i, v in enumerate(value):
            value[i] = conceal(v)
    return value


# A text cut to a length (a command's output tail, an argv shortened for a message) may end in the
# first characters of a secret, or start with its last ones: redaction by value misses such a piece.
# A piece of at least CUT_PIECE characters of a secret of at least CUT_SECRET, standing at a cut
# (a prefix followed by the end of the text, whitespace or "...", a suffix at the start of the
# text or after whitespace) is redacted too. Shorter pieces are too often ordinary words.
CUT_SECRET = 8
CUT_PIECE = 5


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret value in ``text``; longest first so a secret inside another goes too.
    Then pieces of a secret left at a cut (see CUT_PIECE)."""
    ordered = sorted((s for s in secrets if s), key=len, reverse=True)
    for s in ordered:
        text = text.replace(s, REDACTED)
    for s in ordered:
        if len(s) >= CUT_SECRET and (s[:CUT_PIECE] in text or s[-CUT_PIECE:] in text):
            text = _redact_cut(text, s)
    return text


def _redact_cut(text: str, secret: str) -> str:
    spans: list[tuple[int, int]] = []
    head, tail = secret[:CUT_PIECE], secret[-CUT_PIECE:]
    i = text.find(head)
    while i >= 0:  # the secret's first characters, then the cut
        k = CUT_PIECE
        while i + k < len(text) and k < len(secret) and text[i + k] == secret[k]:
            k += 1
        end = i + k
        if end == len(text) or text[end].isspace() or text.startswith("...", end) or text.startswith("\u2026", end):
            spans.append((i, end))
        i = text.find(head, i + 1)
    j = text.find(tail)
    while j >= 0:  # the cut, then the secret's last characters
        start, k = j, CUT_PIECE
        while start > 0 and k < len(secret) and text[start - 1] == secret[-k - 1]:
            start -= 1
            k += 1
        if start == 0 or text[start - 1].isspace():
            spans.append((start, j + CUT_PIECE))
        j = text.find(tail, j + 1)
    merged: list[list[int]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    for a, b in reversed(merged):
        text = text[:a] + REDACTED + text[b:]
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
