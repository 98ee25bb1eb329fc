"""Reports of stored runs: the HTML drift chart from a real SQLite store's drift_series, and
``driftctl report`` as a user types it (a subprocess, no TTY), reading that store."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_report import T0, _parse, build_run

from driftctl.model import Change, HostResult, ResourceResult, RunResult, UnmanagedChange
from driftctl.report import chart_from_store, document, render, write_reports
from driftctl.store import open_store

INV = "inventory/stage"


def drift_run(started: float, corrective: int, pending: int = 0, unmanaged: int = 0) -> dict[str, Any]:
    resources = [ResourceResult(f"file:/etc/c{i}", "ok", [Change("mode", "0600", "0644")], type="file",
                                drift="corrective") for i in range(corrective)]
    resources += [ResourceResult(f"file:/etc/p{i}", "ok", [Change("mode", "0600", "0644")], type="file",
                                 drift="pending") for i in range(pending)]
    resources.append(ResourceResult("user:alice", "ok", reason="in sync", type="user"))
    changes = [UnmanagedChange(f"/etc/cron.d/u{i}", "added", None, {"type": "file"}) for i in range(unmanaged)]
    hosts = [HostResult("web1", "ok", resources, unmanaged=changes, unmanaged_examined=True),
             HostResult("web2", "ok", [ResourceResult("user:alice", "ok", reason="in sync", type="user")])]
    return document.build(RunResult("drift", hosts, started=started, finished=started + 5), INV)


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    path = tmp_path / "state" / "driftctl.sqlite"
    with open_store(path) as store:
        store.save_run(drift_run(T0, corrective=1))
        apply = RunResult("apply", [HostResult("web1", "changed", [ResourceResult(
            "file:/etc/c0", "changed", [Change("mode", "0600", "0644")], type="file")])],
            started=T0 + 600, finished=T0 + 610)
        store.save_run(document.build(apply, INV))
        store.save_run(drift_run(T0 + 1800, corrective=0))
        store.save_run(drift_run(T0 + 3600, corrective=2, pending=1, unmanaged=1))
    return path


def test_chart_has_every_drift_run_with_counts_per_class(store_path: Path) -> None:
    with open_store(store_path) as store:
        runs = store.runs(INV, command="drift")
        chart = chart_from_store(store, INV)
    assert [r.run_id for r in chart] == [r.id for r in reversed(runs)]  # oldest first, apply left out
    assert [r.total for r in chart] == [1, 0, 4]
    assert {k: v for k, v in chart[2].counts.items() if v} == {"corrective": 2, "pending": 1, "unmanaged": 1}


def _bars(page_text: str) -> dict[str, float]:
    """tooltip -> height of each chart segment."""
    out = {}
    for m in re.finditer(r'<rect [^>]*height="([\d.]+)"[^>]*><title>([^<]*)</title>', page_text):
        out[m.group(2)] = float(m.group(1))
    return out


def test_html_chart_from_the_store(store_path: Path) -> None:
    with open_store(store_path) as store:
        chart = chart_from_store(store, INV)
        doc = store.latest_run(INV, command="drift")
    assert doc is not None
    text = render(doc, "html", chart)
    bars = _bars(text)
    first, empty, last = (r.run_id for r in chart)
    assert f"run #{empty} 2026-09-21 14:43: no drift" in bars
    c1 = bars[f"run #{first} 2026-09-21 14:13: 1 corrective"]
    assert bars[f"run #{last} 2026-09-21 15:13: 2 corrective"] == pytest.approx(2 * c1, abs=0.1)
    assert bars[f"run #{last} 2026-09-21 15:13: 1 pending"] == pytest.approx(c1, abs=0.1)
    assert bars[f"run #{last} 2026-09-21 15:13: 1 unmanaged"] == pytest.approx(c1, abs=0.1)
    page = _parse(text)
    assert not [t for t, _ in page.tags if t in ("link", "img")]
    assert [t for t, _ in page.tags].count("script") == 1  # the filters, allowed by hash in the CSP


def test_write_reports_takes_the_chart_from_a_store_url(store_path: Path, tmp_path: Path) -> None:
    with open_store(store_path) as store:
        doc = store.latest_run(INV, command="drift")
    assert doc is not None
    (html_path,) = write_reports(doc, tmp_path / "out", formats=["html"], store=str(store_path))
    assert len([t for t in _bars(html_path.read_text()) if t.startswith("run #")]) == 1 + 1 + 3


def cli(*args: str | os.PathLike[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTCTL_")}
    env.update(NO_COLOR="1", DRIFTCTL_STATE_DIR=str(cwd / "no-state-here"))
    return subprocess.run([sys.executable, "-m", "driftctl", *map(str, args)], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=120, stdin=subprocess.DEVNULL)


def test_report_command_renders_the_latest_drift_run(store_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "site" / "drift.html"
    p = cli("report", INV, "--state", store_path, "--format", "html", "-o", out, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout == ""
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    text = out.read_text()
    assert "2 corrective" in text and "driftctl drift: inventory/stage" in text

    p = cli("report", "./inventory/stage/", "--state", store_path, "-f", "prometheus", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    samples = {(s.name, s.labels.get("host"), s.labels.get("class")): s.value
               for f in text_string_to_metric_families(p.stdout) for s in f.samples}
    assert samples[("driftctl_drifted_resources", "web1", "corrective")] == 2
    assert samples[("driftctl_unmanaged_changes", "web1", None)] == 1


def test_report_command_renders_a_given_run(store_path: Path, tmp_path: Path) -> None:
    with open_store(store_path) as store:
        apply_id = store.runs(INV, command="apply")[0].id
    p = cli("report", INV, "--state", store_path, "-f", "junit", "--run", str(apply_id), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert 'name="driftctl apply: inventory/stage"' in p.stdout
    p = cli("report", "inventory/other", "--state", store_path, "-f", "json", "--run", str(apply_id), cwd=tmp_path)
    assert p.returncode == 1
    assert f"run {apply_id} is a run of inventory/stage, not of inventory/other" in p.stderr


def test_report_command_without_a_run_exits_1(store_path: Path, tmp_path: Path) -> None:
    p = cli("report", "inventory/prod", "--state", store_path, cwd=tmp_path)
    assert p.returncode == 1
    assert "no drift run of inventory/prod" in p.stderr
    assert p.stdout == ""
    p = cli("report", INV, "--state", store_path, "--run", "9999", cwd=tmp_path)
    assert p.returncode == 1 and "no run 9999" in p.stderr


def test_report_command_markdown_of_a_rich_run(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    doc = document.build(build_run(), "inventory/prod")
    with open_store(path) as store:
        store.save_run(doc)
    p = cli("report", "inventory/prod", "--state", path, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("# driftctl drift: inventory/prod\n")
    assert "| `web2` | unreachable |" in p.stdout
