"""authorized_key: key validation, identity, desired/diff (pure), the authorized_keys parser from
captured files, and the agent's file edits on a real file (a path outside any home)."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from driftctl.agent import authorized_key as agent_ak
from driftctl.agent._core import Ctx, Failure
from driftctl.errors import Location, ManifestError
from driftctl.model import Change
from driftctl.resources import authorized_key as res_ak
from driftctl.resources.base import get_type

DATA = Path(__file__).parent / "data" / "authorized_key"
CASES = sorted(DATA.glob("*.json"))
LOC = Location("manifests/keys.yaml", 20)
AK = get_type("authorized_key")
assert AK is not None
ED = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICVgRxbNRnNo2/nYdOjVydzln386MUOB/zk4M5YixFWV"
# `ssh-keygen -l -f` of that key (made with ssh-keygen for these tests)
ED_FINGERPRINT = "SHA256:UulxsaKIh1xesPJtUU4vs6nGHeFxRn3uraKeFygTAEc"
EC = ("ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBHn5MA4zU5W6N1ekvfkeYnxopOW84f"
      "+BbwA4MxnIibZvkwsG8edkxaySTwbGjMAEz1WmlEJVxQJMV4cYXWdI0u8=")


def public(observed: dict) -> dict:
    """The observed attributes without the agent's private keys (``_cas``, ``_refusal``)."""
    return {k: v for k, v in observed.items() if not k.startswith("_")}


def test_fixtures_exist() -> None:
    assert len(CASES) >= 3


@pytest.mark.parametrize(
    "options",
    ['from="10.0.0.0/8"', 'command="echo \\"a b\\"",no-pty', "no-pty", 'x="a b c"'],
)
def test_controller_and_agent_agree_on_where_options_end(options: str) -> None:
    assert res_ak.options_whole(options)
    assert agent_ak.split_options(options + " " + ED) == (options, ED)


def test_options_quoting_is_written_once() -> None:
    # the controller's check is the agent's split, asked a question: no second quoting loop
    assert not hasattr(res_ak, "options_end")
    # a trailing backslash escapes the space after it: the agent would read the key as options
    assert agent_ak.split_options("no-pty\\ " + ED)[0] != "no-pty\\"
    with pytest.raises(ManifestError, match="no space outside quotes"):
        validate(options="no-pty\\")


def validate(**raw: object) -> dict:
    assert AK is not None
    return AK.validate({"name": "alice-laptop", "user": "alice", "key": ED + " alice@laptop", **raw}, LOC)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("AAAAC3NzaC1lZDI1NTE5AAAAICVgRxbNRnNo2", "must be a public key line"),
        ("ssh-foo AAAAC3NzaC1lZDI1NTE5AAAAICVgRxbNRnNo2/nYdOjVydzln386MUOB/zk4M5YixFWV", "unknown key type"),
        ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICVgRxbNRnNo2/nYdOjVydzln386MUOB/zk4M5YixFW", "not valid base64"),
        ("ssh-ed25519 " + EC.split()[1], "the key inside is 'ecdsa-sha2-nistp256'"),
        ("ssh-rsa " + ED.split()[1], "the key inside is 'ssh-ed25519'"),
    ],
)
def test_key_shape_is_validated(key: str, message: str) -> None:
    with pytest.raises(ManifestError) as e:
        validate(key=key)
    assert message in str(e.value)
    assert e.value.location == LOC


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"options": 'from="10.0.0.0/8'}, "balanced quotes"),
        ({"options": "no-pty, no-x11-forwarding"}, "no space outside quotes"),
        ({"path": "relative/keys"}, "path must be an absolute path"),
        ({"user": "Alice"}, "user must be a user or group name"),
        ({"ensure": "absent", "options": "no-pty"}, "options make no sense with ensure: absent"),
    ],
)
def test_validation_errors_carry_location(raw: dict, message: str) -> None:
    with pytest.raises(ManifestError) as e:
        validate(**raw)
    assert message in str(e.value)
    assert e.value.location == LOC


def test_options_list_joined() -> None:
    assert validate(options=["no-pty", 'from="10.0.0.0/8"'])["options"] == 'no-pty,from="10.0.0.0/8"'


def test_identity_is_the_key_material_not_the_comment() -> None:
    assert AK is not None
    a = AK.claims(validate(key=ED + " alice@laptop"))
    b = AK.claims(validate(key=ED + " alice@desktop", name="other-title"))
    assert a == b == [f"authorized_key:~alice/.ssh/authorized_keys:{ED_FINGERPRINT}"]
    assert AK.claims(validate(path="/etc/ssh/keys/alice")) == [f"authorized_key:/etc/ssh/keys/alice:{ED_FINGERPRINT}"]
    assert AK.claims(validate(key=EC)) != a


def test_fingerprint_matches_ssh_keygen() -> None:
    assert res_ak.parse_public_key(ED).fingerprint == ED_FINGERPRINT


def test_agent_params_split_comment_from_key() -> None:
    assert AK is not None
    params = AK.agent_params(validate(options="no-pty"))
    assert params == {"user": "alice", "key": ED, "comment": "alice@laptop", "options": "no-pty",
                      "ensure": "present", "path": None}
    assert AK.agent_params(validate(key=ED))["comment"] is None


def test_desired_and_diff() -> None:
    assert AK is not None
    desired = AK.desired(validate(options="no-pty"))
    assert desired == {"ensure": "present", "options": "no-pty", "comment": "alice@laptop"}
    assert AK.diff(desired, {"ensure": "absent"}) == [Change("ensure", "absent", "present")]
    assert AK.diff(desired, {"ensure": "present", "options": "no-pty", "comment": "alice@laptop"}) == []
    assert AK.diff(desired, {"ensure": "present", "options": "", "comment": "old"}) == [
        Change("options", "", "no-pty"), Change("comment", "old", "alice@laptop")]
    # no comment in the manifest: the host's comment is not managed
    bare = AK.desired(validate(key=ED))
    assert AK.diff(bare, {"ensure": "present", "options": "", "comment": "whatever"}) == []
    gone = AK.desired(validate(ensure="absent"))
    assert AK.diff(gone, {"ensure": "present"}) == [Change("ensure", "present", "absent")]
    assert AK.diff(gone, {"ensure": "absent"}) == []


@pytest.mark.parametrize(
    ("change", "line"),
    [
        (Change("ensure", "absent", "present"), "added"),
        (Change("ensure", "present", "absent"), "removed"),
        (Change("options", "", "no-pty"), "options (none) -> no-pty"),
        (Change("comment", "old", "alice@laptop"), "comment old -> alice@laptop"),
    ],
)
def test_change_lines(change: Change, line: str) -> None:
    assert AK is not None
    assert AK.describe(change) == line


# ---- the agent's edits, on a real file (an explicit path outside every home: no privilege drop)

ME = pwd.getpwuid(os.getuid()).pw_name


def agent_params(path: Path, **over: object) -> dict:
    params: dict[str, object] = {"user": ME, "key": ED, "comment": "alice@laptop", "options": "", "ensure": "present",
              "path": str(path)}
    params.update(over)
    return params


def converge(params: dict) -> dict:
    observed = agent_ak.authorized_key_observe(params, Ctx())
    agent_ak.authorized_key_apply(params, ["ensure"], Ctx())
    return public(observed)


def test_agent_adds_updates_in_place_and_removes(tmp_path: Path) -> None:
    path = tmp_path / "authorized_keys"
    path.write_text("# managed elsewhere\n" + EC + " ci\n" + ED + " old-comment\n" + "no-pty " + ED + " dup\n")
    params = agent_params(path, options="no-agent-forwarding")
    assert converge(params) == {"ensure": "present", "options": "", "comment": "old-comment"}
    assert path.read_text() == "# managed elsewhere\n" + EC + " ci\n" + "no-agent-forwarding " + ED + " alice@laptop\n"
    assert public(agent_ak.authorized_key_observe(params, Ctx())) == {
        "ensure": "present", "options": "no-agent-forwarding", "comment": "alice@laptop"}
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    converge(agent_params(path, ensure="absent", options=""))
    assert path.read_text() == "# managed elsewhere\n" + EC + " ci\n"
    assert public(agent_ak.authorized_key_observe(params, Ctx())) == {"ensure": "absent"}


def test_agent_creates_missing_file_and_keeps_host_comment(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    converge(agent_params(path, comment=None))
    assert path.read_text() == ED + "\n"
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_agent_refuses_a_symlinked_file(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("")
    (tmp_path / "keys").symlink_to(target)
    with pytest.raises(Failure):
        converge(agent_params(tmp_path / "keys"))
    assert target.read_text() == ""


def test_no_symlink_below_home_is_followed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "real").mkdir(parents=True)
    (home / ".ssh").symlink_to(home / "real")
    with pytest.raises(Failure, match=r"\.ssh is a symlink: driftctl follows no symlink below"):
        agent_ak._AkPlace(str(home), str(home / ".ssh" / "authorized_keys"), True)
    (home / "file").write_text("")
    with pytest.raises(Failure, match="is a file, not a directory"):
        agent_ak._AkPlace(str(home), str(home / "file" / "authorized_keys"), True)
    # a missing .ssh is fine: it will be created
    assert agent_ak._AkPlace(str(home), str(home / "nothing" / "authorized_keys"), True).target is None
