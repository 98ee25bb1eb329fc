"""file, directory, symlink, line, block, cron and sysctl on real hosts, through the agent.

Each test goes the way the engine does: validate parameters with the controller-side type, probe
through the agent, diff locally, apply the changed fields (with the contents as blobs) in one agent
call, probe again (in sync), and then checks the host with tools that are not driftctl's (testinfra,
or commands run through ``podman exec``). Tests on the shared fleet work in a directory of their own
and remove it; tests that change users, crontabs or sysctls use ``fresh_host``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from driftctl import ship as agentlib
from driftctl.agent._core import backup_key
from driftctl.errors import Location
from driftctl.model import Change
from driftctl.resources.base import ResourceType, get_type

LOC = Location("tests/fleet/test_agent_files.py", 1)
BACKUP_DIR = "/var/lib/driftctl/backup"


@dataclass
class Res:
    """One resource as the engine holds it: its type and validated params."""

    type: type[ResourceType]
    params: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.type.name}:{self.type.title(self.params)}"

    def item(self, managed: list[str] | None = None) -> dict[str, Any]:
        params = self.type.agent_params(self.params)
        if self.type.keeps_managed_below:
            params["_managed"] = managed or []
        return {"id": self.id, "type": self.type.name, "params": params}

    def desired(self) -> dict[str, Any]:
        return self.type.desired(self.params)


def res(type_name: str, title: str, **raw: Any) -> Res:
    rtype = get_type(type_name)
    assert rtype is not None
    return Res(rtype, rtype.validate({rtype.namevar: title, **raw}, LOC))


def probe(host: Any, *resources: Res, managed: list[str] | None = None) -> dict[str, Any]:
    answer = host.agent({"op": "probe", "facts": False, "resources": [r.item(managed) for r in resources]})
    assert answer["ok"], answer
    out = {}
    for r in resources:
        got = answer["resources"][r.id]
        assert "observed" in got, got
        out[r.id] = got["observed"]
    return out


def plan(host: Any, *resources: Res, managed: list[str] | None = None) -> dict[str, list[Change]]:
    observed = probe(host, *resources, managed=managed)
    return {r.id: r.type.diff(r.desired(), observed[r.id], params=r.params) for r in resources}


def apply(host: Any, *resources: Res, managed: list[str] | None = None) -> dict[str, Any]:
    """Plan, then apply every changed field in one agent call, with the contents the changes need."""
    changes = plan(host, *resources, managed=managed)
    items, blobs = [], {}
    for r in resources:
        item = r.item(managed)
        item["changes"] = [c.field for c in changes[r.id]]
        items.append(item)
        if changes[r.id]:
            blobs.update({k: base64.b64encode(v).decode() for k, v in r.type.blobs(r.params).items()})
    answer = host.agent({"op": "apply", "resources": items, "blobs": blobs, "backup_dir": BACKUP_DIR})
    assert answer["ok"], answer
    return answer["results"]


def converge(host: Any, *resources: Res, managed: list[str] | None = None) -> dict[str, list[str]]:
    """Apply; every resource must end changed-and-verified or ok, and then be in sync. Returns change lines."""
    before = plan(host, *resources, managed=managed)
    results = apply(host, *resources, managed=managed)
    for r in resources:
        result = results[r.id]
        if before[r.id]:
            assert result["status"] == "changed", result
            assert r.type.diff(r.desired(), result["observed"]) == [], result["observed"]
        else:
            assert result["status"] == "ok", result
    after = plan(host, *resources, managed=managed)
    assert after == {r.id: [] for r in resources}, after
    return {r.id: [r.type.describe(c) for c in before[r.id]] for r in resources}


def sh(host: Any, script: str) -> str:
    result = host.sh(script)
    assert result.rc == 0, result.stderr_text
    return result.stdout_text


def sha(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def backups_of(host: Any, path: str) -> list[str]:
    """The backups the agent keeps of ``path`` (one directory per path, named by a hash of it), oldest first."""
    sub = f"{BACKUP_DIR}/{backup_key(path)}"
    assert sh(host, f"cat {sub}/path") == f"{path}\n"
    return [f"{sub}/{name}" for name in sh(host, f"ls {sub}").split() if name != "path"]


@pytest.fixture
def workdir(fleet: Any) -> Iterator[str]:
    """A directory of this test's own on every fleet host (its parent exists), removed afterwards."""
    path = f"/srv/driftctl-test-{secrets.token_hex(4)}"
    yield path
    for host in fleet.hosts:
        host.exec(["rm", "-rf", path])


# ---- file and directory, on every host of the fleet


def test_file_in_a_directory_converges_on_every_host(fleet: Any, workdir: str) -> None:
    conf = f"{workdir}/app.conf"
    directory = res("directory", workdir, owner="root", group="nogroup", mode="0750")
    file_v1 = res("file", conf, content="listen 8080\nworkers 4\n", owner="nobody", group="nogroup", mode="0640")
    for host in fleet.hosts:
        lines = converge(host, directory, file_v1)
        assert lines[directory.id] == ["created", "owner -> root", "group -> nogroup", "mode -> 0750"]
        assert lines[file_v1.id][0] == "created" and "mode -> 0640" in lines[file_v1.id]
        ti = host.testinfra()
        f = ti.file(conf)
        assert f.is_file and f.content_string == "listen 8080\nworkers 4\n"
        assert (f.user, f.group, f.mode) == ("nobody", "nogroup", 0o640)
        d = ti.file(workdir)
        assert d.is_directory and (d.user, d.group, d.mode) == ("root", "nogroup", 0o750)
        assert sh(host, f"ls -A {workdir}") == "app.conf\n"  # no temp file left behind

    # a new content: shown as a diff, written atomically, the old file kept by checksum
    host = fleet.hosts[0]
    inode = sh(host, f"stat -c %i {conf}")
    file_v2 = res("file", conf, content="listen 8080\nworkers 8\n", owner="nobody", group="nogroup", mode="0640")
    [change] = plan(host, file_v2)[file_v2.id]
    assert change.diff is not None and "-workers 4\n+workers 8\n" in change.diff
    converge(host, file_v2)
    assert host.testinfra().file(conf).content_string == "listen 8080\nworkers 8\n"
    assert sh(host, f"stat -c %i {conf}") != inode  # replaced by rename, not rewritten in place
    [backup] = backups_of(host, conf)
    assert backup.endswith("-" + sha("listen 8080\nworkers 4\n")[:12])
    assert sh(host, f"cat {backup}") == "listen 8080\nworkers 4\n"
    assert host.testinfra().file(backup).mode == 0o600

    # drift by hand: mode and owner only; fixed in place without touching the content
    sh(host, f"chmod 0666 {conf} && chown root {conf}")
    assert converge(host, file_v2)[file_v2.id] == ["owner root -> nobody", "mode 0666 -> 0640"]
    assert sh(host, f"stat -c '%U %a' {conf}") == "nobody 640\n"


def test_sensitive_file_content_never_leaves_the_host(fleet: Any, workdir: str) -> None:
    host = fleet.hosts[1 % len(fleet.hosts)]
    sh(host, f"mkdir -p {workdir} && printf 'password=old\\n' > {workdir}/db.env")
    secret = res("file", f"{workdir}/db.env", content="password=hunter2\n", mode="0600")
    item = secret.item()
    item["params"]["_want_content"] = False  # what the engine sends for sensitive: true
    answer = host.agent({"op": "probe", "facts": False, "resources": [item]})
    observed = answer["resources"][secret.id]["observed"]
    assert "content" not in observed and "password=old" not in json.dumps(answer)
    [content, _mode] = secret.type.diff(secret.desired(), observed, sensitive=True)
    assert content.diff is None


def test_symlink_at_a_file_path_is_refused(fleet: Any, workdir: str) -> None:
    host = fleet.hosts[0]
    sh(host, f"mkdir -p {workdir} && printf 'precious\\n' > {workdir}/target && ln -s target {workdir}/app.conf")
    r = res("file", f"{workdir}/app.conf", content="x\n", mode="0600")
    [change] = plan(host, r)[r.id]
    assert r.type.describe(change) == "ensure link -> file"
    result = apply(host, r)[r.id]
    assert result["status"] == "failed"
    assert "is a symlink (to target): driftctl never follows or replaces it" in result["error"]
    f = host.testinfra().file(f"{workdir}/target")
    assert f.content_string == "precious\n" and f.mode == 0o644
    assert host.testinfra().file(f"{workdir}/app.conf").is_symlink


def test_missing_parent_directory_fails_clearly(fleet: Any, workdir: str) -> None:
    host = fleet.hosts[0]
    r = res("file", f"{workdir}/sub/app.conf", content="x\n")
    result = apply(host, r)[r.id]
    assert result["status"] == "failed"
    assert f"parent directory {workdir}/sub does not exist" in result["error"]
    assert host.exec(["test", "-e", workdir]).rc != 0


def test_interrupted_write_leaves_the_old_file_intact(fleet: Any, workdir: str) -> None:
    """The agent runs with a 64 KiB file size limit and must write 2 MiB: the write fails midway."""
    host = fleet.hosts[0]
    conf = f"{workdir}/big.conf"
    sh(host, f"mkdir -p {workdir} && printf 'old\\n' > {conf} && chmod 0644 {conf}")
    blob = secrets.token_bytes(2 * 1024 * 1024)
    r = res("file", conf, content=blob)
    item = r.item()
    item["changes"] = ["content"]
    request = {
        "v": agentlib.PROTOCOL_VERSION,
        "op": "apply",
        "resources": [item],
        "backup_dir": BACKUP_DIR,
        "blobs": {sha(blob): base64.b64encode(blob).decode()},
    }
    launcher = "exec " + shlex.join(agentlib.command())
    result = host.exec(
        ["sh", "-c", f"ulimit -f 128; {launcher}"], stdin=agentlib.program_bytes() + json.dumps(request).encode()
    )
    lines = [json.loads(ln) for ln in result.stdout.splitlines() if ln.strip()]
    answer = lines[-1]
    # protocol 2 reports each resource as a record before the final answer
    answer.setdefault("results", {x["done"]: x["result"] for x in lines[:-1] if "done" in x})
    assert answer["ok"], answer
    assert answer["results"][r.id]["status"] == "failed"
    assert "File too large" in answer["results"][r.id]["error"]
    assert host.testinfra().file(conf).content_string == "old\n"
    assert sh(host, f"ls -A {workdir}") == "big.conf\n"  # the partial temp file was removed
    # the same change without the limit goes through
    assert apply(host, r)[r.id]["status"] == "changed"
    assert sh(host, f"sha256sum {conf}").split()[0] == sha(blob)


def test_directory_purge_and_recurse(fleet: Any, workdir: str) -> None:
    host = fleet.hosts[0]
    sh(
        host,
        f"mkdir -p {workdir}/sub/deep && touch {workdir}/keep.conf {workdir}/junk.conf {workdir}/sub/deep/x"
        f" && ln -s /etc/passwd {workdir}/passwd-link && chmod 0600 {workdir}/keep.conf",
    )
    managed = [f"{workdir}/keep.conf"]
    keep = res("file", f"{workdir}/keep.conf")
    d = res("directory", workdir, owner="nobody", mode="0644", recurse=True, purge=True)
    [unmanaged] = [c for c in plan(host, d, keep, managed=managed)[d.id] if c.field == "unmanaged"]
    assert unmanaged.before == [f"{workdir}/junk.conf", f"{workdir}/passwd-link", f"{workdir}/sub"]
    converge(host, d, keep, managed=managed)
    assert sh(host, f"cd {workdir} && find . | sort") == ".\n./keep.conf\n"
    assert sh(host, f"stat -c '%U %a' {workdir} {workdir}/keep.conf") == "nobody 644\nroot 600\n"
    assert host.testinfra().file("/etc/passwd").user == "root"  # the purged link was not followed

    # recurse alone: owner and mode below, directories get the search bit
    sh(host, f"mkdir -p {workdir}/data/cache && touch {workdir}/data/cache/a && chown -R root {workdir}/data")
    data = res("directory", f"{workdir}/data", owner="nobody", mode="0640", recurse=True)
    lines = converge(host, data)[data.id]
    assert lines[0] == "owner root -> nobody" and lines[-1].startswith("recurse: fix owner/group/mode of 2:")
    assert sh(host, f"stat -c '%n %U %a' {workdir}/data {workdir}/data/cache {workdir}/data/cache/a") == (
        f"{workdir}/data nobody 640\n{workdir}/data/cache nobody 750\n{workdir}/data/cache/a nobody 640\n"
    )


def test_symlink_converges_and_force(fleet: Any, workdir: str) -> None:
    host = fleet.hosts[0]
    sh(host, f"mkdir -p {workdir}/releases/1 {workdir}/releases/2 && echo file > {workdir}/current")
    link = res("symlink", f"{workdir}/current", target="releases/1")
    result = apply(host, link)[link.id]
    assert result["status"] == "failed" and "set force: true" in result["error"]
    link = res("symlink", f"{workdir}/current", target="releases/1", force=True)
    assert converge(host, link)[link.id] == ["replace file with a symlink"]
    assert host.testinfra().file(f"{workdir}/current").linked_to == f"{workdir}/releases/1"
    [backup] = backups_of(host, f"{workdir}/current")
    assert sh(host, f"cat {backup}") == "file\n"
    link2 = res("symlink", f"{workdir}/current", target="releases/2")
    assert converge(host, link2)[link2.id] == ["target releases/1 -> releases/2"]
    assert sh(host, f"readlink {workdir}/current") == "releases/2\n"


# ---- line and block in a real sshd_config


def test_line_and_block_edit_a_copy_of_sshd_config(fleet: Any, workdir: str) -> None:
    host = fleet.hosts[0]
    cfg = f"{workdir}/sshd_config"
    # the host's own file, with the PermitRootLogin line as Debian ships it (other tests may change it)
    sh(
        host,
        f"mkdir -p {workdir} && sed -E 's/^#?PermitRootLogin .*/#PermitRootLogin prohibit-password/'"
        f" /etc/ssh/sshd_config > {cfg} && chmod 0600 {cfg}",
    )
    original = sh(host, f"cat {cfg}")
    assert original.count("\n#PermitRootLogin prohibit-password\n") == 1
    permit = res("line", "no-root", path=cfg, match="^#?PermitRootLogin ", text="PermitRootLogin no")
    banner = res("line", "banner", path=cfg, text="Banner /etc/issue.net", after="^#?PermitRootLogin ")
    sftp = res("block", "sftp", path=cfg, content="Match Group sftp\n  ChrootDirectory /srv/sftp\n")
    lines = converge(host, permit, banner, sftp)
    assert lines[permit.id] == ["line replaced: #PermitRootLogin prohibit-password -> PermitRootLogin no"]
    assert lines[banner.id] == ["line added: Banner /etc/issue.net"]
    assert lines[sftp.id] == ["block added (2 lines)"]
    text = sh(host, f"cat {cfg}")
    assert "PermitRootLogin no\nBanner /etc/issue.net\n" in text
    assert text.endswith(
        "# BEGIN DRIFTCTL MANAGED BLOCK sftp\nMatch Group sftp\n  ChrootDirectory /srv/sftp\n"
        "# END DRIFTCTL MANAGED BLOCK sftp\n"
    )
    assert host.testinfra().file(cfg).mode == 0o600
    # sshd itself accepts the edited file
    assert host.exec(["sshd", "-t", "-f", cfg]).rc == 0
    # hand drift inside the block, then back; then removal of both
    sh(host, f"sed -i 's|/srv/sftp|/tmp|' {cfg}")
    assert converge(host, sftp)[sftp.id] == ["block content changed"]
    gone = [
        res("line", "banner", path=cfg, text="Banner /etc/issue.net", ensure="absent"),
        res("block", "sftp", path=cfg, ensure="absent"),
    ]
    converge(host, *gone)
    text = sh(host, f"cat {cfg}")
    # everything else is byte for byte what it was
    assert text == original.replace("\n#PermitRootLogin prohibit-password\n", "\nPermitRootLogin no\n")


# ---- cron: a non-root user's crontab, and /etc/cron.d


def test_cron_for_a_non_root_user_runs(fresh_host: Any) -> None:
    host = fresh_host
    sh(host, "useradd -m alice")
    job = res(
        "cron",
        "touch-stamp",
        user="alice",
        minute="*",
        command="id -un >> /home/alice/stamp",
        environment={"SHELL": "/bin/sh"},
    )
    assert converge(host, job)[job.id] == ["entry added: SHELL=/bin/sh | * * * * * id -un >> /home/alice/stamp"]
    listing = sh(host, "crontab -l -u alice")
    assert "# driftctl: touch-stamp\nSHELL=/bin/sh\n* * * * * id -un >> /home/alice/stamp\n" in listing
    spool = host.testinfra().file("/var/spool/cron/crontabs/alice")
    assert spool.user == "alice"
    # a hand-made entry of the user's own survives our edits
    sh(host, "(crontab -l -u alice; echo '0 5 * * * /bin/true # mine') | crontab -u alice -")
    job2 = res(
        "cron",
        "touch-stamp",
        user="alice",
        minute="*",
        command="id -un >> /home/alice/stamp",
        environment={"SHELL": "/bin/sh", "MAILTO": ""},
    )
    assert converge(host, job2)[job2.id][0].startswith("entry changed: ")
    assert "0 5 * * * /bin/true # mine" in sh(host, "crontab -l -u alice")
    # cron runs it, as alice (waits for the next minute: cron reads crontabs once a minute)
    deadline = time.monotonic() + 130
    while time.monotonic() < deadline and host.exec(["test", "-s", "/home/alice/stamp"]).rc != 0:
        time.sleep(2)
    stamp = host.testinfra().file("/home/alice/stamp")
    assert stamp.exists, sh(host, "systemctl status cron || true")
    assert stamp.user == "alice" and stamp.content_string.splitlines()[0] == "alice"
    gone = res("cron", "touch-stamp", user="alice", ensure="absent")
    assert converge(host, gone)[gone.id][0].startswith("entry removed: ")
    assert sh(host, "crontab -l -u alice").strip().endswith("0 5 * * * /bin/true # mine")


def test_cron_d_file(fresh_host: Any) -> None:
    host = fresh_host
    a = res("cron", "nightly", file="driftctl-test", special="@daily", command="/usr/bin/true")
    b = res("cron", "often", file="driftctl-test", user="nobody", minute="*/5", command="/usr/bin/true")
    converge(host, a, b)
    f = host.testinfra().file("/etc/cron.d/driftctl-test")
    assert (f.user, f.group, f.mode) == ("root", "root", 0o644)
    assert f.content_string == (
        "# driftctl: nightly\n@daily root /usr/bin/true\n# driftctl: often\n*/5 * * * * nobody /usr/bin/true\n"
    )
    converge(
        host,
        res("cron", "nightly", file="driftctl-test", ensure="absent"),
        res("cron", "often", file="driftctl-test", ensure="absent"),
    )
    assert not host.testinfra().file("/etc/cron.d/driftctl-test").exists


# ---- sysctl


@pytest.mark.fresh_host(net_sysctls=True)
def test_sysctl_live_and_persisted(fresh_host: Any) -> None:
    host = fresh_host
    forward = res("sysctl", "net.ipv4.ip_forward", value="1", file="/etc/sysctl.d/60-driftctl-test.conf")
    rmem = res("sysctl", "net.ipv4.tcp_rmem", value="4096   87380 6291456", file="/etc/sysctl.d/60-driftctl-test.conf")
    sh(host, "sysctl -w net.ipv4.ip_forward=0 net.ipv4.tcp_rmem='4096 131072 6291456'")
    lines = converge(host, forward, rmem)
    assert lines[forward.id] == ["value 0 -> 1", "persisted (not set) -> 1"]
    assert lines[rmem.id] == [
        "value 4096 131072 6291456 -> 4096 87380 6291456",
        "persisted (not set) -> 4096 87380 6291456",
    ]
    assert sh(host, "sysctl -n net.ipv4.ip_forward net.ipv4.tcp_rmem") == "1\n4096\t87380\t6291456\n"
    assert host.testinfra().file("/etc/sysctl.d/60-driftctl-test.conf").content_string == (
        "net.ipv4.ip_forward = 1\nnet.ipv4.tcp_rmem = 4096 87380 6291456\n"
    )
    # the file is what the system's own tool loads at boot
    sh(host, "sysctl -w net.ipv4.ip_forward=0 && sysctl -p /etc/sysctl.d/60-driftctl-test.conf")
    assert sh(host, "sysctl -n net.ipv4.ip_forward") == "1\n"


def test_sysctl_on_a_read_only_proc_sys_still_persists(fleet: Any, workdir: str) -> None:
    host = fleet.hosts[0]
    sh(host, f"mkdir -p {workdir}")
    conf = f"{workdir}/99-test.conf"
    current = sh(host, "cat /proc/sys/net/ipv4/ip_forward").strip()
    want = "0" if current == "1" else "1"
    r = res("sysctl", "net.ipv4.ip_forward", value=want, file=conf)
    result = apply(host, r)[r.id]
    assert result["status"] == "failed"
    assert "cannot set net.ipv4.ip_forward: Read-only file system" in result["error"]
    assert host.testinfra().file(conf).content_string == f"net.ipv4.ip_forward = {want}\n"
    assert sh(host, "cat /proc/sys/net/ipv4/ip_forward").strip() == current
    assert [c.field for c in plan(host, r)[r.id]] == ["value"]  # only the live value is left
