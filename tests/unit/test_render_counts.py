"""The host line and the summary table count each resource once: the classes add up to the resources."""

from __future__ import annotations

import io

from rich.console import Console

from driftctl.cli.render import host_section, summary_table
from driftctl.model import Change, HostResult, ResourceResult, RunResult


def drift_host() -> HostResult:
    resources = [
        ResourceResult("file:/etc/a", "ok", drift="corrective", changes=[Change("mode", "0600", "0644")]),
        ResourceResult("file:/etc/b", "ok", drift="pending"),
        ResourceResult("file:/etc/c", "ok", drift="corrective", ignored="known, until the migration"),
        ResourceResult("file:/etc/d", "failed", error="permission denied"),
        *(ResourceResult(f"file:/etc/ok{i}", "ok") for i in range(10)),
    ]
    return HostResult("web1", "ok", resources=resources)


def printed(render: object) -> str:
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(render)
    return out.getvalue()


def test_drifted_resources_are_not_also_counted_in_sync() -> None:
    out = io.StringIO()
    host_section(Console(file=out, width=200, color_system=None), drift_host(), "drift", None, False)
    first = out.getvalue().splitlines()[0]
    assert "2 drifted, 10 in sync, 1 drift ignored, 1 failed" in first, first  # 2 + 10 + 1 + 1 = 14


def test_the_summary_table_counts_the_same_way() -> None:
    run = RunResult("drift", hosts=[drift_host(), HostResult("web2", "ok", resources=drift_host().resources)])
    row = next(line for line in printed(summary_table(run)).splitlines() if line.strip().startswith("web1"))
    assert [c for c in row.split() if c != "│"][1:5] == ["drifted", "2", "10", "1"], row
