"""bake's useradd / usermod / userdel on the image's account databases, path by path (bake_user is
split into its parts: these pin what each part writes)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_bake_support import make_tiny_base, res

from driftctl.bake import bake, open_image
from driftctl.bake.fs import ImageFS
from driftctl.errors import BakeError
from driftctl.model import Catalog

EPOCH = 1_700_000_000
DAY = EPOCH // 86400


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return make_tiny_base(tmp_path / "base")


def _tables(base: Path, out: Path, *resources) -> tuple[dict[str, list[str]], ImageFS]:
    bake(Catalog("h", list(resources)), str(base), out, epoch=EPOCH)
    fs = ImageFS.load(open_image(str(out)), lambda p: True)
    return {name: (fs.read_text(f"/etc/{name}") or "").splitlines()
            for name in ("passwd", "group", "shadow", "gshadow")}, fs


def test_usermod_sets_only_what_is_named_and_the_password_day(base: Path, tmp_path: Path) -> None:
    t, _ = _tables(base, tmp_path / "out", res("user", "daemon", uid=2, group="adm", shell="/bin/sh",
                                                password="$6$new$hash"))
    assert "daemon:x:2:4:daemon:/usr/sbin:/bin/sh" in t["passwd"]  # comment and home kept
    assert f"daemon:$6$new$hash:{DAY}:0:99999:7:::" in t["shadow"]


def test_usermod_same_password_keeps_its_day(base: Path, tmp_path: Path) -> None:
    t, _ = _tables(base, tmp_path / "out", res("user", "daemon", password="*"))
    assert "daemon:*:19000:0:99999:7:::" in t["shadow"]


def test_useradd_system_user_with_its_private_group(base: Path, tmp_path: Path) -> None:
    t, fs = _tables(base, tmp_path / "out", res("user", "svc", system=True, manage_home=False))
    assert "svc:x:999:999::/home/svc:/bin/sh" in t["passwd"]  # SYS_UID_MAX down; the gid follows the uid
    assert "svc:x:999:" in t["group"] and "svc:!::" in t["gshadow"]
    assert "svc:!:" + str(DAY) + "::::::" in t["shadow"]  # no aging for a system account
    assert fs.get("/home/svc") is None


def test_useradd_into_a_named_group_makes_no_private_group(base: Path, tmp_path: Path) -> None:
    t, _ = _tables(base, tmp_path / "out", res("user", "amy", uid=1500, group="adm"))
    assert "amy:x:1500:4::/home/amy:/bin/sh" in t["passwd"]
    assert not any(line.startswith("amy:") for line in t["group"])


def test_useradd_refuses_a_uid_in_use(base: Path, tmp_path: Path) -> None:
    with pytest.raises(BakeError, match="uid 1 is already used"):
        _tables(base, tmp_path / "out", res("user", "amy", uid=1))


def test_inclusive_membership_leaves_groups_not_wanted(base: Path, tmp_path: Path) -> None:
    first = tmp_path / "first"
    bake(Catalog("h", [res("user", "daemon", groups=["adm", "crontab"])]), str(base), first, epoch=EPOCH)
    t, _ = _tables(first, tmp_path / "out", res("user", "daemon", groups=["crontab"], membership="inclusive"))
    assert "adm:x:4:" in t["group"] and "crontab:x:101:daemon" in t["group"]


def test_groups_must_exist(base: Path, tmp_path: Path) -> None:
    with pytest.raises(BakeError, match="no group 'ghosts' in the image"):
        _tables(base, tmp_path / "out", res("user", "daemon", groups=["ghosts"]))


def test_userdel_removes_memberships_private_group_and_home(base: Path, tmp_path: Path) -> None:
    first = tmp_path / "first"
    bake(Catalog("h", [res("user", "amy", groups=["adm"])]), str(base), first, epoch=EPOCH)
    t, fs = _tables(first, tmp_path / "out", res("user", "amy", ensure="absent", manage_home=True))
    assert not any(line.startswith("amy:") for table in t.values() for line in table)
    assert "adm:x:4:" in t["group"]
    assert fs.get("/home/amy") is None
    kept, fs2 = _tables(first, tmp_path / "out2", res("user", "amy", ensure="absent", manage_home=False))
    assert fs2.get("/home/amy") is not None and not any(line.startswith("amy:") for line in kept["passwd"])
