"""One slow resource fails alone, in bounded time; the host's other resources still converge
(issue 8 §7, issue 15 §6). Through the real CLI on a fresh host, checked through podman exec.

- a dpkg lock held by another process: the package waits ``lock_timeout`` and fails with apt's own
  line naming the holder; an unrelated file on the same host is written;
- an exec past its ``timeout`` is ended with everything it started (no process left on the host);
- a service whose start job never finishes: the start fails after the service's ``timeout``.

The time each apply took is printed (``-s`` shows it); no test asserts it.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from e2ehelp import driftctl, write_inventory

pytestmark = [pytest.mark.slow]

CONTENT = "converged next to a slow resource\n"
MARKER = "/etc/driftctl-slow.txt"
COMMAND_TIMEOUT = "120"  # seconds per remote command: the whole host call, far above the limits used

# Holds the dpkg frontend lock the way apt and dpkg take it: a POSIX (fcntl) lock. util-linux's
# flock(1) takes a BSD flock, which Linux keeps apart from fcntl locks: apt does not see it at all.
HOLD_LOCK = (
    "import fcntl, time\n"
    "f = open('/var/lib/dpkg/lock-frontend', 'w')\n"
    "fcntl.lockf(f, fcntl.LOCK_EX)\n"
    "time.sleep(300)\n"
)
LOCK_IS_HELD = (
    "import fcntl, sys\n"
    "f = open('/var/lib/dpkg/lock-frontend', 'w')\n"
    "try:\n"
    "    fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
    "except OSError:\n"
    "    sys.exit(0)\n"
    "sys.exit(1)\n"
)


def write_site(root: Path, resources: str) -> Path:
    site = root / "manifests"
    (site / "roles" / "slow").mkdir(parents=True)
    (site / "site.yaml").write_text("- hosts: all\n  roles: [slow]\n")
    (site / "roles" / "slow" / "resources.yaml").write_text("resources:\n" + resources)
    return site


def apply(host: Any, tmp_path: Path, resources: str) -> tuple[Any, dict[str, dict[str, Any]], float]:
    """`driftctl apply --json` of ``resources`` plus the unrelated marker file; (result, id -> resource, s)."""
    inv = write_inventory(tmp_path / "inv", [host])
    site = write_site(tmp_path, resources + f"  - file: {MARKER}\n    content: {json.dumps(CONTENT)}\n")
    started = time.monotonic()
    result = driftctl("apply", inv, "-m", site, "--json", "--timeout", COMMAND_TIMEOUT,
                      state_dir=tmp_path / "state")
    took = time.monotonic() - started
    doc = result.json()
    return result, {r["id"]: r for r in doc["hosts"][0]["resources"]}, took


def assert_marker_written(host: Any) -> None:
    cat = host.exec(["cat", MARKER])
    assert cat.rc == 0 and cat.stdout_text == CONTENT, cat.stderr_text


@pytest.fixture
def dpkg_lock_holder(fresh_host: Any) -> Iterator[str]:
    """A process on the host holding the dpkg frontend lock (as a running apt would); its pid."""
    fresh_host.exec(["sh", "-c", "cat > /run/hold-dpkg-lock.py"], stdin=HOLD_LOCK.encode())
    started = fresh_host.sh("setsid nohup python3 /run/hold-dpkg-lock.py >/dev/null 2>&1 </dev/null & echo $!")
    pid = started.stdout_text.strip()
    assert pid.isdigit(), started.stderr_text
    try:
        fresh_host.exec(["sh", "-c", "cat > /run/lock-is-held.py"], stdin=LOCK_IS_HELD.encode())
        for _ in range(50):
            if fresh_host.exec(["python3", "/run/lock-is-held.py"]).rc == 0:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the dpkg lock holder did not take the lock")
        yield pid
    finally:
        fresh_host.exec(["kill", pid])


def test_held_dpkg_lock_fails_the_package_alone_with_apts_words(fresh_host: Any, dpkg_lock_holder: str,
                                                                 tmp_path: Path) -> None:
    assert fresh_host.exec(["dpkg-query", "-W", "cowsay"]).rc != 0  # not installed: apply must install it
    result, resources, took = apply(
        fresh_host, tmp_path, "  - package: cowsay\n    lock_timeout: 3\n")
    print(f"\napply with the dpkg lock held (lock_timeout 3 s, command timeout {COMMAND_TIMEOUT} s): {took:.1f} s")
    assert result.rc & 4, result.output
    package = resources["package:cowsay"]
    print(f"package error: {package['error']}")
    assert package["status"] == "failed", package
    assert "Could not get lock /var/lib/dpkg/lock-frontend" in package["error"], package["error"]
    assert f"held by process {dpkg_lock_holder}" in package["error"], package["error"]
    assert "lock_timeout" in package["error"]  # the hint says what to change
    assert resources[f"file:{MARKER}"]["status"] == "changed"
    assert_marker_written(fresh_host)
    assert fresh_host.exec(["dpkg-query", "-W", "cowsay"]).rc != 0


def test_exec_past_its_timeout_is_ended_with_all_it_started(fresh_host: Any, tmp_path: Path) -> None:
    # `sleep 30` itself; a daemon the command starts in a session of its own (sleep 301), out of reach
    # of a kill of the process group; and one that also keeps the command's output open (sleep 33)
    result, resources, took = apply(fresh_host, tmp_path, (
        "  - exec: slow-step\n    command: sleep 30\n    timeout: 2\n"
        "  - exec: slow-daemon\n    command: setsid sleep 301 >/dev/null 2>&1 & sleep 302\n    shell: true\n"
        "    timeout: 2\n"
        "  - exec: slow-holder\n    command: setsid sleep 33 & sleep 34\n    shell: true\n    timeout: 2\n"
    ))
    print(f"\napply with three execs past a 2 s timeout (command timeout {COMMAND_TIMEOUT} s): {took:.1f} s")
    assert result.rc & 4, result.output
    step = resources["exec:slow-step"]
    print("exec errors:", [resources[f"exec:slow-{n}"]["error"] for n in ("step", "daemon", "holder")])
    assert step["status"] == "failed" and "sleep 30 timed out after 2s" in step["error"], step
    for name in ("daemon", "holder"):
        r = resources[f"exec:slow-{name}"]
        assert r["status"] == "failed" and "timed out after 2s" in r["error"], r
    assert resources[f"file:{MARKER}"]["status"] == "changed"
    assert_marker_written(fresh_host)
    ps = fresh_host.exec(["ps", "-eo", "stat=,args="]).stdout_text
    left = [line for line in ps.splitlines()
            if line.split(None, 1)[1:] in (["sleep 30"], ["sleep 301"], ["sleep 302"], ["sleep 33"], ["sleep 34"])
            and not line.startswith("Z")]
    assert not left, ps


def test_service_start_that_never_finishes_fails_after_its_timeout(fresh_host: Any, tmp_path: Path) -> None:
    # a oneshot unit's start job has no time limit of its own
    unit = "[Service]\nType=oneshot\nExecStart=/bin/sleep 600\n[Install]\nWantedBy=multi-user.target\n"
    fresh_host.exec(["sh", "-c", "cat > /etc/systemd/system/slowstart.service && systemctl daemon-reload"],
                    stdin=unit.encode())
    try:
        result, resources, took = apply(
            fresh_host, tmp_path, "  - service: slowstart\n    running: true\n    timeout: 3\n")
        print(f"\napply with a service start that never ends (timeout 3 s): {took:.1f} s")
        assert result.rc & 4, result.output
        service = resources["service:slowstart"]
        print(f"service error: {service['error']}")
        assert service["status"] == "failed", service
        assert "timed out" in service["error"] and "systemctl status slowstart" in service["error"], service
        assert resources[f"file:{MARKER}"]["status"] == "changed"
        assert_marker_written(fresh_host)
    finally:
        fresh_host.exec(["systemctl", "stop", "--no-block", "slowstart"])
