"""symlink: validation, desired/diff (pure), and the agent against temporary directories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from driftctl.agent._core import Ctx, Failure
from driftctl.agent.symlink import symlink_apply, symlink_observe
from driftctl.errors import Location, ManifestError
from driftctl.resources import get_type

LOC = Location("manifests/web.yaml", 30)
Symlink = get_type("symlink")
assert Symlink is not None


def validate(path: str = "/etc/nginx/sites-enabled/app", **raw):
    locs = {k: Location("manifests/web.yaml", 31 + i) for i, k in enumerate(raw)}
    return Symlink.validate({"path": path, **raw}, LOC, locs)


@pytest.mark.parametrize(
    ("raw", "message", "line"),
    [
        ({}, "parameter 'target' is required", 30),
        ({"target": ""}, "target must be a path", 31),
        ({"ensure": "absent", "target": "/x"}, "ensure: absent takes no target", 30),
        ({"target": "/x", "force": 1}, "force must be bool", 32),
    ],
)
def test_validation_errors(raw: dict, message: str, line: int) -> None:
    with pytest.raises(ManifestError, match=message) as info:
        validate(**raw)
    assert info.value.location == Location("manifests/web.yaml", line)


def test_desired_diff_autorequire() -> None:
    p = validate(target="/etc/nginx/sites-available/app")
    want = Symlink.desired(p)
    assert want == {"ensure": "link", "target": "/etc/nginx/sites-available/app"}
    assert Symlink.autorequire(p) == [
        "directory:/etc/nginx/sites-enabled", "file:/etc/nginx/sites-available/app",
        "directory:/etc/nginx/sites-available/app",
    ]
    assert Symlink.autorequire(validate(target="../x")) == ["directory:/etc/nginx/sites-enabled"]
    assert Symlink.diff(want, {"ensure": "link", "target": "/etc/nginx/sites-available/app"}) == []
    [created] = Symlink.diff(want, {"ensure": "absent", "target": None})
    assert Symlink.describe(created) == "created -> /etc/nginx/sites-available/app"
    [moved] = Symlink.diff(want, {"ensure": "link", "target": "/old"})
    assert Symlink.describe(moved) == "target /old -> /etc/nginx/sites-available/app"
    [blocked] = Symlink.diff(want, {"ensure": "file", "target": None})
    assert Symlink.describe(blocked) == "replace file with a symlink"
    gone = Symlink.desired(validate(ensure="absent"))
    [rm] = Symlink.diff(gone, {"ensure": "link", "target": "/x"})
    assert Symlink.describe(rm) == "removed (was link)"


def params_for(path: Path, **raw) -> dict:
    return Symlink.agent_params(Symlink.validate({"path": str(path), **raw}, LOC))


def test_agent_creates_retargets_and_removes(tmp_path: Path) -> None:
    link = tmp_path / "current"
    p = params_for(link, target="releases/1")
    assert symlink_observe(p, Ctx()) == {"ensure": "absent", "target": None}
    symlink_apply(p, ["target"], Ctx())
    assert os.readlink(link) == "releases/1"  # relative targets stay relative; dangling is fine
    assert symlink_observe(p, Ctx()) == {"ensure": "link", "target": "releases/1"}
    symlink_apply(params_for(link, target="releases/2"), ["target"], Ctx())
    assert os.readlink(link) == "releases/2"
    assert [x.name for x in tmp_path.iterdir()] == ["current"]  # no temporary directory left
    symlink_apply(params_for(link, ensure="absent"), ["ensure"], Ctx())
    assert not link.is_symlink()


def test_agent_force_rules(tmp_path: Path) -> None:
    bk = str(tmp_path / "bk")
    f = tmp_path / "python"
    f.write_text("#!/bin/sh\n")
    with pytest.raises(Failure, match="is a file: set force: true"):
        symlink_apply(params_for(f, target="python3"), ["ensure"], Ctx(backup_dir=bk))
    assert f.read_text() == "#!/bin/sh\n"
    symlink_apply(params_for(f, target="python3", force=True), ["ensure"], Ctx(backup_dir=bk))
    assert os.readlink(f) == "python3" and len(os.listdir(bk)) == 1  # the file was backed up first
    empty, full = tmp_path / "empty", tmp_path / "full"
    empty.mkdir()
    full.mkdir()
    (full / "data").write_text("d")
    with pytest.raises(Failure, match="is a directory: set force: true"):
        symlink_apply(params_for(empty, target="/x"), ["ensure"], Ctx())
    symlink_apply(params_for(empty, target="/x", force=True), ["ensure"], Ctx())
    assert os.readlink(empty) == "/x"
    with pytest.raises(Failure, match="non-empty directory: driftctl never replaces it"):
        symlink_apply(params_for(full, target="/x", force=True), ["ensure"], Ctx())
    assert (full / "data").read_text() == "d"


def test_agent_absent_never_removes_a_file_and_parent_must_exist(tmp_path: Path) -> None:
    f = tmp_path / "real"
    f.write_text("r")
    with pytest.raises(Failure, match="is a file, not a symlink: not removing it"):
        symlink_apply(params_for(f, ensure="absent"), ["ensure"], Ctx())
    assert f.exists()
    with pytest.raises(Failure, match=r"parent directory .* does not exist"):
        symlink_apply(params_for(tmp_path / "no" / "link", target="/x"), ["ensure"], Ctx())
