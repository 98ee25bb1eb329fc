"""The agent's descriptor walker, safe writes, compare-and-swap, backups and time limit, as root in temp dirs.

A link "planted by nobody" is made by root and handed to uid 65534 with ``os.chown(...,
follow_symlinks=False)``: to the kernel and to the walker that is the same as nobody having made it.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from driftctl.agent._core import (
    CAS_UNKNOWN,
    TYPES,
    Ctx,
    Failure,
    Target,
    UnsafePath,
    backup_key,
    prune_backups,
    run_set_deadline,
)
from driftctl.agent.authorized_key import authorized_key_apply, authorized_key_observe
from driftctl.agent.block import block_apply
from driftctl.agent.cron import cron_apply
from driftctl.agent.directory import directory_apply
from driftctl.agent.file import file_apply, file_observe
from driftctl.agent.line import line_apply, line_observe
from driftctl.agent.spawn import run
from driftctl.agent.symlink import symlink_apply
from driftctl.agent.sysctl import sysctl_apply
from driftctl.errors import Location
from driftctl.resources import get_type

LOC = Location("manifests/site.yaml", 3)
NOBODY = 65534
ED = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ1mFvE8bN0k7nVtF9tq3Qz2bQ1O4XW9q8W8p0m3tQ0c"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: chown to nobody, mount a tmpfs")


def sha(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def params(type_name: str, **raw: Any) -> dict:
    rtype = get_type(type_name)
    assert rtype is not None
    return rtype.agent_params(rtype.validate(raw, LOC))


def file_params(path: Path | str, **raw: Any) -> tuple[dict, Ctx]:
    rtype = get_type("file")
    assert rtype is not None
    validated = rtype.validate({"path": str(path), **raw}, LOC)
    return rtype.agent_params(validated), Ctx(blobs=rtype.blobs(validated))


def walk(path: Path | str) -> None:
    with Target(str(path)):
        pass


def plant(link: Path, target: Path | str, uid: int = NOBODY) -> None:
    os.symlink(target, link)
    os.chown(link, uid, uid, follow_symlinks=False)


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Path]:
    """An "etc" with a precious file, a sticky world-writable "tmp" and a nobody-owned "home"."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    (etc / "sysctl.conf").write_text("kernel.x = 1\n")
    (etc / "cronjobs").write_text("# driftctl: other\n@daily root /bin/true\n")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    os.chmod(tmp, 0o1777)
    home = tmp_path / "home"
    home.mkdir()
    os.chown(home, NOBODY, NOBODY)
    plant(tmp / "evil", etc)  # /tmp/evil -> /etc, by nobody, in sticky /tmp
    plant(home / "link", etc)  # /home/nobodyhome/link -> /etc
    os.symlink(etc, home / "rootlink")  # root's link, but in a directory nobody owns
    return {"etc": etc, "tmp": tmp, "home": home}


def snapshot(directory: Path) -> dict[str, tuple[str, int]]:
    return {p.name: (sha(p.read_bytes()), p.stat().st_ino) for p in sorted(directory.iterdir())}


# ---- the walker


def test_walker_follows_root_links_like_var_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (tmp_path / "var").mkdir()
    os.symlink("../run", tmp_path / "var" / "run")  # relative, as /var/run -> /run
    os.symlink(str(run_dir), tmp_path / "abs")  # absolute
    p, ctx = file_params(tmp_path / "var" / "run" / "app.pid", content="1\n")
    file_apply(p, ["ensure"], ctx)
    assert (run_dir / "app.pid").read_text() == "1\n"
    walk(tmp_path / "abs" / "x")
    if os.path.islink("/var/run"):
        walk("/var/run/x")  # the real one


def test_walker_refuses_nobodys_link_in_sticky_tmp_and_in_nobodys_dir(world: dict[str, Path]) -> None:
    with pytest.raises(UnsafePath) as e:
        walk(world["tmp"] / "evil" / "shadow")
    message = str(e.value)
    assert f"{world['tmp']}/evil is a symlink that a user other than root could have planted" in message
    assert "link owner uid 65534" in message and str(world["tmp"] / "evil" / "shadow") in message
    with pytest.raises(UnsafePath, match="could have planted"):
        walk(world["home"] / "link" / "shadow")
    with pytest.raises(UnsafePath, match=r"in .*/home owned by uid 65534"):
        walk(world["home"] / "rootlink" / "shadow")  # nobody could swap root's link for their own


def test_walker_bounds_link_loops(tmp_path: Path) -> None:
    os.symlink("b", tmp_path / "a")
    os.symlink("a", tmp_path / "b")
    with pytest.raises(UnsafePath, match="too many levels of symbolic links"):
        walk(tmp_path / "a" / "x")


def test_final_component_link_is_never_followed(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.write_text("keep\n")
    os.symlink(real, tmp_path / "link")  # root's own link: still not followed at the final component
    p, ctx = file_params(tmp_path / "link", content="x\n")
    assert TYPES["file"].precheck(p, file_observe(p, ctx), ctx) is not None
    with pytest.raises(Failure, match="is a symlink"):
        file_apply(p, ["ensure"], ctx)
    for edit in (params("line", name="l", path=str(tmp_path / "link"), text="x"),
                 params("block", name="b", path=str(tmp_path / "link"), content="x\n")):
        with pytest.raises(Failure, match="never follows a symlink"):
            (line_apply if "text" in edit else block_apply)(edit, ["ensure"], Ctx())
    assert real.read_text() == "keep\n" and os.path.islink(tmp_path / "link")


# ---- every writer refuses a planted parent, and leaves the target alone


def writers(via: Path, etc: Path) -> list[tuple[str, Any, dict, Ctx]]:
    fp, fctx = file_params(via / "shadow", content="pwned\n")
    absent, actx = file_params(via / "shadow", ensure="absent")
    return [
        ("file", file_apply, fp, fctx),
        ("file absent", file_apply, absent, actx),
        ("directory", directory_apply, params("directory", path=str(via / "newdir")), Ctx()),
        ("symlink", symlink_apply, params("symlink", path=str(via / "shadow"), target="/x", force=True), Ctx()),
        ("line", line_apply, params("line", name="l", path=str(via / "shadow"), text="pwned"), Ctx()),
        ("block", block_apply, params("block", name="b", path=str(via / "shadow"), content="pwned\n"), Ctx()),
        ("cron", cron_apply, params("cron", name="c", file=str(via / "cronjobs"), special="@daily",
                                    command="/bin/pwned"), Ctx()),
        ("sysctl", sysctl_apply, params("sysctl", key="kernel.x", value="2", file=str(via / "sysctl.conf")), Ctx()),
        ("authorized_key", authorized_key_apply,
         params("authorized_key", name="k", user="root", key=ED, path=str(via / "shadow")), Ctx()),
    ]


@pytest.mark.parametrize("via", ["tmp/evil", "home/link"])
def test_every_writer_refuses_a_planted_parent(world: dict[str, Path], tmp_path: Path, via: str) -> None:
    before = snapshot(world["etc"])
    for name, apply, p, ctx in writers(tmp_path / via, world["etc"]):
        with pytest.raises(Failure, match="could have planted") as e:
            apply(p, ["ensure", "persisted", "entry", "content"], ctx)
        assert str(tmp_path / via) in str(e.value), name
        observed = TYPES[name.split()[0]].observe(p, ctx)
        assert TYPES[name.split()[0]].precheck(p, observed, ctx) == str(e.value), name  # plan says the same
        assert snapshot(world["etc"]) == before, name


# ---- compare-and-swap


def test_file_changed_between_observe_and_apply_is_not_overwritten(tmp_path: Path) -> None:
    f = tmp_path / "app.conf"
    f.write_text("v1\n")
    p, ctx = file_params(f, content="v2\n")
    seen = file_observe(p, ctx)["_cas"]
    assert seen["sha256"] == sha("v1\n") and seen["size"] == 3 and seen["mode"] == "0644"
    f.write_text("by hand\n")  # someone edits it after the plan
    ctx.expect = seen
    with pytest.raises(Failure, match=r"app\.conf changed underneath since the plan: content"):
        file_apply(p, ["content"], ctx)
    assert f.read_text() == "by hand\n"
    assert [x.name for x in tmp_path.iterdir()] == ["app.conf"]  # no temp file, no backup
    # the mode alone, in place
    f.write_text("v1\n")
    seen = file_observe(p, ctx)["_cas"]
    os.chmod(f, 0o600)
    ctx.expect = seen
    with pytest.raises(Failure, match="changed underneath since the plan: mode 0644 -> 0600"):
        file_apply(p, ["content"], ctx)
    # a file that appeared after a plan that saw none, and one that is gone before a removal
    new, nctx = file_params(tmp_path / "new.conf", content="x\n")
    nctx.expect = file_observe(new, nctx)["_cas"]
    assert nctx.expect is None
    (tmp_path / "new.conf").write_text("theirs\n")
    with pytest.raises(Failure, match="it appeared"):
        file_apply(new, ["ensure"], nctx)
    assert (tmp_path / "new.conf").read_text() == "theirs\n"
    # unchanged: goes through; no expectation (old callers): no check
    ctx.expect = file_observe(p, ctx)["_cas"]
    file_apply(p, ["content"], ctx)
    assert f.read_text() == "v2\n"


def test_edits_refuse_a_file_that_changed_since_the_probe(tmp_path: Path) -> None:
    f = tmp_path / "sshd_config"
    f.write_text("PermitRootLogin yes\n")
    first = params("line", name="a", path=str(f), match="^PermitRootLogin", text="PermitRootLogin no")
    second = params("line", name="b", path=str(f), text="Banner /etc/issue")
    ctx = Ctx(backup_dir=str(tmp_path / "bk"))
    seen_first, seen_second = line_observe(first, ctx)["_cas"], line_observe(second, ctx)["_cas"]
    # two edits of one file in one run: the second expects the first's write, not the probe's view
    ctx.expect = seen_first
    line_apply(first, ["ensure"], ctx)
    ctx.expect = seen_second
    line_apply(second, ["ensure"], ctx)
    assert f.read_text() == "PermitRootLogin no\nBanner /etc/issue\n"
    # a change by someone else between probe and apply
    ctx = Ctx(backup_dir=str(tmp_path / "bk"))
    third = params("line", name="c", path=str(f), text="X11Forwarding no")
    ctx.expect = line_observe(third, ctx)["_cas"]
    f.write_text(f.read_text() + "UsePAM yes\n")
    with pytest.raises(Failure, match="changed underneath since the plan: content"):
        line_apply(third, ["ensure"], ctx)
    assert f.read_text() == "PermitRootLogin no\nBanner /etc/issue\nUsePAM yes\n"


def test_no_expectation_means_no_check(tmp_path: Path) -> None:
    f = tmp_path / "a"
    f.write_text("1\n")
    p, ctx = file_params(f, content="2\n")
    assert ctx.expect is CAS_UNKNOWN
    file_apply(p, ["content"], ctx)
    assert f.read_text() == "2\n"


# ---- errors during writes: they name the path, the old file stays, no temp file is left


def test_enospc_names_the_path_and_leaves_the_old_file(tiny_fs: Path, tmp_path: Path) -> None:
    f = tiny_fs / "app.conf"
    f.write_text("old\n")
    blob = os.urandom(200_000)
    p, ctx = file_params(f, content=blob)
    p.pop("content_size", None)  # no size known in advance: the write itself fails
    ctx.backup_dir = str(tmp_path / "bk")
    with pytest.raises(Failure) as e:
        file_apply(p, ["content"], ctx)
    assert str(e.value) == f"writing {f}: No space left on device (the file was left untouched)"
    assert f.read_text() == "old\n" and [x.name for x in tiny_fs.iterdir()] == ["app.conf"]


def test_known_size_fails_before_writing(tiny_fs: Path) -> None:
    p, ctx = file_params(tiny_fs / "big.bin", content=b"x" * 10)
    p["content_size"] = 2 * 10**9
    with pytest.raises(Failure, match=r"big\.bin needs 2\.0 GB, the file system has 0\.0 GB free"):
        file_apply(p, ["ensure"], ctx)
    assert list(tiny_fs.iterdir()) == []


# ---- modes


def test_default_modes(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        plain, ctx = file_params(tmp_path / "plain", content="x\n")
        file_apply(plain, ["ensure"], ctx)
        secret, sctx = file_params(tmp_path / "secret", content="x\n")
        secret["_sensitive"] = True
        file_apply(secret, ["ensure"], sctx)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "plain").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o600


def test_copy_blob_returns_count_and_hash(tmp_path: Path) -> None:
    ctx = Ctx(blobs={sha(b"abc"): b"abc"})
    fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        assert ctx.copy_blob(sha(b"abc"), fd) == (3, sha(b"abc"))
    finally:
        os.close(fd)


# ---- backups


def backups(bk: Path, path: Path) -> list[str]:
    sub = bk / backup_key(str(path))
    return sorted(p.name for p in sub.iterdir() if p.name != "path") if sub.exists() else []


@pytest.mark.parametrize("how", ["nobody symlink", "0777 dir", "nobody dir"])
def test_planted_backup_directory_is_refused_and_nothing_written(tmp_path: Path, how: str) -> None:
    f = tmp_path / "app.conf"
    f.write_text("old\n")
    bk = tmp_path / "bk"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if how == "nobody symlink":
        plant(bk, elsewhere)
    else:
        bk.mkdir()
        os.chmod(bk, 0o777 if how == "0777 dir" else 0o700)
        if how == "nobody dir":
            os.chown(bk, NOBODY, NOBODY)
    p, ctx = file_params(f, content="new\n")
    ctx.backup_dir = str(bk)
    with pytest.raises(Failure, match=f"refusing the backup directory {bk}"):
        file_apply(p, ["content"], ctx)
    assert f.read_text() == "old\n" and list(elsewhere.iterdir()) == []
    assert sorted(x.name for x in tmp_path.iterdir()) == ["app.conf", "bk", "elsewhere"]


def test_backup_dir_is_created_private_and_backups_are_0600(tmp_path: Path) -> None:
    f = tmp_path / "app.conf"
    f.write_text("old\n")
    p, ctx = file_params(f, content="new\n")
    ctx.backup_dir = str(tmp_path / "var" / "lib" / "driftctl" / "backup")
    file_apply(p, ["content"], ctx)
    bk = Path(ctx.backup_dir)
    assert stat.S_IMODE(bk.stat().st_mode) == 0o700
    [entry] = backups(bk, f)
    assert entry.endswith("-" + sha("old\n")[:12])
    backup = bk / backup_key(str(f)) / entry
    assert backup.read_text() == "old\n" and stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert (bk / backup_key(str(f)) / "path").read_text() == f"{f}\n"


def test_retention_keeps_the_newest_n_and_none_too_old(tmp_path: Path) -> None:
    f = tmp_path / "app.conf"
    bk = tmp_path / "bk"
    for i in range(4):
        f.write_text(f"v{i}\n")
        p, ctx = file_params(f, content=f"v{i + 1}\n")
        ctx.backup_dir, ctx.backup_keep = str(bk), 3
        file_apply(p, ["content"], ctx)
    kept = backups(bk, f)
    assert len(kept) == 3
    assert [(bk / backup_key(str(f)) / n).read_text() for n in kept] == ["v1\n", "v2\n", "v3\n"]
    # an entry from 40 days ago, and a 0.1 flat backup that old: both go on a whole-tree prune
    sub = bk / backup_key(str(f))
    old_name = time.strftime("%Y%m%dT%H%M%S", time.gmtime(time.time() - 40 * 86400)) + ".000000Z-" + "0" * 12
    (sub / old_name).write_text("ancient\n")
    flat = bk / sha("flat\n")
    flat.write_text("flat\n")
    os.utime(flat, (time.time() - 40 * 86400,) * 2)
    fresh_flat = bk / sha("fresh\n")
    fresh_flat.write_text("fresh\n")
    ctx = Ctx(backup_dir=str(bk), backup_keep=5)
    assert prune_backups(ctx) == {"removed": 2, "kept": 4, "bytes_freed": len("ancient\n") + len("flat\n")}
    assert not (sub / old_name).exists() and not flat.exists() and fresh_flat.exists()
    ctx.backup_keep = 1
    assert prune_backups(ctx)["removed"] == 2
    assert backups(bk, f) == kept[-1:]


def test_prune_of_a_missing_backup_directory_is_empty(tmp_path: Path) -> None:
    assert prune_backups(Ctx(backup_dir=str(tmp_path / "none"))) == {"removed": 0, "kept": 0, "bytes_freed": 0}
    assert not (tmp_path / "none").exists()


# ---- authorized_key below a user's home


def test_authorized_key_refuses_links_below_home_and_reports_them_in_plan(tmp_path: Path) -> None:
    home = tmp_path / "alice"
    home.mkdir()
    os.chown(home, NOBODY, NOBODY)
    (tmp_path / "etc").mkdir()
    plant(home / ".ssh", tmp_path / "etc")
    p = params("authorized_key", name="k", user="nobody", key=ED, path=str(home / ".ssh" / "authorized_keys"))
    observed = authorized_key_observe(p, Ctx())
    reason = TYPES["authorized_key"].precheck(p, observed, Ctx())
    assert reason is not None and ".ssh is a symlink" in reason
    with pytest.raises(Failure, match=r"\.ssh is a symlink"):
        authorized_key_apply(p, ["ensure"], Ctx())
    assert list((tmp_path / "etc").iterdir()) == []


# ---- the per-resource time limit


def test_deadline_kills_the_whole_process_group(tmp_path: Path) -> None:
    marker = f"driftctl-test-{uuid.uuid4().hex}"
    sleeper = f"{sys.executable} -c 'import time; time.sleep(300)' {marker}"
    script = f"{sleeper} & {sleeper}; wait"  # a child in the background and one in the foreground
    run_set_deadline(time.monotonic() + 1)
    try:
        with pytest.raises(Failure, match=r"timed out after 1s \(the resource's time limit\)"):
            run(["sh", "-c", script])
    finally:
        run_set_deadline(None)
    left = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    assert left.stdout == ""
    assert run(["true"]) == (0, "", "")  # no deadline: runs as before


# ---- plan and apply refuse the same things, in the same words


def test_precheck_is_what_apply_raises(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x\n")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "a").write_text("")
    os.mkfifo(tmp_path / "fifo")
    cases = [
        ("file", params("file", path=str(tmp_path / "dir"), content="x\n")),
        ("file", params("file", path=str(tmp_path / "fifo"), ensure="absent")),
        ("directory", params("directory", path=str(tmp_path / "file"))),
        ("symlink", params("symlink", path=str(tmp_path / "file"), target="/x")),
        ("symlink", params("symlink", path=str(tmp_path / "dir"), target="/x")),
        ("symlink", params("symlink", path=str(tmp_path / "full"), target="/x", force=True)),
        ("symlink", params("symlink", path=str(tmp_path / "file"), ensure="absent")),
        ("line", params("line", name="l", path=str(tmp_path / "fifo"), text="x")),
        ("block", params("block", name="b", path=str(tmp_path / "dir"), content="x\n")),
    ]
    for type_name, p in cases:
        handler = TYPES[type_name]
        ctx = Ctx()
        reason = handler.precheck(p, handler.observe(p, ctx), ctx)
        assert reason, (type_name, p)
        with pytest.raises(Failure) as e:
            handler.apply(p, ["ensure"], ctx)
        assert str(e.value) == reason, (type_name, p)
    assert (tmp_path / "file").read_text() == "x\n" and (tmp_path / "full" / "a").exists()
    ok = params("symlink", path=str(tmp_path / "dir"), target="/x", force=True)  # an empty dir, with force
    assert TYPES["symlink"].precheck(ok, TYPES["symlink"].observe(ok, Ctx()), Ctx()) is None


# ---- compare-and-swap for removal and for every edit type


def test_removal_refuses_a_file_that_changed_since_the_plan(tmp_path: Path) -> None:
    f = tmp_path / "old.conf"
    f.write_text("bye\n")
    p, ctx = file_params(f, ensure="absent")
    ctx.expect = file_observe(p, ctx)["_cas"]
    f.write_text("now important\n")
    with pytest.raises(Failure, match="changed underneath since the plan: content"):
        file_apply(p, ["ensure"], ctx)
    assert f.read_text() == "now important\n"


@pytest.mark.parametrize("type_name", ["block", "cron", "sysctl", "authorized_key"])
def test_every_edit_type_refuses_a_file_changed_since_the_probe(tmp_path: Path, type_name: str) -> None:
    f = tmp_path / ("target.conf" if type_name == "sysctl" else "target")  # cron.d names have no dots
    f.write_text("# first\n")
    p = {
        "block": lambda: params("block", name="b", path=str(f), content="x\n"),
        "cron": lambda: params("cron", name="c", file=str(f), special="@daily", command="/bin/true"),
        "sysctl": lambda: params("sysctl", key="kernel.x", value="1", file=str(f)),
        "authorized_key": lambda: params("authorized_key", name="k", user="root", key=ED, path=str(f)),
    }[type_name]()
    handler = TYPES[type_name]
    ctx = Ctx(backup_dir=str(tmp_path / "bk"))
    ctx.expect = handler.observe(p, ctx)["_cas"]
    assert ctx.expect["sha256"] == sha("# first\n")
    f.write_text("# someone else's\n")
    with pytest.raises(Failure, match="changed underneath since the plan: content"):
        handler.apply(p, ["ensure", "persisted", "entry"], ctx)
    assert f.read_text() == "# someone else's\n"
    assert sorted(x.name for x in tmp_path.iterdir()) == [f.name]  # no temp file, no backup
    ctx.expect = handler.observe(p, ctx)["_cas"]  # planned again: goes through
    handler.apply(p, ["ensure", "persisted", "entry"], ctx)
    assert f.read_text().startswith("# someone else's\n") and f.read_text() != "# someone else's\n"


def test_a_full_backup_file_system_fails_the_resource_before_it_writes(tiny_fs: Path, tmp_path: Path) -> None:
    f = tmp_path / "big.conf"
    f.write_bytes(os.urandom(200_000))
    before = f.read_bytes()
    p, ctx = file_params(f, content="small\n")
    ctx.backup_dir = str(tiny_fs / "bk")
    with pytest.raises(Failure) as e:
        file_apply(p, ["content"], ctx)
    assert str(e.value).startswith(f"backing up {f} into {tiny_fs}/bk/{backup_key(str(f))} failed, so it was left")
    assert "needs 200.0 kB, the file system has" in str(e.value)
    assert f.read_bytes() == before and sorted(x.name for x in tmp_path.iterdir()) == ["big.conf", "tiny"]


def test_owner_names_are_looked_up_once_per_probe_and_fresh_outside_one(monkeypatch: pytest.MonkeyPatch) -> None:
    # a probe only reads, so a name found once holds for its whole run; an apply creates users, so
    # outside a probe every lookup reads the account databases again
    import pwd

    from driftctl.agent import _core

    looked: list[int] = []
    names = {0: "root"}

    def getpwuid(uid: int) -> Any:
        looked.append(uid)
        return pwd.struct_passwd((names[uid], "x", uid, 0, "", "/", "/bin/sh"))

    monkeypatch.setattr(_core.pwd, "getpwuid", getpwuid)
    _core.remember_names(True)
    try:
        assert [_core.user_name(0) for _ in range(100)] == ["root"] * 100
        assert _core.user_name(4242) == "4242"  # no such user: its number, remembered too
        assert _core.user_name(4242) == "4242"
    finally:
        _core.remember_names(False)
    assert looked == [0, 4242]
    names[4242] = "bench0"  # useradd in an apply, then the file it owns observed again
    assert _core.user_name(4242) == "bench0" and _core.user_name(4242) == "bench0"
    assert looked == [0, 4242, 4242, 4242]


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_a_probe_walks_each_directory_once_and_refuses_the_same_links(world: dict[str, Path],
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """While a probe runs, a directory walked from / is kept open and lent out (dup): 100 files in one
    directory cost one walk. What is refused stays refused, every time, and nothing stays open after."""
    from driftctl.agent import _core

    app = world["etc"] / "app"
    app.mkdir()
    for i in range(100):
        (app / f"f{i}.conf").write_text(f"{i}\n")
    opened: list[str] = []
    real_open = os.open

    def counting(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        opened.append(str(path))
        return real_open(path, flags, *args, **kwargs)

    before = open_fds()
    monkeypatch.setattr(_core.os, "open", counting)
    depth = len(app.parts)  # "/" and each component below it
    _core.remember_dirs(True)
    try:
        observed = [file_observe({"path": str(app / f"f{i}.conf"), "ensure": "file"}, Ctx())["content_sha256"]
                    for i in range(100)]
        walks = len(opened) - 100  # the files' own opens
        with pytest.raises(UnsafePath, match="could have planted"):
            walk(world["tmp"] / "evil" / "shadow")
        with pytest.raises(UnsafePath, match="could have planted"):
            walk(world["tmp"] / "evil" / "shadow")  # a refusal is not remembered: walked and refused again
    finally:
        _core.remember_dirs(False)
    assert observed == [sha(f"{i}\n") for i in range(100)]
    assert walks == depth, opened[:12]  # was depth * 100
    assert open_fds() == before
    opened.clear()
    walk(app / "f0.conf")
    walk(app / "f1.conf")
    assert len(opened) == 2 * depth  # outside a probe every walk starts from / again


def test_a_probe_keeps_at_most_dirs_kept_directories_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from driftctl.agent import _core

    monkeypatch.setattr(_core, "DIRS_KEPT", 5)
    for i in range(20):
        (tmp_path / f"d{i}").mkdir()
    before = open_fds()
    _core.remember_dirs(True)
    try:
        for i in range(20):
            walk(tmp_path / f"d{i}" / "x")
        during = open_fds()
    finally:
        _core.remember_dirs(False)
    assert len(during - before) == 5 and open_fds() == before
