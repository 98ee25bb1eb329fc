"""The JUnit report of real runs on real hosts, as a CI job gets it: ``drift --report-dir`` (full and
--tags), and ``driftctl report -f junit --run`` of a stored apply. Each file is checked as its
consumers take it: the Jenkins xunit plugin's junit-10.xsd, junitparser and xunitparser (the unit
tests in tests/unit/test_junit.py cover every case from documents; this is the same contract on what
the CLI really writes). The hand edit is made through podman, not driftctl.
"""

from __future__ import annotations

import io
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import junitparser
import pytest
import xmlschema
import xunitparser
from e2ehelp import driftctl, write_inventory

from driftctl.store import open_store

XSD = Path(__file__).resolve().parent.parent / "data" / "junit-10.xsd"
OUTCOME = {junitparser.Failure: "failure", junitparser.Error: "error", junitparser.Skipped: "skipped"}

pytestmark = pytest.mark.fleet


def consumed(xml: str) -> tuple[dict[str, tuple[int, int, int, int]], dict[tuple[str, str], Any]]:
    """XSD-valid, and junitparser and xunitparser agree: (per suite counts, (host, case) -> result or None)."""
    problems = [f"{e.reason} at {e.path}" for e in xmlschema.XMLSchema(str(XSD)).iter_errors(xml)]
    assert problems == [], problems
    suites, results = {}, {}
    for suite in junitparser.JUnitXml.fromstring(xml):
        seen: Counter[str] = Counter()
        for case in suite:
            result = case.result[0] if case.result else None
            results[(case.classname, case.name)] = result
            seen[OUTCOME[type(result)] if result is not None else "passed"] += 1
        counts = (suite.tests, suite.failures, suite.errors, suite.skipped)
        assert counts == (sum(seen.values()), seen["failure"], seen["error"], seen["skipped"]), suite.name
        suites[suite.name] = counts
    ts, tr = xunitparser.parse(io.BytesIO(xml.encode("utf-8")))  # asserts the <testsuites> totals itself
    assert {(t.classname, t.methodname): {"success": None}.get(t.result, t.result) for t in ts} == {
        key: OUTCOME[type(r)] if r is not None else None for key, r in results.items()}
    assert tr.testsRun == sum(c[0] for c in suites.values())
    return suites, results


def test_junit_reports_of_real_runs(fleet: Any, tmp_path: Path) -> None:
    h1, h2 = fleet.hosts[:2]
    tag = uuid.uuid4().hex[:8]
    motd, conf = f"/etc/driftctl-junit-{tag}.motd", f"/etc/driftctl-junit-{tag}.conf"
    project = tmp_path / "project"
    (project / "manifests").mkdir(parents=True)
    (project / "manifests" / "site.yaml").write_text("- hosts: all\n  manifests: [junit.yaml]\n")
    (project / "manifests" / "junit.yaml").write_text(
        "resources:\n"
        f"  - file: {motd}\n    content: \"hello {{{{ inventory_hostname }}}}\\n\"\n    tags: [motd]\n"
        f"  - file: {conf}\n    content: \"a=1\\n\"\n    mode: \"0640\"\n"
        f"  - exec: fails-{tag}\n    command: \"false\"\n"
        f"  - exec: after-{tag}\n    command: \"true\"\n    require: [\"exec:fails-{tag}\"]\n")
    inv = write_inventory(project / "inv", [h1, h2])
    with (inv / "hosts.yaml").open("a") as f:  # a host that refuses connections
        f.write("    lost1:\n      ansible_host: 127.0.0.1\n      ansible_port: 9\n      ansible_user: root\n")
    state = tmp_path / "state"
    try:
        applied = driftctl("apply", "inv", state_dir=state, cwd=project)
        assert applied.rc == 2 | 4 | 8, applied.output

        h1.sh(f"echo 'edited by hand' >> {motd}")
        reports = tmp_path / "reports"
        found = driftctl("drift", "inv", "--report-dir", reports, state_dir=state, cwd=project)
        assert found.rc == 2 | 8, found.output
        suites, results = consumed((reports / "driftctl-report.xml").read_text(encoding="utf-8"))
        assert suites == {h1.name: (4, 1, 0, 0), h2.name: (4, 0, 0, 0), "lost1": (1, 0, 1, 0)}
        edited = results[(h1.name, f"file:{motd}")]
        assert edited.type == "corrective" and edited.message == "corrective drift: content"
        assert "+edited by hand" in edited.text
        assert results[(h2.name, f"file:{motd}")] is None
        assert results[("lost1", "host:lost1")].type == "unreachable"

        partial = driftctl("drift", "inv", "--tags", "motd", "--report-dir", reports, state_dir=state, cwd=project)
        assert partial.rc == 2 | 8, partial.output
        suites, results = consumed((reports / "driftctl-report.xml").read_text(encoding="utf-8"))
        assert suites == {h1.name: (4, 1, 0, 3), h2.name: (4, 0, 0, 3), "lost1": (1, 0, 1, 0)}
        left = results[(h2.name, f"file:{conf}")]
        assert left.type == "excluded" and left.message.startswith("left out by --tags motd")

        with open_store(state / "driftctl.sqlite") as store:
            apply_id = store.runs("inv", command="apply")[0].id
        report = driftctl("report", "inv", "-f", "junit", "--run", str(apply_id), state_dir=state, cwd=project)
        assert report.rc == 0, report.output
        suites, results = consumed(report.stdout)
        # both files changed (pass), the failing exec is an error, the one after it skipped
        assert suites == {h1.name: (4, 0, 1, 1), h2.name: (4, 0, 1, 1), "lost1": (1, 0, 1, 0)}
        assert results[(h1.name, f"file:{conf}")] is None
        failed = results[(h1.name, f"exec:fails-{tag}")]
        assert failed.type == "failed" and failed.message.startswith("failed: ")
        assert results[(h1.name, f"exec:after-{tag}")].type == "skipped"
    finally:
        for h in (h1, h2):
            h.exec(["rm", "-f", motd, conf])
