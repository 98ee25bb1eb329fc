"""A run that is cut short tells the truth and leaves nothing running (issue 8 §3, §4).

Made to happen on a real host: the SSH connection cut by a TCP proxy of ours in the middle of an
apply, or silenced by it (nothing forwarded, no FIN, no RST), the controller killed with SIGKILL,
SIGINT and SIGTERM sent to it, twice. After each:
- the report names exactly what was applied before the cut, what was interrupted and what never
  started (and the store has the same);
- nothing is still running on the host, and nothing more is written there after the cut;
- the exit code carries 8 (connection lost) or 16 (aborted) and 4 for what failed;
- the locks are released: the next apply runs.

The manifest: ten execs, each taking a second and leaving a marker file /root/steps/N, in order.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from e2ehelp import agent_processes, assert_nothing_left, driftctl, one_role_site, write_inventory
from e2ehelp import started as start
from netfault import TcpProxy, proxied_host, through_proxy

pytestmark = pytest.mark.slow

STEPS = 10


def steps_site(directory: Path, seconds: float = 1.0) -> Path:
    lines = ["resources:", "  - directory: /root/steps"]
    for i in range(1, STEPS + 1):
        lines += [
            f"  - exec: step{i:02d}",
            f"    command: sleep {seconds}; touch /root/steps/{i:02d}",
            "    shell: true",
            f"    creates: /root/steps/{i:02d}",
            "    require: directory:/root/steps" if i == 1 else f"    require: exec:step{i - 1:02d}",
        ]
    return one_role_site(directory, "\n".join(lines) + "\n", role="s")


def markers(host: Any) -> list[str]:
    r = host.sh("ls /root/steps 2>/dev/null")
    return sorted(r.stdout_text.split())


def wait_for_markers(host: Any, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(markers(host)) < count:
        assert time.monotonic() < deadline, f"the apply never reached step {count}"
        time.sleep(0.1)


def statuses(doc: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {r["id"]: (r["status"], r.get("error") or "") for r in doc["hosts"][0]["resources"]}


def check_report_matches_host(doc: dict[str, Any], host: Any) -> None:
    """Every step the report calls changed is on the host, every step it calls not started is not (a
    step "not reported" after a lost connection may be either: the report says so)."""
    got = statuses(doc)
    on_host = set(markers(host))
    for i in range(1, STEPS + 1):
        status, error = got[f"exec:step{i:02d}"]
        name = f"{i:02d}"
        if status == "changed":
            assert name in on_host, f"step {i} reported changed but not on the host"
        elif status == "skipped" and not error.startswith("not reported"):
            assert name not in on_host, f"step {i} reported not started but it ran: {error}"


def test_cut_connection_reports_exactly_what_was_applied(fresh_host: Any, tmp_path: Path) -> None:
    proxy = TcpProxy(fresh_host.port)
    try:
        inv = write_inventory(tmp_path / "inv", [through_proxy(fresh_host, proxy, tmp_path / "kh")])
        site = steps_site(tmp_path)
        proc = start(["apply", str(inv), "-m", str(site), "--json"], tmp_path / "state")
        wait_for_markers(fresh_host, 5)
        proxy.cut()
        out, err = proc.communicate(timeout=300)
    finally:
        proxy.close()
    # 2 (the steps before the cut changed the host) | 4 (the interrupted one failed) | 8 (connection lost)
    assert proc.returncode == 14, f"exit {proc.returncode}\n{err}"
    doc = json.loads(out)
    host_doc = doc["hosts"][0]
    assert host_doc["interrupted"] == "connection lost"
    got = statuses(doc)
    changed = [rid for rid, (s, _) in got.items() if s == "changed" and rid.startswith("exec:")]
    assert len(changed) >= 4, got  # what the agent reported before the cut
    # the connection is gone with whatever the agent said last: the steps after are "not reported"
    not_reported = [rid for rid, (s, e) in got.items() if s == "skipped" and e.startswith("not reported")]
    assert not_reported and not any("not started" in e for _, e in got.values()), got
    assert all(s in ("changed", "failed", "skipped") for s, _ in got.values())
    # the agent stopped at its next resource boundary: nothing started after the cut, nothing is left
    assert_nothing_left(fresh_host)
    time.sleep(3)
    check_report_matches_host(doc, fresh_host)
    assert len(markers(fresh_host)) <= len(changed) + 1  # at most the one that was running at the cut
    # the store has the same story, and the next apply finishes the job
    history = driftctl("history", inv, "--json", state_dir=tmp_path / "state")
    assert history.rc == 0, history.output
    assert "connection lost" in history.stdout or '"failed"' in history.stdout
    again = driftctl("apply", inv, "-m", site, "--json", state_dir=tmp_path / "state")
    assert again.rc in (0, 8), again.output  # the proxy is gone: unreachable, not locked (75)


# The silent link's test runs with a short link timeout (the default is 60 s, D47); every step outlasts
# it, so the step running when the link went silent is the one the agent stops in.
LINK = 8


def test_silent_link_ends_the_run_and_stops_the_agent(fresh_host: Any, tmp_path: Path) -> None:
    proxy = TcpProxy(fresh_host.port)
    try:
        inv = write_inventory(tmp_path / "inv", [through_proxy(fresh_host, proxy, tmp_path / "kh")])
        site = steps_site(tmp_path, seconds=LINK + 6)
        proc = start(["apply", str(inv), "-m", str(site), "--json"], tmp_path / "state",
                     {"DRIFTCTL_LINK_TIMEOUT": str(LINK)})
        wait_for_markers(fresh_host, 2, timeout=180)
        proxy.silence()
        silent_at = time.monotonic()
        # the host, seen through podman and not through the link: the agent stops by itself
        while agent_processes(fresh_host):
            assert time.monotonic() < silent_at + LINK + 30, (
                f"the agent still runs {LINK + 30} s after the link went silent (markers {markers(fresh_host)}):\n"
                f"{agent_processes(fresh_host)}")
            time.sleep(0.25)
        agent_gone = time.monotonic() - silent_at
        written = markers(fresh_host)
        # the controller notices too, and ends with the host's connection lost
        try:
            out, err = proc.communicate(timeout=max(1.0, silent_at + LINK + 60 - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"the controller still ran {LINK + 60} s after the link went silent\n{err}")
        ended = time.monotonic() - silent_at
        print(f"silent link: the agent was gone {agent_gone:.1f} s and the controller ended {ended:.1f} s after it")
        # 2 (two steps changed the host) | 4 (the one running at the silence failed) | 8 (connection lost)
        assert proc.returncode == 14, f"exit {proc.returncode}\n{err}"
        doc = json.loads(out)
        assert doc["hosts"][0]["interrupted"] == "connection lost"
        got = statuses(doc)
        changed = [rid for rid, (s, _) in got.items() if s == "changed" and rid.startswith("exec:")]
        interrupted = [e for s, e in got.values() if s == "failed"]
        not_reported = [e for s, e in got.values() if s == "skipped"]
        assert len(changed) >= 2 and len(interrupted) == 1 and not_reported, got
        assert all(f"nothing from the host for {LINK}" in e for e in interrupted + not_reported), got
        assert all(e.startswith("not reported") and "may have started" in e for e in not_reported), got
        # the host has what the report says: the agent stopped in the step the silence found running,
        # and nothing is written after it stopped
        time.sleep(2)
        assert written == markers(fresh_host) == [f"{i:02d}" for i in range(1, len(changed) + 1)]
        check_report_matches_host(doc, fresh_host)
        # its lock is free while sshd still holds the silent session: the next apply (straight to the
        # host) is not locked out, and finishes the job
        quick = steps_site(tmp_path / "quick", seconds=0)
        again = driftctl("apply", write_inventory(tmp_path / "direct", [fresh_host]), "-m", quick,
                         state_dir=tmp_path / "state")
        assert again.rc == 2, again.output
        assert markers(fresh_host) == [f"{i:02d}" for i in range(1, STEPS + 1)]
    finally:
        proxy.close()


def test_a_link_silent_before_a_command_starts_is_lost_within_the_link_timeout(fleet: Any, tmp_path: Path) -> None:
    """A link that goes silent between two commands (after a probe, before its apply): the next command's
    start (channel open, exec reply) is not left to the command's timeout, which allows for a slow
    session set-up; an unanswered keepalive ends it as a lost connection (D47)."""
    from driftctl.errors import ConnectionLost
    from driftctl.transport import get_transport

    fh = fleet.hosts[0]
    proxy = TcpProxy(fh.port)
    try:
        host, options = proxied_host(fh, proxy, tmp_path, float(LINK))
        with get_transport(host, options) as transport:
            assert transport.run(["true"], timeout=60).rc == 0
            proxy.silence()
            silent_at = time.monotonic()
            with pytest.raises(ConnectionLost, match=f"nothing from the host for {LINK}s while it started a command"):
                transport.run(["true"], timeout=300)
            took = time.monotonic() - silent_at
        print(f"silent before a command: lost after {took:.1f} s (link_timeout {LINK} s, command timeout 300 s)")
        assert LINK <= took < LINK + 15, took
    finally:
        proxy.close()


def test_controller_killed_leaves_no_agent_running(fresh_host: Any, tmp_path: Path) -> None:
    inv = write_inventory(tmp_path / "inv", [fresh_host])
    site = steps_site(tmp_path)
    proc = start(["apply", str(inv), "-m", str(site)], tmp_path / "state")
    wait_for_markers(fresh_host, 3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert_nothing_left(fresh_host)
    written = markers(fresh_host)
    time.sleep(3)
    assert markers(fresh_host) == written  # nothing more is written
    assert len(written) < STEPS


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_reports_stores_and_unlocks(fresh_host: Any, tmp_path: Path, sig: signal.Signals) -> None:
    inv = write_inventory(tmp_path / "inv", [fresh_host])
    site = steps_site(tmp_path)
    state = tmp_path / "state"
    proc = start(["apply", str(inv), "-m", str(site), "--json"], state)
    wait_for_markers(fresh_host, 3)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode & 16, f"exit {proc.returncode}\n{err}"
    assert proc.returncode != 75
    doc = json.loads(out)  # a partial report is printed
    assert doc["hosts"][0]["interrupted"] == "aborted"
    got = statuses(doc)
    assert any(s == "skipped" and "not started" in e for s, e in got.values()), got
    assert_nothing_left(fresh_host)
    check_report_matches_host(doc, fresh_host)
    # stored, and the locks (the store's and the host's) are released: the next apply converges
    history = driftctl("history", inv, "--json", state_dir=state)
    assert history.rc == 0 and "aborted" in history.stdout, history.output
    again = driftctl("apply", inv, "-m", site, "--json", state_dir=state)
    assert again.rc == 2, again.output
    assert markers(fresh_host) == [f"{i:02d}" for i in range(1, STEPS + 1)]


def test_second_sigint_kills_at_once_and_still_unlocks(fresh_host: Any, tmp_path: Path) -> None:
    inv = write_inventory(tmp_path / "inv", [fresh_host])
    site = steps_site(tmp_path, seconds=60)  # a step that would outlive any grace
    state = tmp_path / "state"
    proc = start(["apply", str(inv), "-m", str(site), "--json"], state)
    deadline = time.monotonic() + 120
    while "sleep 60" not in agent_processes(fresh_host):
        assert time.monotonic() < deadline, "the first step never started"
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode & 16, f"exit {proc.returncode}\n{err}"
    assert "again" in err
    assert_nothing_left(fresh_host)
    assert markers(fresh_host) == []
    quick = steps_site(tmp_path / "quick", seconds=0)
    again = driftctl("apply", inv, "-m", quick, state_dir=state)
    assert again.rc == 2, again.output  # not 75: the locks were released
