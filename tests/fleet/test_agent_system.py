"""user, group, authorized_key, package, service and exec on real hosts, through the agent.

Each test goes the way the engine does: validate the manifest parameters with the controller-side
type, probe through the agent, diff locally, apply the changed fields through the agent, probe again
(in sync), and then checks the host with tools that are not driftctl's (testinfra, or commands run
through ``podman exec``). Destructive tests use ``fresh_host``.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from driftctl import fingerprint
from driftctl.errors import AuthError, Location
from driftctl.model import Change
from driftctl.resources.base import ResourceType, get_type
from driftctl.transport.base import TransportOptions, get_transport

LOC = Location("tests/fleet/test_agent_system.py", 1)


@dataclass
class Res:
    """One resource as the engine holds it: its type, validated params and id."""

    type: type[ResourceType]
    params: dict[str, Any]
    notify: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.type.name}:{self.type.title(self.params)}"

    def item(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type.name, "params": self.type.agent_params(self.params)}


def res(type_name: str, title: str, **raw: Any) -> Res:
    rtype = get_type(type_name)
    assert rtype is not None
    notify = raw.pop("notify", [])
    return Res(rtype, rtype.validate({rtype.namevar: title, **raw}, LOC), notify)


def probe(host: Any, *resources: Res) -> dict[str, dict[str, Any]]:
    answer = host.agent({"op": "probe", "facts": False, "resources": [r.item() for r in resources]})
    assert answer["ok"], answer
    return answer["resources"]


def plan(host: Any, r: Res) -> list[Change]:
    got = probe(host, r)[r.id]
    assert "observed" in got, got
    return r.type.diff(r.type.desired(r.params), got["observed"])


def apply(
    host: Any, *resources: Res, changes: dict[str, list[Change]] | None = None, deferred: tuple[Res, ...] = ()
) -> dict[str, Any]:
    """Plan each resource, then apply the changed fields in one agent call (in the given order).

    ``deferred`` resources cannot be observed before the ones ahead of them converge (their user or
    package does not exist yet): as the engine does, they go with their desired state, and the agent
    observes and converges them in their turn (docs/decisions.md D13).
    """
    late = {r.id for r in deferred}
    changes = changes if changes is not None else {r.id: plan(host, r) for r in resources if r.id not in late}
    items = []
    for r in resources:
        item = r.item()
        item["changes"] = [c.field for c in changes.get(r.id, [])]
        if r.id in late:
            item["deferred"] = {"desired": fingerprint.desired_state(r.type.desired(r.params))}
        item["notify"] = r.notify
        items.append(item)
    answer = host.agent({"op": "apply", "resources": items})
    assert answer["ok"], answer
    return answer["results"]


def converge(host: Any, r: Res) -> list[str]:
    """Apply ``r`` and return its change lines; afterwards it must be in sync."""
    changes = plan(host, r)
    if changes:
        result = apply(host, r, changes={r.id: changes})[r.id]
        assert result["status"] == "changed", result
        assert r.type.diff(r.type.desired(r.params), result["observed"]) == []
    assert plan(host, r) == []
    return [r.type.describe(c) for c in changes]


def sh(host: Any, script: str) -> str:
    result = host.sh(script)
    assert result.rc == 0, result.stderr_text
    return result.stdout_text


# ---- user and group


def test_user_create_modify_delete(fresh_host: Any) -> None:
    ti = fresh_host.testinfra()
    hashed = "$y$j9T$abcdefghijklmnopqrstu.$A6mVbB7I1E1m0PZqgc0s4fx1HpdM3V5cFW6eQkJQd8B"
    deploy = res("user", "deploy", uid=1500, shell="/bin/sh", groups=["adm"], comment="Deploy bot", password=hashed)
    assert converge(fresh_host, deploy) == ["created"]
    user = ti.user("deploy")
    assert (user.exists, user.uid, user.shell, user.gecos) == (True, 1500, "/bin/sh", "Deploy bot")
    assert "adm" in user.groups
    assert user.password == hashed
    assert ti.file("/home/deploy").is_directory  # manage_home defaults to true
    assert ti.file("/home/deploy").user == "deploy"
    answer = probe(fresh_host, deploy)
    assert hashed not in str(answer)  # the shadow hash never leaves the host, only its sha256
    assert answer[deploy.id]["observed"]["password"].startswith("sha256:")

    # drift made by hand, then corrected: shell, groups (minimum adds), password
    sh(fresh_host, "usermod -s /bin/dash deploy && usermod -p '!' deploy && gpasswd -d deploy adm")
    deploy = res(
        "user", "deploy", uid=1500, shell="/bin/bash", groups=["adm", "audio"], comment="Deploy bot", password=hashed
    )
    lines = converge(fresh_host, deploy)
    assert lines == ["groups (none) -> adm,audio", "shell /bin/dash -> /bin/bash", "password changed"]
    user = ti.user("deploy")
    assert (user.shell, user.password) == ("/bin/bash", hashed)
    assert {"adm", "audio"} <= set(user.groups)

    # minimum leaves other groups alone; inclusive removes them
    sh(fresh_host, "usermod -a -G video deploy")
    assert converge(fresh_host, res("user", "deploy", groups=["adm"])) == []
    assert "video" in ti.user("deploy").groups
    assert converge(fresh_host, res("user", "deploy", groups=["adm"], membership="inclusive")) == [
        "groups adm,audio,video -> adm"
    ]
    assert set(ti.user("deploy").groups) == {"deploy", "adm"}

    # a new home: the contents move with it (manage_home)
    sh(fresh_host, "echo keep > /home/deploy/notes && chown deploy: /home/deploy/notes")
    assert converge(fresh_host, res("user", "deploy", home="/srv/deploy")) == ["home /home/deploy -> /srv/deploy"]
    assert ti.user("deploy").home == "/srv/deploy"
    assert ti.file("/srv/deploy/notes").content_string == "keep\n"
    assert not ti.file("/home/deploy").exists

    assert converge(fresh_host, res("user", "deploy", ensure="absent")) == ["removed"]
    assert not ti.user("deploy").exists
    assert ti.file("/srv/deploy").is_directory  # removing a user keeps its home


def test_group_create_change_gid_delete_and_users_that_need_groups(fresh_host: Any) -> None:
    ti = fresh_host.testinfra()
    assert converge(fresh_host, res("group", "deployers", gid=2345)) == ["created"]
    assert (ti.group("deployers").exists, ti.group("deployers").gid) == (True, 2345)
    assert converge(fresh_host, res("group", "deployers", gid=2346)) == ["gid 2345 -> 2346"]
    assert ti.group("deployers").gid == 2346
    assert converge(fresh_host, res("group", "svc", system=True)) == ["created"]
    assert ti.group("svc").gid < 1000
    assert converge(fresh_host, res("group", "deployers", ensure="absent")) == ["removed"]
    assert not ti.group("deployers").exists

    # a group and its user in one apply, in order
    group = res("group", "app", gid=3000)
    user = res("user", "app", uid=3000, group="app", groups=["adm"])
    results = apply(fresh_host, group, user)
    assert [results[r.id]["status"] for r in (group, user)] == ["changed", "changed"]
    assert sh(fresh_host, "id app").startswith("uid=3000(app) gid=3000(app)")

    # a supplementary group that does not exist: a clear failure, no half-made user
    ghost = res("user", "ghost", groups=["no-such-group"])
    result = apply(fresh_host, ghost)[ghost.id]
    assert result["status"] == "failed"
    assert "no-such-group" in result["error"]
    assert not ti.user("ghost").exists


# ---- authorized_key


def make_key(tmp_path: Path, name: str) -> tuple[Path, str]:
    key = tmp_path / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}@test", "-f", str(key)], check=True)
    return key, (tmp_path / f"{name}.pub").read_text().strip()


def ssh_as(host: Any, user: str, key: Path) -> str:
    """Log in over real SSH (driftctl's paramiko transport, host key verified) as ``user`` with ``key``."""
    target = host.host()
    target = replace(target, connection=replace(target.connection, user=user, key_file=str(key)))
    transport = get_transport(target, TransportOptions(use_agent=False, connect_retries=0))
    with transport:
        result = transport.run(["id", "-un"], timeout=30)
    return result.stdout_text.strip()


def test_authorized_key_then_ssh_in(fresh_host: Any, tmp_path: Path) -> None:
    key, pub = make_key(tmp_path, "alice")
    converge(fresh_host, res("user", "alice", shell="/bin/bash"))
    ak = res("authorized_key", "alice-laptop", user="alice", key=pub, options=["no-agent-forwarding"])
    assert converge(fresh_host, ak) == ["added"]
    ti = fresh_host.testinfra()
    ssh_dir, keys = ti.file("/home/alice/.ssh"), ti.file("/home/alice/.ssh/authorized_keys")
    assert (ssh_dir.mode, ssh_dir.user, ssh_dir.group) == (0o700, "alice", "alice")
    assert (keys.mode, keys.user, keys.group) == (0o600, "alice", "alice")
    assert keys.content_string == f"no-agent-forwarding {pub}\n"
    assert ssh_as(fresh_host, "alice", key) == "alice"

    # the same key with other options and comment is updated in place, other keys are kept
    _, other = make_key(tmp_path, "bob")
    sh(fresh_host, f"echo '{other}' >> /home/alice/.ssh/authorized_keys")
    material = " ".join(pub.split()[:2])
    ak2 = res("authorized_key", "alice-laptop", user="alice", key=material + " alice@new")
    assert converge(fresh_host, ak2) == ["options no-agent-forwarding -> (none)", "comment alice@test -> alice@new"]
    assert keys.content_string == f"{material} alice@new\n{other}\n"

    assert converge(fresh_host, res("authorized_key", "gone", user="alice", key=pub, ensure="absent")) == ["removed"]
    assert keys.content_string == f"{other}\n"
    with pytest.raises(AuthError):
        ssh_as(fresh_host, "alice", key)

    # a user and their key in one run: the user does not exist when the plan is made (deferred)
    carol, carol_key = res("user", "carol"), res("authorized_key", "carol", user="carol", key=pub)
    assert probe(fresh_host, carol_key)[carol_key.id] == {"error": "no such user: carol"}
    results = apply(fresh_host, carol, carol_key, deferred=(carol_key,))
    assert [results[r.id]["status"] for r in (carol, carol_key)] == ["changed", "changed"], results
    assert results[carol_key.id]["before"] == {"ensure": "absent", "_cas": None}  # no file yet: it must not appear
    assert ssh_as(fresh_host, "carol", key) == "carol"

    # never through a symlink in the user's home: mallory points ~/.ssh at root's, where a naive
    # root-owned write would authorize the key for root
    _, pub = make_key(tmp_path, "mallory")
    converge(fresh_host, res("user", "mallory"))
    sh(
        fresh_host,
        "rm -rf /home/mallory/.ssh && ln -s /root/.ssh /home/mallory/.ssh && mkdir -p /root/.ssh && "
        "touch /root/.ssh/authorized_keys && chown -h mallory: /home/mallory/.ssh",
    )
    before = sh(fresh_host, "sha256sum /root/.ssh/authorized_keys")
    ak = res("authorized_key", "m", user="mallory", key=pub)
    got = probe(fresh_host, ak)[ak.id]
    assert "symlink" in got["refuse"]  # the probe says apply will refuse, and nothing is read through it
    result = apply(fresh_host, ak, changes={ak.id: [Change("ensure", "absent", "present")]})[ak.id]
    assert result["status"] == "failed"
    assert "symlink" in result["error"]
    assert sh(fresh_host, "sha256sum /root/.ssh/authorized_keys") == before


# ---- package


def test_package_install_and_remove(fresh_host: Any, record_property: Any) -> None:
    ti = fresh_host.testinfra()
    tree = res("package", "tree")
    assert not ti.package("tree").is_installed
    changes = plan(fresh_host, tree)
    assert len(changes) == 1 and re.fullmatch(r"installed \d\S*", tree.type.describe(changes[0]))
    start = time.monotonic()
    result = apply(fresh_host, tree, changes={tree.id: changes})[tree.id]
    took = round(time.monotonic() - start, 2)
    record_property("package_install_seconds", took)
    print(f"package install of tree (one agent call, apt-get install): {took} s")
    assert result["status"] == "changed", result
    assert ti.package("tree").is_installed
    assert ti.package("tree").version == changes[0].after
    assert plan(fresh_host, tree) == []

    gone = res("package", "tree", ensure="absent")
    assert converge(fresh_host, gone) == [f"removed {changes[0].after}"]
    assert not ti.package("tree").is_installed

    # a pinned version
    candidate = sh(fresh_host, "LC_ALL=C apt-cache policy hello | sed -n 's/  Candidate: //p'").strip()
    assert converge(fresh_host, res("package", "hello", ensure=candidate)) == [f"installed {candidate}"]
    assert ti.package("hello").version == candidate

    # a package apt does not know: the lists are refreshed, then a clear failure
    bogus = res("package", "driftctl-no-such-package")
    result = apply(fresh_host, bogus, changes={bogus.id: [Change("ensure", "absent", "present")]})[bogus.id]
    assert result["status"] == "failed"
    assert "driftctl-no-such-package" in result["error"]

    # a package and its service in one run: the unit does not exist when the plan is made, so the
    # service is deferred, observed after the package is in, and converged in the same call
    at, atd = res("package", "at"), res("service", "atd", running=True, enabled=True)
    assert "no such service: atd" in probe(fresh_host, atd)[atd.id]["error"]
    results = apply(fresh_host, at, atd, deferred=(atd,))
    assert results[at.id]["status"] == "changed", results
    # observed in its turn (after the install; whether the package's own scripts already started it
    # decides between ok and changed), and converged
    assert set(results[atd.id]["before"]) == {"enabled", "running"}, results
    assert results[atd.id]["status"] in ("ok", "changed"), results
    assert results[atd.id]["observed"] == {"enabled": True, "running": True}
    assert ti.service("atd").is_running and ti.service("atd").is_enabled

    # no package lists at all (a slimmed image): apt-get update runs before the install
    sh(fresh_host, "rm -f /var/lib/apt/lists/*_Packages* /var/lib/apt/lists/*Release*")
    assert [tree.type.describe(c) for c in plan(fresh_host, tree)] == ["installed"]  # apt knows no version now
    result = apply(fresh_host, tree, changes={tree.id: [Change("ensure", "absent", "present")]})[tree.id]
    assert result["status"] == "changed", result
    assert ti.package("tree").is_installed


# ---- service


def main_pid(host: Any, unit: str) -> int:
    return int(sh(host, f"systemctl show -p MainPID --value {unit}").strip())


def test_service_stop_start_disable_enable(fresh_host: Any) -> None:
    ti = fresh_host.testinfra()
    assert ti.service("cron").is_running and ti.service("cron").is_enabled
    assert converge(fresh_host, res("service", "cron", running=True, enabled=True)) == []
    assert converge(fresh_host, res("service", "cron", running=False, enabled=False)) == ["disabled", "stopped"]
    assert not ti.service("cron").is_running
    assert not ti.service("cron").is_enabled
    assert converge(fresh_host, res("service", "cron", running=True)) == ["started"]
    assert ti.service("cron").is_running and not ti.service("cron").is_enabled
    assert converge(fresh_host, res("service", "cron", enabled=True)) == ["enabled"]
    assert ti.service("cron").is_enabled


def test_service_refresh_missing_unit_and_sysv(fresh_host: Any) -> None:
    # notified: restarted (a new MainPID)
    before = main_pid(fresh_host, "cron")
    trigger = res("exec", "touch-config", command="touch /etc/cron.d/driftctl-test", notify=["service:cron"])
    cron = res("service", "cron", running=True)
    results = apply(fresh_host, trigger, cron)
    assert results[trigger.id]["status"] == "changed"
    assert results[cron.id] == {"status": "ok", "refreshed": True}
    after = main_pid(fresh_host, "cron")
    assert after not in (0, before)
    assert fresh_host.testinfra().service("cron").is_running

    # the sysv provider reads init scripts and rc links (cron ships both)
    got = probe(
        fresh_host,
        res("service", "cron", provider="sysv", running=True, enabled=True),
        res("service", "driftctl-none", provider="sysv", running=True),
    )
    assert got["service:cron"]["observed"] == {"running": True, "enabled": True}
    assert got["service:driftctl-none"]["error"] == "no such service: driftctl-none (no /etc/init.d/driftctl-none)"

    # a unit that does not exist is a failure, never "stopped"
    got = probe(fresh_host, res("service", "driftctl-no-such-unit", running=False))
    assert got["service:driftctl-no-such-unit"] == {
        "error": "no such service: driftctl-no-such-unit (systemd has no unit file for it)"
    }

    # stopped and meant to stay stopped: a notification does not start it
    converge(fresh_host, res("service", "cron", running=False))
    trigger = res("exec", "t", command="true", notify=["service:cron"])
    results = apply(fresh_host, trigger, res("service", "cron", running=False))
    assert results["service:cron"]["refreshed"] is True  # refresh ran, and chose to do nothing
    assert not fresh_host.testinfra().service("cron").is_running


# ---- one query for many packages and services

# In front of the real tool in PATH: logs each call's arguments; once /run/driftctl-test-fail-many.TOOL
# exists, a call with more arguments that are not options than ``most`` (one name) fails: a host whose
# tool cannot answer for several names at once.
SHIM = """#!/bin/sh
printf '%s\\n' "$*" >> /run/driftctl-test-calls.{tool}
if [ -e /run/driftctl-test-fail-many.{tool} ] && [ "$(printf '%s\\n' "$@" | grep -cv '^-')" -gt {most} ]; then
  echo "{tool}: refused by the test" >&2; exit 2
fi
exec /usr/bin/{tool} "$@"
"""


def calls(host: Any, tool: str) -> list[str]:
    return host.sh(f"cat /run/driftctl-test-calls.{tool} 2>/dev/null").stdout_text.splitlines()


def test_a_probe_asks_each_tool_once_for_all_its_packages_services_and_units(fresh_host: Any) -> None:
    """One dpkg-query for all of a probe's packages, one apt-cache policy for the candidates it needs,
    one systemctl show for its services and one for its units, not one each; each resource observes
    exactly what it observes when probed alone, also when a tool cannot answer for several names (each
    resource then asks for itself)."""
    # not options: dpkg-query -W -f=FORMAT NAME...: the names; systemctl show --no-pager -p PROPS -- NAME...:
    # show, PROPS and the names; apt-cache -o OPT -o OPT policy NAME...: both OPTs, policy and the names
    for tool, most in (("dpkg-query", 1), ("systemctl", 3), ("apt-cache", 4)):
        sh(fresh_host, f"cat > /usr/local/sbin/{tool} <<'EOF'\n{SHIM.format(tool=tool, most=most)}EOF\n"
           f"chmod 755 /usr/local/sbin/{tool}")
    arch = sh(fresh_host, "dpkg --print-architecture").strip()  # dpkg-query prints the native bash unqualified
    resources = [
        res("package", "bash"), res("package", "procps", ensure="absent"), res("package", "libc6"),
        res("package", f"bash:{arch}"),
        res("package", "cron"), res("package", "driftctl-no-such-package", ensure="absent"),
        res("package", "hello"), res("package", "tree", ensure="latest"),  # each asks apt-cache its candidate
        res("service", "cron", running=True, enabled=True), res("service", "ssh", running=True),
        res("service", "dbus", enabled=False), res("service", "driftctl-no-such-unit", running=True),
        res("unit", "cron.service", ensure="absent"), res("unit", "driftctl-test.service", content="[Service]\n"),
    ]
    alone = {r.id: probe(fresh_host, r)[r.id] for r in resources}
    assert alone["package:bash"]["observed"]["ensure"] == "present"
    assert alone[f"package:bash:{arch}"]["observed"] == alone["package:bash"]["observed"]  # the native arch's name
    assert alone["package:procps"]["observed"]["ensure"] != "absent"
    assert alone["package:driftctl-no-such-package"]["observed"]["ensure"] == "absent"
    assert alone["service:cron"]["observed"] == {"running": True, "enabled": True}
    assert "no such service" in alone["service:driftctl-no-such-unit"]["error"]
    assert alone["unit:cron.service"]["observed"]["running"] is True
    assert alone["unit:driftctl-test.service"]["observed"]["content_sha256"] is None
    assert alone["package:hello"]["observed"]["candidate"] and alone["package:tree"]["observed"]["candidate"]
    assert len(calls(fresh_host, "dpkg-query")) == 8 and len(calls(fresh_host, "systemctl")) == 6  # the shims ran
    assert len(calls(fresh_host, "apt-cache")) == 2

    sh(fresh_host, "rm -f /run/driftctl-test-calls.*")
    assert probe(fresh_host, *resources) == alone
    dpkg, systemctl = calls(fresh_host, "dpkg-query"), calls(fresh_host, "systemctl")
    assert len(dpkg) == 1, dpkg
    assert dpkg[0].endswith(f"bash procps libc6 bash:{arch} cron driftctl-no-such-package hello tree"), dpkg
    assert calls(fresh_host, "apt-cache") == ["-o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= policy hello tree"]
    assert systemctl == ["show --no-pager -p LoadState,ActiveState,SubState,UnitFileState,MainPID -- "
                         "cron ssh dbus driftctl-no-such-unit",
                         "show --no-pager -p LoadState,ActiveState,SubState,UnitFileState,NeedDaemonReload,MainPID -- "
                         "cron.service driftctl-test.service"]

    sh(fresh_host, "rm -f /run/driftctl-test-calls.*; touch /run/driftctl-test-fail-many.apt-cache")
    assert probe(fresh_host, *resources) == alone  # the installed versions from one call, the candidates each
    assert len(calls(fresh_host, "dpkg-query")) == 1 and len(calls(fresh_host, "apt-cache")) == 1 + 2

    sh(fresh_host, "rm -f /run/driftctl-test-calls.*; touch /run/driftctl-test-fail-many.dpkg-query "
       "/run/driftctl-test-fail-many.systemctl")
    assert probe(fresh_host, *resources) == alone
    assert len(calls(fresh_host, "dpkg-query")) == 1 + 8 and len(calls(fresh_host, "systemctl")) == 2 + 6
    assert len(calls(fresh_host, "apt-cache")) == 2
    sh(fresh_host, "rm -f /usr/local/sbin/dpkg-query /usr/local/sbin/systemctl /usr/local/sbin/apt-cache "
       "/run/driftctl-test-*")


def test_an_apply_asks_apt_cache_once_for_the_packages_it_installs(fresh_host: Any) -> None:
    """Whether apt knows each package it installs (else the lists are refreshed first) is one
    ``apt-cache policy`` for all of them, asked before anything changes; the packages are installed."""
    sh(fresh_host, f"cat > /usr/local/sbin/apt-cache <<'EOF'\n{SHIM.format(tool='apt-cache', most=4)}EOF\n"
       "chmod 755 /usr/local/sbin/apt-cache")
    packages = [res("package", name) for name in ("hello", "sl", "figlet")]
    changes = {r.id: plan(fresh_host, r) for r in packages}
    sh(fresh_host, "rm -f /run/driftctl-test-calls.*")
    results = apply(fresh_host, *packages, changes=changes)
    assert {rid: r["status"] for rid, r in results.items()} == dict.fromkeys(changes, "changed"), results
    assert calls(fresh_host, "apt-cache") == [
        "-o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= policy hello sl figlet"]
    ti = fresh_host.testinfra()
    assert all(ti.package(name).is_installed for name in ("hello", "sl", "figlet"))
    sh(fresh_host, "rm -f /usr/local/sbin/apt-cache /run/driftctl-test-*")


# ---- exec


def test_exec_guards(fresh_host: Any) -> None:
    creates = res("exec", "mk", command="touch /srv/made", creates="/srv/made")
    assert converge(fresh_host, creates) == ["ran (/srv/made does not exist)"]
    assert fresh_host.testinfra().file("/srv/made").exists

    unless = res("exec", "u", command="sh -c 'echo x >> /srv/unless.log'", unless="test -s /srv/unless.log")
    assert converge(fresh_host, unless) == ["ran (unless failed)"]
    onlyif = res("exec", "o", command="sh -c 'echo y >> /srv/onlyif.log'", onlyif="test -e /srv/go")
    assert converge(fresh_host, onlyif) == []
    sh(fresh_host, "touch /srv/go")
    assert plan(fresh_host, onlyif) == [Change("state", "onlyif succeeded", "ran")]
    apply(fresh_host, onlyif)
    assert sh(fresh_host, "cat /srv/unless.log /srv/onlyif.log") == "x\ny\n"

    # refreshonly, as another user, in a directory, with variables
    script = "id -un > out; pwd >> out; echo $WHO >> out"
    job = res(
        "exec",
        "job",
        command=script,
        shell=True,
        refreshonly=True,
        user="nobody",
        cwd="/tmp",
        environment={"WHO": "driftctl"},
    )
    assert plan(fresh_host, job) == []
    assert fresh_host.sh("test -e /tmp/out").rc != 0
    trigger = res("exec", "trigger", command="true", notify=[job.id])
    results = apply(fresh_host, trigger, job)
    assert results[job.id] == {"status": "ok", "refreshed": True}
    assert sh(fresh_host, "cat /tmp/out") == "nobody\n/tmp\ndriftctl\n"
    assert fresh_host.testinfra().file("/tmp/out").user == "nobody"

    # an unexpected exit code fails with the end of the output
    bad = res("exec", "bad", command="echo about to fail; echo reason >&2; exit 4", shell=True)
    result = apply(fresh_host, bad)[bad.id]
    assert result["status"] == "failed"
    assert result["error"] == "command exited 4 (expected 0):\nabout to fail\nreason"
