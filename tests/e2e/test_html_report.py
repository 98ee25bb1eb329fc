"""The HTML report in a real browser (headless Chromium): a fleet of 42 hosts x 110 resources.

The report is built as driftctl builds it: real RunResult objects (redacted by the engine), report
documents saved in a real SQLite store over four runs (a first converge, a drift run, an apply that
fixes some, a drift run), and ``write_reports(..., store=)`` for the latest drift run, so the page has
its chart of drift and applies and each resource's past events. No fleet is needed: the browser is
the consumer under test.

Checked in Chromium: a screenshot (a real PNG of the page, with the chart's colours in it); the
filters, applied through the URL fragment (``--dump-dom`` shows exactly the rows that match, compared
with the rows computed from the document) and typed into the form (DevTools protocol); no CSP
violation anywhere (console log and the document's own violation events), and a page that breaks the
CSP is caught (the detector works); an opened diff scrolls inside its cell and the page never scrolls
sideways; no timestamp wraps.
"""

from __future__ import annotations

import html.parser
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import CHROMIUM, Page, dump_dom, read_png, screenshot

from driftctl.engine import redact_result
from driftctl.model import Change, HostResult, ResourceResult, RunResult, UnmanagedChange
from driftctl.report import document, write_reports
from driftctl.store import open_store

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")

INV = "inventory/prod"
SECRET = "canary-Xq7-hunter2-s3cr3t"
T0 = 1_790_000_000.0  # 2026-09-21T14:13:20Z
N_HOSTS, N_RESOURCES = 42, 110
LONG = "".join(f"server_name line{k} " + "x" * 260 + ";\n" for k in range(4))


def host_name(i: int) -> str:
    return f"db{i:02d}.prod.example.com" if i % 3 == 0 else f"web{i:02d}.prod.example.com"


def rid(j: int) -> str:
    return "package:nginx" if j == 5 else "service:nginx" if j == 6 else f"file:/etc/app/conf.d/{j:03d}-app.conf"


def host_result(i: int, command: str, t: float) -> HostResult:
    """Host i in a run: what drifts, fails or changes depends on i, the same way in every run."""
    name = host_name(i)
    if i == 7:
        return HostResult(name, "unreachable", error="connect: [Errno 111] Connection refused", duration=0.5)
    if i == 11:
        return HostResult(name, "failed", error="agent: python3 not found on the host", duration=0.2, round_trips=1)
    rtype = {5: "package", 6: "service"}
    status = "ok"
    res: list[ResourceResult] = []
    for j in range(N_RESOURCES):
        kind = rtype.get(j, "file")
        if command == "apply" and t == T0:  # the first converge created everything
            res.append(ResourceResult(rid(j), "changed", [Change("ensure", "absent", "present")], type=kind))
        else:
            res.append(ResourceResult(rid(j), "ok", reason="in sync", type=kind))
    if command == "drift":
        if i % 4 == 1:  # someone edited a file by hand: a long diff with a secret in it
            diff = ("--- /etc/app/conf.d/000-app.conf (host)\n+++ /etc/app/conf.d/000-app.conf (manifest)\n"
                    "@@ -1,5 +1,1 @@\n" + "".join("-" + line + "\n" for line in LONG.splitlines())
                    + f"-password={SECRET}\n+server_name prod;\n")
            res[0] = ResourceResult(rid(0), "ok", [Change("content", "sha256:1111aaaa", "sha256:2222bbbb", diff)],
                                    type="file", drift="corrective")
        if i % 5 == 2:
            res[1] = ResourceResult(rid(1), "ok", [Change("mode", "0666", "0640")], type="file", drift="pending")
        if i % 9 == 4:
            res[2] = ResourceResult(rid(2), "ok", [Change("owner", "root", "app")], type="file", drift="both")
        if i == 13:
            res[5] = ResourceResult(rid(5), "ok", [Change("version", "1.22", "1.24")], type="package",
                                    drift="corrective", ignored="upgrade under test (until 2026-12-31)")
    if i % 7 == 3:
        res[6] = ResourceResult(rid(6), "failed", error=f"systemctl restart nginx: password={SECRET} rejected",
                                type="service")
        res[7] = ResourceResult(rid(7), "skipped", reason="a dependency failed: service:nginx", type="file")
        status = "failed"
    elif command == "apply" and t > T0 and i % 4 == 1:
        res[0] = ResourceResult(rid(0), "changed", [Change("content", "sha256:1111aaaa", "sha256:2222bbbb")],
                                type="file")
        status = "changed"
    unmanaged = []
    if command == "drift" and i % 6 == 5:
        unmanaged.append(UnmanagedChange("/etc/cron.d/backdoor", "added", None, {"type": "file", "sha256": "ab"}))
    return HostResult(name, status, [redact_result(r, frozenset({SECRET})) for r in res], duration=1.25,
                      round_trips=1, unmanaged=unmanaged, unmanaged_examined=command == "drift")


def fleet_run(command: str, t: float) -> RunResult:
    return RunResult(command, [host_result(i, command, t) for i in range(N_HOSTS)], started=t, finished=t + 30)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The latest drift run's page, written by write_reports with the store's history."""
    tmp = tmp_path_factory.mktemp("html-report")
    store_path = tmp / "state" / "driftctl.sqlite"
    with open_store(store_path) as store:
        for command, t in (("apply", T0), ("drift", T0 + 3600), ("apply", T0 + 7200), ("drift", T0 + 10800)):
            store.save_run(document.build(fleet_run(command, t), INV))
        doc = store.latest_run(INV, command="drift")
    assert doc is not None
    (page,) = write_reports(doc, tmp / "site", formats=["html"], store=str(store_path))
    return page, doc


# -- what the document says each filter must show ---------------------------------------------------


def row_classes(doc: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(host, resource id or path, class) of every row the page must have, from the document."""
    for h in doc["hosts"]:
        if h.get("error"):
            yield h["name"], "", "unreachable" if h["status"] == "unreachable" else "failed"
        for r in h["resources"]:
            if r.get("drift"):
                cls = "ignored" if r.get("ignored") else r["drift"]
            else:
                cls = {"ok": "insync"}.get(r["status"], r["status"])
            yield h["name"], r["id"], cls
        for u in h.get("unmanaged") or []:
            yield h["name"], u["path"], "ignored" if u.get("ignored") else "unmanaged"


ALL = ("corrective", "pending", "both", "unmanaged", "changed", "failed", "skipped", "unreachable", "ignored",
       "insync")
DEFAULT = tuple(c for c in ALL if c != "insync")


def expected(doc: dict[str, Any], host: str = "", res: str = "",
             classes: tuple[str, ...] = DEFAULT) -> set[tuple[str, str]]:
    def any_in(words: list[str], text: str) -> bool:
        return not words or any(w in text.lower() for w in words)

    host_words, res_words = host.lower().replace(",", " ").split(), res.lower().replace(",", " ").split()
    return {(h, r) for h, r, c in row_classes(doc)
            if c in classes and any_in(host_words, h) and any_in(res_words, r)}


class Rows(html.parser.HTMLParser):
    """The rows of a dumped DOM that are shown: not hidden, and in a host section that is not hidden."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.host: str | None = None
        self.host_hidden = False
        self.shown: set[tuple[str, str]] = set()
        self.all: set[tuple[str, str]] = set()
        self.host_rows_shown: set[str] = set()
        self.form_hidden: bool | None = None
        self.output: list[str] = []
        self._in_output = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section" and "host" in (a.get("class") or "").split():
            self.host, self.host_hidden = a.get("data-host"), "hidden" in a
        elif tag == "tr" and "data-c" in a and self.host is not None:
            key = (self.host, a.get("data-r") or "")
            self.all.add(key)
            if not self.host_hidden and "hidden" not in a:
                self.shown.add(key)
        elif tag == "tr" and "data-host-row" in a and "hidden" not in a:
            self.host_rows_shown.add(a["data-host-row"] or "")
        elif tag == "form" and a.get("id") == "filters":
            self.form_hidden = "hidden" in a
        elif tag == "output":
            self._in_output = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "output":
            self._in_output = False

    def handle_data(self, data: str) -> None:
        if self._in_output:
            self.output.append(data)


def shown(url: str) -> Rows:
    run = dump_dom(url)
    assert run.stdout.startswith("<!DOCTYPE html>") or "<html" in run.stdout[:200], run.stderr[-2000:]
    assert not run.csp_violations, run.csp_violations
    rows = Rows()
    rows.feed(run.stdout)
    rows.close()
    return rows


# -- the tests ---------------------------------------------------------------------------------------


def test_the_page_is_big_and_secret_free(report: tuple[Path, dict[str, Any]]) -> None:
    page, doc = report
    text = page.read_text(encoding="utf-8")
    assert SECRET not in text and "hunter2" not in text
    assert len(list(row_classes(doc))) > N_HOSTS * N_RESOURCES - 2 * N_RESOURCES  # every resource has a row
    assert "<script" in text and 'http-equiv="Content-Security-Policy"' in text


def test_screenshot_of_the_fleet_report(report: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    page, _ = report
    out = tmp_path / "report.png"
    run = screenshot(page.as_uri(), out)
    assert out.exists(), run.stderr[-2000:]
    assert not run.csp_violations, run.csp_violations
    png = read_png(out)
    assert (png.width, png.height) == (1280, 1600)
    assert out.stat().st_size > 50_000  # a page of text, tables and a chart; a blank page is ~5 kB
    assert len(png.colours) > 200, len(png.colours)  # text anti-aliasing, the chart, the coloured classes
    assert (255, 255, 255) in png.colours  # the background
    assert (0xD9, 0x53, 0x4F) in png.colours  # the chart's corrective drift bars
    assert (0x00, 0x89, 0x7B) in png.colours  # the chart's apply lane (resources changed)


def test_the_default_view_hides_only_what_is_in_sync(report: tuple[Path, dict[str, Any]]) -> None:
    page, doc = report
    rows = shown(page.as_uri())
    assert rows.form_hidden is False  # the script ran and showed the form
    assert rows.all == expected(doc, classes=ALL)  # every resource of every host has a row
    assert rows.shown == expected(doc) and rows.shown  # the default: everything but in sync
    hosts_with_rows = {h for h, _ in rows.shown}
    assert rows.host_rows_shown == hosts_with_rows
    assert f"Showing {len(rows.shown)} of {len(rows.all)} rows" in "".join(rows.output)


@pytest.mark.parametrize(("fragment", "host", "res", "classes"), [
    ("#class=failed", "", "", ("failed",)),
    ("#class=corrective,pending", "", "", ("corrective", "pending")),
    ("#host=db", "db", "", DEFAULT),
    ("#host=db&class=all", "db", "", ALL),
    ("#res=nginx&class=all", "", "nginx", ALL),
    ("#host=web01.prod,web13&class=all&res=service:nginx,000-app", "web01.prod,web13", "service:nginx,000-app", ALL),
    ("#class=unreachable", "", "", ("unreachable",)),
    ("#class=insync&host=web10.", "web10.", "", ("insync",)),
    ("#host=no-such-host", "no-such-host", "", DEFAULT),
])
def test_filters_from_the_url_fragment(report: tuple[Path, dict[str, Any]], fragment: str, host: str, res: str,
                                       classes: tuple[str, ...]) -> None:
    page, doc = report
    want = expected(doc, host=host, res=res, classes=classes)
    rows = shown(page.as_uri() + fragment)
    assert len(rows.all) > N_HOSTS * N_RESOURCES // 2  # the rows are there, shown or not
    assert rows.shown == want
    assert rows.host_rows_shown == {h for h, _ in want}  # the hosts table follows the filter
    if fragment == "#class=failed":  # a filter that is not trivially everything or nothing
        assert 0 < len(want) < 40


def _visible(page: Page) -> set[tuple[str, str]]:
    pairs = page.evaluate(
        "Array.from(document.querySelectorAll('section.host')).filter(s => !s.hidden).flatMap(s =>"
        " Array.from(s.querySelectorAll('tr[data-c]')).filter(tr => !tr.hidden && tr.offsetParent !== null)"
        " .map(tr => [s.dataset.host, tr.dataset.r]))")
    return {(h, r) for h, r in pairs}


def test_filters_typed_into_the_form(report: tuple[Path, dict[str, Any]]) -> None:
    page_path, doc = report
    with Page() as page:
        page.open(page_path.as_uri())
        assert _visible(page) == expected(doc)
        page.evaluate("document.querySelector('input[name=res]').focus()")
        page.insert_text("nginx")
        assert _visible(page) == expected(doc, res="nginx")
        page.evaluate("document.querySelector('input[name=host]').focus()")
        page.insert_text("web")
        assert _visible(page) == expected(doc, host="web", res="nginx")
        page.evaluate("document.querySelector('input[value=insync]').click()")  # tick "in sync" too
        assert _visible(page) == expected(doc, host="web", res="nginx", classes=ALL)
        assert page.evaluate("location.hash") == "#host=web&class=all&res=nginx"  # a link to this view
        page.evaluate("document.querySelector('a[href=\"#class=failed,unreachable\"]').click()")  # a preset
        assert _visible(page) == expected(doc, classes=("failed", "unreachable"))
        assert page.violations() == []


def test_no_csp_violation_and_the_detector_catches_one(report: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    page_path, _ = report
    with Page() as page:
        page.open(page_path.as_uri() + "#class=all")
        page.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")
        assert page.evaluate("document.getElementById('filters').hidden") is False  # the script was allowed
        assert page.violations() == []
        # the same page with one byte of its script changed: the CSP must refuse it, and we must see that
        text = page_path.read_text(encoding="utf-8")
        broken = tmp_path / "broken.html"
        broken.write_text(text.replace('"use strict";', '"use strict"; ', 1), encoding="utf-8")
        page.open(broken.as_uri())
        assert any("script-src" in v for v in page.violations()), page.violations()
        assert page.evaluate("document.getElementById('filters').hidden") is True  # no script ran
    assert dump_dom(broken.as_uri()).csp_violations  # the command-line check sees it too


def test_an_open_diff_scrolls_inside_its_cell(report: tuple[Path, dict[str, Any]]) -> None:
    page_path, _ = report
    with Page() as page:
        page.open(page_path.as_uri() + "#class=all")
        page.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")
        view = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert view[0] <= view[1], f"the page scrolls sideways: {view}"
        diffs = page.evaluate(
            "Array.from(document.querySelectorAll('td pre')).map(p => {"
            " const c = p.closest('td').getBoundingClientRect(), r = p.getBoundingClientRect();"
            " return [r.left - c.left, c.right - r.right, p.scrollWidth, p.clientWidth, getComputedStyle(p).overflowX,"
            " document.documentElement.clientWidth - c.right]; })")
        assert len(diffs) >= 10
        for left, right, _, _, overflow, room in diffs:
            assert left >= 0 and right >= 0, "a diff sticks out of its cell"
            assert room >= 0, "a diff's cell sticks out of the window"  # even where a section clips its overflow
            assert overflow == "auto"
        assert any(scroll_w > client_w for _, _, scroll_w, client_w, _, _ in diffs)  # the long lines scroll in place


def test_timestamps_do_not_wrap(report: tuple[Path, dict[str, Any]]) -> None:
    page_path, _ = report
    with Page(width=1024, height=1200) as page:  # narrower than the screenshot: columns are tight
        page.open(page_path.as_uri() + "#class=all")
        page.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")
        lines = page.evaluate(
            "Array.from(document.querySelectorAll('time')).filter(t => t.offsetParent !== null)"
            ".map(t => [t.textContent, t.getClientRects().length])")
        assert len(lines) > 100
        wrapped = [text for text, n in lines if n != 1]
        assert wrapped == []
        assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\dZ", text) for text, _ in lines)


def test_without_script_every_row_is_shown(report: tuple[Path, dict[str, Any]]) -> None:
    """A viewer that blocks scripts (some CI artifact viewers do) still shows the whole report."""
    page_path, doc = report
    with Page() as page:
        page.disable_scripts()
        page.open(page_path.as_uri() + "#class=failed")
        rows = Rows()
        rows.feed(page.html())
        rows.close()
    assert rows.form_hidden is True  # a form that would do nothing is not offered
    assert rows.shown == rows.all == expected(doc, classes=ALL)


def test_a_mangled_fragment_is_read_as_far_as_it_makes_sense(report: tuple[Path, dict[str, Any]]) -> None:
    """A fragment cut or edited by hand: bad percent-encoding is dropped, unknown classes ignored (none known:
    the default classes), no script error."""
    page_path, doc = report
    with Page() as page:
        page.open(page_path.as_uri() + "#host=%E0%A4%A&class=nope,&res=nginx&junk")
        assert _visible(page) == expected(doc, res="nginx")
        assert page.evaluate("document.querySelector('input[name=host]').value") == ""
        page.open(page_path.as_uri() + "#class=failed,nope")
        assert _visible(page) == expected(doc, classes=("failed",))
        assert page.errors() == [] and page.violations() == []
