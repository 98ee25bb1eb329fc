"""The ``unit`` resource on real systemd hosts, through the CLI as a user types it.

A unit file rendered from a role template, a drop-in, enablement and state converge in one apply;
a changed template rewrites the file, systemd is reloaded (``NeedDaemonReload=no``) and the running
service restarted (new MainPID, one more start counted by its ExecStartPre); a second apply
changes nothing; a hand edit, ``systemctl disable`` and ``stop`` are drift of this resource; a
notification restarts it, but not twice in a run that restarted it already. The host is checked
with testinfra and ``systemctl`` through podman exec, never with driftctl's own code.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from driftctl.bake import bake, image_observe, load_image, verify
from driftctl.bake.observe import agent_item as image_agent_item
from driftctl.errors import Location
from driftctl.model import Catalog, Resource
from driftctl.resources.base import get_type
from driftctl.ship import command, program_bytes
from driftctl.store import json_schema

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from e2ehelp import CLIResult, driftctl, write_inventory

STARTS = "/var/tmp/driftctl-app-starts"

UNIT_J2 = """\
[Unit]
Description=driftctl test app on {{ inventory_hostname }}

[Service]
ExecStartPre=/bin/sh -c 'echo start >> %(starts)s'
ExecStart=/usr/bin/sleep infinity
Environment=GREETING={{ greeting }}

[Install]
WantedBy=multi-user.target
""".replace("%(starts)s", STARTS)

RESOURCES = """\
resources:
  - unit: app.service
    template: app.service.j2
    dropins:
      10-nice.conf: "[Service]\\nNice=5\\n"
    enabled: true
    state: started
"""


def write_site(root: Path, greeting: str, resources: str = RESOURCES, setting: str = "a") -> Path:
    site = root / "manifests"
    role = site / "roles" / "app"
    (role / "templates").mkdir(parents=True, exist_ok=True)
    (site / "site.yaml").write_text("- hosts: all\n  roles: [app]\n")
    (role / "defaults.yaml").write_text(f"greeting: {greeting}\nsetting: {setting}\n")
    (role / "templates" / "app.service.j2").write_text(UNIT_J2)
    (role / "resources.yaml").write_text(resources)
    return site


def run(command: str, host: Any, tmp_path: Path, *extra: str) -> tuple[CLIResult, dict[str, dict[str, Any]]]:
    inv = write_inventory(tmp_path / "inv", [host])
    result = driftctl(command, inv, "-m", tmp_path / "manifests", "--json", *extra, state_dir=tmp_path / "state")
    try:
        doc = result.json()
    except ValueError:
        raise AssertionError(result.output) from None
    jsonschema.Draft202012Validator(json_schema()).validate(doc)  # a unit's changes fit the report schema
    return result, {r["id"]: r for r in doc["hosts"][0]["resources"]}


def show(host: Any, *props: str) -> dict[str, str]:
    out = host.exec(["systemctl", "show", "-p", ",".join(props), "app.service"])
    assert out.rc == 0, out.stderr_text
    return dict(line.split("=", 1) for line in out.stdout_text.splitlines() if "=" in line)


def starts(host: Any) -> int:
    got = host.exec(["cat", STARTS])
    return got.stdout_text.count("start") if got.rc == 0 else 0


def fields(resource: dict[str, Any]) -> list[str]:
    return [c["field"] for c in resource["changes"]]


def test_unit_converges_restarts_on_change_and_reports_drift(fresh_host: Any, tmp_path: Path) -> None:
    host = fresh_host
    ti = host.testinfra()
    write_site(tmp_path, "hello")

    result, got = run("apply", host, tmp_path)
    assert result.rc == 2, result.output
    unit = got["unit:app.service"]
    assert unit["status"] == "changed", unit
    assert fields(unit) == ["content", "dropin 10-nice.conf", "enabled", "running"]
    assert ti.service("app").is_running and ti.service("app").is_enabled
    text = ti.file("/etc/systemd/system/app.service").content_string
    assert f"Description=driftctl test app on {host.name}\n" in text and "GREETING=hello" in text
    unit_file = ti.file("/etc/systemd/system/app.service")
    assert (unit_file.mode, unit_file.user, unit_file.group) == (0o644, "root", "root")
    assert ti.file("/etc/systemd/system/app.service.d/10-nice.conf").content_string == "[Service]\nNice=5\n"
    first = show(host, "MainPID", "ActiveEnterTimestamp", "Nice", "NeedDaemonReload")
    assert first["Nice"] == "5" and first["NeedDaemonReload"] == "no"
    assert starts(host) == 1

    result, got = run("apply", host, tmp_path)
    assert result.rc == 0, result.output
    assert got["unit:app.service"]["status"] == "ok" and starts(host) == 1

    # the template changes: the file is rewritten, systemd reloaded, the running service restarted
    write_site(tmp_path, "bonjour")
    result, got = run("apply", host, tmp_path)
    assert result.rc == 2, result.output
    assert fields(got["unit:app.service"]) == ["content"]
    diff = got["unit:app.service"]["changes"][0]["diff"]
    assert "-Environment=GREETING=hello\n+Environment=GREETING=bonjour\n" in diff
    second = show(host, "MainPID", "ActiveEnterTimestamp", "Environment", "NeedDaemonReload", "ActiveState")
    assert second["NeedDaemonReload"] == "no" and second["ActiveState"] == "active"
    assert second["Environment"] == "GREETING=bonjour"
    assert second["MainPID"] != first["MainPID"]
    assert second["ActiveEnterTimestamp"] != first["ActiveEnterTimestamp"]
    assert starts(host) == 2
    result, got = run("apply", host, tmp_path)
    assert result.rc == 0 and got["unit:app.service"]["status"] == "ok", result.output

    # by hand: the running unit's file edited, not reloaded: systemd runs an older copy of it
    host.sh("echo 'Environment=EXTRA=1' >> /etc/systemd/system/app.service")
    assert show(host, "NeedDaemonReload")["NeedDaemonReload"] == "yes"
    result, got = run("drift", host, tmp_path)
    assert result.rc == 2, result.output
    drifted = got["unit:app.service"]
    assert drifted["drift"] == "corrective", drifted
    assert fields(drifted) == ["content", "needs_reload"]
    assert "-Environment=EXTRA=1\n" in drifted["changes"][0]["diff"]
    # then disabled and stopped by hand
    host.sh("systemctl disable --now app.service")
    result, got = run("drift", host, tmp_path)
    assert result.rc == 2, result.output
    assert got["unit:app.service"]["drift"] == "corrective"
    assert {"content", "enabled", "running"} <= set(fields(got["unit:app.service"]))

    result, got = run("apply", host, tmp_path)
    assert result.rc == 2, result.output
    assert "EXTRA" not in ti.file("/etc/systemd/system/app.service").content_string
    assert ti.service("app").is_running and ti.service("app").is_enabled
    assert show(host, "NeedDaemonReload")["NeedDaemonReload"] == "no"
    result, got = run("drift", host, tmp_path)
    assert result.rc == 0 and got["unit:app.service"]["drift"] in (None, "", "none"), result.output

    # ensure: absent: stopped, disabled, its files removed (kept in the backups), systemd reloaded
    write_site(tmp_path, "bonjour", "resources:\n  - unit: app.service\n    ensure: absent\n")
    result, got = run("apply", host, tmp_path)
    assert result.rc == 2, result.output
    assert fields(got["unit:app.service"]) == ["ensure", "enabled", "running"]
    for path in ("/etc/systemd/system/app.service", "/etc/systemd/system/app.service.d",
                 "/etc/systemd/system/multi-user.target.wants/app.service"):
        assert host.exec(["test", "-e", path]).rc == 1, path
    assert show(host, "LoadState", "ActiveState") == {"LoadState": "not-found", "ActiveState": "inactive"}
    assert host.exec(["grep", "-rlq", "GREETING=bonjour", "/var/lib/driftctl/backup"]).rc == 0
    result, got = run("apply", host, tmp_path)
    assert result.rc == 0 and got["unit:app.service"]["status"] == "ok", result.output


def test_notify_restarts_once(fresh_host: Any, tmp_path: Path) -> None:
    host = fresh_host
    conf = "  - file: /etc/app.conf\n    content: \"{{ setting }}\\n\"\n    notify: [unit:app.service]\n"
    write_site(tmp_path, "hello", RESOURCES + conf)
    result, _got = run("apply", host, tmp_path)
    assert result.rc == 2, result.output
    # started by its own apply, in the run whose file notifies it: one start, not a second for the notification
    assert starts(host) == 1
    pid = show(host, "MainPID")["MainPID"]

    # only the notifying file changes: one restart
    write_site(tmp_path, "hello", RESOURCES + conf, setting="b")
    result, got = run("apply", host, tmp_path)
    assert result.rc == 2, result.output
    assert got["file:/etc/app.conf"]["status"] == "changed"
    assert got["unit:app.service"]["status"] == "changed", got["unit:app.service"]
    assert starts(host) == 2
    assert show(host, "MainPID")["MainPID"] != pid

    # the unit file and the notifying file change together: restarted once, by the unit's own apply
    write_site(tmp_path, "hi", RESOURCES + conf, setting="c")
    result, got = run("apply", host, tmp_path)
    assert result.rc == 2, result.output
    assert fields(got["unit:app.service"]) == ["content"]
    assert starts(host) == 3


SIMPLE = "[Service]\nExecStart=/usr/bin/sleep infinity\n\n[Install]\nWantedBy=multi-user.target\n"
GUARDED = "sha256sum /etc/shadow /etc/passwd; ls -la --time-style=full-iso /etc /etc/systemd/system | sha256sum"


def agent_item(**raw: Any) -> tuple[dict[str, Any], dict[str, str], Any, dict[str, Any]]:
    rtype = get_type("unit")
    assert rtype is not None
    params = rtype.validate(raw, Location("tests/fleet/test_unit_resource.py", 1))
    blobs = {k: base64.b64encode(v).decode() for k, v in rtype.blobs(params).items()}
    return {"id": f"unit:{params['name']}", "type": "unit", "params": rtype.agent_params(params)}, blobs, rtype, params


def probe_and_apply(host: Any, between: str = "", **raw: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Probe one unit, run ``between`` on the host, then apply the planned changes with the probe's
    expectation (as the engine does); returns (probe entry, apply result)."""
    it, blobs, rtype, params = agent_item(**raw)
    probe = host.agent({"op": "probe", "facts": False, "resources": [it]})
    assert probe["ok"], probe
    seen = probe["resources"][it["id"]]
    assert "observed" in seen, seen
    changes = [c.field for c in rtype.diff(rtype.desired(params), seen["observed"])]
    assert changes
    if between:
        assert host.sh(between).rc == 0
    item = {**it, "changes": changes, "expect": seen["observed"]["_cas"]}
    answer = host.agent({"op": "apply", "blobs": blobs, "resources": [item]})
    assert answer["ok"], answer
    return seen, answer["results"][it["id"]]


def test_unit_never_writes_through_a_link_and_refuses_a_file_edited_since_the_plan(fresh_host: Any) -> None:
    host = fresh_host
    host.sh("ln -s /etc/shadow /etc/systemd/system/evil.service && ln -s /etc /etc/systemd/system/web.service.d")
    before = host.sh(GUARDED).stdout_text
    seen, result = probe_and_apply(host, name="evil.service", content=SIMPLE, state="started")
    assert result["status"] == "failed", result
    assert "/etc/systemd/system/evil.service is a symlink (to /etc/shadow): driftctl never follows" in result["error"]
    assert seen["refuse"] == result["error"]
    seen, result = probe_and_apply(host, name="web.service", content=SIMPLE, dropins={"10-a.conf": "[Service]\n"})
    assert result["status"] == "failed", result
    assert "web.service.d is a symlink (to /etc), not a directory: driftctl never follows" in result["error"]
    assert seen["refuse"] == result["error"]
    assert host.exec(["test", "-e", "/etc/10-a.conf"]).rc == 1
    assert host.sh(GUARDED).stdout_text == before
    # ensure: absent removes regular files only, and nothing when one is refused
    host.sh("printf '[Service]\\nExecStart=/bin/true\\n' > /etc/systemd/system/x.service"
            " && mkdir -p /etc/systemd/system/x.service.d/sub && touch /etc/systemd/system/x.service.d/10-a.conf")
    before = host.sh(GUARDED).stdout_text
    seen, result = probe_and_apply(host, name="x.service", ensure="absent")
    assert result["status"] == "failed" and seen["refuse"] == result["error"], result
    assert "x.service.d/sub is a directory: driftctl removes only regular files from a unit's .d" in result["error"]
    assert host.exec(["test", "-e", "/etc/systemd/system/x.service.d/10-a.conf"]).rc == 0
    assert host.exec(["test", "-e", "/etc/systemd/system/x.service"]).rc == 0
    # the symlink at evil.service is never removed either
    seen, result = probe_and_apply(host, name="evil.service", ensure="absent")
    assert result["status"] == "failed" and "is a symlink (to /etc/shadow)" in result["error"], result
    assert host.sh(GUARDED).stdout_text == before

    # edited by hand between the plan and the apply: not replaced, nothing restarted
    host.sh("printf '[Service]\\nExecStart=/usr/bin/sleep 1\\n' > /etc/systemd/system/app.service")
    seen, result = probe_and_apply(host, "echo '# by hand' >> /etc/systemd/system/app.service",
                                   name="app.service", content=SIMPLE, state="started")
    assert result["status"] == "failed", result
    assert "/etc/systemd/system/app.service changed underneath since the plan: content" in result["error"]
    assert host.exec(["tail", "-1", "/etc/systemd/system/app.service"]).stdout_text == "# by hand\n"
    assert not host.testinfra().service("app").is_running


def systemd_reloads(host: Any) -> int:
    """How many times systemd has reloaded since boot (its journal's "Reloading." lines)."""
    out = host.sh("journalctl --sync; journalctl --no-pager -o cat _PID=1 | grep -c '^Reloading\\.$' || true")
    return int(out.stdout_text.strip() or 0)


def test_several_units_in_one_run_and_a_dropin_on_a_packaged_unit(fresh_host: Any, tmp_path: Path) -> None:
    host = fresh_host
    units = "".join(
        f"  - unit: app{i}.service\n    content: {SIMPLE!r}\n    enabled: true\n    state: started\n".replace(
            "'", '"') for i in range(5))
    cron = "  - unit: cron.service\n    dropins:\n      10-nice.conf: \"[Service]\\nNice=7\\n\"\n"
    timer = ("  - unit: tick.service\n    content: \"[Service]\\nType=oneshot\\nExecStart=/bin/true\\n\"\n"
             "  - unit: tick.timer\n    content: \"[Timer]\\nOnCalendar=hourly\\n[Install]\\n"
             "WantedBy=timers.target\\n\"\n    enabled: true\n    state: started\n")
    write_site(tmp_path, "x", "resources:\n" + units + cron + timer)
    cron_pid = host.exec(["systemctl", "show", "-p", "MainPID", "--value", "cron"]).stdout_text
    reloads = systemd_reloads(host)
    result, got = run("apply", host, tmp_path)
    assert result.rc == 2, result.output
    assert all(r["status"] == "changed" for r in got.values()), got
    # one daemon-reload per changed unit (enable itself does not reload again)
    assert systemd_reloads(host) - reloads == len(got) == 8
    for i in range(5):
        assert host.testinfra().service(f"app{i}").is_running
    # the packaged unit's drop-in is in effect: cron was restarted with it
    assert host.exec(["systemctl", "show", "-p", "Nice", "--value", "cron"]).stdout_text == "7\n"
    assert host.exec(["systemctl", "show", "-p", "MainPID", "--value", "cron"]).stdout_text != cron_pid
    assert host.exec(["systemctl", "is-active", "tick.timer"]).stdout_text == "active\n"
    assert host.exec(["systemctl", "is-enabled", "tick.timer"]).stdout_text == "enabled\n"
    result, got = run("apply", host, tmp_path)
    assert result.rc == 0 and {r["status"] for r in got.values()} == {"ok"}, result.output


@pytest.mark.parametrize(
    ("resource", "line", "message"),
    [
        ("  - unit: app\n    content: \"[Service]\\n\"\n", 4,
         "unit: name must be a systemd unit name with one of the suffixes .service, .timer"),
        ("  - unit: ../app.service\n    content: \"[Service]\\n\"\n", 4, "must be a systemd unit name"),
        ("  - unit: app.service\n    content: \"[Service]\\n\"\n    state: running\n", 6,
         "unit: state must be one of started, stopped, not 'running'"),
        ("  - unit: app.service\n    dropins:\n      ../../evil.conf: \"x\"\n", 5,
         "names files of the unit's .d directory ending in .conf"),
        ("  - unit: app.service\n    enabled: true\n", 4,
         "give the unit file (content, template or source) or dropins"),
        ("  - unit: app@.service\n    content: \"[Service]\\n\"\n    enabled: true\n", 4,
         "unit:app@.service is a template unit: it cannot be enabled or started"),
        ("  - unit: app.service\n    content: \"[Service]\\n\"\n  - file: /etc/systemd/system/app.service\n"
         "    content: x\n", 6, "both manage file:/etc/systemd/system/app.service"),
    ],
)
def test_bad_unit_input_is_an_error_before_any_host(fleet: Any, tmp_path: Path, resource: str, line: int,
                                                    message: str) -> None:
    host = fleet.hosts[0]
    before = host.exec(["ls", "-la", "--time-style=full-iso", "/etc/systemd/system"]).stdout_text
    write_site(tmp_path, "hello", "resources:\n  - file: /etc/driftctl-unit-marker\n    content: x\n" + resource)
    result = driftctl("apply", write_inventory(tmp_path / "inv", [host]), "-m", tmp_path / "manifests",
                      state_dir=tmp_path / "state")
    assert result.rc == 1, result.output
    assert f"roles/app/resources.yaml:{line}: " in result.output and message in result.output, result.output
    assert host.exec(["test", "-e", "/etc/driftctl-unit-marker"]).rc == 1
    assert host.exec(["ls", "-la", "--time-style=full-iso", "/etc/systemd/system"]).stdout_text == before


# ---- bake: the unit file, its drop-in and its enablement in an image that boots with them


@pytest.mark.slow
@pytest.mark.podman
def test_a_baked_unit_runs_when_the_image_boots(tmp_path: Path) -> None:
    base = "localhost/driftctl-base:bookworm"  # the fleet's Debian base (built with the fleet image)
    assert shutil.which("podman") is not None

    def podman(*argv: str, stdin: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        proc = subprocess.run(["podman", *argv], capture_output=True, input=stdin, timeout=600)
        assert not check or proc.returncode == 0, f"podman {' '.join(argv)}: {proc.stderr.decode()[-800:]}"
        return proc

    assert podman("image", "exists", base, check=False).returncode == 0, f"{base} is not built"
    rtype = get_type("unit")
    assert rtype is not None
    loc = Location("site.yaml", 1)
    dropins = {"10-nice.conf": "[Service]\nNice=5\n"}
    params = rtype.validate({"name": "app.service", "content": SIMPLE, "dropins": dropins, "enabled": True,
                             "state": "started"}, loc)
    cat = Catalog("web1", [Resource("unit", "app.service", params, loc)])
    out = tmp_path / "web1"
    bake(cat, base, out, epoch=1_700_000_000, tag="web1")
    assert {r.status for r in verify(str(out), cat)} == {"ok"}

    suffix = uuid.uuid4().hex[:8]
    image, name = f"localhost/driftctl-unit-test-{suffix}:latest", f"driftctl-unit-test-{suffix}"
    assert load_image(out, "oci-dir", image, tag="web1") == "podman"
    try:
        podman("run", "-d", "--name", name, "--systemd=always", "--runtime", "runc", "--ulimit", "nofile=4096:4096",
               "--ulimit", "nproc=4096:4096", image, "/sbin/init")
        state = ""
        for _ in range(180):
            state = podman("exec", name, "systemctl", "is-system-running", check=False).stdout.decode().strip()
            if state in ("running", "degraded"):
                break
            time.sleep(0.5)
        assert state in ("running", "degraded"), state
        shown = podman("exec", name, "systemctl", "show", "-p", "ActiveState,UnitFileState,Nice,NeedDaemonReload",
                       "app.service").stdout.decode()
        assert sorted(shown.split()) == ["ActiveState=active", "NeedDaemonReload=no", "Nice=5", "UnitFileState=enabled"]
        # the agent observing the booted container answers what the image observer answered for the image
        items = [{"id": r.id, "type": r.type, "params": image_agent_item(r, cat)} for r in cat.resources]
        request = {"v": 1, "op": "probe", "facts": False, "resources": items}
        proc = podman("exec", "-i", name, *command("python3"), stdin=program_bytes() + json.dumps(request).encode())
        live = json.loads(proc.stdout)["resources"]
        still = image_observe(str(out), cat)
        for probe in (live, still):  # an inode number is the container storage's, not the image's
            for seen in probe["unit:app.service"]["observed"]["_cas"]["unit_files"].values():
                seen.pop("ino")
        assert live == still
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)
        podman("rmi", "-f", image, check=False)
