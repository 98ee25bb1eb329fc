"""bake per resource type, checked twice: in the layer bake wrote, and by verify() (the agent's own
observe code run against the image, the types' own diff). Refusals match the agent's."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from test_bake_support import make_tiny_base, res, tiny_catalog

from driftctl.bake import bake, image_observe, image_watch, open_image, verify
from driftctl.bake.fs import ImageFS
from driftctl.errors import BakeError
from driftctl.model import Catalog

EPOCH = 1_700_000_000
KEY = "ssh-ed25519 " + base64.b64encode(
    b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes(range(32))).decode() + " ci@example"


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return make_tiny_base(tmp_path / "base")


def _baked(base: Path, tmp_path: Path, *resources, name: str = "out") -> tuple[Path, ImageFS]:
    out = tmp_path / name
    bake(Catalog("h", list(resources)), str(base), out, epoch=EPOCH)
    image = open_image(str(out))
    return out, ImageFS.load(image, lambda p: True)


def _statuses(image: str | Path, *resources) -> dict[str, str]:
    return {r.id: r.status for r in verify(str(image), Catalog("h", list(resources)))}


def test_verify_finds_the_base_out_of_sync_and_the_baked_image_in_sync(base: Path, tmp_path: Path) -> None:
    catalog = tiny_catalog()
    bake(catalog, str(base), tmp_path / "out", epoch=EPOCH)
    before = {r.id: r for r in verify(str(base), catalog)}
    assert {i for i, r in before.items() if r.status == "changed"} == {r.id for r in catalog.resources}
    after = verify(str(tmp_path / "out"), catalog)
    assert [(r.id, r.status, r.error) for r in after] == [(r.id, "ok", None) for r in catalog.resources]
    line = before["line:sshd-no-root"].changes
    assert [(c.field, c.before, c.after) for c in line] == [("line", "PermitRootLogin yes", "PermitRootLogin no")]


def test_verify_reports_the_exact_drift(base: Path, tmp_path: Path) -> None:
    baked = [res("file", "/etc/motd", content="hi\n", mode="0600")]
    bake(Catalog("h", baked), str(base), tmp_path / "out", epoch=EPOCH)
    wanted = Catalog("h", [res("file", "/etc/motd", content="hi\n", mode="0640", owner="daemon")])
    [result] = verify(str(tmp_path / "out"), wanted)
    assert result.status == "changed"
    assert {(c.field, c.before, c.after) for c in result.changes} == {("mode", "0600", "0640"),
                                                                       ("owner", "root", "daemon")}


def test_image_observe_answers_in_the_agents_probe_shape(base: Path, tmp_path: Path) -> None:
    catalog = Catalog("h", [res("file", "/etc/motd", content="x"), res("exec", "check", command="true",
                                                                       unless="true")])
    probe = image_observe(str(base), catalog)
    motd = probe["file:/etc/motd"]["observed"]
    assert (motd["ensure"], motd["mode"], motd["owner"], motd["content"]) == ("file", "0644", "root", "welcome\n")
    # a guard command cannot run in an image: an error on that resource, never a run on this machine
    assert "not possible when observing an image" in probe["exec:check"]["error"] or \
        "cannot run" in probe["exec:check"]["error"]


def test_file_owner_mode_content_and_refusals(base: Path, tmp_path: Path) -> None:
    _out, fs = _baked(base, tmp_path, res("file", "/etc/new.conf", content="a=1\n", owner="daemon",
                                          group="adm", mode="0640"))
    entry = fs.get("/etc/new.conf")
    assert entry is not None and (entry.mode, entry.uid, entry.gid, fs.read("/etc/new.conf")) == (
        0o640, 1, 4, b"a=1\n")
    with pytest.raises(BakeError, match="does not exist in the image"):
        bake(Catalog("h", [res("file", "/nowhere/x", content="")]), str(base), tmp_path / "o2", epoch=EPOCH)
    with pytest.raises(BakeError, match="never follows or replaces"):
        bake(Catalog("h", [res("file", "/bin", content="")]), str(base), tmp_path / "o3", epoch=EPOCH)
    with pytest.raises(BakeError, match="no user 'ghost'"):
        bake(Catalog("h", [res("file", "/etc/x", content="", owner="ghost")]), str(base), tmp_path / "o4",
             epoch=EPOCH)


def test_bytes_content_is_kept_exactly(base: Path, tmp_path: Path) -> None:
    data = bytes(range(256))
    out, fs = _baked(base, tmp_path, res("file", "/etc/blob.bin", content=data))
    assert fs.read("/etc/blob.bin") == data
    assert _statuses(out, res("file", "/etc/blob.bin", content=data)) == {"file:/etc/blob.bin": "ok"}


def test_directory_purge_and_recurse(base: Path, tmp_path: Path) -> None:
    resources = [
        res("directory", "/etc/skel", owner="daemon", mode="0750", recurse=True),
        res("directory", "/etc/ssh", purge=True),
        res("file", "/etc/ssh/ssh_config", content="Host *\n"),
    ]
    out, fs = _baked(base, tmp_path, *resources)
    assert fs.listdir("/etc/ssh") == ["ssh_config"]  # sshd_config purged, the managed file kept
    profile = fs.get("/etc/skel/.profile")
    assert profile is not None and (profile.uid, profile.mode) == (1, 0o750)
    assert set(_statuses(out, *resources).values()) == {"ok"}
    with pytest.raises(BakeError, match="not empty"):
        bake(Catalog("h", [res("directory", "/etc/ssh", ensure="absent")]), str(base), tmp_path / "o2",
             epoch=EPOCH)


def test_symlink_force_and_absent(base: Path, tmp_path: Path) -> None:
    resources = [res("symlink", "/etc/motd", target="/etc/issue", force=True), res("symlink", "/lib", ensure="absent")]
    out, fs = _baked(base, tmp_path, *resources)
    motd = fs.get("/etc/motd")
    assert motd is not None and (motd.kind, motd.target) == ("link", "/etc/issue")
    assert fs.get("/lib") is None
    assert set(_statuses(out, *resources).values()) == {"ok"}
    with pytest.raises(BakeError, match="force: true"):
        bake(Catalog("h", [res("symlink", "/etc/passwd", target="/x")]), str(base), tmp_path / "o2", epoch=EPOCH)


def test_line_block_cron_sysctl_edits(base: Path, tmp_path: Path) -> None:
    resources = [
        res("line", "port", path="/etc/ssh/sshd_config", text="Port 2222", match="^Port "),
        res("block", "banner", path="/etc/ssh/sshd_config", content="Banner none\nMaxAuthTries 3"),
        res("block", "new", path="/etc/new-with-block", content="x=1", create=True),
        res("cron", "backup", user="daemon", hour="3", minute="15", command="/usr/bin/backup"),
        res("cron", "rotate", file="driftctl-rotate", special="@daily", command="/usr/bin/rotate"),
        res("sysctl", "net.ipv4.ip_forward", value="1"),
    ]
    out, fs = _baked(base, tmp_path, *resources)
    sshd = fs.read_text("/etc/ssh/sshd_config") or ""
    assert sshd.splitlines()[0] == "Port 2222"
    assert "# BEGIN driftctl banner" in sshd or "BEGIN" in sshd
    spool = fs.get("/var/spool/cron/crontabs/daemon")
    assert spool is not None and (spool.mode, spool.uid, spool.gid) == (0o600, 1, 101)
    assert "15 3 * * * /usr/bin/backup" in (fs.read_text("/var/spool/cron/crontabs/daemon") or "")
    assert "@daily root /usr/bin/rotate" in (fs.read_text("/etc/cron.d/driftctl-rotate") or "")
    assert "net.ipv4.ip_forward = 1" in (fs.read_text("/etc/sysctl.d/99-driftctl.conf") or "")
    assert set(_statuses(out, *resources).values()) == {"ok"}
    assert _statuses(base, *resources)["sysctl:net.ipv4.ip_forward"] == "changed"


def test_users_groups_and_keys(base: Path, tmp_path: Path) -> None:
    resources = [
        res("group", "ops", gid=3000),
        res("user", "deploy", groups=["ops", "adm"], shell="/bin/sh", comment="Deploy", password="$6$salt$hash"),
        res("authorized_key", "deploy-ci", user="deploy", key=KEY),
        res("user", "daemon", ensure="absent"),
    ]
    out, fs = _baked(base, tmp_path, *resources)
    passwd = fs.read_text("/etc/passwd") or ""
    assert "deploy:x:1000:1000:Deploy:/home/deploy:/bin/sh" in passwd.splitlines()
    assert "daemon:" not in passwd
    shadow = (fs.read_text("/etc/shadow") or "").splitlines()
    # the last-change day is the epoch's, never today's
    assert f"deploy:$6$salt$hash:{EPOCH // 86400}:0:99999:7:::" in shadow
    group = (fs.read_text("/etc/group") or "").splitlines()
    assert "ops:x:3000:deploy" in group and "adm:x:4:deploy" in group and "deploy:x:1000:" in group
    assert "deploy:!::" in (fs.read_text("/etc/gshadow") or "").splitlines()
    home = fs.get("/home/deploy")
    assert home is not None and (home.mode, home.uid, home.gid) == (0o700, 1000, 1000)  # HOME_MODE 0700
    assert fs.read("/home/deploy/.profile") == b"# profile\n"  # /etc/skel copied
    ssh_dir, keys = fs.get("/home/deploy/.ssh"), fs.get("/home/deploy/.ssh/authorized_keys")
    assert ssh_dir is not None and (ssh_dir.mode, ssh_dir.uid) == (0o700, 1000)
    assert keys is not None and (keys.mode, keys.uid) == (0o600, 1000)
    assert set(_statuses(out, *resources).values()) == {"ok"}


def test_shadow_day_is_empty_without_an_epoch(base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    bake(Catalog("h", [res("user", "amy")]), str(base), tmp_path / "out")
    with open_image(str(tmp_path / "out")) as image:
        shadow = ImageFS.load(image, lambda p: p == "/etc/shadow").read_text("/etc/shadow") or ""
    assert "amy:!::0:99999:7:::" in shadow.splitlines()


def test_services_enable_disable_static_missing(base: Path, tmp_path: Path) -> None:
    out, fs = _baked(base, tmp_path, res("service", "demo", running=True), res("service", "static", enabled=True))
    link = fs.get("/etc/systemd/system/multi-user.target.wants/demo.service")
    assert link is not None and link.target == "/lib/systemd/system/demo.service"
    alias = fs.get("/etc/systemd/system/demo-alias.service")
    assert alias is not None and alias.kind == "link"
    assert _statuses(out, res("service", "demo", enabled=True, running=True)) == {"service:demo": "ok"}
    assert _statuses(base, res("service", "demo", enabled=True)) == {"service:demo": "changed"}
    out2, fs2 = _baked(out, tmp_path, res("service", "demo", enabled=False), name="out2")
    assert fs2.get("/etc/systemd/system/multi-user.target.wants/demo.service") is None
    assert _statuses(out2, res("service", "demo", enabled=False)) == {"service:demo": "ok"}
    with pytest.raises(BakeError, match=r"no unit file for nope\.service"):
        bake(Catalog("h", [res("service", "nope", enabled=True)]), str(base), tmp_path / "o3", epoch=EPOCH)
    with pytest.raises(BakeError, match="static unit"):
        bake(Catalog("h", [res("service", "static", enabled=False)]), str(base), tmp_path / "o4", epoch=EPOCH)


def test_packages_and_execs_only_when_the_base_has_them(base: Path, tmp_path: Path) -> None:
    ok = bake(Catalog("h", [res("package", "base-files"), res("package", "gone", ensure="absent"),
                            res("exec", "init", command="true", creates="/etc/passwd"),
                            res("exec", "reload", command="true", refreshonly=True)]),
              str(base), tmp_path / "out", epoch=EPOCH)
    assert [r.status for r in ok.resources] == ["ok", "ok", "ok", "skipped"]
    assert _statuses(tmp_path / "out", res("package", "base-files"), res("package", "gone", ensure="absent")) == {
        "package:base-files": "ok", "package:gone": "ok"}
    # without a build container (engine=False: as on a machine without podman) bake says why it cannot
    with pytest.raises(BakeError, match=r"package:nginx .*cannot run a package manager"):
        bake(Catalog("h", [res("package", "nginx")]), str(base), tmp_path / "o2", epoch=EPOCH, engine=False)
    with pytest.raises(BakeError, match=r"exec:make .*cannot run commands"):
        bake(Catalog("h", [res("exec", "make", command="make")]), str(base), tmp_path / "o3", epoch=EPOCH,
             engine=False)


def test_image_watch_is_the_agents_watch_answer(base: Path, tmp_path: Path) -> None:
    catalog = Catalog("h", [res("file", "/etc/ssh/ssh_config", content="Host *\n")], watch=["/etc/ssh", "/nope"])
    bake(catalog, str(base), tmp_path / "out", epoch=EPOCH)
    answer = image_watch(str(tmp_path / "out"), catalog)
    entries = answer["entries"]
    # the managed file is left out (reported per resource); the unmanaged one is baselined
    assert set(entries) == {"/etc/ssh", "/etc/ssh/sshd_config"}
    assert entries["/etc/ssh/sshd_config"] == {
        "type": "file", "mode": "0644", "owner": "root", "group": "root", "size": 28,
        "sha256": hashlib.sha256(b"Port 22\nPermitRootLogin yes\n").hexdigest()}
    assert entries["/etc/ssh"]["type"] == "directory"
    assert answer["missing"] == ["/nope"]


def test_the_image_view_is_read_only_and_runs_nothing(base: Path, tmp_path: Path) -> None:
    import os as real_os

    from driftctl.bake.imageos import agent_namespace

    with open_image(str(base)) as image:
        ns = agent_namespace(ImageFS.load(image))
    failure = ns["Failure"]
    view = ns["os"]
    assert view.lstat("/bin").st_mode & 0o170000 == 0o120000  # a symlink, as lstat says on a host
    assert view.path.isfile("/bin/sh")  # through /bin -> usr/bin, in the image
    assert ns["open"]("/etc/motd").read() == "welcome\n"
    with pytest.raises(FileNotFoundError):
        ns["open"]("/etc/nothing")
    with pytest.raises(failure):
        view.open("/etc/motd", real_os.O_WRONLY)
    with pytest.raises(failure):
        ns["open"]("/etc/motd", "w")
    with pytest.raises(failure):
        view.rename("/etc/motd", "/etc/x")
    with pytest.raises(failure):
        ns["subprocess"].run(["touch", str(tmp_path / "ran")])
    with pytest.raises(failure):
        ns["run"](["touch", str(tmp_path / "ran")])
    assert not (tmp_path / "ran").exists()
    assert ns["pwd"].getpwnam("daemon").pw_uid == 1  # the image's accounts, not this machine's


def test_verify_never_shows_secrets(base: Path) -> None:
    line = res("line", "db-password", path="/etc/ssh/sshd_config", text="# password hunter2")
    secret_file = res("file", "/etc/motd", content="hunter2\n")
    secret_file.sensitive = True
    catalog = Catalog("h", [line, secret_file, res("user", "root", password="$6$salt$secrethash")],
                      secrets=frozenset({"hunter2"}))
    results = verify(str(base), catalog)
    text = repr(results)
    assert "hunter2" not in text and "secrethash" not in text
    assert all(r.status == "changed" for r in results)
