"""The ``unit`` resource when systemd says no: a unit whose start fails, a masked unit, a start that
hangs past the resource's timeout. What the report says, what is left on the host, and what the next
plan and apply do (the files written by the failed run are not written again; only the state is drift).
The host is checked through podman exec, never with driftctl's own code.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_unit_resource import fields, run, write_site

FAILS = ("[Service]\\nType=oneshot\\nRemainAfterExit=yes\\nExecStart=/bin/false\\n\\n"
         "[Install]\\nWantedBy=multi-user.target\\n")
WORKS = FAILS.replace("/bin/false", "/bin/true")


def unit(content: str, name: str = "bad.service", extra: str = "") -> str:
    return f"resources:\n  - unit: {name}\n    content: \"{content}\"\n    enabled: true\n    state: started\n{extra}"


def active(host: Any, name: str) -> str:
    return host.exec(["systemctl", "is-active", name]).stdout_text.strip()


def test_a_unit_whose_start_fails_is_written_enabled_and_only_its_state_is_left(fresh_host: Any,
                                                                                tmp_path: Path) -> None:
    host = fresh_host
    write_site(tmp_path, "x", unit(FAILS))
    result, got = run("apply", host, tmp_path)
    assert result.rc == 4, result.output
    bad = got["unit:bad.service"]
    assert bad["status"] == "failed", bad
    assert "bad.service" in bad["error"], bad
    # the files and the enablement are done: only the start failed
    assert host.exec(["cat", "/etc/systemd/system/bad.service"]).stdout_text == FAILS.replace("\\n", "\n")
    assert host.exec(["systemctl", "is-enabled", "bad.service"]).stdout_text == "enabled\n"
    assert active(host, "bad.service") == "failed"
    # the next plan: only the state differs (the file is not written again)
    result, got = run("plan", host, tmp_path)
    assert result.rc == 0 and got["unit:bad.service"]["status"] == "changed", result.output  # plan: made, exit 0
    assert fields(got["unit:bad.service"]) == ["running"], got["unit:bad.service"]
    result, got = run("drift", host, tmp_path)
    # never converged: pending, not drift from a converged state
    assert result.rc == 2 and got["unit:bad.service"]["drift"] == "pending", result.output
    assert fields(got["unit:bad.service"]) == ["running"], got["unit:bad.service"]
    # a second apply tries the start again, and fails again, the same way
    result, got = run("apply", host, tmp_path)
    assert result.rc == 4 and got["unit:bad.service"]["status"] == "failed", result.output
    # fixed: written, reloaded, started
    write_site(tmp_path, "x", unit(WORKS))
    result, got = run("apply", host, tmp_path)
    assert result.rc == 2, result.output
    assert fields(got["unit:bad.service"]) == ["content", "running"], got["unit:bad.service"]
    assert active(host, "bad.service") == "active"
    result, got = run("apply", host, tmp_path)
    assert result.rc == 0 and got["unit:bad.service"]["status"] == "ok", result.output


def test_a_masked_unit(fresh_host: Any, tmp_path: Path) -> None:
    host = fresh_host
    assert host.exec(["systemctl", "mask", "--now", "cron.service"]).rc == 0
    dropin = "  - unit: cron.service\n    dropins:\n      10-nice.conf: \"[Service]\\nNice=7\\n\"\n"
    # started only: systemd refuses to start a masked unit; the report says it is masked
    write_site(tmp_path, "x", "resources:\n" + dropin + "    state: started\n")
    result, got = run("apply", host, tmp_path)
    assert result.rc == 4, result.output
    assert "masked" in got["unit:cron.service"]["error"], got["unit:cron.service"]
    # enabled: true unmasks it, then enables and starts it
    write_site(tmp_path, "x", "resources:\n" + dropin + "    enabled: true\n    state: started\n")
    result, got = run("apply", host, tmp_path)
    assert result.rc == 2, result.output
    assert active(host, "cron.service") == "active"
    assert host.exec(["systemctl", "is-enabled", "cron.service"]).stdout_text == "enabled\n"
    assert host.exec(["systemctl", "show", "-p", "Nice", "--value", "cron"]).stdout_text == "7\n"
    result, got = run("apply", host, tmp_path)
    assert result.rc == 0, result.output


@pytest.mark.slow
def test_a_start_that_hangs_past_the_timeout(fresh_host: Any, tmp_path: Path) -> None:
    host = fresh_host
    slow = "[Service]\\nExecStartPre=/bin/sleep 20\\nExecStart=/usr/bin/sleep infinity\\n"
    write_site(tmp_path, "x", unit(slow, "slow.service", "    timeout: 2\n").replace("    enabled: true\n", ""))
    result, got = run("apply", host, tmp_path)
    assert result.rc == 4, result.output
    err = got["unit:slow.service"]["error"]
    assert "timed out" in err and "systemctl status slow.service" in err, err
    # the next plan while systemd still runs the start job: the state is still to do
    result, got = run("plan", host, tmp_path)
    assert fields(got["unit:slow.service"]) == ["running"], got["unit:slow.service"]


def test_a_dropin_on_a_masked_unit_converges_and_leaves_it_masked(fresh_host: Any, tmp_path: Path) -> None:
    host = fresh_host
    assert host.exec(["systemctl", "mask", "--now", "cron.service"]).rc == 0
    dropin = "  - unit: cron.service\n    dropins:\n      10-nice.conf: \"[Service]\\nNice=7\\n\"\n"
    write_site(tmp_path, "x", "resources:\n" + dropin)
    result, got = run("apply", host, tmp_path)
    assert result.rc == 2, result.output
    assert host.exec(["systemctl", "is-enabled", "cron.service"]).stdout_text == "masked\n"  # left masked
    result, got = run("apply", host, tmp_path)
    assert result.rc == 0, got["unit:cron.service"]


def test_absent_on_a_packaged_static_unit_converges(fresh_host: Any, tmp_path: Path) -> None:
    """A static unit (no [Install]) under /usr/lib cannot be disabled: absent stops it and is then done."""
    host = fresh_host
    static = "systemd-update-utmp.service"
    assert host.exec(["systemctl", "is-enabled", static]).stdout_text == "static\n"
    write_site(tmp_path, "x", f"resources:\n  - unit: {static}\n    ensure: absent\n")
    result, got = run("apply", host, tmp_path)
    assert result.rc in (0, 2), got
    assert active(host, static) == "inactive"
    result, got = run("apply", host, tmp_path)
    assert result.rc == 0, got[f"unit:{static}"]


def test_started_but_not_enabled(fresh_host: Any, tmp_path: Path) -> None:
    host = fresh_host
    simple = "[Service]\\nExecStart=/usr/bin/sleep infinity\\n\\n[Install]\\nWantedBy=multi-user.target\\n"
    write_site(tmp_path, "x", unit(simple, "now.service").replace("enabled: true", "enabled: false"))
    result, got = run("apply", host, tmp_path)
    assert result.rc == 2, result.output
    assert fields(got["unit:now.service"]) == ["content", "running"]  # disabled already: a new unit is
    assert active(host, "now.service") == "active"
    assert host.exec(["systemctl", "is-enabled", "now.service"]).stdout_text == "disabled\n"
    host.sh("systemctl enable now.service")
    result, got = run("apply", host, tmp_path)
    assert result.rc == 2 and fields(got["unit:now.service"]) == ["enabled"], result.output
    assert host.exec(["systemctl", "is-enabled", "now.service"]).stdout_text == "disabled\n"
    assert active(host, "now.service") == "active"
    result, got = run("apply", host, tmp_path)
    assert result.rc == 0, result.output
