"""group: validation, desired/diff (pure), change lines, and the /etc/group parser from captured files."""

from __future__ import annotations

from pathlib import Path

import pytest

from driftctl.errors import Location, ManifestError
from driftctl.model import Change
from driftctl.resources.base import get_type

DATA = Path(__file__).parent / "data" / "group"
CASES = sorted(DATA.glob("*.json"))
LOC = Location("manifests/groups.yaml", 3)
Group = get_type("group")
assert Group is not None


def test_fixtures_exist() -> None:
    assert CASES


def validate(**raw: object) -> dict:
    assert Group is not None
    return Group.validate({"name": "deploy", **raw}, LOC)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"gid": "1500"}, "gid must be int"),
        ({"gid": 2**32}, "gid must be a number from 0"),
        ({"name": "has space"}, "name must be a user or group name"),
        ({"members": ["alice"]}, "unknown parameter 'members'"),
        ({"ensure": "removed"}, "ensure must be one of present, absent"),
    ],
)
def test_validation_errors_carry_location(raw: dict, message: str) -> None:
    with pytest.raises(ManifestError) as e:
        validate(**raw)
    assert message in str(e.value)
    assert e.value.location == LOC


def test_desired_and_diff() -> None:
    assert Group is not None
    desired = Group.desired(validate(gid=1500))
    assert desired == {"ensure": "present", "gid": 1500}
    assert Group.diff(desired, {"ensure": "present", "gid": 1500}) == []
    assert Group.diff(desired, {"ensure": "present", "gid": 1400}) == [Change("gid", 1400, 1500)]
    assert Group.diff(desired, {"ensure": "absent"}) == [Change("ensure", "absent", "present")]
    # without gid only existence is managed
    assert Group.diff(Group.desired(validate()), {"ensure": "present"}) == []
    gone = Group.desired(validate(ensure="absent", gid=1500))
    assert Group.diff(gone, {"ensure": "present"}) == [Change("ensure", "present", "absent")]
    assert Group.diff(gone, {"ensure": "absent"}) == []


@pytest.mark.parametrize(
    ("change", "line"),
    [
        (Change("ensure", "absent", "present"), "created"),
        (Change("ensure", "present", "absent"), "removed"),
        (Change("gid", 1400, 1500), "gid 1400 -> 1500"),
    ],
)
def test_change_lines(change: Change, line: str) -> None:
    assert Group is not None
    assert Group.describe(change) == line
