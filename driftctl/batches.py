"""Rolling batches: ``--serial`` and ``--max-fail-percentage``, with Ansible's rules.

``--serial 1,5,25%``: the first batch has 1 host, the next 5, then 25% of all the selected hosts
(rounded down, at least 1) per batch, the last value repeating until every host is in a batch
(Ansible's ``serial:`` list, ``PlaybookExecutor._get_serialized_batches``). Batches run one after
the other, each through the executor (``--parallel`` hosts at once).

After each batch: when its failed and unreachable hosts are **more than** P% of the batch
(``--max-fail-percentage P``), or when every host of the batch failed (Ansible stops then too),
later batches do not start.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from driftctl.errors import ConfigError

T = TypeVar("T")

Step = int | str  # a host count, or "N%"


def parse_serial(text: str) -> list[Step]:
    """``"1,5,25%"`` -> ``[1, 5, "25%"]``. Each value a whole number >= 1 or a percentage 1%..100%."""
    steps: list[Step] = []
    for raw in text.split(","):
        value = raw.strip()
        pct = value.endswith("%")
        number = value[:-1].strip() if pct else value
        if not number.isdigit():
            raise ConfigError(f"--serial {text!r}: {value!r} is not a host count or a percentage",
                              hint="a number of hosts (5), a percentage (25%), or a list: 1,5,25%")
        n = int(number)
        if n < 1 or (pct and n > 100):
            what = "1% to 100%" if pct else "at least 1"
            raise ConfigError(f"--serial {text!r}: {value!r} is out of range ({what})",
                              hint="a batch needs at least one host")
        steps.append(f"{n}%" if pct else n)
    return steps


def parse_max_fail(text: str) -> float:
    """``--max-fail-percentage``: 0 to 100 (a trailing % is allowed)."""
    value = text.strip().removesuffix("%").strip()
    try:
        p = float(value)
    except ValueError:
        p = math.nan
    if math.isnan(p) or not 0 <= p <= 100:
        raise ConfigError(f"--max-fail-percentage {text!r}: a percentage from 0 to 100",
                          hint="0 stops after any failure; 25 stops once more than a quarter of a batch fails")
    return p


def step_size(step: Step, total: int) -> int:
    """Hosts in a batch for one step (Ansible's ``pct_to_int``: rounded down, at least 1)."""
    if isinstance(step, str):
        return int(int(step[:-1]) / 100.0 * total) or 1
    return step


def split(hosts: Sequence[T], steps: Sequence[Step]) -> list[list[T]]:
    """The batches, in order; the last step repeats."""
    left = list(hosts)
    out: list[list[T]] = []
    i = 0
    while left:
        n = step_size(steps[min(i, len(steps) - 1)], len(hosts))
        out.append(left[:n])
        left = left[n:]
        i += 1
    return out


@dataclass(frozen=True)
class Verdict:
    stop: bool
    failed: int
    size: int
    why: str = ""


def judge(failed: int, size: int, max_fail: float | None) -> Verdict:
    """Whether later batches must not start after one with ``failed`` of ``size`` hosts failed."""
    if max_fail is not None and size and failed * 100 > max_fail * size:
        share = 100.0 * failed / size
        return Verdict(True, failed, size,
                       f"{failed} of {size} hosts failed ({share:.0f}% > --max-fail-percentage {max_fail:g})")
    if size and failed == size:
        return Verdict(True, failed, size, f"every host of the batch failed ({failed} of {size})")
    return Verdict(False, failed, size)
