"""block: validation, pure diff, agent against tmp files (edit_block cases: test_write_fixtures.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from driftctl.agent._core import Ctx, Failure
from driftctl.agent.block import block_apply, block_observe
from driftctl.errors import Location, ManifestError
from driftctl.resources import get_type

LOC = Location("manifests/site.yaml", 3)
Block = get_type("block")
assert Block is not None


def public(observed: dict) -> dict:
    """The observed attributes without the agent's private keys (``_cas``, ``_refusal``)."""
    return {k: v for k, v in observed.items() if not k.startswith("_")}


def validate(**raw):
    locs = {k: Location("m.yaml", 10 + i) for i, k in enumerate(raw)}
    return Block.validate({"name": "hosts", "path": "/etc/hosts", **raw}, LOC, locs)


def test_default_marker_and_content_normalised() -> None:
    p = validate(content="10.0.0.1 a\r\n10.0.0.2 b")
    assert p["marker"] == "# {mark} DRIFTCTL MANAGED BLOCK hosts"
    assert p["content"] == "10.0.0.1 a\n10.0.0.2 b\n"
    assert Block.claims(p) == ["block:/etc/hosts:# {mark} DRIFTCTL MANAGED BLOCK hosts"]
    assert Block.autorequire(p) == ["file:/etc/hosts"]


@pytest.mark.parametrize(
    ("raw", "message", "line"),
    [
        ({"content": "x", "marker": "# managed"}, "must be one line holding {mark} once", 11),
        ({"content": "x", "marker": "# {mark} {mark}"}, "must be one line holding {mark} once", 11),
        ({}, "parameter 'content' is required", 3),
        ({"content": "a\n# END DRIFTCTL MANAGED BLOCK hosts\n"}, "content line 2 is the block's own marker", 3),
        ({"ensure": "absent", "content": "x"}, "takes no content", 3),
        ({"content": "x", "create": "yes"}, "create must be bool", 11),
        ({"content": 5}, "content must be str", 10),
    ],
)
def test_validation_errors(raw: dict, message: str, line: int) -> None:
    with pytest.raises(ManifestError, match=message) as info:
        validate(**raw)
    assert info.value.location is not None and info.value.location.line == line


def test_diff_shows_a_unified_diff_of_the_block() -> None:
    want = Block.desired(validate(content="a\nb\n"))
    assert Block.diff(want, {"ensure": "present", "content": "a\nb\n", "in_sync": True}) == []
    [change] = Block.diff(want, {"ensure": "present", "content": "a\nc\n", "in_sync": False})
    assert Block.describe(change) == "block content changed"
    assert change.diff == "--- block (host)\n+++ block (manifest)\n@@ -1,2 +1,2 @@\n a\n-c\n+b\n"
    [added] = Block.diff(want, {"ensure": "absent", "content": None, "in_sync": False})
    assert Block.describe(added) == "block added (2 lines)"
    assert added.diff is not None and added.diff.startswith("--- /dev/null\n")
    [dups] = Block.diff(want, {"ensure": "present", "content": "a\nb\n", "in_sync": False})
    assert Block.describe(dups) == "duplicate blocks removed"
    [secret] = Block.diff(want, {"ensure": "present", "content": "x\n", "in_sync": False}, sensitive=True)
    assert secret.diff is None


def test_diff_absent() -> None:
    gone = Block.desired(validate(ensure="absent"))
    assert Block.diff(gone, {"ensure": "absent", "content": None, "in_sync": True}) == []
    [change] = Block.diff(gone, {"ensure": "present", "content": "a\n", "in_sync": False})
    assert Block.describe(change) == "block removed"


def agent_params(path: Path, **raw) -> dict:
    return Block.agent_params(Block.validate({"name": "hosts", "path": str(path), **raw}, LOC))


def test_agent_converges_and_keeps_the_rest(tmp_path: Path) -> None:
    f = tmp_path / "hosts"
    f.write_text("127.0.0.1 localhost\n")
    ctx = Ctx(backup_dir=str(tmp_path / "bk"))
    p = agent_params(f, content="10.0.0.1 a\n")
    assert public(block_observe(p, ctx)) == {"ensure": "absent", "content": None, "in_sync": False}
    block_apply(p, ["block"], ctx)
    assert f.read_text() == (
        "127.0.0.1 localhost\n# BEGIN DRIFTCTL MANAGED BLOCK hosts\n10.0.0.1 a\n# END DRIFTCTL MANAGED BLOCK hosts\n"
    )
    assert public(block_observe(p, ctx)) == {"ensure": "present", "content": "10.0.0.1 a\n", "in_sync": True}
    want = Block.desired(Block.validate({"name": "hosts", "path": str(f), "content": "10.0.0.1 a\n"}, LOC))
    assert Block.diff(want, block_observe(p, ctx)) == []
    gone = agent_params(f, ensure="absent")
    block_apply(gone, ["block"], ctx)
    assert f.read_text() == "127.0.0.1 localhost\n"


def test_agent_missing_file_needs_create(tmp_path: Path) -> None:
    f = tmp_path / "new.conf"
    ctx = Ctx(backup_dir=str(tmp_path / "bk"))
    with pytest.raises(Failure, match="set create: true"):
        block_apply(agent_params(f, content="x\n"), ["block"], ctx)
    block_apply(agent_params(f, content="x\n", create=True), ["block"], ctx)
    assert f.read_text() == "# BEGIN DRIFTCTL MANAGED BLOCK hosts\nx\n# END DRIFTCTL MANAGED BLOCK hosts\n"
    assert oct(f.stat().st_mode & 0o777) == "0o644"


def test_agent_broken_markers_fail_clearly(tmp_path: Path) -> None:
    f = tmp_path / "broken"
    f.write_text("# BEGIN DRIFTCTL MANAGED BLOCK hosts\nx\n")
    with pytest.raises(Failure, match=r"line 1 has the BEGIN marker .* but no END marker"):
        block_observe(agent_params(f, content="y"), Ctx())
    assert f.read_text() == "# BEGIN DRIFTCTL MANAGED BLOCK hosts\nx\n"
