"""The catalog as data: its canonical JSON and digest, and which values are secret."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from driftctl.jsontext import compact
from driftctl.manifest.render import FactsPlaceholder
from driftctl.model import Catalog
from driftctl.secret import Secret


def secret_strings(value: Any, out: set[str]) -> None:
    """Every scalar inside a variable named in ``secrets:``, as the text it renders to."""
    if isinstance(value, Mapping):
        for v in value.values():
            secret_strings(v, out)
    elif isinstance(value, (list, tuple)):
        for v in value:
            secret_strings(v, out)
    elif value is not None and not isinstance(value, (bool, FactsPlaceholder)) and str(value):
        out.add(str(value))


def mentions_secret(value: Any, secrets: Iterable[str]) -> bool:
    """Whether a secret value appears in any string (or bytes) inside ``value``."""
    if isinstance(value, str):
        return any(s in value for s in secrets)
    if isinstance(value, bytes):
        return any(s.encode("utf-8") in value for s in secrets)
    if isinstance(value, Mapping):
        return any(mentions_secret(v, secrets) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(mentions_secret(v, secrets) for v in value)
    return False


_PLAIN = frozenset({str, int, float, bool, type(None)})  # exact types: a Secret (a str) is not one


def canonical(value: Any) -> Any:
    """``value`` as plain JSON data: bytes by their sha256, sets sorted, secrets as plain str."""
    kind = type(value)
    if kind in _PLAIN:  # the common cases first, without the ABC checks below
        return value
    if kind is dict:
        return {str(k): canonical(v) for k, v in value.items()}
    if kind is list:
        return [canonical(v) for v in value]
    if isinstance(value, bytes):
        return {"bytes_sha256": hashlib.sha256(value).hexdigest()}
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(canonical(v) for v in value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return str(value) if isinstance(value, Secret) else value
    return repr(value)


def digest(catalog: Catalog) -> str:
    """sha256 of the rendered catalog as canonical JSON (sorted keys, no spaces).

    Covers what the host should be (resources in order with params and relations, watch paths),
    not where it was written: moving a resource to another line does not change it.
    """
    doc = {
        "host": catalog.host,
        "resources": [
            {"id": r.id, "params": canonical(r.params), "require": r.require, "before": r.before,
             "notify": r.notify, "subscribe": r.subscribe, "sensitive": r.sensitive}
            for r in catalog.resources
        ],
        "watch": catalog.watch,
    }
    return hashlib.sha256(_sorted_text(doc).encode("utf-8")).hexdigest()


_sorted_text = compact(sort_keys=True, ensure_ascii=False)
