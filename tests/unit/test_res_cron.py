"""cron: validation, entry rendering, pure diff, agent on cron.d files (edit_cron cases: test_write_fixtures.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from driftctl.agent._core import Ctx
from driftctl.agent.cron import cron_apply, cron_entry_lines, cron_observe
from driftctl.errors import Location, ManifestError
from driftctl.resources import get_type

LOC = Location("manifests/site.yaml", 4)
Cron = get_type("cron")
assert Cron is not None


def public(observed: dict) -> dict:
    """The observed attributes without the agent's private keys (``_cas``, ``_refusal``)."""
    return {k: v for k, v in observed.items() if not k.startswith("_")}


def validate(**raw):
    locs = {k: Location("m.yaml", 30 + i) for i, k in enumerate(raw)}
    return Cron.validate({"name": "backup", **raw}, LOC, locs)


def test_entry_lines() -> None:
    p = validate(minute=5, hour="3", weekday="mon-fri", command="/usr/local/bin/backup --full",
                 environment={"MAILTO": "ops@example.com", "PATH": "/usr/bin:/bin"})
    assert cron_entry_lines(p) == [
        "MAILTO=ops@example.com", "PATH=/usr/bin:/bin", "5 3 * * mon-fri /usr/local/bin/backup --full"
    ]
    d = validate(special="@daily", command="/x", file="driftctl-backup", user="backup")
    assert d["file"] == "/etc/cron.d/driftctl-backup"
    assert cron_entry_lines(d) == ["@daily backup /x"]
    assert Cron.desired(d) == {"ensure": "present", "entry": "@daily backup /x"}
    assert Cron.claims(d) == ["cron:/etc/cron.d/driftctl-backup:backup"]
    assert Cron.claims(p) == ["cron:user:root:backup"]
    assert Cron.autorequire(d) == ["user:backup"]


@pytest.mark.parametrize(
    ("raw", "message", "line"),
    [
        ({"command": "/x", "minute": "5 4"}, "minute must be one crontab field", 31),
        ({"command": "/x", "hour": -1}, "hour must not be negative", 31),
        ({"command": "/x", "special": "@sometimes"}, "special must be one of", 31),
        ({"command": "/x", "special": "@daily", "hour": 3}, "special @daily takes no hour", 4),
        ({}, "parameter 'command' is required", 4),
        ({"command": "a\nb"}, "command must be one line", 30),
        ({"command": "/x", "environment": {"BAD-NAME": "1"}}, "names must be shell variable names", 31),
        ({"command": "/x", "environment": {"A": "1\n2"}}, "A must be one line", 31),
        ({"command": "/x", "environment": ["A=1"]}, "environment must be dict", 31),
        ({"command": "/x", "file": "backup.cron"}, "cron ignores /etc/cron.d files with dots", 31),
        ({"command": "/x", "user": "a b"}, "user must be a user or group name", 31),
    ],
)
def test_validation_errors(raw: dict, message: str, line: int) -> None:
    with pytest.raises(ManifestError, match=message) as info:
        validate(**raw)
    assert info.value.location is not None and info.value.location.line == line


def test_empty_and_padded_environment_values_are_quoted() -> None:
    p = validate(command="/x", environment={"MAILTO": "", "PAD": " a ", "Q": ' "q" ', "PLAIN": "a b"})
    assert cron_entry_lines(p) == ['MAILTO=""', 'PAD=" a "', "Q=' \"q\" '", "PLAIN=a b", "* * * * * /x"]


def test_diff_and_describe() -> None:
    want = Cron.desired(validate(hour=3, minute=0, command="/x"))
    assert want == {"ensure": "present", "entry": "0 3 * * * /x"}
    assert Cron.diff(want, {"ensure": "present", "entry": "0 3 * * * /x"}) == []
    [added] = Cron.diff(want, {"ensure": "absent", "entry": None})
    assert Cron.describe(added) == "entry added: 0 3 * * * /x"
    [changed] = Cron.diff(want, {"ensure": "present", "entry": "MAILTO=x\n0 4 * * * /x"})
    assert Cron.describe(changed) == "entry changed: MAILTO=x | 0 4 * * * /x -> 0 3 * * * /x"
    gone = Cron.desired(validate(ensure="absent"))
    assert Cron.diff(gone, {"ensure": "absent", "entry": None}) == []
    [removed] = Cron.diff(gone, {"ensure": "present", "entry": "@daily /x"})
    assert Cron.describe(removed) == "entry removed: @daily /x"


def test_agent_cron_d_file_lifecycle(tmp_path: Path) -> None:
    cron_d = tmp_path / "cron.d"
    cron_d.mkdir()
    ctx = Ctx(backup_dir=str(tmp_path / "bk"))
    one = Cron.agent_params(validate(minute="*/5", command="/a", file=str(cron_d / "jobs")))
    two = Cron.agent_params({**validate(special="@hourly", command="/b", file=str(cron_d / "jobs")), "name": "other"})
    assert public(cron_observe(one, ctx)) == {"ensure": "absent", "entry": None}
    cron_apply(one, ["entry"], ctx)
    cron_apply(two, ["entry"], ctx)
    f = cron_d / "jobs"
    assert f.read_text() == "# driftctl: backup\n*/5 * * * * root /a\n# driftctl: other\n@hourly root /b\n"
    assert oct(f.stat().st_mode & 0o777) == "0o644"
    assert public(cron_observe(one, ctx)) == {"ensure": "present", "entry": "*/5 * * * * root /a"}
    want = Cron.desired(validate(minute="*/5", command="/a", file=str(f)))
    assert Cron.diff(want, cron_observe(one, ctx)) == []
    # drift by hand, then converge back
    f.write_text(f.read_text().replace("*/5", "*/7"))
    assert Cron.diff(want, cron_observe(one, ctx))[0].before == "*/7 * * * * root /a"
    cron_apply(one, ["entry"], ctx)
    assert Cron.diff(want, cron_observe(one, ctx)) == []
    cron_apply({**one, "ensure": "absent"}, ["entry"], ctx)
    assert f.read_text() == "# driftctl: other\n@hourly root /b\n"
    cron_apply({**two, "ensure": "absent"}, ["entry"], ctx)
    assert not f.exists()  # the last entry took the file with it


def test_agent_missing_user_is_reported(tmp_path: Path) -> None:
    p = Cron.agent_params(validate(command="/x", user="no-such-user-here"))
    assert public(cron_observe(p, Ctx())) == {"ensure": "absent", "entry": None, "user": "missing"}
