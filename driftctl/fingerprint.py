"""Fingerprints: sha256 of canonical JSON of the attributes a resource manages.

The same function fingerprints the desired state (from the manifest), the converged state (stored at
apply) and the observed state (from a probe), so the three can be compared directly. A host's
fingerprint is a Merkle root over its resources: sha256 of the sorted ``id NUL fingerprint`` leaves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from driftctl.jsontext import compact


def canonical(value: Any) -> bytes:
    """Canonical JSON: sorted keys, no whitespace, UTF-8; bytes as their sha256."""
    # undecodable bytes of a host file arrive as surrogates: hashed as they are, never an error
    return _canonical_text(value).encode("utf-8", "surrogatepass")


def _default(value: Any) -> Any:
    if isinstance(value, bytes):
        return "sha256:" + hashlib.sha256(value).hexdigest()
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value, key=str)
    return str(value)


_canonical_text = compact(sort_keys=True, ensure_ascii=False, default=_default)


def managed_state(desired: Mapping[str, Any], observed: Mapping[str, Any]) -> dict[str, Any]:
    """The observed values of the attributes the manifest manages (None in desired = unmanaged)."""
    return {k: observed.get(k) for k, v in desired.items() if v is not None}


def desired_state(desired: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in desired.items() if v is not None}


def of(state: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(state)).hexdigest()


def host_root(fingerprints: Mapping[str, str]) -> str:
    h = hashlib.sha256()
    for rid in sorted(fingerprints):
        h.update(rid.encode() + b"\0" + fingerprints[rid].encode() + b"\n")
    return h.hexdigest()
