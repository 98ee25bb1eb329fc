"""directory: validation, desired/diff (pure), and the agent's recurse/purge against temporary trees."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from driftctl.agent._core import Ctx, Failure
from driftctl.agent.directory import directory_apply, directory_child_mode, directory_observe
from driftctl.errors import Location, ManifestError
from driftctl.model import Change
from driftctl.resources import get_type

LOC = Location("manifests/base.yaml", 5)
Directory = get_type("directory")
assert Directory is not None
NOBODY = pwd.getpwnam("nobody")


def validate(path: str = "/srv/app", **raw):
    locs = {k: Location("manifests/base.yaml", 6 + i) for i, k in enumerate(raw)}
    return Directory.validate({"path": path, **raw}, LOC, locs)


@pytest.mark.parametrize(
    ("raw", "message", "line"),
    [
        ({"mode": 755}, "mode must be a quoted octal string", 6),
        ({"ensure": "absent", "purge": True}, "ensure: absent takes no purge", 5),
        ({"ensure": "absent", "owner": "root", "recurse": True}, "ensure: absent takes no owner, recurse", 5),
        ({"recurse": "yes"}, "recurse must be bool", 6),
        ({"purg": True}, "unknown parameter 'purg'", 6),
    ],
)
def test_validation_errors(raw: dict, message: str, line: int) -> None:
    with pytest.raises(ManifestError, match=message) as info:
        validate(**raw)
    assert info.value.location == Location("manifests/base.yaml", line)


def test_desired_and_autorequire() -> None:
    assert Directory.desired(validate(mode="0750", purge=True)) == {
        "ensure": "directory", "owner": None, "group": None, "mode": "0750", "unmanaged": [], "recurse_mismatch": None,
    }
    # recurse without owner/group/mode has nothing to apply below
    assert Directory.desired(validate(recurse=True))["recurse_mismatch"] is None
    assert Directory.desired(validate(recurse=True, owner="app"))["recurse_mismatch"] == []
    assert Directory.autorequire(validate(path="/srv/app/data", group="app")) == ["directory:/srv/app", "group:app"]


def test_diff_and_describe() -> None:
    want = Directory.desired(validate(mode="0750", purge=True, recurse=True, owner="app"))
    in_sync = {"ensure": "directory", "owner": "app", "group": "root", "mode": "0750", "unmanaged": [],
               "recurse_mismatch": []}
    assert Directory.diff(want, in_sync) == []
    many = [f"/srv/app/f{i}" for i in range(200)] + ["... and 3 more"]
    changes = Directory.diff(want, {**in_sync, "mode": "0755", "unmanaged": ["/srv/app/a", "/srv/app/b"],
                                    "recurse_mismatch": many})
    assert [Directory.describe(c) for c in changes] == [
        "mode 0755 -> 0750",
        "purge 2 unmanaged: /srv/app/a, /srv/app/b",
        "recurse: fix owner/group/mode of 203: /srv/app/f0, /srv/app/f1, /srv/app/f2, /srv/app/f3, /srv/app/f4"
        " (+198 more)",
    ]
    created = Directory.diff(want, {"ensure": "absent"})
    assert [Directory.describe(c) for c in created] == ["created", "owner -> app", "mode -> 0750"]
    [blocked] = Directory.diff(want, {"ensure": "file"})
    assert Directory.describe(blocked) == "ensure file -> directory"
    assert Directory.describe(Change("ensure", "directory", "absent")) == "removed (was directory)"


def test_child_mode_gives_directories_the_search_bit() -> None:
    assert directory_child_mode(0o644, is_dir=False) == 0o644
    assert directory_child_mode(0o644, is_dir=True) == 0o755
    assert directory_child_mode(0o640, is_dir=True) == 0o750
    assert directory_child_mode(0o600, is_dir=True) == 0o700


def agent_params(path: Path, managed: list[Path] | None = None, **raw) -> dict:
    p = Directory.agent_params(Directory.validate({"path": str(path), **raw}, LOC))
    p["_managed"] = [str(m) for m in managed or []]
    return p


def converge(params: dict) -> dict:
    rtype_params = {k: v for k, v in params.items() if not k.startswith("_")}
    want = Directory.desired(rtype_params)
    changes = Directory.diff(want, directory_observe(params, Ctx()))
    if changes:
        directory_apply(params, [c.field for c in changes], Ctx())
    after = directory_observe(params, Ctx())
    assert Directory.diff(want, after) == [], after
    return after


def test_agent_creates_with_owner_and_mode(tmp_path: Path) -> None:
    d = tmp_path / "app"
    converge(agent_params(d, mode="0750", owner="nobody"))
    assert oct(d.stat().st_mode & 0o7777) == "0o750" and d.stat().st_uid == NOBODY.pw_uid
    with pytest.raises(Failure, match=r"parent directory .* does not exist"):
        directory_apply(agent_params(tmp_path / "x" / "y"), ["ensure"], Ctx())


def make_tree(root: Path, outside: Path) -> None:
    root.mkdir()
    (root / "keep.conf").write_text("k")
    (root / "junk.conf").write_text("j")
    (root / "sub").mkdir()
    (root / "sub" / "a.conf").write_text("a")
    (root / "sub" / "b.conf").write_text("b")
    (root / "junkdir" / "deep").mkdir(parents=True)
    (root / "junkdir" / "deep" / "x").write_text("x")
    outside.mkdir()
    (outside / "precious").write_text("p")
    (root / "link").symlink_to(outside)


def test_agent_purge_top_level(tmp_path: Path) -> None:
    root, outside = tmp_path / "conf.d", tmp_path / "outside"
    make_tree(root, outside)
    p = agent_params(root, [root / "keep.conf", root / "sub" / "a.conf"], purge=True)
    assert directory_observe(p, Ctx())["unmanaged"] == [str(root / n) for n in ("junk.conf", "junkdir", "link")]
    converge(p)
    assert sorted(x.name for x in root.iterdir()) == ["keep.conf", "sub"]
    assert sorted(x.name for x in (root / "sub").iterdir()) == ["a.conf", "b.conf"]  # not entered without recurse
    assert (outside / "precious").read_text() == "p"  # the link was removed, not followed


def test_agent_purge_recursive(tmp_path: Path) -> None:
    root, outside = tmp_path / "conf.d", tmp_path / "outside"
    make_tree(root, outside)
    p = agent_params(root, [root / "keep.conf", root / "sub" / "a.conf"], purge=True, recurse=True)
    assert str(root / "sub" / "b.conf") in directory_observe(p, Ctx())["unmanaged"]
    converge(p)
    assert sorted(str(x.relative_to(root)) for x in root.rglob("*")) == ["keep.conf", "sub", "sub/a.conf"]


def test_agent_recurse_owner_and_mode(tmp_path: Path) -> None:
    root, outside = tmp_path / "data", tmp_path / "outside"
    make_tree(root, outside)
    (root / "keep.conf").chmod(0o600)
    p = agent_params(root, [root / "keep.conf"], owner="nobody", mode="0640", recurse=True)
    mismatch = directory_observe(p, Ctx())["recurse_mismatch"]
    assert str(root / "junk.conf") in mismatch and str(root / "keep.conf") not in mismatch
    converge(p)
    assert oct(root.stat().st_mode & 0o777) == "0o640"  # the directory itself: the mode as written
    assert oct((root / "junk.conf").stat().st_mode & 0o777) == "0o640"
    assert oct((root / "junkdir" / "deep").stat().st_mode & 0o777) == "0o750"
    assert (root / "junkdir" / "deep" / "x").stat().st_uid == NOBODY.pw_uid
    assert os.lstat(root / "link").st_uid == NOBODY.pw_uid  # the link itself
    assert (outside / "precious").stat().st_uid == 0  # never what it points at
    assert (root / "keep.conf").stat().st_uid == 0 and oct((root / "keep.conf").stat().st_mode & 0o777) == "0o600"


def test_agent_observe_limits_long_lists(tmp_path: Path) -> None:
    root = tmp_path / "many"
    root.mkdir()
    for i in range(230):
        (root / f"f{i:03d}").write_text("")
    unmanaged = directory_observe(agent_params(root, purge=True), Ctx())["unmanaged"]
    assert len(unmanaged) == 201 and unmanaged[-1] == "... and 30 more"
    [change] = Directory.diff(Directory.desired(validate(purge=True)), {"ensure": "directory",
                                                                         "unmanaged": unmanaged})
    assert Directory.describe(change).startswith("purge 230 unmanaged: ")


def test_agent_absent_only_when_empty_and_never_through_a_link(tmp_path: Path) -> None:
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("")
    with pytest.raises(Failure, match="driftctl removes empty directories only"):
        directory_apply(agent_params(full, ensure="absent"), ["ensure"], Ctx())
    empty = tmp_path / "empty"
    empty.mkdir()
    converge(agent_params(empty, ensure="absent"))
    assert not empty.exists()
    link = tmp_path / "link"
    link.symlink_to(full)
    assert directory_observe(agent_params(link), Ctx())["ensure"] == "link"
    for params in (agent_params(link, mode="0700"), agent_params(link, ensure="absent")):
        with pytest.raises(Failure, match=r"is a symlink \(to .*full\): driftctl never follows"):
            directory_apply(params, ["ensure"], Ctx())
    assert oct(full.stat().st_mode & 0o777) != "0o700" and full.exists()


def test_purge_and_recurse_never_act_through_links_or_swapped_directories(tmp_path) -> None:
    """The walk works relative to directory descriptors: a link inside the tree is removed or
    lchowned itself, and a directory swapped after it was seen is refused, never followed."""
    import os

    import pytest

    from driftctl.agent import directory as agent_dir
    from driftctl.agent._core import Failure

    outside = tmp_path / "outside"
    (outside / "keep").mkdir(parents=True)
    (outside / "keep" / "precious").write_text("x")
    os.chmod(outside / "keep" / "precious", 0o600)
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "f").write_text("y")
    os.symlink(outside / "keep", root / "sub" / "link")
    os.symlink(outside, root / "gone")

    params = {"path": str(root), "recurse": True, "purge": False, "mode": "0644", "owner": None, "group": None,
              "_managed": []}
    agent_dir._DirectoryWalk(params, fix=True).run()
    assert os.stat(root / "sub" / "f").st_mode & 0o777 == 0o644
    assert os.stat(outside / "keep" / "precious").st_mode & 0o777 == 0o600  # not reached through the link

    purge = dict(params, recurse=False, purge=True, _managed=[str(root / "sub")])
    agent_dir._DirectoryWalk(purge, fix=True).run()
    assert not os.path.lexists(root / "gone")  # the link itself went
    assert (outside / "keep" / "precious").read_text() == "x"  # not what it pointed to

    seen = os.stat(root / "sub", follow_symlinks=False)
    os.rename(root / "sub", root / "old")
    os.symlink(outside, root / "sub")  # swapped for a link after the walk saw it
    dfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises((Failure, OSError)):
            agent_dir._directory_open_at(dfd, "sub", seen)
    finally:
        os.close(dfd)
