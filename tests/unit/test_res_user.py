"""user: validation, desired/diff (pure), change lines, the secret password, and the passwd/group/shadow
parsers from captured files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from driftctl.agent import user as agent_user
from driftctl.errors import Location, ManifestError
from driftctl.model import Change
from driftctl.resources.base import get_type
from driftctl.secret import Secret

DATA = Path(__file__).parent / "data" / "user"
CASES = sorted(DATA.glob("*.json"))
LOC = Location("manifests/users.yaml", 12)
User = get_type("user")
assert User is not None
HASH = "$y$j9T$Nq1xV0Qz6dM2W8Z5$2Qm7kq0X4cV1pW6ZxJb9r3yT8uE5sA2dF7gH1jK0lM4"


def test_every_parser_has_fixtures() -> None:
    assert {json.loads(c.read_text())["parser"] for c in CASES} == {"parse_passwd", "parse_group", "parse_shadow"}


def validate(**raw: object) -> dict:
    assert User is not None
    return User.validate({"name": "deploy", **raw}, LOC)


def test_defaults() -> None:
    p = validate()
    assert p["ensure"] == "present"
    assert p["membership"] == "minimum"
    assert p["manage_home"] is True
    assert p["system"] is False


def test_groups_sorted_and_deduplicated_gid_as_quoted_number() -> None:
    p = validate(groups=["sudo", "adm", "sudo"], group="1500")
    assert p["groups"] == ["adm", "sudo"]
    assert p["group"] == 1500


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"name": "Deploy"}, "name must be a user or group name"),
        ({"name": "a" * 33}, "name must be a user or group name"),
        ({"uid": -1}, "uid must be a number from 0"),
        ({"uid": True}, "uid must be int"),
        ({"shell": "bash"}, "shell must be an absolute path"),
        ({"home": "/home/../etc"}, "home must be a plain absolute path"),
        ({"comment": "a:b"}, "cannot contain ':'"),
        ({"groups": "adm"}, "groups must be list"),
        ({"groups": ["adm", "Bad Group"]}, "groups must be a user or group name"),
        ({"membership": "exact"}, "membership must be one of minimum, inclusive"),
        ({"membership": "inclusive"}, "membership: inclusive needs groups"),
        ({"ensure": "gone"}, "ensure must be one of present, absent"),
        ({"shel": "/bin/sh"}, "did you mean 'shell'?"),
    ],
)
def test_validation_errors_carry_location(raw: dict, message: str) -> None:
    with pytest.raises(ManifestError) as e:
        validate(**raw)
    assert message in str(e.value)
    assert e.value.location == LOC


@pytest.mark.parametrize("plain", ["hunter2", "correct horse battery staple", "$1x"])
def test_plain_password_refused_without_echoing_it(plain: str) -> None:
    with pytest.raises(ManifestError) as e:
        validate(password=Secret(plain))
    assert "crypt hash" in str(e.value)
    assert plain not in str(e.value)


def test_password_is_desired_as_a_digest_only() -> None:
    assert User is not None
    desired = User.desired(validate(password=Secret(HASH)))
    assert desired["password"] == "sha256:" + hashlib.sha256(HASH.encode()).hexdigest()
    assert HASH not in json.dumps(desired)
    # the agent digests the shadow field the same way, so in sync means equal
    assert agent_user.secret_digest(HASH) == desired["password"]
    assert User.secret_fields == ("password",)


def test_locked_password_accepted() -> None:
    assert validate(password="!")["password"] == "!"


def full_observed(**over: object) -> dict:
    base = {"ensure": "present", "uid": 1500, "group": "deploy", "groups": ["adm"], "shell": "/bin/sh",
            "home": "/home/deploy", "comment": "", "password": agent_user.secret_digest("!")}
    base.update(over)
    return base


def test_diff_only_managed_fields() -> None:
    assert User is not None
    desired = User.desired(validate(shell="/bin/bash"))
    assert User.diff(desired, full_observed()) == [Change("shell", "/bin/sh", "/bin/bash")]
    assert User.diff(desired, full_observed(shell="/bin/bash", uid=4242, comment="x")) == []


def test_diff_creation_and_removal_are_one_change() -> None:
    assert User is not None
    desired = User.desired(validate(shell="/bin/bash", uid=1500))
    assert User.diff(desired, {"ensure": "absent"}) == [Change("ensure", "absent", "present")]
    gone = User.desired(validate(ensure="absent", shell="/bin/bash"))
    assert gone == {"ensure": "absent"}
    assert User.diff(gone, full_observed()) == [Change("ensure", "present", "absent")]
    assert User.diff(gone, {"ensure": "absent"}) == []


def test_groups_diff_against_what_the_agent_reports() -> None:
    assert User is not None
    desired = User.desired(validate(groups=["adm", "sudo"]))
    # the agent reports, for minimum, only the wanted groups the user is in
    assert User.diff(desired, full_observed(groups=["adm"])) == [Change("groups", ["adm"], ["adm", "sudo"])]
    assert User.diff(desired, full_observed(groups=["adm", "sudo"])) == []


@pytest.mark.parametrize(
    ("change", "line"),
    [
        (Change("shell", "/bin/sh", "/bin/bash"), "shell /bin/sh -> /bin/bash"),
        (Change("uid", 1500, 1600), "uid 1500 -> 1600"),
        (Change("ensure", "absent", "present"), "created"),
        (Change("ensure", "present", "absent"), "removed"),
        (Change("groups", ["adm"], ["adm", "sudo"]), "groups adm -> adm,sudo"),
        (Change("groups", [], ["adm"]), "groups (none) -> adm"),
        (Change("password", "sha256:aaaa", "sha256:bbbb"), "password changed"),
    ],
)
def test_change_lines(change: Change, line: str) -> None:
    assert User is not None
    assert User.describe(change) == line


def test_autorequire_groups_by_name_only() -> None:
    assert User is not None
    assert User.autorequire(validate(group="deploy", groups=["adm"])) == ["group:deploy", "group:adm"]
    assert User.autorequire(validate(group=1500)) == []


def test_supplementary_groups_from_group_file() -> None:
    groups = agent_user.parse_group("adm:x:4:deploy\nsudo:x:27:alice,deploy\nstaff:x:50:alice\n")
    assert agent_user.supplementary_groups(groups, "deploy") == ["adm", "sudo"]
    assert agent_user.supplementary_groups(groups, "nobody") == []
