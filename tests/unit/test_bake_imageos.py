"""The image view under the agent's descriptor walker: it must answer as Linux does for the same tree.

The agent walks every path from ``/`` by directory descriptor (open with O_NOFOLLOW|O_DIRECTORY
relative to the parent's fd, lstat/readlink with dir_fd, fstat, read, listdir of an fd). The same
tree is written once as a real directory here and once as an image layer, and every call is made on
both: results and errnos must agree, or a host and its image could be judged differently.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from test_bake_support import TINY_TREE, Tree, make_tiny_base, res

from driftctl.bake import image_observe, open_image, verify
from driftctl.bake.fs import ImageFS
from driftctl.bake.imageos import agent_namespace
from driftctl.bake.observe import _observe_one, _point_at_image, agent_item, image_facts
from driftctl.model import Catalog

TREE: Tree = [
    ("d", "dir", 0o755, 0, 0, ""),
    ("d/f", "file", 0o640, 0, 0, "hello\n"),
    ("d/sub", "dir", 0o700, 0, 0, ""),
    ("d/sub/deep", "file", 0o600, 0, 0, "deep\n"),
    ("f", "file", 0o644, 0, 0, "data\n"),
    ("l_dir", "link", 0o777, 0, 0, "d"),
    ("l_file", "link", 0o777, 0, 0, "d/f"),
    ("l_dangling", "link", 0o777, 0, 0, "nowhere"),
    ("l_loop", "link", 0o777, 0, 0, "l_loop"),
    ("l_up", "link", 0o777, 0, 0, "d/../f"),
    ("l_chain", "link", 0o777, 0, 0, "l_dir"),
    ("l_sub", "link", 0o777, 0, 0, "d/sub/../sub"),
]
NAMES = [
    ".", "d", "d/", "f", "f/", "d/f", "d/sub", "d/sub/deep", "l_dir", "l_dir/", "l_file", "l_dangling",
    "l_loop", "l_up", "l_chain", "l_chain/sub", "l_dir/f", "l_dir/../f", "d/../f", "d/sub/../../f",
    "f/x", "missing", "missing/x", "l_dangling/x", "l_loop/x", "l_sub/deep", "l_file/x", "d/./f", "..",
]
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
FOLLOW_FLAGS = os.O_RDONLY | os.O_CLOEXEC
EPOCH = 1_700_000_000


def _real_tree(root: Path, tree: Tree) -> Path:
    root.mkdir()
    for path, kind, mode, _uid, _gid, payload in tree:
        p = root / path
        if kind == "dir":
            p.mkdir()
        elif kind == "link":
            p.symlink_to(payload)
        else:
            p.write_text(payload)
        if kind != "link":
            p.chmod(mode)
    return root


def _image_view(tmp_path: Path, tree: Tree) -> tuple[Any, dict[str, Any]]:
    layout = make_tiny_base(tmp_path / "image", tree=tree)
    with open_image(str(layout)) as image:
        ns = agent_namespace(ImageFS.load(image, lambda p: True))
    return ns["os"], ns


def _try(call: Any) -> Any:
    try:
        return ("ok", call())
    except OSError as e:
        return ("err", errno.errorcode.get(e.errno or 0, e.errno))


def _calls(o: Any, root_fd: int, name: str) -> dict[str, Any]:
    """Every descriptor call of the agent's walker on ``name`` relative to ``root_fd``, as plain data."""

    def opened(flags: int) -> Any:
        fd = o.open(name, flags, dir_fd=root_fd)
        try:
            st = o.fstat(fd)
            out: dict[str, Any] = {"type": stat.S_IFMT(st.st_mode), "mode": stat.S_IMODE(st.st_mode)}
            if stat.S_ISREG(st.st_mode):
                out["size"], out["data"] = st.st_size, o.read(fd, 1 << 20)
                out["eof"] = o.read(fd, 10)
            if stat.S_ISDIR(st.st_mode):
                out["names"] = sorted(o.listdir(fd))
                out["read"] = _try(lambda: o.read(fd, 10))
            return out
        finally:
            o.close(fd)

    def lstat(follow: bool) -> Any:
        st = o.stat(name, dir_fd=root_fd, follow_symlinks=follow)
        out = {"type": stat.S_IFMT(st.st_mode)}
        if not stat.S_ISDIR(st.st_mode):  # a directory's size is the file system's business
            out["size"] = st.st_size
        return out

    return {
        "dir": _try(lambda: opened(DIR_FLAGS)),
        "read": _try(lambda: opened(READ_FLAGS)),
        "follow": _try(lambda: opened(FOLLOW_FLAGS)),
        "lstat": _try(lambda: lstat(False)),
        "stat": _try(lambda: lstat(True)),
        "readlink": _try(lambda: o.readlink(name, dir_fd=root_fd)),
    }


def test_descriptor_calls_answer_as_linux_does_on_the_same_tree(tmp_path: Path) -> None:
    real = _real_tree(tmp_path / "real", TREE)
    view, _ns = _image_view(tmp_path, TREE)
    real_root = os.open(real, DIR_FLAGS)
    image_root = view.open("/", DIR_FLAGS)
    try:
        for name in NAMES:
            if name == "..":  # the real tree's root has a parent; the image's root is its own
                continue
            assert _calls(view, image_root, name) == _calls(os, real_root, name), name
        # the image's root: .. is the root itself, as on a host
        assert view.fstat(view.open("..", DIR_FLAGS, dir_fd=image_root)).st_ino == view.fstat(image_root).st_ino
    finally:
        os.close(real_root)


def test_descriptors_have_the_kernels_bookkeeping(tmp_path: Path) -> None:
    view, _ns = _image_view(tmp_path, TREE)
    root = view.open("/", DIR_FLAGS)
    d = view.open("d", DIR_FLAGS, dir_fd=root)
    # stat by name and fstat of a descriptor on it: the same inode (the walker's swap check)
    assert view.stat("d", dir_fd=root, follow_symlinks=False).st_ino == view.fstat(d).st_ino
    assert view.stat("f", dir_fd=root).st_ino != view.fstat(d).st_ino
    # a dup shares the offset, as dup(2) shares the file description
    f = view.open("f", READ_FLAGS, dir_fd=root)
    g = view.dup(f)
    assert (view.read(f, 2), view.read(g, 10)) == (b"da", b"ta\n")
    for fd in (f, g, d, root):
        view.close(fd)
    with pytest.raises(OSError) as bad:
        view.close(root)
    assert bad.value.errno == errno.EBADF
    with pytest.raises(OSError) as notdir:  # relative to a file descriptor that is no directory
        view.open("x", READ_FLAGS, dir_fd=view.open("/f", READ_FLAGS))
    assert notdir.value.errno == errno.ENOTDIR
    assert [e.name for e in view.scandir(view.open("/d", DIR_FLAGS))] == ["f", "sub"]
    assert view.open_count() == 2  # the two left open just above, nothing else


def test_writes_through_descriptors_are_refused_and_nothing_changes(tmp_path: Path) -> None:
    layout = make_tiny_base(tmp_path / "base")
    with open_image(str(layout)) as image:
        fs = ImageFS.load(image, lambda p: True)
    ns = agent_namespace(fs)
    failure, view = ns["Failure"], ns["os"]
    root = view.open("/", DIR_FLAGS)
    temp = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW
    for flags in (os.O_WRONLY, os.O_RDWR, temp, os.O_RDONLY | os.O_TRUNC):
        with pytest.raises(failure, match="an image is observed read-only"):
            view.open("etc/motd", flags, 0o600, dir_fd=root)
    for name, args in (("mkdir", ("x", 0o700)), ("unlink", ("etc/motd",)), ("symlink", ("a", "b")),
                       ("rename", ("etc/motd", "etc/x"))):
        with pytest.raises(failure, match="not possible when observing an image"):
            getattr(view, name)(*args, dir_fd=root)
    # the agent's own writer: walks by descriptor, then is refused at the temp file, as a
    # read-only host would refuse it (never at an os call the view lacks)
    with pytest.raises(failure, match="an image is observed read-only"):
        ns["atomic_write"]("/etc/motd", b"changed\n")
    handler = ns["TYPES"]["file"]
    ctx = ns["Ctx"](facts=image_facts(fs))
    with pytest.raises(failure):
        handler.apply({"path": "/etc/motd", "content_sha256": "0" * 64}, ["content_sha256"], ctx)
    assert fs.read("/etc/motd") == b"welcome\n" and not list(fs.changes())


def test_observe_leaves_no_descriptor_open(tmp_path: Path) -> None:
    layout = make_tiny_base(tmp_path / "base")
    with open_image(str(layout)) as image:
        fs = ImageFS.load(image, lambda p: True)
    ns = agent_namespace(fs)
    _point_at_image(ns, fs)
    ctx = ns["Ctx"](facts=image_facts(fs))
    catalog = Catalog("h", [
        res("file", "/etc/motd", content="x"), res("file", "/bin/sh", content="x"), res("file", "/bin", content=""),
        res("file", "/nowhere/x", content=""), res("directory", "/etc", purge=True, recurse=True, owner="root"),
        res("symlink", "/lib", target="usr/lib"), res("symlink", "/etc/ssh", target="/x", force=True),
        res("line", "l", path="/etc/ssh/sshd_config", text="Port 22"),
        res("block", "b", path="/bin/sh", content="x"), res("sysctl", "vm.swappiness", value="10"),
        res("cron", "c", file="x", command="true"), res("user", "root"),
    ])
    answers = {r.id: _observe_one(ns, ctx, {"id": r.id, "type": r.type, "params": agent_item(r, catalog)})
               for r in catalog.resources}
    assert not [a["error"] for a in answers.values() if "error" in a]
    assert ns["os"].open_count() == 0


def test_a_link_someone_else_could_plant_is_refused_in_the_image_as_on_a_host(tmp_path: Path) -> None:
    planted: Tree = [
        ("home/amy", "dir", 0o755, 1000, 1000, ""),
        ("home/amy/conf", "link", 0o777, 1000, 1000, "/etc"),
    ]
    layout = make_tiny_base(tmp_path / "base", tree=TINY_TREE + planted)
    probe = image_observe(str(layout), Catalog("h", [
        res("file", "/home/amy/conf/motd", content="x"), res("file", "/bin/sh", content="#!fake shell\n")]))
    # root's /bin -> usr/bin is crossed; amy's link is not, with the agent's own words
    assert probe["file:/bin/sh"]["observed"]["ensure"] == "file"
    refused = probe["file:/home/amy/conf/motd"]
    assert "a user other than root could have planted" in refused["observed"]["_refusal"]
    assert refused["refuse"] == refused["observed"]["_refusal"]
    [result] = verify(str(layout), Catalog("h", [res("file", "/home/amy/conf/motd", content="x")]))
    assert result.status == "failed" and "could have planted" in (result.error or "")


def test_verify_fails_what_apply_would_refuse_as_check_does(tmp_path: Path) -> None:
    layout = make_tiny_base(tmp_path / "base")
    [link, fine] = verify(str(layout), Catalog("h", [res("file", "/bin", content="x"),
                                                     res("file", "/etc/motd", content="welcome\n")]))
    assert (link.status, [c.field for c in link.changes]) == ("failed", ["ensure"])
    assert "never follows or replaces it" in (link.error or "")
    assert fine.status == "ok" and fine.observed is not None
    # the agent's compare-and-swap and refusal keys are apply's business, not a result's
    assert not [k for k in fine.observed if k.startswith("_")]
