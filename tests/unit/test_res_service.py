"""service: validation, desired/diff (pure), change lines, provider choice, and the systemctl/sysv
parsers from captured output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from driftctl.agent import service as agent_service
from driftctl.errors import Location, ManifestError
from driftctl.model import Change
from driftctl.resources.base import get_type

DATA = Path(__file__).parent / "data" / "service"
CASES = sorted(DATA.glob("*.json"))
LOC = Location("manifests/web.yaml", 9)
Service = get_type("service")
assert Service is not None


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_systemd_state_from_captured_output(case: Path) -> None:
    """The state read from ``systemctl show`` (the parse itself: test_write_fixtures)."""
    spec = json.loads(case.read_text())
    if spec["parser"] == "parse_systemctl_show":
        assert agent_service.systemd_state(spec["expected"]) == spec["state"]


def test_every_parser_has_fixtures() -> None:
    parsers = {json.loads(c.read_text())["parser"] for c in CASES}
    assert parsers == {"parse_systemctl_show", "split_systemctl_show", "sysv_enabled"}


def validate(**raw: object) -> dict:
    assert Service is not None
    return Service.validate({"name": "cron", **raw}, LOC)


def test_defaults_manage_nothing_but_refresh() -> None:
    p = validate()
    assert p["refresh"] == "restart"
    assert Service is not None
    assert Service.desired(p) == {"enabled": None, "running": None}
    assert Service.diff(Service.desired(p), {}) == []
    assert Service.refreshable


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"running": "yes"}, "running must be bool"),
        ({"enabled": 1}, "enabled must be bool"),
        ({"refresh": "bounce"}, "refresh must be one of restart, reload, reload-or-restart"),
        ({"provider": "upstart"}, "provider must be one of systemd, sysv"),
        ({"name": "../../bin/sh"}, "must be a service or unit name"),
        ({"name": "-cron"}, "must be a service or unit name"),
        ({"ensure": "running"}, "unknown parameter 'ensure'"),
        ({"timeout": 0}, "timeout must be a positive number of seconds"),
        ({"timeout": "90s"}, "timeout must be int or float"),
    ],
)
def test_validation_errors_carry_location(raw: dict, message: str) -> None:
    with pytest.raises(ManifestError) as e:
        validate(**raw)
    assert message in str(e.value)
    assert e.value.location == LOC


def test_diff_only_managed_fields() -> None:
    assert Service is not None
    desired = Service.desired(validate(running=True))
    assert Service.diff(desired, {"running": False}) == [Change("running", False, True)]
    assert Service.diff(desired, {"running": True}) == []
    both = Service.desired(validate(running=False, enabled=False))
    assert Service.diff(both, {"running": True, "enabled": True}) == [
        Change("enabled", True, False), Change("running", True, False)]


@pytest.mark.parametrize(
    ("change", "line"),
    [
        (Change("running", False, True), "started"),
        (Change("running", True, False), "stopped"),
        (Change("enabled", False, True), "enabled"),
        (Change("enabled", True, False), "disabled"),
    ],
)
def test_change_lines(change: Change, line: str) -> None:
    assert Service is not None
    assert Service.describe(change) == line


@pytest.mark.parametrize(
    ("facts", "provider", "expected"),
    [
        ({"init": "systemd"}, None, "systemd"),
        ({"init": "sysv"}, None, "sysv"),
        ({"init": "openrc-init"}, None, "sysv"),
        ({"init": "systemd"}, "sysv", "sysv"),
    ],
)
def test_provider_chosen_by_supports_or_named(facts: dict, provider: str | None, expected: str) -> None:
    assert agent_service.choose_service_provider({"provider": provider}, facts).name == expected


def test_autorequires_the_package_of_the_same_name() -> None:
    assert Service is not None
    assert Service.autorequire(validate()) == ["package:cron"]


# ---- time: changes bounded by the resource's timeout, reads by a short one


def test_timeout_reaches_the_provider_and_bounds_reads_too() -> None:
    assert validate()["timeout"] is None
    assert validate(timeout=5)["timeout"] == 5 and validate(timeout=2.5)["timeout"] == 2.5
    facts = {"init": "systemd"}
    slow = agent_service.service_provider(validate(timeout=5), facts)
    assert slow.timeout == 5.0 and slow.query_timeout() == 5.0
    default = agent_service.service_provider(validate(), facts)
    assert default.timeout is None and default.query_timeout() == agent_service.SERVICE_QUERY_TIMEOUT


def test_a_timed_out_change_says_systemd_may_still_run_the_job() -> None:
    timed_out = agent_service.Failure("command timed out after 3s: systemctl start -- slowstart")
    e = agent_service.service_timed_out(timed_out, ["systemctl", "start", "--", "slowstart"], "slowstart")
    assert str(e).startswith("command timed out after 3s: systemctl start -- slowstart; ")
    assert "systemd may still be running the start job of slowstart" in str(e)
    assert "systemctl status slowstart" in str(e)
    # a read that timed out, and a failure that is not a timeout, are passed on as they are
    show = agent_service.Failure("command timed out after 60s: systemctl show -- x")
    assert agent_service.service_timed_out(show, ["systemctl", "show", "--", "x"], "x") is show
    exited = agent_service.Failure("systemctl exited 5: Unit x.service not found.")
    assert agent_service.service_timed_out(exited, ["systemctl", "start", "--", "x"], "x") is exited
