"""The live progress view's model (driftctl/cli/progress.py): events in, text out, on a rich Console of a
fixed size, with a clock the test moves. The real terminal is tests/e2e/test_live_progress.py (tmux)."""

from __future__ import annotations

import io
import re
import threading

import pytest
from rich.console import Console

from driftctl.cli import ui
from driftctl.cli.progress import Board, Progress, clock_text, view
from driftctl.engine import Event
from driftctl.model import HostResult, ResourceResult, UnmanagedChange


def draw(board: Board, now: float, width: int = 100, height: int = 40) -> list[str]:
    console = Console(width=width, height=height, file=io.StringIO(), color_system=None, legacy_windows=False)
    console.print(view(board, now, width, height))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    return text.splitlines()


def line_of(lines: list[str], host: str) -> str:
    found = [line for line in lines if re.match(rf"^(  |. ){re.escape(host)}\s", line)]
    assert len(found) == 1, "\n".join(lines)
    return found[0].rstrip()


def result(host: str, changed: int = 0, ok: int = 0, failed: int = 0, duration: float = 1.0,
           **fields: object) -> HostResult:
    resources = ([ResourceResult(f"file:/c{i}", "changed") for i in range(changed)]
                 + [ResourceResult(f"file:/o{i}", "ok") for i in range(ok)]
                 + [ResourceResult(f"file:/f{i}", "failed", error="boom") for i in range(failed)])
    status = fields.pop("status", "failed" if failed else "ok")
    return HostResult(host, status, resources=resources, duration=duration, **fields)  # type: ignore[arg-type]


def run_to_apply(board: Board, host: str, at: float) -> None:
    board.update(Event("start", host), at)
    for phase in ("connect", "facts", "render", "probe", "apply"):
        board.update(Event("phase", host, phase), at)


def test_a_running_host_shows_its_phase_and_elapsed_time() -> None:
    board = Board.of(["web1", "web2"], now=100.0)
    board.update(Event("start", "web1"), 101.0)
    board.update(Event("phase", "web1", "connect"), 101.0)
    board.update(Event("phase", "web1", "probe"), 102.0)
    lines = draw(board, 108.0)
    assert re.match(r"^  web1\s+probe\s+7s$", line_of(lines, "web1")), lines
    assert re.search(r"0/2 hosts done\s+8s elapsed", lines[0]), lines
    assert lines[-1].strip() == "waiting: 1 host(s)"


def test_resources_done_of_total_during_apply() -> None:
    board = Board.of(["web1"], now=0.0)
    run_to_apply(board, "web1", 0.0)
    board.update(Event("resource", "web1", "", done=0, total=40), 1.0)
    assert "0/40 resources" in line_of(draw(board, 1.0), "web1")
    board.update(Event("resource", "web1", "file:/etc/app.conf", done=12, total=40), 2.0)
    line = line_of(draw(board, 75.0), "web1")
    assert re.search(r"apply\s+━+ 12/40 resources  file:/etc/app\.conf\s+1m15s$", line), line
    # the agent starts the next one: the view says which it works on now, until it is done
    board.update(Event("resource", "web1", "", done=12, total=40, current="exec:migrate"), 76.0)
    assert re.search(r"12/40 resources  now: exec:migrate\s", line_of(draw(board, 76.0), "web1"))
    board.update(Event("resource", "web1", "exec:migrate", done=13, total=40), 77.0)
    line = line_of(draw(board, 77.0), "web1")
    assert "13/40 resources  exec:migrate" in line and "now:" not in line, line


@pytest.mark.parametrize(("res", "applied", "expected"), [
    (result("h", changed=12, ok=3, failed=1), True, "✗ h  changed 12, failed 1"),
    (result("h", ok=7), True, "✓ h  in sync"),
    (result("h", changed=3, ok=1), False, "✓ h  3 to change"),  # plan, check: nothing was applied
    (HostResult("h", "unreachable", error="connect to 10.0.0.9:22: timed out"), False,
     "✗ h  unreachable: connect to 10.0.0.9:22: timed out"),
    (HostResult("h", "failed", error="host is locked by another driftctl"), False,
     "✗ h  failed: host is locked by another driftctl"),
    (HostResult("h", "failed", error="not started: batch 1: 1 of 1 host(s) failed", interrupted="aborted"), False,
     "- h  not started: batch 1: 1 of 1 host(s) failed"),
    (result("h", changed=2, interrupted="connection lost"), True, "✗ h  changed 2, connection lost"),
])
def test_a_finished_host_shows_its_result(res: HostResult, applied: bool, expected: str) -> None:
    board = Board.of(["h", "other"], now=0.0)
    board.update(Event("start", "h"), 0.0)
    board.update(Event("phase", "h", "apply" if applied else "probe"), 0.0)
    board.update(Event("start", "other"), 0.0)
    board.update(Event("done", "h", result=res), 1.0)
    lines = draw(board, 2.0)
    assert " ".join(line_of(lines, "h").split()).startswith(" ".join(expected.split())), lines
    assert line_of(lines, "h").endswith(f"{res.duration:.1f}s")
    assert line_of(lines, "other").startswith("  other")  # still running, shown as such


def test_drift_results_and_the_counts_of_finished_hosts() -> None:
    board = Board.of(["a", "b", "c", "d"], now=0.0)
    drifted = result("a", ok=5)
    drifted.resources[0].drift = "corrective"
    drifted.unmanaged = [UnmanagedChange("/etc/x", "added")]
    for host in "abcd":
        board.update(Event("start", host), 0.0)
    board.update(Event("done", "a", result=drifted), 1.0)
    board.update(Event("done", "b", result=result("b", ok=5)), 1.0)
    board.update(Event("done", "c", result=HostResult("c", "unreachable", error="refused")), 1.0)
    lines = draw(board, 2.0)
    assert line_of(lines, "a").startswith("! a  drifted 1, 1 unmanaged")
    assert "finished: 1 drifted, 1 in sync, 1 unreachable" in [line.strip() for line in lines]
    assert re.search(r"3/4 hosts done", lines[0])


def test_estimate_from_finished_hosts_and_the_batch() -> None:
    hosts = [f"h{i}" for i in range(6)]
    board = Board.of(hosts, now=0.0)
    board.update(Event("batch", "", "1/3", hosts=hosts[:2]), 0.0)
    board.update(Event("start", "h0"), 0.0)
    board.update(Event("start", "h1"), 8.0)
    assert "left" not in draw(board, 9.0)[0]  # nothing finished: no estimate yet
    board.update(Event("done", "h0", result=result("h0", duration=10.0)), 10.0)
    # the mean is 10 s: h1, 6 s into it, has 4 s left; then 4 hosts waiting, 2 at a time: 2 x 10 s
    head = draw(board, 14.0)[0]
    assert re.search(r"1/6 hosts done\s+14s elapsed, ~24s left\s+batch 1/3", head), head
    assert draw(board, 14.0)[-1].strip() == "waiting: 4 host(s) (later batches)"


def test_no_estimate_once_the_running_hosts_outlast_the_mean_and_none_wait() -> None:
    board = Board.of(["slow", "fast"], now=0.0)
    board.update(Event("start", "slow"), 0.0)
    board.update(Event("start", "fast"), 0.0)
    board.update(Event("done", "fast", result=result("fast", duration=1.0)), 1.0)
    assert "left" not in draw(board, 30.0)[0]


def test_at_fleet_scale_the_view_fits_the_terminal() -> None:
    hosts = [f"web{i:03d}.dc1.example.com" for i in range(100)]
    board = Board.of(hosts, now=0.0)
    for h in hosts[:70]:
        run_to_apply(board, h, 1.0)
        board.update(Event("resource", h, "file:/etc/a/very/long/path/to/a/config/file/that/goes/on.conf",
                           done=3, total=40), 2.0)
    for i, h in enumerate(hosts[:45]):
        res = result(h, changed=i % 4, ok=10, failed=1 if i % 9 == 0 else 0) if i % 10 else \
            HostResult(h, "unreachable", error="connect: timed out " * 10)
        board.update(Event("done", h, result=res), 3.0 + i)
    for width, height in ((100, 40), (60, 12), (200, 40), (40, 5)):
        lines = draw(board, 60.0, width, height)
        assert len(lines) <= height - 1, (width, height, lines)
        assert all(len(line) <= min(width, 100) for line in lines), lines  # a time stays near its host
        assert "45/100 hosts done" in lines[0]
    lines = draw(board, 60.0, 100, 40)
    running = [line for line in lines if re.match(r"^  web\d+", line)]
    finished = [line for line in lines if re.match(r"^[✓✗] web\d+", line)]
    assert running and finished
    assert line_of(lines, "web044.dc1.example.com")  # the latest finished host is shown
    assert line_of(lines, "web045.dc1.example.com")  # the longest running host is shown
    more = re.search(r"… (\d+) more running", "\n".join(lines))
    earlier = re.search(r"… (\d+) earlier", "\n".join(lines))
    assert more and earlier, lines
    assert len(running) + int(more.group(1)) == 25
    assert len(finished) + int(earlier.group(1)) == 45
    counts = re.search(r"finished: (.*)", "\n".join(lines))
    assert counts and sum(int(n) for n in re.findall(r"(\d+) ", counts.group(1))) == 45
    assert lines[-1].strip() == "waiting: 30 host(s)"


def test_a_long_host_name_is_cut_with_an_ellipsis() -> None:
    long = "a-very-long-host-name-in-a-deep-domain.example.com"
    board = Board.of([long, "db1"], now=0.0)
    board.update(Event("start", long), 0.0)
    board.update(Event("phase", long, "probe"), 0.0)
    line = draw(board, 3.0)[1]
    assert re.match(r"^  a-very-long-host-name-in-a-…  probe\s+3s$", line.rstrip()), line


def test_few_hosts_are_all_shown() -> None:
    board = Board.of(["a", "b", "c"], now=0.0)
    for h in "abc":
        board.update(Event("start", h), 0.0)
    board.update(Event("done", "a", result=result("a", ok=1)), 1.0)
    lines = draw(board, 2.0, 80, 8)
    assert not any("…" in line for line in lines)
    assert [m.group(1) for line in lines if (m := re.match(r"^(?:  |. )(\w+) ", line))] == ["b", "c", "a"]


def test_events_from_many_threads_keep_the_board_whole() -> None:
    hosts = [f"h{i}" for i in range(50)]
    progress = Progress(Console(file=io.StringIO()), hosts, interactive=True)  # not entered: no Live drawing

    def one(host: str) -> None:
        progress(Event("start", host))
        for phase in ("connect", "probe", "apply"):
            progress(Event("phase", host, phase))
        for k in range(1, 21):
            progress(Event("resource", host, f"file:/{k}", done=k, total=20))
        progress(Event("done", host, result=result(host, changed=20)))

    threads = [threading.Thread(target=one, args=(h,)) for h in hosts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    board = progress.board
    assert board.running == 0 and sorted(board.finished) == sorted(hosts)
    assert {(line.done, line.total, line.phase) for line in board.hosts.values()} == {(20, 20, "done")}
    assert 1 <= board.peak <= 50


def test_not_interactive_one_plain_line_per_finished_host_and_batch() -> None:
    out = io.StringIO()
    console = Console(file=out, width=160, color_system=None)
    with Progress(console, ["a", "b"], interactive=False) as progress:
        progress(Event("batch", "", "1/2", hosts=["a"]))
        progress(Event("start", "a"))
        progress(Event("phase", "a", "probe"))
        progress(Event("resource", "a", "file:/x", done=1, total=2))
        progress(Event("done", "a", result=result("a", changed=1)))
        progress(Event("batch", "", "2/2", hosts=["b"]))
        progress(Event("done", "b", result=HostResult("b", "unreachable", error="refused")))
    assert out.getvalue() == "batch 1/2: a\na: ok\nbatch 2/2: b\nb: unreachable (refused)\n"


def test_interactive_draws_on_its_console_and_erases_the_view_at_the_end() -> None:
    out = io.StringIO()
    console = Console(file=out, width=100, height=30, force_terminal=True, color_system=None)
    with Progress(console, ["a", "b"], interactive=True) as progress:
        progress(Event("start", "a"))
        progress(Event("phase", "a", "probe"))
        progress(Event("done", "a", result=result("a", ok=2)))
    text = out.getvalue()
    assert "1/2 hosts done" in text and "✓ a  in sync" in text  # the last frame, drawn as the view closes
    assert "\x1b[?25h" in text and text.endswith("\x1b[2K")  # transient: the view erased, the cursor shown


def test_clock_text() -> None:
    assert [clock_text(s) for s in (0, 7.9, 65, 3600 + 120)] == ["0s", "7s", "1m05s", "1h02m"]


def test_no_live_view_on_a_dumb_terminal_or_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stderr", Tty())
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    assert ui.interactive()
    monkeypatch.setenv("TERM", "dumb")  # no cursor movement: the plain lines instead of a view nobody sees
    assert not ui.interactive()
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("CI", "true")
    assert not ui.interactive()
