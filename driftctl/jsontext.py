"""Compact JSON text by encoders made once.

``json.dumps`` with any option builds a new encoder for every call: of a resource's fingerprint
(~9 us) that was half. These are json's own C encoder, made once with the arguments ``json.dumps``
gives it, so the text is the same; ``json.dumps`` itself where the C encoder is missing.
"""

from __future__ import annotations

import functools
import json
import json.encoder
from collections.abc import Callable
from typing import Any


def compact(*, sort_keys: bool = False, ensure_ascii: bool = True,
            default: Callable[[Any], Any] | None = None) -> Callable[[Any], str]:
    """A function giving ``json.dumps(value, separators=(",", ":"), sort_keys=..., ensure_ascii=...,
    default=...)``. A value that refers to itself is a RecursionError, not json's ValueError."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # an interpreter without json's C half
        return functools.partial(json.dumps, separators=(",", ":"), sort_keys=sort_keys, ensure_ascii=ensure_ascii,
                                 default=default)
    escape = json.encoder.encode_basestring_ascii if ensure_ascii else json.encoder.encode_basestring
    encode = make(None, default or _refuse, escape, None, ":", ",", sort_keys, False, True)

    def text(value: Any) -> str:
        return "".join(encode(value, 0))

    return text


def _refuse(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
