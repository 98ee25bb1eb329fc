"""Report renderers on documents built through the real code path (engine redaction -> document.build).

The run below has every case a report must show: corrective/pending/both drift with diffs, ignored
drift, unmanaged changes (one ignored), a failed and a skipped resource, an unreachable host, a host
that failed as a whole, a host in sync, a secret the engine redacted, and a resource id carrying
markup. Expected numbers are counted by hand from that run.
"""

from __future__ import annotations

import html.parser
import json
import os
import stat
import threading
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt
from prometheus_client.parser import text_string_to_metric_families

from driftctl.engine import redact_result
from driftctl.fileio import ReportWriteError
from driftctl.model import Change, HostResult, ResourceResult, RunResult, UnmanagedChange
from driftctl.report import FILE_NAMES, FORMATS, document, render, write_atomic, write_reports

SECRET = "hunter2-Pa55w0rd-7c1e"
EVIL = "file:/etc/<script>alert(1)</script>&\"q'|x"
T0 = 1_790_000_000.0  # 2026-09-21T14:13:20Z
INVENTORY = "inventory/prod"


def drifted_host(secrets: frozenset[str]) -> HostResult:
    diff = ("--- /etc/motd (host)\n+++ /etc/motd (manifest)\n@@ -1 +1 @@\n"
            f"-hacked by mallory token={SECRET}\n+Welcome to prod\n")
    resources = [
        ResourceResult("file:/etc/motd", "ok", [Change("content", "sha256:111111111111", "sha256:222222222222", diff)],
                       reason="corrective drift", type="file", drift="corrective", since=T0 - 7200, runs=3),
        ResourceResult("file:/etc/app.conf", "ok", [Change("mode", "0666", "0640")], type="file", drift="pending",
                       since=T0, runs=1),
        ResourceResult(EVIL, "ok", [Change("mode", "0600", "0644")], type="file", drift="both", since=T0, runs=1),
        ResourceResult("package:nginx", "ok", [Change("version", "1.22", "1.24")], type="package", drift="corrective",
                       since=T0 - 60, runs=2, ignored="upgrade under test (until 2026-12-31)"),
        ResourceResult("service:nginx", "failed", error=f"systemctl restart nginx: password={SECRET} rejected",
                       type="service"),
        ResourceResult("exec:reload-nginx", "skipped", reason="a dependency failed: service:nginx", type="exec"),
        ResourceResult("user:alice", "ok", reason="in sync", type="user"),
    ]
    unmanaged = [
        UnmanagedChange("/etc/cron.d/backdoor", "added", None, {"type": "file", "sha256": "ab", "mode": "0644"},
                        since=T0 - 3600, runs=2),
        UnmanagedChange("/etc/ssh/sshd_config", "changed", {"sha256": "aa", "mode": "0644"},
                        {"sha256": "bb", "mode": "0644"}, since=T0, runs=1),
        UnmanagedChange("/etc/hosts", "changed", {"sha256": "cc"}, {"sha256": "dd"}, since=T0, runs=1,
                        ignored="docker rewrites it (until 2026-12-31)"),
    ]
    return HostResult("web1", "failed", [redact_result(r, secrets) for r in resources], duration=1.25,
                      round_trips=1, unmanaged=unmanaged, unmanaged_examined=True)


def build_run() -> RunResult:
    secrets = frozenset({SECRET})
    hosts = [
        drifted_host(secrets),
        HostResult("web2", "unreachable", error="connect: [Errno 111] Connection refused", duration=0.5),
        HostResult("db1", "failed", error="agent: python3 not found on the host", duration=0.25, round_trips=1),
        HostResult("db2", "ok", [ResourceResult("file:/etc/motd", "ok", reason="in sync", type="file"),
                                 ResourceResult("package:postgresql", "ok", reason="in sync", type="package")],
                   duration=0.75, round_trips=1, unmanaged_examined=True),
    ]
    return RunResult("drift", hosts, started=T0, finished=T0 + 12.5)


@pytest.fixture
def doc() -> dict[str, Any]:
    return document.build(build_run(), INVENTORY, ["drift", INVENTORY])


def test_the_run_has_the_exit_code_counted_by_hand(doc: dict[str, Any]) -> None:
    # web1: drift (2) | failed resource (4); web2 unreachable (8); db1 failed (4)
    assert doc["exit_code"] == 14


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_format_shows_the_secret(doc: dict[str, Any], fmt: str) -> None:
    text = render(doc, fmt)
    assert SECRET not in text
    assert "hunter2" not in text


# -- json ---------------------------------------------------------------------------------------


def test_json_is_the_document_in_its_own_key_order(doc: dict[str, Any]) -> None:
    text = render(doc, "json")
    assert json.loads(text) == doc
    assert text.endswith("}\n") and text.startswith("{\n  ")
    top_keys = [line.split('"')[1] for line in text.splitlines() if line.startswith('  "')]
    assert top_keys == list(doc) and top_keys[0] == "schema"  # the order document.build gives, schema first
    assert render(json.loads(text), "json") == text  # stable: a re-render of the same data is identical


def test_one_json_writer_for_reports_and_every_json_option() -> None:
    """The report file and each command's --json come out of one writer: indent 2, the document's key
    order, UTF-8 as is, one trailing newline; values JSON has no type for are shown, never a crash."""
    import datetime
    from pathlib import Path

    from driftctl.report.jsondoc import dumps

    value = {"b": "motd: café", "a": [1, {"z": None, "y": True}], "when": datetime.date(2026, 11, 1),
             "tags": {"y", "x"}, "path": Path("/etc/motd")}
    text = dumps(value)
    assert text == render(value, "json")
    assert text.endswith("}\n") and not text.endswith("\n\n")
    assert "café" in text and "\\u00e9" not in text
    assert [line.split('"')[1] for line in text.splitlines() if line.startswith('  "')] == list(value)
    assert json.loads(text) == {"b": "motd: café", "a": [1, {"z": None, "y": True}], "when": "2026-11-01",
                                "tags": ["x", "y"], "path": "/etc/motd"}


def test_json_piped_is_one_line_of_the_same_document(capsys: Any) -> None:
    """--json at a terminal is indented; piped (not a TTY, as here) it is one line, same data."""
    from driftctl.cli import ui
    from driftctl.report.jsondoc import dumps

    value = {"b": "motd: café", "a": [1, {"z": None, "y": True}]}
    ui.print_json(value)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and json.loads(out) == value and "café" in out
    assert json.loads(dumps(value)) == value and dumps(value).count("\n") > 1


# -- junit --------------------------------------------------------------------------------------


def _suites(doc: dict[str, Any]) -> ET.Element:
    return ET.fromstring(render(doc, "junit").encode())


def test_junit_counts(doc: dict[str, Any]) -> None:
    root = _suites(doc)
    assert root.tag == "testsuites"
    # junit-10.xsd allows no skipped count on <testsuites>; a failed resource is an error (tests/unit/test_junit.py)
    assert {k: root.get(k) for k in ("tests", "failures", "errors", "skipped")} == {
        "tests": "14", "failures": "5", "errors": "3", "skipped": None}
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert list(suites) == ["web1", "web2", "db1", "db2"]
    expected = {  # tests, failures, errors, skipped
        "web1": ("10", "5", "1", "3"), "web2": ("1", "0", "1", "0"), "db1": ("1", "0", "1", "0"),
        "db2": ("2", "0", "0", "0"),
    }
    for name, counts in expected.items():
        s = suites[name]
        assert (s.get("tests"), s.get("failures"), s.get("errors"), s.get("skipped")) == counts, name
        # the attributes agree with the elements actually present
        cases = s.findall("testcase")
        assert len(cases) == int(counts[0])
        assert sum(len(c.findall("failure")) for c in cases) == int(counts[1])
        assert sum(len(c.findall("error")) for c in cases) == int(counts[2])
        assert sum(len(c.findall("skipped")) for c in cases) == int(counts[3])


def test_junit_failures_say_class_fields_changes_and_diff(doc: dict[str, Any]) -> None:
    web1 = {c.get("name"): c for c in _suites(doc).find("testsuite[@name='web1']").findall("testcase")}
    motd = web1["file:/etc/motd"].find("failure")
    assert motd.get("type") == "corrective"
    assert motd.get("message") == "corrective drift: content"
    # drift reads converged -> on the host now: the hand edit is an added line
    assert "+hacked by mallory token=********" in motd.text
    assert "-Welcome to prod" in motd.text
    assert "sha256:222222222222" in motd.text  # the change line reads converged -> now
    assert web1["file:/etc/app.conf"].find("failure").get("message") == "pending drift: mode"
    evil = web1[EVIL].find("failure")  # the markup survived as data, not as XML
    assert evil.get("type") == "both"
    failed = web1["service:nginx"].find("error")
    assert failed.get("type") == "failed" and "password=********" in failed.get("message")
    assert "upgrade under test" in web1["package:nginx"].find("skipped").get("message")
    assert web1["exec:reload-nginx"].find("skipped").get("message") == "a dependency failed: service:nginx"
    passing = web1["user:alice"]
    assert list(passing) == []
    assert web1["unmanaged:/etc/cron.d/backdoor"].find("failure").get("message") == \
        "unmanaged change: /etc/cron.d/backdoor added"
    assert web1["unmanaged:/etc/ssh/sshd_config"].find("failure").get("message") == \
        "unmanaged change: /etc/ssh/sshd_config changed: sha256"
    assert web1["unmanaged:/etc/hosts"].find("skipped") is not None


def test_junit_unreachable_and_failed_hosts_are_errors(doc: dict[str, Any]) -> None:
    root = _suites(doc)
    err = root.find("testsuite[@name='web2']/testcase[@name='host:web2']/error")
    assert err.get("type") == "unreachable" and "Connection refused" in err.get("message")
    err = root.find("testsuite[@name='db1']/testcase[@name='host:db1']/error")
    assert err.get("type") == "failed" and "python3 not found" in err.text


def test_junit_on_check_pending_changes_fail_and_on_apply_they_pass() -> None:
    r = ResourceResult("file:/etc/motd", "changed", [Change("mode", "0600", "0644")], type="file")
    for command, failures in (("check", "1"), ("apply", "0")):
        run = RunResult(command, [HostResult("h", "changed", [r])], started=T0, finished=T0 + 1)
        root = ET.fromstring(render(document.build(run, INVENTORY), "junit").encode())
        assert root.get("failures") == failures
        assert root.get("tests") == "1"


def test_junit_replaces_characters_xml_cannot_carry(doc: dict[str, Any]) -> None:
    doc["hosts"][0]["resources"][1]["changes"][0]["diff"] = "-bell\x07 and nul\x00\n+ok\n"
    root = _suites(doc)  # parses: the control characters were replaced
    body = root.find("testsuite[@name='web1']/testcase[@name='file:/etc/app.conf']/failure").text
    assert "bell\ufffd and nul\ufffd" in body


# -- prometheus ---------------------------------------------------------------------------------


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        assert family.type == "gauge"
        assert family.documentation
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


def test_prometheus_values(doc: dict[str, Any]) -> None:
    text = render(doc, "prometheus")
    got = _samples(text)
    inv = {"inventory": INVENTORY}
    for cls, n in (("corrective", 1), ("pending", 1), ("both", 1)):  # package:nginx is ignored
        assert got[_key("driftctl_drifted_resources", **inv, host="web1", **{"class": cls})] == n
        assert got[_key("driftctl_drifted_resources", **inv, host="db2", **{"class": cls})] == 0
    assert got[_key("driftctl_unmanaged_changes", **inv, host="web1")] == 2
    assert got[_key("driftctl_unmanaged_changes", **inv, host="db2")] == 0
    # db1 failed before its watch paths were compared: unknown, so no sample (not a false 0)
    assert _key("driftctl_unmanaged_changes", **inv, host="db1") not in got
    assert {h: got[_key("driftctl_host_up", **inv, host=h)] for h in ("web1", "web2", "db1", "db2")} == {
        "web1": 1, "web2": 0, "db1": 1, "db2": 1}
    # nothing is known about an unreachable host's drift: no sample rather than a false 0
    assert not any(k[0] == "driftctl_drifted_resources" and ("host", "web2") in k[1] for k in got)
    for status, n in (("ok", 5), ("changed", 0), ("failed", 1), ("skipped", 1)):
        assert got[_key("driftctl_resources", **inv, host="web1", status=status)] == n
    assert got[_key("driftctl_resources", **inv, host="db2", status="ok")] == 2
    run = {"inventory": INVENTORY, "command": "drift"}
    # the document keeps times to the second: finished T0 + 12.5 reads T0 + 12
    assert got[_key("driftctl_last_run_timestamp_seconds", **run)] == T0 + 12
    assert got[_key("driftctl_last_run_exit_code", **run)] == 14
    assert got[_key("driftctl_run_duration_seconds", **run)] == 12
    assert text.count("# TYPE ") == text.count("# HELP ") == 7


def test_prometheus_label_values_are_escaped() -> None:
    odd = 'inv/"quoted"\\back\nline'
    run = RunResult("drift", [HostResult("h1", "ok")], started=T0, finished=T0 + 1)
    d = document.build(run, odd)
    got = _samples(render(d, "prometheus"))
    assert got[_key("driftctl_host_up", inventory=odd, host="h1")] == 1  # the parser reads back the exact value


# -- markdown -----------------------------------------------------------------------------------


class _Collector(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "tr":
            self.rows.append([])
        if tag in ("td", "th"):
            self._cell = []
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self.rows:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)
        if self._in_style:
            self.styles.append(data)


def _parse(text: str) -> _Collector:
    c = _Collector()
    c.feed(text)
    c.close()
    return c


def test_markdown_summary_table_and_sections(doc: dict[str, Any]) -> None:
    text = render(doc, "markdown")
    page = _parse(MarkdownIt("commonmark").enable("table").render(text))
    assert not [t for t, _ in page.tags if t in ("script", "img", "iframe")]
    table = page.rows
    assert table[0] == ["host", "status", "drifted", "unmanaged", "failed", "changed", "resources"]
    assert table[1:] == [
        ["web1", "failed", "3", "2", "1", "0", "7"],
        ["web2", "unreachable", "—", "—", "—", "—", "—"],  # unknown, not zero
        ["db1", "failed", "0", "—", "0", "0", "0"],  # its watch paths were not examined
        ["db2", "ok", "0", "0", "0", "0", "2"],
    ]
    body = "".join(page.text)
    assert EVIL in body  # shown verbatim as text (inside a code span), not as markup
    assert "corrective drift" in body and "since 2026-09-21T12:13:20Z, 3 drift run(s)" in body
    assert "-Welcome to prod" in body and "+hacked by mallory token=********" in body
    assert "unmanaged change" in body and "/etc/cron.d/backdoor added" in body
    assert "Connection refused" in body and "python3 not found" in body
    details = [t for t, _ in page.tags if t == "details"]
    assert len(details) == 1  # the one diff, folded


# -- html ---------------------------------------------------------------------------------------


def _assert_self_contained(page: _Collector, text: str) -> None:
    # one inline script (the filters), allowed by hash in the CSP (tests/unit/test_html_page.py checks the hash)
    assert [attrs for tag, attrs in page.tags if tag == "script"] in ([], [{}])
    for tag, attrs in page.tags:
        assert tag not in ("link", "iframe", "img", "object", "embed", "base"), tag
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            if name in ("href", "src", "action", "xlink:href", "srcset"):
                assert (value or "").startswith("#"), (tag, name, value)
    css = "".join(page.styles)
    assert "url(" not in css and "@import" not in css
    assert "http://" not in text.replace("&lt;", "<") or "http://" in "".join(page.text)


def test_html_is_self_contained_and_escaped(doc: dict[str, Any]) -> None:
    text = render(doc, "html")
    page = _parse(text)
    _assert_self_contained(page, text)
    assert "<script>alert" not in text
    body = "".join(page.text)
    assert EVIL in body  # the id reads back as text
    hosts = [r for r in page.rows if r and r[0] in ("web1", "web2", "db1", "db2")]
    assert hosts[:4] == [  # host, status, resources, in sync, changed, drifted, unmanaged, failed, seconds
        ["web1", "failed", "7", "1", "0", "3", "2", "1", "1.25"],
        ["web2", "unreachable", "—", "—", "—", "—", "—", "—", "0.5"],
        ["db1", "failed", "0", "0", "0", "0", "—", "0", "0.25"],
        ["db2", "ok", "2", "2", "0", "0", "0", "0", "0.75"],
    ]
    motd = next(r for r in page.rows if r and r[0].startswith("file:/etc/motd"))
    assert motd[1:4] == ["corrective drift", "2026-09-21 12:13Z", "3"]
    assert [t for t, _ in page.tags].count("details") == 1
    assert "-Welcome to prod" in body and "+hacked by mallory token=********" in body


def test_html_chart_from_the_document_alone(doc: dict[str, Any]) -> None:
    page = _parse(render(doc, "html"))
    titles = [t for t in page.text if t.startswith("this run ")]
    # one bar: 1 corrective, 1 both, 1 pending, 2 unmanaged (ignored ones left out)
    assert sorted(titles) == sorted([
        "this run 2026-09-21 14:13: 1 corrective", "this run 2026-09-21 14:13: 1 both",
        "this run 2026-09-21 14:13: 1 pending", "this run 2026-09-21 14:13: 2 unmanaged"])


# -- files --------------------------------------------------------------------------------------


def test_write_reports_writes_every_format(doc: dict[str, Any], tmp_path: Path) -> None:
    target = tmp_path / "new" / "reports"
    paths = write_reports(doc, target)
    assert [p.name for p in paths] == [FILE_NAMES[f] for f in FORMATS] == [
        "driftctl-report.json", "driftctl-report.xml", "driftctl-report.md", "driftctl-report.html", "driftctl.prom"]
    for fmt, path in zip(FORMATS, paths, strict=True):
        assert path.read_text(encoding="utf-8") == render(doc, fmt)
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(os.listdir(target)) == sorted(p.name for p in paths)  # no temp file left behind
    assert write_reports(doc, target, formats=["prometheus"]) == [target / "driftctl.prom"]


def test_write_reports_rejects_an_unknown_format(doc: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown report format 'pdf'"):
        write_reports(doc, tmp_path, formats=["json", "pdf"])
    assert os.listdir(tmp_path) == []  # refused before writing anything


def test_atomic_write_readers_see_old_or_new_never_partial(tmp_path: Path) -> None:
    path = tmp_path / "driftctl.prom"
    old, new = b"o" * 3_000_000 + b"\n", b"n" * 2_000_000 + b"\n"
    write_atomic(path, old)
    seen: set[bytes] = set()
    bad: list[int] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            data = path.read_bytes()
            if data not in (old, new):
                bad.append(len(data))
            seen.add(data[:1])

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(30):
            write_atomic(path, new if i % 2 == 0 else old)
    finally:
        stop.set()
        t.join()
    assert bad == []
    assert seen <= {b"o", b"n"}
    assert os.listdir(tmp_path) == ["driftctl.prom"]


def test_atomic_write_failure_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "driftctl-report.json"
    write_atomic(path, "old\n")

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(ReportWriteError, match="No space left on device"):
        write_atomic(path, "new\n")
    monkeypatch.undo()
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["driftctl-report.json"]


def test_atomic_write_temp_files_are_hidden_from_textfile_collectors(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    names: list[str] = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        names.append(os.path.basename(src))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    write_atomic(tmp_path / "driftctl.prom", "x 1\n")
    assert len(names) == 1 and names[0].startswith(".") and names[0].endswith(".tmp")


def test_atomic_write_into_a_read_only_directory_is_a_clear_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        target = Path("/proc/driftctl-report.json")  # root may write anywhere but here
    else:
        (tmp_path / "ro").mkdir(mode=0o555)
        target = tmp_path / "ro" / "x.json"
    with pytest.raises(ReportWriteError, match="cannot write"):
        write_atomic(target, "x")
