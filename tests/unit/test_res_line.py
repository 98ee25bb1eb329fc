"""line: validation, pure diff, agent against tmp files (edit_line cases: test_write_fixtures.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from driftctl.agent._core import TYPES, Ctx, Failure
from driftctl.agent.line import edit_line, line_apply, line_observe
from driftctl.errors import Location, ManifestError
from driftctl.resources import get_type

DATA = Path(__file__).parent / "data" / "line"
CASES = sorted(DATA.glob("*.json"))
LOC = Location("manifests/site.yaml", 7)
Line = get_type("line")
assert Line is not None


def public(observed: dict) -> dict:
    """The observed attributes without the agent's private keys (``_cas``, ``_refusal``)."""
    return {k: v for k, v in observed.items() if not k.startswith("_")}


def validate(**raw):
    return Line.validate({"name": "t", "path": "/etc/x", **raw}, LOC, {k: Location("m.yaml", 20 + i)
                                                                    for i, k in enumerate(raw)})


# ---- pure edits from captured cases


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 20


def test_edit_line_bad_regex_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="match is not a valid regular expression"):
        edit_line("a\n", "b", match="(")


# ---- validation


def test_valid_params_get_defaults() -> None:
    params = validate(text="PermitRootLogin no", match="^#?PermitRootLogin ")
    assert params["ensure"] == "present" and params["after"] is None


@pytest.mark.parametrize(
    ("raw", "message", "line"),
    [
        ({"text": "a\nb"}, "text must be one line", 20),
        ({"text": "x", "match": "("}, "match is not a valid regular expression", 21),
        ({"text": "x", "after": "[a"}, "after is not a valid regular expression", 21),
        ({"text": "Port 22", "match": "^PermitRootLogin"}, "does not match", 7),
        ({}, "parameter 'text' is required", 7),
        ({"ensure": "absent"}, "needs text or match", 7),
        ({"ensure": "absent", "text": "x", "after": "^a"}, "takes no after", 7),
        ({"text": "x", "ensure": "gone"}, "ensure must be one of present, absent", 21),
        ({"text": "x", "mach": "^x"}, "unknown parameter 'mach'", 21),
        ({"text": "x", "path": "etc/x"}, "must be an absolute path", 21),
    ],
)
def test_validation_errors_point_at_the_line(raw: dict, message: str, line: int) -> None:
    with pytest.raises(ManifestError, match=message) as info:
        validate(**raw)
    assert info.value.location is not None and info.value.location.line == line


def test_unknown_parameter_suggests_the_right_one() -> None:
    with pytest.raises(ManifestError) as info:
        validate(text="x", mach="^x")
    assert info.value.hint == "did you mean 'match'?"


def test_claims_and_autorequire() -> None:
    p = validate(text="PermitRootLogin no", match="^#?PermitRootLogin ")
    assert Line.claims(p) == ["line:/etc/x:^#?PermitRootLogin "]
    assert Line.claims(validate(text="a b")) == ["line:/etc/x:a b"]
    assert Line.autorequire(p) == ["file:/etc/x"]


# ---- desired and diff (pure)


def test_diff_added_replaced_removed_and_in_sync() -> None:
    p = validate(text="PermitRootLogin no", match="^#?PermitRootLogin ")
    want = Line.desired(p)
    assert Line.diff(want, {"ensure": "present", "line": "PermitRootLogin no"}) == []
    [added] = Line.diff(want, {"ensure": "absent", "line": None})
    assert Line.describe(added) == "line added: PermitRootLogin no"
    [replaced] = Line.diff(want, {"ensure": "absent", "line": "#PermitRootLogin yes"})
    assert Line.describe(replaced) == "line replaced: #PermitRootLogin yes -> PermitRootLogin no"
    gone = Line.desired(validate(match="^telnet", ensure="absent"))
    assert Line.diff(gone, {"ensure": "absent", "line": None}) == []
    [removed] = Line.diff(gone, {"ensure": "present", "line": "telnet a\ntelnet b"})
    assert Line.describe(removed) == "line removed: telnet a\ntelnet b"


# ---- the agent against real files


def params_for(path: Path, **kw) -> dict:
    return {"name": "t", "path": str(path), "text": None, "match": None, "after": None, "ensure": "present", **kw}


def test_agent_replaces_then_is_in_sync(tmp_path: Path) -> None:
    f = tmp_path / "sshd_config"
    f.write_text("Port 22\n#PermitRootLogin yes\nX11Forwarding no\n")
    os.chmod(f, 0o600)
    ctx = Ctx(backup_dir=str(tmp_path / "backup"))
    p = params_for(f, text="PermitRootLogin no", match="^#?PermitRootLogin ")
    assert public(line_observe(p, ctx)) == {"ensure": "absent", "line": "#PermitRootLogin yes"}
    line_apply(p, ["line"], ctx)
    assert f.read_text() == "Port 22\nPermitRootLogin no\nX11Forwarding no\n"
    assert oct(f.stat().st_mode & 0o777) == "0o600"  # the file keeps its mode
    assert public(line_observe(p, ctx)) == {"ensure": "present", "line": "PermitRootLogin no"}
    assert len(list((tmp_path / "backup").iterdir())) == 1
    assert [x.name for x in tmp_path.iterdir() if x.name.startswith(".driftctl")] == []


def test_agent_absent_and_missing_file(tmp_path: Path) -> None:
    ctx = Ctx(backup_dir=str(tmp_path / "backup"))
    missing = params_for(tmp_path / "nope", text="x")
    assert line_observe(missing, ctx)["ensure"] == "absent"
    with pytest.raises(Failure, match="does not exist"):
        line_apply(missing, ["line"], ctx)
    line_apply({**missing, "ensure": "absent"}, ["line"], ctx)  # nothing to remove: fine
    assert not (tmp_path / "nope").exists()
    f = tmp_path / "inetd.conf"
    f.write_text("telnet a\nssh b\n")
    p = params_for(f, match="^telnet", ensure="absent")
    assert public(line_observe(p, ctx)) == {"ensure": "present", "line": "telnet a"}
    line_apply(p, ["line"], ctx)
    assert f.read_text() == "ssh b\n"
    assert public(line_observe(p, ctx)) == {"ensure": "absent", "line": None}


def test_agent_refuses_symlinks(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.write_text("a\n")
    link = tmp_path / "link"
    link.symlink_to(real)
    observed = line_observe(params_for(link, text="b"), Ctx())
    assert "never follows a symlink" in TYPES["line"].precheck(params_for(link, text="b"), observed, Ctx())
    with pytest.raises(Failure, match="never follows a symlink"):
        line_apply(params_for(link, text="b"), ["line"], Ctx())
    assert real.read_text() == "a\n"


def test_agent_keeps_undecodable_bytes(tmp_path: Path) -> None:
    f = tmp_path / "latin1.conf"
    f.write_bytes(b"caf\xe9=1\n")
    line_apply(params_for(f, text="b=2"), ["line"], Ctx(backup_dir=str(tmp_path / "bk")))
    assert f.read_bytes() == b"caf\xe9=1\nb=2\n"
