"""Drift reads one way in every output: from what was converged (the manifest) to what the host has
now, for fields and for contents alike; plan and apply read host -> manifest, as before."""

from __future__ import annotations

import difflib
import io

from rich.console import Console

from driftctl.cli.render import host_section
from driftctl.model import Change, HostResult, ResourceResult, RunResult
from driftctl.report import document, junit, markdown
from driftctl.report.common import reverse_diff

CONVERGED = "one\ntwo\nthree\n"
ON_HOST = "one\ntwo\nhand edit\nthree\n"


def diff(a: str, b: str, from_name: str, to_name: str) -> str:
    return "".join(difflib.unified_diff(a.splitlines(True), b.splitlines(True), fromfile=from_name, tofile=to_name))


def test_reverse_diff_is_the_diff_the_other_way() -> None:
    host_to_manifest = diff(ON_HOST, CONVERGED, "f (host)", "f (manifest)")
    assert reverse_diff(host_to_manifest) == diff(CONVERGED, ON_HOST, "f (manifest)", "f (host)")
    assert reverse_diff(reverse_diff(host_to_manifest)) == host_to_manifest
    # a removed line that itself starts with "-- " is not taken for a file header
    tricky = diff("-- sql comment\n++ x\nkeep\n", "keep\n", "a", "b")
    assert reverse_diff(tricky) == diff("keep\n", "-- sql comment\n++ x\nkeep\n", "b", "a")


def drifted(status: str = "ok") -> HostResult:
    change = Change("content", "sha256:aaaaaaaaaaaa", "sha256:bbbbbbbbbbbb",
                    diff(ON_HOST, CONVERGED, "/etc/app.conf (host)", "/etc/app.conf (manifest)"))
    mode = Change("mode", "0666", "0644")  # the plan's direction: host value, then manifest value
    r = ResourceResult("file:/etc/app.conf", status, changes=[change, mode], drift="corrective", type="file")
    return HostResult("web1", "ok", resources=[r])


def test_the_terminal_shows_a_line_added_by_hand_as_added_and_the_mode_as_it_moved() -> None:
    out = io.StringIO()
    host_section(Console(file=out, width=200, color_system=None), drifted(), "drift", True)
    text = out.getvalue()
    assert "+hand edit" in text and "-hand edit" not in text
    assert "--- /etc/app.conf (manifest)" in text and "+++ /etc/app.conf (host)" in text
    assert "mode 0644 -> 0666" in text  # converged -> on the host now, the same way


def test_the_reports_read_drift_the_same_way() -> None:
    run = RunResult("drift", hosts=[drifted()])
    doc = document.build(run, "inventory/prod", ["drift", "inventory/prod"])
    for text in (markdown.render(doc), junit.render(doc)):
        assert "+hand edit" in text and "-hand edit" not in text
