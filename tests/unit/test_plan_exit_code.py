"""`plan` exits 0 when it made a plan, with or without changes (Terraform's plan, Ansible's --check), so
`set -e` scripts go on; `--detailed-exitcode` (and `check`, the command for automation) exit 2 on
changes. Failures, unreachable hosts, aborts and locks keep their codes either way (D41)."""

from __future__ import annotations

from driftctl.errors import ExitCode
from driftctl.model import Change, HostResult, ResourceResult, RunResult


def run_of(*hosts: HostResult, changes_exit: bool) -> RunResult:
    return RunResult("plan", list(hosts), changes_exit=changes_exit)


def changed(name: str) -> HostResult:
    return HostResult(name, "changed", [ResourceResult("file:/etc/a", "changed", [Change("mode", "0644", "0600")])])


def test_changes_exit_0_by_default_and_2_when_asked() -> None:
    assert run_of(changed("web1"), changes_exit=False).exit_code == ExitCode.OK
    assert run_of(changed("web1"), changes_exit=True).exit_code == ExitCode.CHANGES


def test_failures_unreachable_aborts_and_locks_keep_their_codes() -> None:
    failed = HostResult("db1", "failed", error="the agent could not start")
    gone = HostResult("db2", "unreachable", error="connection refused")
    assert run_of(changed("web1"), failed, changes_exit=False).exit_code == ExitCode.FAILED
    assert run_of(changed("web1"), gone, changes_exit=False).exit_code == ExitCode.UNREACHABLE
    aborted = run_of(changed("web1"), changes_exit=False)
    aborted.aborted = True
    assert aborted.exit_code == ExitCode.ABORTED
    locked = HostResult("web2", "failed", error="locked", locked=True)
    assert run_of(changed("web1"), locked, changes_exit=False).exit_code == ExitCode.LOCKED


def test_the_plan_command_has_the_flag_and_says_so_in_its_help() -> None:
    from click.testing import CliRunner

    from driftctl.cli import cli

    out = CliRunner().invoke(cli, ["plan", "--help"], terminal_width=200).output
    assert "--detailed-exitcode" in out and "Exit 0" in out
    assert "--detailed-exitcode" not in CliRunner().invoke(cli, ["check", "--help"]).output
