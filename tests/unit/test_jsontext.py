"""driftctl/jsontext.py writes what json.dumps writes with the same options: fingerprints, digests and
the store's texts must not move when the encoder is made once."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from driftctl import fingerprint
from driftctl.jsontext import compact

VALUES: list[Any] = [
    {"ensure": "file", "content_sha256": "ab" * 32, "owner": "root", "mode": "0644", "size": 617},
    {"b": [3, 2, 1], "a": {"z": None, "y": True, "x": 1.5}}, [], {}, "", "é 中 🙂 \u2028 \x00 \"q\" \\", "\udcff",
    0, -1, 2**80, 1e300, 5e-324, -0.0, math.inf, -math.inf, True, None, (1, "t"), {1: "k", 2.5: "f", None: "n"},
    {"nested": [[{"d": [1, {"e": "f"}]}]]}, {"set": {3, 1, 2}}, {"bytes": b"\x00\xff"}, {"obj": object},
]
OPTIONS = [{}, {"sort_keys": True}, {"sort_keys": True, "ensure_ascii": False}, {"default": str},
           {"sort_keys": True, "default": str},
           {"sort_keys": True, "ensure_ascii": False, "default": fingerprint._default}]


@pytest.mark.parametrize("options", OPTIONS, ids=range(len(OPTIONS)))
@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_the_text_is_json_dumps_s(options: dict[str, Any], value: Any) -> None:
    try:
        want: str | type[Exception] = json.dumps(value, separators=(",", ":"), **options)
    except TypeError:
        want = TypeError
    if want is TypeError:
        with pytest.raises(TypeError):
            compact(**options)(value)
    else:
        assert compact(**options)(value) == want


def test_nan_and_a_fingerprint_that_was_stored_before() -> None:
    assert compact()([math.nan]) == "[NaN]"
    # this state's fingerprint as json.dumps made it (before this module): stored ones must never move
    state = {"ensure": "file", "content_sha256": "ab" * 32, "owner": "root", "group": "root", "mode": "0644"}
    assert fingerprint.of(state) == "9994d99b1ba791b083496a8e206339d85d9050d3937786d92602ececfb5884f7"


def test_without_the_c_encoder_json_dumps_is_used() -> None:
    code = ("import json.encoder; json.encoder.c_make_encoder = None\n"
            "from driftctl.jsontext import compact\n"
            "print(compact(sort_keys=True)({'b': 1, 'a': 'é'}), type(compact()).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.split() == ['{"a":"\\u00e9","b":1}', "partial"]
