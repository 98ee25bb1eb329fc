"""Output and store at fleet scale (issue 10 §4): a new file's whole content is not printed by default
(one line with its size; --diff shows it, --no-diff shows no diff at all), and the store keeps the
hashes of a new content, not its text. A change to an existing file keeps its diff everywhere."""

from __future__ import annotations

import io

from rich.console import Console

from driftctl.cli.render import host_section, new_lines
from driftctl.engine import diff_head
from driftctl.model import Change, HostResult, ResourceResult, RunResult
from driftctl.report import document

NEW = "--- /dev/null\n+++ /etc/new.conf (manifest)\n@@ -0,0 +1,3 @@\n+one\n+two\n+three\n"
EDIT = "--- /etc/old.conf (host)\n+++ /etc/old.conf (manifest)\n@@ -1 +1 @@\n-before\n+after\n"


def results() -> list[ResourceResult]:
    return [
        ResourceResult("file:/etc/new.conf", "changed", [Change("content", None, "sha256:aaaaaaaaaaaa", NEW)],
                       type="file"),
        ResourceResult("file:/etc/old.conf", "changed",
                       [Change("content", "sha256:bbbbbbbbbbbb", "sha256:cccccccccccc", EDIT)], type="file"),
    ]


def shown(show_diff: bool | None) -> str:
    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None)
    host_section(console, HostResult("h1", "changed", resources=results()), "apply", show_diff)
    return out.getvalue()


def test_one_line_per_changed_resource_with_its_fields() -> None:
    changes = [Change("ensure", "absent", "file"), Change("mode", None, "0640")]
    r = ResourceResult("file:/etc/x.conf", "changed", changes, type="file", source="site.yaml:3")
    out = io.StringIO()
    narrow = Console(file=out, width=40, color_system=None)
    host_section(narrow, HostResult("h1", "changed", resources=[r]), "apply", None)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[1].startswith("  ~ file:/etc/x.conf changed: ")  # not wrapped at 40 columns
    assert "mode -> 0640" in lines[1] and lines[1].endswith("site.yaml:3")


def test_by_default_a_new_file_is_one_line_and_an_edit_shows_its_diff() -> None:
    text = shown(None)
    assert "+three" not in text and "(new content, 3 line(s): --diff shows it)" in text
    assert "-before" in text and "+after" in text


def test_diff_shows_new_files_in_full_and_no_diff_shows_none() -> None:
    assert "+three" in shown(True) and "+after" in shown(True)
    quiet = shown(False)
    assert "+three" not in quiet and "+after" not in quiet and "new content" not in quiet


def test_the_store_keeps_a_new_contents_hashes_not_its_text() -> None:
    run = RunResult("apply", [HostResult("h1", "changed", resources=results())])
    doc = document.build(run, "inv")
    stored = document.for_store(doc)
    new, edit = stored["hosts"][0]["resources"]
    assert new["changes"][0]["diff"] is None and new["changes"][0]["after"] == "sha256:aaaaaaaaaaaa"
    assert edit["changes"][0]["diff"] == EDIT
    assert doc["hosts"][0]["resources"][0]["changes"][0]["diff"] == NEW  # the run's own report is whole


def test_a_created_files_diff_cut_to_its_header_still_counts_its_lines() -> None:
    """Without --diff or --json the engine keeps only a created file's diff header (its text is shown
    nowhere and not stored): the line count the default output shows comes from that header."""
    assert diff_head(NEW) == "--- /dev/null\n+++ /etc/new.conf (manifest)\n@@ -0,0 +1,3 @@\n"
    assert new_lines(diff_head(NEW)) == new_lines(NEW) == 3
    assert new_lines("--- /dev/null\n+++ /x (manifest)\n@@ -0,0 +1 @@\n") == 1


def _hosts() -> list[HostResult]:
    odd = ResourceResult("file:/etc/ünï cödé.conf", "failed", [Change("mode", "0644", "0600")], type="file",
                         error="permission denied  ", reason="x")
    return [HostResult("h1", "changed", resources=[*results(), odd]),
            HostResult("h2", "unreachable", error="connect timeout [bold]not markup[/]"),
            HostResult("h3", "failed", error="agent failed")]


def test_without_colours_a_section_is_written_as_rich_would_write_it() -> None:
    """The plain write (no colour system: piped, cron, CI) gives rich's bytes, markup-like text as is."""
    for show_diff in (None, True, False):
        for h in _hosts():
            fast, slow = io.StringIO(), io.StringIO()
            host_section(Console(file=fast, width=160, color_system=None), h, "apply", show_diff, verbose=True)
            recorder = Console(file=slow, width=160, color_system=None, record=True)  # record: rich's own path
            host_section(recorder, h, "apply", show_diff, verbose=True)
            assert fast.getvalue() == slow.getvalue() and fast.getvalue()


def test_at_a_terminal_a_section_keeps_its_colours() -> None:
    out = io.StringIO()
    host_section(Console(file=out, width=160, force_terminal=True, color_system="standard"),
                 _hosts()[0], "apply", None)
    assert "\x1b[" in out.getvalue()
