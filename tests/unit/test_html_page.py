"""The HTML report as a document a browser must accept: its CSP, its rows and filter classes, the
apply lane and changed column, each resource's past from a real SQLite store, what to run next (each
command parsed by driftctl's own command line), and no secret anywhere, history included.

The browser side (filters, layout, CSP enforcement) is in tests/e2e/test_html_report.py (a module of
another name: pytest imports test modules by basename).
"""

from __future__ import annotations

import datetime as dt
import html.parser
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import pytest
from test_report import EVIL, SECRET, T0, build_run

from driftctl.engine import redact_result
from driftctl.model import Change, HostResult, ResourceResult, RunResult, UnmanagedChange
from driftctl.report import chart_from_store, document, history_from_store, render, write_reports
from driftctl.report.htmlassets import SCRIPT, sha256, stylesheet
from driftctl.report.nextsteps import PLACEHOLDER_EXPIRES, next_steps
from driftctl.store import open_store

INV = "inventory/prod"


class Page(html.parser.HTMLParser):
    """Tags with their attributes, the text of <style>, <script> and the CSP, rows by data-c."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.styles: list[str] = []
        self.scripts: list[str] = []
        self.csp: str | None = None
        self.rows: list[tuple[str, str, str]] = []  # (host, data-r, data-c)
        self.text: list[str] = []
        self._in: str | None = None
        self._host = ""
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag in ("style", "script"):
            self._in = tag
        if tag == "meta" and (a.get("http-equiv") or "").lower() == "content-security-policy":
            self.csp = a.get("content")
        if tag == "section" and a.get("data-host") is not None:
            self._host = a["data-host"] or ""
        if tag == "tr" and "data-c" in a:
            self.rows.append((self._host, a.get("data-r") or "", a.get("data-c") or ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "style":
            self.styles.append(data)
        elif self._in == "script":
            self.scripts.append(data)
        else:
            self.text.append(data)

    def body(self) -> str:
        return "".join(self.text)


@pytest.fixture
def doc() -> dict[str, Any]:
    return document.build(build_run(), INV, ["drift", INV])


# -- CSP and self-containment ---------------------------------------------------------------------


def test_the_csp_allows_exactly_the_page_style_and_script_by_hash(doc: dict[str, Any]) -> None:
    text = render(doc, "html")
    page = Page(text)
    assert page.csp is not None
    directives = dict(d.strip().split(" ", 1) for d in page.csp.split(";"))
    (style,), (script,) = page.styles, page.scripts
    assert directives == {
        "default-src": "'none'",
        "style-src": sha256(style),
        "script-src": sha256(script),
        "base-uri": "'none'",
        "form-action": "'none'",
    }
    assert style == stylesheet() and script == SCRIPT
    assert "unsafe" not in page.csp  # neither unsafe-inline nor unsafe-hashes nor unsafe-eval
    assert len(re.findall(r"<script\b", text)) == 1 and len(re.findall(r"<style\b", text)) == 1
    for tag, attrs in page.tags:
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)  # no inline handler: the CSP would refuse it
            assert name != "style", (tag, value)  # no style attribute: refused as well
            assert name not in ("src", "srcset", "action", "xlink:href"), (tag, name)
            if name == "href":
                assert (value or "").startswith("#"), (tag, value)
        assert tag not in ("link", "img", "iframe", "object", "embed", "base"), tag
    assert "url(" not in style and "@import" not in style
    assert not re.search(r"\b(fetch|XMLHttpRequest|eval|innerHTML|import)\b", script)  # it loads and writes nothing


def test_the_hash_is_computed_from_what_is_rendered(doc: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Change the script and the CSP follows: the hash is not a constant that could go stale."""
    from driftctl.report import html as html_report

    monkeypatch.setattr(html_report, "SCRIPT", SCRIPT + "\n// changed\n")
    page = Page(render(doc, "html"))
    assert page.csp is not None and sha256(SCRIPT + "\n// changed\n") in page.csp and sha256(SCRIPT) not in page.csp


# -- rows and classes -----------------------------------------------------------------------------


def test_every_resource_path_and_host_error_has_a_row_with_its_class(doc: dict[str, Any]) -> None:
    page = Page(render(doc, "html"))
    assert page.rows == [
        ("web1", "file:/etc/motd", "corrective"),
        ("web1", "file:/etc/app.conf", "pending"),
        ("web1", EVIL, "both"),  # read back exactly: escaped in the attribute
        ("web1", "package:nginx", "ignored"),
        ("web1", "service:nginx", "failed"),
        ("web1", "exec:reload-nginx", "skipped"),
        ("web1", "user:alice", "insync"),
        ("web1", "/etc/cron.d/backdoor", "unmanaged"),
        ("web1", "/etc/ssh/sshd_config", "unmanaged"),
        ("web1", "/etc/hosts", "ignored"),
        ("web2", "", "unreachable"),
        ("db1", "", "failed"),
        ("db2", "file:/etc/motd", "insync"),
        ("db2", "package:postgresql", "insync"),
    ]
    body = page.body()
    assert "connect: [Errno 111] Connection refused" in body and "python3 not found" in body
    assert EVIL in body  # as text
    # the filter form counts each class, in sync unticked by default
    form = next(a for t, a in page.tags if t == "form")
    assert form["data-default"] == "corrective,pending,both,unmanaged,changed,failed,skipped,unreachable,ignored"
    assert "hidden" in form  # shown by the script; without it every row stays visible
    assert "corrective drift (1)" in body and "in sync (3)" in body and "unmanaged change (2)" in body


def _host_table(text: str) -> list[list[str]]:
    rows = re.findall(r'<tr data-host-row="[^"]*">(.*?)</tr>', text)
    return [[html.unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<td[^>]*>(.*?)</td>", r)] for r in rows]


def test_the_hosts_table_has_a_changed_column(doc: dict[str, Any]) -> None:
    assert _host_table(render(doc, "html")) == [
        # host, status, resources, in sync, changed, drifted, unmanaged, failed, seconds
        ["web1", "failed", "7", "1", "0", "3", "2", "1", "1.25"],
        ["web2", "unreachable", "—", "—", "—", "—", "—", "—", "0.5"],  # unknown, not zero
        ["db1", "failed", "0", "0", "0", "0", "—", "0", "0.25"],  # watch paths not examined
        ["db2", "ok", "2", "2", "0", "0", "0", "0", "0.75"],
    ]


def apply_run(started: float, changed: int, failed: int = 0) -> RunResult:
    res = [ResourceResult(f"file:/etc/c{i}", "changed", [Change("mode", "0600", "0644")], type="file")
           for i in range(changed)]
    res += [ResourceResult(f"service:s{i}", "failed", error="unit not found", type="service") for i in range(failed)]
    res.append(ResourceResult("user:alice", "ok", reason="in sync", type="user"))
    return RunResult("apply", [HostResult("web1", "failed" if failed else "changed", res, duration=2.0)],
                     started=started, finished=started + 10)


def test_an_apply_run_has_its_changed_count_and_its_place_in_the_chart() -> None:
    doc = document.build(apply_run(T0, changed=3, failed=1), INV)
    text = render(doc, "html")
    assert _host_table(text) == [["web1", "failed", "5", "1", "3", "0", "—", "1", "2.0"]]
    titles = re.findall(r"<title>([^<]*)</title>", text)
    assert "this apply 2026-09-21 14:13: 3 changed" in titles and "this apply 2026-09-21 14:13: 1 failed" in titles
    assert "changed (apply)" in Page(text).body()  # in the legend
    rows = Page(text).rows
    assert [c for _, _, c in rows] == ["changed", "changed", "changed", "failed", "insync"]


def drift_run(started: float, drifted: Sequence[str] = (), paths: Sequence[str] = (), secret: str = "") -> RunResult:
    res = [ResourceResult(r, "ok", [Change("mode", "0600", "0644")], type="file", drift="corrective")
           for r in drifted]
    res.append(ResourceResult("file:/etc/motd", "ok", reason="in sync", type="file") if "file:/etc/motd" not in drifted
               else res.pop(drifted.index("file:/etc/motd")))
    if secret:
        res.append(ResourceResult("service:app", "failed", error=f"start: token={secret} refused", type="service"))
    unmanaged = [UnmanagedChange(p, "added", None, {"type": "file"}) for p in paths]
    host = HostResult("web1", "failed" if secret else "ok", [redact_result(r, frozenset({secret} - {""}))
                                                              for r in res],
                      unmanaged=unmanaged, unmanaged_examined=True)
    return RunResult("drift", [host], started=started, finished=started + 5)


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    """motd drifts, an apply fixes it, a clean drift run, it drifts again; a cron file appears."""
    path = tmp_path / "state" / "driftctl.sqlite"
    with open_store(path) as store:
        store.save_run(document.build(drift_run(T0, ["file:/etc/motd"]), INV))
        fix = RunResult("apply", [HostResult("web1", "changed", [ResourceResult(
            "file:/etc/motd", "changed", [Change("mode", "0644", "0600")], type="file")])],
            started=T0 + 600, finished=T0 + 610)
        store.save_run(document.build(fix, INV))
        store.save_run(document.build(drift_run(T0 + 1200), INV))
        store.save_run(document.build(drift_run(T0 + 1800, ["file:/etc/motd"], ["/etc/cron.d/x"]), INV))
    return path


def _past_of(text: str, rid: str) -> list[str]:
    """The past events listed in the row of ``rid``, as text, in the order shown."""
    row = re.search(rf'<tr data-c="[^"]*" data-r="{re.escape(html.escape(rid))}">(.*?)</tr>', text)
    assert row is not None, rid
    return [html.unescape(re.sub(r"<[^>]+>", "", li)) for li in re.findall(r"<li>(.*?)</li>", row.group(1))
            if "<time" in li]


def test_a_resource_shows_its_past_events_newest_first(store_path: Path, tmp_path: Path) -> None:
    with open_store(store_path) as store:
        doc = store.latest_run(INV, command="drift")
    assert doc is not None
    (page,) = write_reports(doc, tmp_path / "site", formats=["html"], store=str(store_path))
    text = page.read_text()
    events = _past_of(text, "file:/etc/motd")
    assert [re.sub(r"run #\d+", "run #N", e) for e in events] == [
        "2026-09-21 14:43Z drift found corrective drift: mode run #N",
        "2026-09-21 14:23Z drift fixed resolved (applied) after 1 drift run run #N",
        "2026-09-21 14:23Z applied applied: mode run #N",
        "2026-09-21 14:13Z drift found corrective drift: mode run #N",
    ]
    assert '<details class="past"><summary>4 events</summary>' in text
    assert _past_of(text, "/etc/cron.d/x") == [_past_of(text, "/etc/cron.d/x")[0]] and \
        "unmanaged change" in _past_of(text, "/etc/cron.d/x")[0]
    # the chart has the apply between the drift runs, in its own lane
    bars = {name: float(x) for x, name in re.findall(r'<rect x="([\d.]+)"[^>]*><title>((?:run|apply) #\d+) ', text)}
    assert [name.split()[0] for name in sorted(bars, key=bars.__getitem__)] == ["run", "apply", "run", "run"]


def test_past_events_are_limited_to_the_latest_n(store_path: Path) -> None:
    with open_store(store_path) as store:
        doc = store.latest_run(INV, command="drift")
        history = history_from_store(store, INV, per_subject=2)
    assert doc is not None
    past = history[("web1", "file:/etc/motd")]
    assert past.total == 4 and [e.kind for e in past.events] == ["drift-resolved", "drift-found"]
    text = render(doc, "html", history=history)
    assert "2 events (latest 2 of 4)" in text
    assert len(_past_of(text, "file:/etc/motd")) == 2


def test_the_chart_from_the_store_places_apply_runs(store_path: Path) -> None:
    with open_store(store_path) as store:
        chart = chart_from_store(store, INV, applies=True)
        only_drift = chart_from_store(store, INV)
    assert [r.command for r in chart] == ["drift", "apply", "drift", "drift"]
    assert chart[1].counts == {"changed": 1, "failed": 0}
    assert [r.run_id for r in only_drift] == [r.run_id for r in chart if r.command == "drift"]


def cli(*args: str | os.PathLike[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTCTL_")}
    env.update(NO_COLOR="1", DRIFTCTL_STATE_DIR=str(cwd / "no-state-here"))
    return subprocess.run([sys.executable, "-m", "driftctl", *map(str, args)], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=120, stdin=subprocess.DEVNULL)


def test_report_command_html_has_the_past_up_to_the_run_asked_for(store_path: Path, tmp_path: Path) -> None:
    with open_store(store_path) as store:
        first = store.runs(INV, command="drift")[-1].id
    out = tmp_path / "latest.html"
    p = cli("report", INV, "--state", store_path, "-f", "html", "-o", out, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert len(_past_of(out.read_text(), "file:/etc/motd")) == 4
    assert "apply #" in out.read_text()
    old = tmp_path / "first.html"
    p = cli("report", INV, "--state", store_path, "-f", "html", "--run", str(first), "-o", old, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    text = old.read_text()
    assert _past_of(text, "file:/etc/motd") == ["2026-09-21 14:13Z drift found corrective drift: mode " f"run #{first}"]
    assert "apply #" not in text  # the chart stops at that run too


def test_an_unreadable_store_costs_the_page_its_past_never_the_report(doc: dict[str, Any], tmp_path: Path) -> None:
    bad = tmp_path / "not-a-store.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    (page,) = write_reports(doc, tmp_path / "out", formats=["html"], store=str(bad))
    text = page.read_text()
    assert "this run 2026-09-21 14:13: 1 corrective" in text and 'class="past"' not in text


# -- what to run next -----------------------------------------------------------------------------


def _parse_with_driftctl(command: str) -> click.Context:
    """``command`` parsed by driftctl's own command line: an unknown command or option, or a bad value,
    raises click's error."""
    from driftctl.cli import cli as group

    words = shlex.split(command.replace(PLACEHOLDER_EXPIRES, "2026-12-31"))
    assert words[0] == "driftctl"
    words = words[1:]
    ctx = click.Context(group, info_name="driftctl")
    cmd: click.Command = group
    name = "driftctl"
    while isinstance(cmd, click.Group):
        name, words = words[0], words[1:]
        sub = cmd.get_command(ctx, name)
        assert sub is not None, f"no command {name!r} in {command!r}"
        cmd = sub
    return cmd.make_context(name, words, parent=ctx)


def test_next_steps_are_real_commands_for_the_right_hosts(doc: dict[str, Any]) -> None:
    steps = {s.title: s for s in next_steps(doc)}
    assert list(steps) == ["Unreachable", "Failed as a whole", "Failed", "Pending", "Changed by hand", "Unmanaged"]
    assert steps["Unreachable"].hosts == ["web2"] and steps["Failed as a whole"].hosts == ["db1"]
    assert steps["Changed by hand"].commands[0] == "driftctl drift inventory/prod -l web1 --remediate"
    assert steps["Pending"].commands == [
        "driftctl plan inventory/prod -l web1", "driftctl apply inventory/prod -l web1"]
    assert steps["Unmanaged"].commands[:2] == [
        "driftctl accept inventory/prod -l web1", "driftctl accept inventory/prod -l web1 --path /etc/cron.d/backdoor"]
    # the ignored drift (package:nginx) and the ignored path (/etc/hosts) ask for nothing
    assert "package:nginx" not in str(steps) and "/etc/hosts" not in str(steps)
    for step in steps.values():
        for command in step.commands:
            ctx = _parse_with_driftctl(command)
            assert str(ctx.params.get("inventory")) == "inventory/prod"
    ignore = _parse_with_driftctl(steps["Changed by hand"].commands[1])
    assert (ignore.params["host_pattern"], ignore.params["target"]) == ("web1", "file:/etc/motd")  # the first by hand


def test_next_steps_quote_what_a_shell_would_split() -> None:
    odd = "web 1;rm -rf ~"
    run = RunResult("plan", [HostResult(odd, "changed", [ResourceResult(
        "file:/etc/it's", "changed", [Change("mode", "0600", "0644")], type="file")])], started=T0, finished=T0)
    (step,) = next_steps(document.build(run, "inv/with space"))
    assert step.title == "To apply"
    assert shlex.split(step.commands[0]) == ["driftctl", "apply", "inv/with space", "-l", odd]
    _parse_with_driftctl(step.commands[0])


def test_an_apply_that_left_nothing_to_do_says_so() -> None:
    run = RunResult("apply", [HostResult("web1", "ok", [ResourceResult("user:alice", "ok", type="user")])],
                    started=T0, finished=T0 + 1)
    doc = document.build(run, INV)
    assert next_steps(doc) == []
    assert "Nothing to do" in Page(render(doc, "html")).body()


# -- secrets --------------------------------------------------------------------------------------


def test_no_secret_in_the_page_history_included(tmp_path: Path) -> None:
    """The canary goes through the engine's redaction into documents, the store and its history (a
    failed event's detail carries the resource's error), then the page."""
    canary = "canary-9c1d-Pa55w0rd-" + dt.date.today().isoformat()
    path = tmp_path / "s.sqlite"
    with open_store(path) as store:
        store.save_run(document.build(drift_run(T0, ["file:/etc/motd"], secret=canary), INV))
        store.save_run(document.build(drift_run(T0 + 600, ["file:/etc/motd"], secret=canary), INV))
        doc = store.latest_run(INV, command="drift")
    assert doc is not None
    (page,) = write_reports(doc, tmp_path / "site", formats=["html"], store=str(path))
    text = page.read_text()
    events = _past_of(text, "service:app")
    assert len(events) == 2 and all("token=********" in e for e in events)  # the history is there, redacted
    assert canary not in text and "Pa55w0rd" not in text
    assert SECRET not in render(document.build(build_run(), INV), "html")
