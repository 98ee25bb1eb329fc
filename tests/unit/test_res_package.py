"""package: validation, the pure diff and change lines, and the apt/dnf/apk parsers from captured output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from driftctl.agent import package as agent_package
from driftctl.errors import Location, ManifestError
from driftctl.model import Change
from driftctl.resources.base import get_type

DATA = Path(__file__).parent / "data" / "package"
CASES = sorted(DATA.glob("*.json"))
LOC = Location("manifests/site.yaml", 7)
Package = get_type("package")


def test_every_parser_has_fixtures() -> None:
    used = {json.loads(c.read_text())["parser"] for c in CASES}
    assert used == {"parse_dpkg_query", "parse_apt_cache_policy", "parse_rpm_query", "parse_apk_list",
                    "parse_apt_lock", "parse_dnf_lock", "parse_apk_lock", "dpkg_lines_of"}


def validate(**raw: object) -> dict:
    assert Package is not None
    return Package.validate({"name": "nginx", **raw}, LOC)


def test_defaults_and_installed_alias() -> None:
    assert validate()["ensure"] == "present"
    assert validate()["lock_timeout"] == 60
    assert validate(lock_timeout=0)["lock_timeout"] == 0
    assert validate(ensure="installed")["ensure"] == "present"
    assert validate(ensure="1:2.10-3+deb12u1")["ensure"] == "1:2.10-3+deb12u1"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"ensure": "newest"}, "must be present, absent, latest or a version"),
        ({"provider": "yum"}, "provider must be one of apt, dnf, apk"),
        ({"name": "ngi nx"}, "must be a package name"),
        ({"name": "-rf"}, "must be a package name"),
        ({"version": "1.0"}, "unknown parameter 'version'"),
        ({"ensure": 2}, "ensure must be str"),
        ({"lock_timeout": -1}, "lock_timeout must be a number of seconds (0 or more)"),
        ({"lock_timeout": "1m"}, "lock_timeout must be int"),
    ],
)
def test_validation_errors_carry_location(raw: dict, message: str) -> None:
    with pytest.raises(ManifestError) as e:
        validate(**raw)
    assert message in str(e.value)
    assert e.value.location == LOC


@pytest.mark.parametrize(
    ("ensure", "observed", "changes"),
    [
        ("present", {"ensure": "present", "version": "2.10-3"}, []),
        ("present", {"ensure": "absent", "version": None, "candidate": "2.10-3"},
         [Change("ensure", "absent", "2.10-3")]),
        ("present", {"ensure": "absent", "version": None, "candidate": None}, [Change("ensure", "absent", "present")]),
        ("absent", {"ensure": "absent", "version": None}, []),
        ("absent", {"ensure": "2.10-3", "version": "2.10-3"}, [Change("ensure", "2.10-3", "absent")]),
        ("latest", {"ensure": "latest", "version": "2.10-3", "candidate": "2.10-3"}, []),
        ("latest", {"ensure": "2.10-2", "version": "2.10-2", "candidate": "2.10-3"},
         [Change("ensure", "2.10-2", "2.10-3")]),
        ("2.10-3", {"ensure": "2.10-3", "version": "2.10-3"}, []),
        ("2.10-3", {"ensure": "2.10-2", "version": "2.10-2"}, [Change("ensure", "2.10-2", "2.10-3")]),
    ],
)
def test_diff(ensure: str, observed: dict, changes: list[Change]) -> None:
    assert Package is not None
    assert Package.diff(Package.desired(validate(ensure=ensure)), observed) == changes


@pytest.mark.parametrize(
    ("change", "line"),
    [
        (Change("ensure", "absent", "1.24.0-1"), "installed 1.24.0-1"),
        (Change("ensure", "absent", "present"), "installed"),
        (Change("ensure", "1.24.0-1", "absent"), "removed 1.24.0-1"),
        (Change("ensure", "1.22.1-9", "1.24.0-1"), "version 1.22.1-9 -> 1.24.0-1"),
    ],
)
def test_change_lines(change: Change, line: str) -> None:
    assert Package is not None
    assert Package.describe(change) == line


@pytest.mark.parametrize(
    ("ensure", "installed", "candidate", "state"),
    [
        ("present", None, "2.10-3", "absent"),
        ("present", "2.10-2", None, "present"),
        ("latest", "2.10-3", "2.10-3", "latest"),
        ("latest", "2.10-2", "2.10-3", "2.10-2"),
        ("latest", "2.10-2", None, "latest"),  # the lists do not know it: nothing newer to go to
        ("2.10-3", "2.10-3", None, "2.10-3"),
        ("absent", "2.10-3", None, "2.10-3"),
    ],
)
def test_observed_state_is_in_the_manifests_terms(ensure: str, installed: str | None, candidate: str | None,
                                                  state: str) -> None:
    # in sync <=> observed ensure == desired ensure: drift classification compares the two fingerprints
    assert agent_package.package_state(ensure, installed, candidate) == state
    assert (state == ensure) == (Package is not None and Package.diff({"ensure": ensure}, {
        "ensure": state, "version": installed, "candidate": candidate}) == [])


@pytest.mark.parametrize(
    ("facts", "provider", "expected"),
    [
        ({"package_manager": "apt"}, None, "apt"),
        ({"package_manager": "dnf"}, None, "dnf"),
        ({"package_manager": "yum"}, None, "dnf"),
        ({"package_manager": "apk"}, None, "apk"),
        ({"package_manager": "apk"}, "apt", "apt"),
        ({"package_manager": None}, "dnf", "dnf"),
    ],
)
def test_provider_chosen_by_supports_or_named(facts: dict, provider: str | None, expected: str) -> None:
    params = {"name": "x", "provider": provider}
    assert agent_package.choose_package_provider(params, facts).name == expected


def test_no_provider_is_a_clear_failure() -> None:
    with pytest.raises(agent_package.Failure, match="no package provider for this host"):
        agent_package.choose_package_provider({"name": "x"}, {"package_manager": "pacman"})


# ---- locks: bounded waits, the package manager's own words (argv only for dnf and apk: no host here)


def test_apt_waits_for_the_dpkg_lock_lock_timeout_seconds() -> None:
    argv = agent_package.apt_install_argv("cowsay", 3)
    assert argv[:2] == ["apt-get", "install"] and argv[-1] == "cowsay"
    assert "DPkg::Lock::Timeout=3" in argv and argv[argv.index("DPkg::Lock::Timeout=3") - 1] == "-o"
    assert "--allow-downgrades" in agent_package.apt_install_argv("hello=2.10-3", 60, allow_downgrades=True)
    assert "DPkg::Lock::Timeout=0" in agent_package.apt_remove_argv("telnet", 0)
    assert "DPkg::Lock::Timeout=60" in agent_package.apt_update_argv(60)


def test_dnf_exits_on_a_held_lock_instead_of_waiting_forever() -> None:
    assert agent_package.dnf_argv("dnf", "install", "nginx") == [
        "dnf", "--setopt=exit_on_lock=True", "install", "-y", "nginx"]
    assert agent_package.dnf_argv("yum", "remove", "telnet")[:2] == ["yum", "--setopt=exit_on_lock=True"]


def test_apk_waits_for_its_database_lock_lock_timeout_seconds() -> None:
    assert agent_package.apk_argv("add", "curl", 3, ["--upgrade"]) == [
        "apk", "--wait", "3", "add", "--upgrade", "curl"]
    assert agent_package.apk_argv("del", "curl", 60) == ["apk", "--wait", "60", "del", "curl"]


def test_provider_gets_the_resources_lock_timeout() -> None:
    facts = {"package_manager": "apt"}
    assert agent_package.package_provider({"name": "sh", "lock_timeout": 5}, facts).lock_timeout == 5
    assert agent_package.package_provider({"name": "sh"}, facts).lock_timeout == 60


LOCKED = "echo 'E: Could not get lock /var/lib/apt/lists/lock. It is held by process 77 (apt-get)' >&2; exit 100"


def locked_twice(tmp_path: Path) -> list[str]:
    """A command that fails on a lock twice, then succeeds (a real process: tries counted in a file)."""
    count = tmp_path / "tries"
    return ["sh", "-c", f"echo x >> {count}; [ $(wc -l < {count}) -gt 2 ] && exit 0; {LOCKED}"]


def tries(tmp_path: Path) -> int:
    return len((tmp_path / "tries").read_text().splitlines())


def test_a_write_that_finds_the_lock_taken_is_retried_within_lock_timeout(tmp_path: Path) -> None:
    provider = agent_package.AptPackage(lock_timeout=30)
    rc, _out, _err = provider._write(locked_twice(tmp_path), "update", agent_package.parse_apt_lock)
    assert rc == 0 and tries(tmp_path) == 3


def test_a_lock_still_held_after_lock_timeout_fails_with_apts_line_and_a_hint(tmp_path: Path) -> None:
    provider = agent_package.AptPackage(lock_timeout=0)
    with pytest.raises(agent_package.Failure) as e:
        provider._write(locked_twice(tmp_path), "update", agent_package.parse_apt_lock)
    assert str(e.value).startswith(
        "apt-get update: Could not get lock /var/lib/apt/lists/lock. It is held by process 77 (apt-get); ")
    assert "still held the lock after 0s (lock_timeout)" in str(e.value)
    assert tries(tmp_path) == 1


def test_a_failure_that_is_not_a_lock_is_not_retried(tmp_path: Path) -> None:
    provider = agent_package.AptPackage(lock_timeout=30)
    count = tmp_path / "tries"
    rc, _out, err = provider._write(
        ["sh", "-c", f"echo x >> {count}; echo 'E: Unable to locate package x' >&2; exit 100"],
        "install x", agent_package.parse_apt_lock)
    assert rc == 100 and "Unable to locate" in err
    assert tries(tmp_path) == 1
