"""The report document as JSON: pretty, keys in a stable (sorted) order, one trailing newline."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def render(doc: Mapping[str, Any]) -> str:
    # sort_keys: two runs that found the same thing give files that diff cleanly
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n"
