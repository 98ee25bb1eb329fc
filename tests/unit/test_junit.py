"""The JUnit report as its consumers take it: valid against the Jenkins xunit plugin's junit-10.xsd
(tests/data/junit-10.xsd) and read by two real parsers, junitparser and xunitparser, with the counts
and names a CI page shows.

Every report here is built through the real path (engine redaction -> document.build -> render) from
runs of each kind: drift, apply, plan and check, a partial (--tags) run, an empty run, names with XML
markup and non-ASCII, a secret canary. Expected numbers are counted by hand from each run.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import junitparser
import pytest
import xmlschema
import xunitparser

from driftctl.cli.common import recorded_argv
from driftctl.engine import redact_result
from driftctl.model import Batches, Change, HostResult, ResourceResult, RunResult, UnmanagedChange
from driftctl.report import document, render, write_reports
from driftctl.secret import redact
from driftctl.store import open_store

XSD = Path(__file__).resolve().parent.parent / "data" / "junit-10.xsd"
T0 = 1_790_000_000.0  # 2026-09-21T14:13:20Z
INVENTORY = "inventory/prod"
Counts = tuple[int, int, int, int]  # tests, failures, errors, skipped


@pytest.fixture(scope="module")
def schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(XSD))


@dataclass
class Read:
    """A report as the consumers saw it (after checking they agree with each other)."""

    suites: dict[str, Counts]  # per testsuite, in file order
    total: Counts
    outcomes: dict[tuple[str, str], str]  # (classname, name) -> passed / failure / error / skipped
    cases: dict[tuple[str, str], junitparser.TestCase]  # junitparser's view, for messages and bodies
    properties: dict[str, str]  # xunitparser's: every suite's properties in one dict


def consume(xml: str, schema: xmlschema.XMLSchema) -> Read:
    """Validate ``xml`` against the XSD and read it with both parsers; they must agree on everything."""
    problems = [f"{e.reason} at {e.path}" for e in schema.iter_errors(xml)]
    assert problems == [], problems

    # junitparser: the attributes as written, and the elements as found
    jx = junitparser.JUnitXml.fromstring(xml)
    suites: dict[str, Counts] = {}
    outcomes: dict[tuple[str, str], str] = {}
    cases: dict[tuple[str, str], junitparser.TestCase] = {}
    for suite in jx:
        counts = (suite.tests, suite.failures, suite.errors, suite.skipped)
        seen: Counter[str] = Counter()
        for case in suite:
            key = (case.classname, case.name)
            assert key not in outcomes, f"two testcases {key}"
            results = case.result
            assert len(results) <= 1, key
            outcome = "passed" if not results else {
                junitparser.Failure: "failure", junitparser.Error: "error", junitparser.Skipped: "skipped",
            }[type(results[0])]
            outcomes[key], cases[key] = outcome, case
            if results:  # GitLab shows only the element's text: it starts with what the message says
                message = results[0].message
                assert message and "\n" not in message, key
                assert (results[0].text or "").startswith(message.removesuffix("\u2026").rstrip()), key
            seen["tests"] += 1
            seen[outcome] += 1
        assert counts == (seen["tests"], seen["failure"], seen["error"], seen["skipped"]), suite.name
        assert suite.name not in suites, f"two testsuites {suite.name}"
        suites[suite.name] = counts
    total = tuple(sum(c[i] for c in suites.values()) for i in range(4))
    assert (jx.tests, jx.failures, jx.errors) == total[:3]  # testsuites may not carry skipped (XSD)

    # xunitparser: it checks the totals of <testsuites> against the cases itself (assert), and merges
    # every suite's properties into one dict (a repeated name fails an assert)
    ts, tr = xunitparser.parse(io.BytesIO(xml.encode("utf-8")))
    x_outcomes = {(tc.classname, tc.methodname): {"success": "passed"}.get(tc.result, tc.result) for tc in ts}
    assert x_outcomes == outcomes
    assert (tr.testsRun, len(tr.failures), len(tr.errors), len(tr.skipped)) == total
    return Read(suites, total, outcomes, cases, dict(ts.properties))


def doc_of(run: RunResult, argv: list[str] | None = None) -> dict[str, Any]:
    return document.build(run, INVENTORY, argv if argv is not None else [run.command, INVENTORY])


def result_of(case: junitparser.TestCase) -> Any:
    return case.result[0]


# -- drift ------------------------------------------------------------------------------------------

HAND_DIFF = "--- /etc/motd (host)\n+++ /etc/motd (manifest)\n@@ -1 +1 @@\n-hand edit\n+Welcome\n"


def drift_run() -> RunResult:
    web1 = HostResult("web1", "failed", [
        ResourceResult("file:/etc/motd", "ok", [Change("content", "sha256:1111", "sha256:2222", HAND_DIFF)],
                       type="file", drift="corrective", since=T0 - 7200, runs=3),
        ResourceResult("file:/etc/app.conf", "ok", [Change("mode", "0666", "0640")], type="file", drift="pending",
                       since=T0, runs=1),
        ResourceResult("file:/etc/both", "ok", [Change("mode", "0600", "0644")], type="file", drift="both"),
        ResourceResult("package:nginx", "ok", [Change("version", "1.22", "1.24")], type="package",
                       drift="corrective", ignored="upgrade under test (until 2026-12-31)"),
        ResourceResult("service:nginx", "failed", error="not observable: systemctl show failed\nexit 1",
                       type="service"),
        ResourceResult("file:/etc/issue", "changed", [Change("mode", "0666", "0644")], type="file",
                       drift="corrective", reason="remediated"),
        ResourceResult("file:/etc/sudoers", "failed", [Change("mode", "0666", "0440")], type="file",
                       drift="corrective", error="chmod: read-only file system"),
        ResourceResult("user:alice", "ok", reason="in sync", type="user"),
    ], duration=1.25, unmanaged=[
        UnmanagedChange("/etc/cron.d/backdoor", "added", None, {"type": "file", "sha256": "ab"}, since=T0, runs=2),
        UnmanagedChange("/etc/hosts", "changed", {"sha256": "cc"}, {"sha256": "dd"}, ignored="docker (until 2027)"),
    ], unmanaged_examined=True)
    return RunResult("drift", [
        web1,
        HostResult("web2", "unreachable", error="connect: [Errno 111] Connection refused", duration=0.5),
        HostResult("db1", "failed", error="agent: python3 not found on the host", duration=0.25),
        HostResult("db2", "ok", [ResourceResult("file:/etc/motd", "ok", reason="in sync", type="file")],
                   unmanaged_examined=True),
    ], started=T0, finished=T0 + 12.5)


def test_drift_every_host_a_suite_every_resource_a_case(schema: xmlschema.XMLSchema) -> None:
    read = consume(render(doc_of(drift_run()), "junit"), schema)
    # web1: 8 resources + 2 unmanaged; failures: 3 drifts + 1 unmanaged; errors: 2 failed; skipped: 2 ignored
    assert read.suites == {"web1": (10, 4, 2, 2), "web2": (1, 0, 1, 0), "db1": (1, 0, 1, 0), "db2": (1, 0, 0, 0)}
    assert read.total == (13, 4, 4, 2)
    assert read.outcomes == {
        ("web1", "file:/etc/motd"): "failure",
        ("web1", "file:/etc/app.conf"): "failure",
        ("web1", "file:/etc/both"): "failure",
        ("web1", "package:nginx"): "skipped",
        ("web1", "service:nginx"): "error",
        ("web1", "file:/etc/issue"): "passed",  # remediated: in sync again
        ("web1", "file:/etc/sudoers"): "error",  # remediation failed
        ("web1", "user:alice"): "passed",
        ("web1", "unmanaged:/etc/cron.d/backdoor"): "failure",
        ("web1", "unmanaged:/etc/hosts"): "skipped",
        ("web2", "host:web2"): "error",
        ("db1", "host:db1"): "error",
        ("db2", "file:/etc/motd"): "passed",
    }


def test_drift_failures_carry_class_fields_and_the_diff_as_drift_reads(schema: xmlschema.XMLSchema) -> None:
    read = consume(render(doc_of(drift_run()), "junit"), schema)
    motd = result_of(read.cases[("web1", "file:/etc/motd")])
    assert (motd.type, motd.message) == ("corrective", "corrective drift: content")
    # drift reads from what was converged to what the host has now: the hand edit is an added line
    assert "--- /etc/motd (manifest)\n+++ /etc/motd (host)" in motd.text
    assert "+hand edit" in motd.text and "-Welcome" in motd.text
    assert "since 2026-09-21T12:13:20Z (3 drift run(s))" in motd.text
    assert result_of(read.cases[("web1", "file:/etc/app.conf")]).message == "pending drift: mode"
    assert result_of(read.cases[("web1", "file:/etc/both")]).type == "both"
    ignored = result_of(read.cases[("web1", "package:nginx")])
    assert ignored.message == "ignored corrective drift: version (upgrade under test (until 2026-12-31))"
    probe = result_of(read.cases[("web1", "service:nginx")])
    # a message is one line; the body has the whole error
    assert probe.type == "failed" and probe.message == "failed: not observable: systemctl show failed \u2026"
    assert probe.text == "failed: not observable: systemctl show failed\nexit 1\n"  # GitLab shows only the text
    remediation = result_of(read.cases[("web1", "file:/etc/sudoers")])
    assert remediation.message == "corrective drift (remediation failed): chmod: read-only file system"
    assert "mode 0440 -> 0666" in remediation.text
    remediated = read.cases[("web1", "file:/etc/issue")]
    assert remediated.system_out.startswith("corrective drift (remediated)\nmode 0644 -> 0666")
    backdoor = result_of(read.cases[("web1", "unmanaged:/etc/cron.d/backdoor")])
    assert (backdoor.type, backdoor.message) == ("unmanaged", "unmanaged change: /etc/cron.d/backdoor added")
    unreachable = result_of(read.cases[("web2", "host:web2")])
    assert (unreachable.type, unreachable.message) == ("unreachable",
                                                       "unreachable: connect: [Errno 111] Connection refused")
    assert "python3 not found" in result_of(read.cases[("db1", "host:db1")]).text


def test_the_run_is_described_once_in_properties_every_consumer_reads(schema: xmlschema.XMLSchema) -> None:
    """xunitparser merges all suites' properties and asserts each name is new: the run's properties are
    written once (first suite), named driftctl.*; each suite still says its host, time and status."""
    doc = doc_of(drift_run(), ["drift", INVENTORY, "-l", "web*"])
    xml = render(doc, "junit")
    read = consume(xml, schema)
    assert read.properties["driftctl.command"] == "drift"
    assert read.properties["driftctl.inventory"] == INVENTORY
    assert read.properties["driftctl.argv"] == "driftctl drift inventory/prod -l 'web*'"
    assert read.properties["driftctl.started"] == "2026-09-21T14:13:20Z"
    assert read.properties["driftctl.exit_code"] == str(doc["exit_code"])
    assert "driftctl.partial" not in read.properties
    jx = junitparser.JUnitXml.fromstring(xml)
    assert jx.name == "driftctl drift: inventory/prod"
    assert jx.time == 12.0  # the document has whole seconds
    suites = list(jx)
    assert [s.hostname for s in suites] == ["web1", "web2", "db1", "db2"]
    assert {s.timestamp for s in suites} == {"2026-09-21T14:13:20"}
    assert suites[0].time == 1.25
    assert [list(s.properties()) for s in suites[1:]] == [[], [], []]
    outs = [s.findtext("system-out") for s in ET.fromstring(xml).iter("testsuite")]  # junitparser reads none
    assert outs[1] == "web2: unreachable (drift of inventory/prod, started 2026-09-21T14:13:20Z)\n" \
        "error: connect: [Errno 111] Connection refused\n"
    assert (outs[3] or "").splitlines()[1] == "1 resource(s) examined, 0 drifted, 0 failed, 0 changed, 0 skipped, " \
        "0 unmanaged change(s)"


# -- apply, plan, check -----------------------------------------------------------------------------


def apply_hosts() -> list[HostResult]:
    web1 = HostResult("web1", "failed", [
        ResourceResult("package:nginx", "changed", [Change("ensure", "absent", "present")], type="package"),
        ResourceResult("file:/etc/motd", "changed", [Change("mode", "0666", "0644")], type="file"),
        ResourceResult("file:/etc/old", "changed", [Change("ensure", "file", "absent")], type="file"),
        ResourceResult("service:nginx", "changed", [Change("pending", None, "known after package:nginx")],
                       type="service", reason="known after package:nginx converge(s)"),
        ResourceResult("exec:migrate", "failed", [Change("run", None, "yes")], type="exec",
                       error="command exited 3: relation users does not exist"),
        ResourceResult("exec:reload", "skipped", type="exec", reason="dependency exec:migrate will not converge",
                       error="dependency exec:migrate will not converge"),
        ResourceResult("user:alice", "ok", reason="in sync", type="user"),
    ], duration=3.5)
    return [
        web1,
        HostResult("web2", "unreachable", error="connect: timed out", duration=10.0),
        HostResult("web3", "failed", error="locked by root@ci since 2026-09-21T14:00:00Z", locked=True),
        HostResult("web4", "failed", error="not started: batch 1: 2 of 3 hosts failed (66% > "
                                           "--max-fail-percentage 10)", interrupted="aborted", batch=2),
    ]


def test_apply_changes_pass_failures_are_errors_and_hosts_not_started_are_skipped(
        schema: xmlschema.XMLSchema) -> None:
    run = RunResult("apply", apply_hosts(), started=T0, finished=T0 + 20,
                    serial=Batches([["web1", "web2", "web3"], ["web4"]], 10, 1, "batch 1: 2 of 3 hosts failed",
                                   ["web4"]))
    xml = render(doc_of(run), "junit")
    read = consume(xml, schema)
    assert read.suites == {"web1": (7, 0, 1, 1), "web2": (1, 0, 1, 0), "web3": (1, 0, 1, 0),
                           "web4": (1, 0, 0, 1)}
    assert read.total == (10, 0, 3, 2)
    for rid in ("package:nginx", "file:/etc/motd", "file:/etc/old", "service:nginx", "user:alice"):
        assert read.outcomes[("web1", rid)] == "passed", rid
    assert read.cases[("web1", "package:nginx")].system_out == "changed (add)\ninstalled\n"
    assert read.cases[("web1", "file:/etc/old")].system_out.startswith("changed (remove)\n")
    assert read.cases[("web1", "file:/etc/motd")].system_out == "changed (change)\nmode 0666 -> 0644\n"
    failed = result_of(read.cases[("web1", "exec:migrate")])
    assert (failed.type, failed.message) == ("failed", "failed: command exited 3: relation users does not exist")
    skipped = result_of(read.cases[("web1", "exec:reload")])
    assert (skipped.type, skipped.message) == ("skipped", "dependency exec:migrate will not converge")
    assert read.outcomes[("web4", "host:web4")] == "skipped"
    not_started = result_of(read.cases[("web4", "host:web4")])
    assert not_started.type == "not started" and not_started.message.startswith("not started: batch 1")
    assert read.properties["driftctl.scope"].startswith("Stopped after batch 1 of 2")
    locked = result_of(read.cases[("web3", "host:web3")])
    assert (locked.type, locked.message) == ("locked", "failed: locked by root@ci since 2026-09-21T14:00:00Z")
    outs = {s.get("name"): s.findtext("system-out") for s in ET.fromstring(xml).iter("testsuite")}
    assert outs["web1"] == "web1: failed (apply of inventory/prod, started 2026-09-21T14:13:20Z)\n" \
        "7 resource(s) examined, 0 drifted, 1 failed, 4 changed, 1 skipped\n"
    assert outs["web3"] == "web3: locked (apply of inventory/prod, started 2026-09-21T14:13:20Z)\n" \
        "error: locked by root@ci since 2026-09-21T14:00:00Z\n"  # no counts: it never got to its resources
    assert outs["web4"] == "web4: not started (apply of inventory/prod, started 2026-09-21T14:13:20Z)\nbatch 2\n" \
        "not started: batch 1: 2 of 3 hosts failed (66% > --max-fail-percentage 10)\n"


@pytest.mark.parametrize("command", ["plan", "check"])
def test_plan_and_check_pending_changes_fail_with_their_action(schema: xmlschema.XMLSchema, command: str) -> None:
    run = RunResult(command, apply_hosts()[:2], started=T0, finished=T0 + 2)
    read = consume(render(doc_of(run), "junit"), schema)
    # 4 changes to make fail (not in sync), exec:migrate failed, exec:reload skipped, alice passes; web2 errors
    assert read.suites == {"web1": (7, 4, 1, 1), "web2": (1, 0, 1, 0)}
    add = result_of(read.cases[("web1", "package:nginx")])
    assert (add.type, add.message) == ("add", "not in sync (add): ensure")
    assert add.text == "not in sync (add): ensure\ninstalled\n"  # the change line, as the terminal says it
    assert result_of(read.cases[("web1", "file:/etc/old")]).type == "remove"
    deferred = result_of(read.cases[("web1", "service:nginx")])
    assert deferred.message == "not in sync (change): known after package:nginx converge(s)"


def test_a_plan_with_nothing_to_do_passes(schema: xmlschema.XMLSchema) -> None:
    run = RunResult("plan", [HostResult("web1", "ok", [ResourceResult("file:/etc/motd", "ok", reason="in sync")])])
    xml = render(doc_of(run), "junit")
    assert consume(xml, schema).total == (1, 0, 0, 0)
    _, tr = xunitparser.parse(io.BytesIO(xml.encode()))
    assert tr.wasSuccessful() and tr.testsRun == 1


# -- partial and empty runs -------------------------------------------------------------------------


def test_a_partial_run_shows_what_the_tags_left_out_as_skipped(schema: xmlschema.XMLSchema) -> None:
    hosts = [
        HostResult("web1", "ok", [ResourceResult("file:/etc/motd", "ok", reason="in sync", type="file")],
                   excluded=["package:nginx", "service:nginx"]),
        HostResult("db1", "ok", [], excluded=["package:postgresql"]),
    ]
    run = RunResult("drift", hosts, started=T0, finished=T0 + 1, tags=["motd"], skip_tags=["slow"])
    read = consume(render(doc_of(run), "junit"), schema)
    assert read.suites == {"web1": (3, 0, 0, 2), "db1": (1, 0, 0, 1)}
    left = result_of(read.cases[("web1", "service:nginx")])
    assert left.type == "excluded"
    assert left.message.startswith("left out by --tags motd --skip-tags slow: not examined")
    assert read.properties["driftctl.partial"] == "true"
    assert read.properties["driftctl.scope"].startswith("Partial run (--tags motd --skip-tags slow): 3 resource(s)")


def test_an_empty_run_is_a_valid_report_with_no_tests(schema: xmlschema.XMLSchema) -> None:
    read = consume(render(doc_of(RunResult("drift", [], started=T0, finished=T0)), "junit"), schema)
    assert (read.suites, read.total) == ({}, (0, 0, 0, 0))
    # a host with nothing declared: its suite, with no test
    run = RunResult("apply", [HostResult("web1", "ok", [])], started=T0, finished=T0 + 1)
    read = consume(render(doc_of(run), "junit"), schema)
    assert read.suites == {"web1": (0, 0, 0, 0)}


# -- names and characters ---------------------------------------------------------------------------


def test_names_with_markup_and_non_ascii_read_back_exactly(schema: xmlschema.XMLSchema, tmp_path: Path) -> None:
    host = "wéb-1.例え.jp"
    evil = "file:/srv/<script>alert(1)</script>&\"q'|]]>x café \U0001f600"
    control = "file:/etc/bell\x07nul\x00"
    run = RunResult("drift", [HostResult(host, "ok", [
        ResourceResult(evil, "ok", [Change("content", "sha256:aa", "sha256:bb",
                                           "--- a (host)\n+++ a (manifest)\n@@ -1 +1 @@\n-ça & <b>\x1b[31m\n+ok\n")],
                       type="file", drift="corrective"),
        ResourceResult(control, "ok", reason="in sync", type="file"),
    ])], started=T0, finished=T0 + 1)
    doc = doc_of(run)
    xml = render(doc, "junit")
    read = consume(xml, schema)
    assert read.suites == {host: (2, 1, 0, 0)}
    # characters XML 1.0 cannot carry are replaced; everything else comes back as it was
    assert read.outcomes == {(host, evil): "failure", (host, "file:/etc/bell\ufffdnul\ufffd"): "passed"}
    body = result_of(read.cases[(host, evil)]).text
    assert "+ça & <b>\ufffd[31m" in body
    # the file written by write_reports is UTF-8 and reads the same from disk in all three
    (path,) = write_reports(doc, tmp_path, ["junit"])
    assert schema.is_valid(str(path))
    bell = "file:/etc/bell\ufffdnul\ufffd"
    assert [c.name for s in junitparser.JUnitXml.fromfile(str(path)) for c in s] == [evil, bell]
    with path.open("rb") as f:
        ts, _ = xunitparser.parse(f)
    assert [(t.classname, t.methodname) for t in ts] == [(host, evil), (host, bell)]


def test_a_secret_canary_never_reaches_the_report(schema: xmlschema.XMLSchema) -> None:
    canary = "canary-7f3e-Zq9!x"
    secrets = frozenset({canary})
    resources = [
        ResourceResult("file:/etc/app/db.conf", "ok",
                       [Change("content", f"password={canary}", "password=new",
                               f"--- db.conf (host)\n+++ db.conf (manifest)\n@@ -1 +1 @@\n-password={canary}\n"
                               "+password=new\n")], type="file", drift="corrective"),
        ResourceResult("exec:seed", "failed", error=f"psql: password {canary} rejected", type="exec"),
        ResourceResult("exec:after", "skipped", reason=f"needs {canary}", type="exec"),
    ]
    host = HostResult("db1", "failed", [redact_result(r, secrets) for r in resources])
    down = HostResult("db2", "failed", error=redact(f"sudo: password {canary} wrong", secrets))
    run = RunResult("drift", [host, down], started=T0, finished=T0 + 1)
    xml = render(doc_of(run, recorded_argv(["drift", INVENTORY, "-e", f"db_password={canary}"])), "junit")
    read = consume(xml, schema)
    assert canary not in xml and "canary" not in xml
    assert read.suites == {"db1": (3, 1, 1, 1), "db2": (1, 0, 1, 0)}
    assert "+password=********" in result_of(read.cases[("db1", "file:/etc/app/db.conf")]).text
    assert result_of(read.cases[("db1", "exec:seed")]).message == "failed: psql: password ******** rejected"
    assert read.properties["driftctl.argv"] == "driftctl drift inventory/prod -e 'db_password=********'"


# -- as a user gets it ------------------------------------------------------------------------------


def test_driftctl_report_from_a_store_piped_in_a_c_locale(schema: xmlschema.XMLSchema, tmp_path: Path) -> None:
    """``driftctl report -f junit`` as a CI job runs it: a subprocess, stdout a pipe, LC_ALL=C, the run
    read back from a real SQLite store (which keeps documents without the text of new files)."""
    store_path = tmp_path / "state" / "driftctl.sqlite"
    run = drift_run()
    run.hosts[3] = HostResult("db-é", "ok", [ResourceResult("file:/etc/motd", "ok", reason="in sync", type="file")])
    with open_store(store_path) as store:
        run_id = store.save_run(document.for_store(doc_of(run)))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRIFTCTL_", "LC_", "LANG"))}
    env.update(LC_ALL="C", NO_COLOR="1", DRIFTCTL_STATE_DIR=str(tmp_path / "no-state-here"))
    proc = subprocess.run([sys.executable, "-m", "driftctl", "report", INVENTORY, "--state", str(store_path),
                           "-f", "junit", "--run", str(run_id)], cwd=tmp_path, env=env, capture_output=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    xml = proc.stdout.decode("utf-8")
    read = consume(xml, schema)
    assert read.suites == {"web1": (10, 4, 2, 2), "web2": (1, 0, 1, 0), "db1": (1, 0, 1, 0), "db-é": (1, 0, 0, 0)}
    motd = result_of(read.cases[("web1", "file:/etc/motd")])
    assert "+hand edit" in motd.text  # a diff of a changed file is kept by the store
    assert read.properties["driftctl.command"] == "drift"


def test_a_long_error_is_cut_in_the_message_and_whole_in_the_text(schema: xmlschema.XMLSchema) -> None:
    error = "apt-get install failed: " + "E: unable to fetch " * 40
    run = RunResult("apply", [HostResult("web1", "failed", [
        ResourceResult("package:nginx", "failed", [Change("ensure", "absent", "present")], type="package",
                       error=error)])], started=T0, finished=T0 + 1)
    read = consume(render(doc_of(run), "junit"), schema)
    failed = result_of(read.cases[("web1", "package:nginx")])
    assert len(failed.message) == 300 and failed.message.endswith("\u2026")
    assert failed.text == f"failed: {error.strip()}\ninstalled\n"
