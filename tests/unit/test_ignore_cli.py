"""ignore add/list/remove through the CLI: a rule id that is not the inventory's is an error."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from driftctl.cli import cli
from driftctl.errors import ConfigError


def run(*args: str) -> object:
    return CliRunner().invoke(cli, list(args))


def test_removing_a_rule_that_is_not_there_or_not_this_inventorys_is_an_error(tmp_path: Path) -> None:
    state = str(tmp_path / "s.sqlite")
    for inv in ("inventory/prod", "inventory/staging"):
        (tmp_path / inv).mkdir(parents=True)
    prod, staging = str(tmp_path / "inventory/prod"), str(tmp_path / "inventory/staging")
    added = run("ignore", "add", prod, "--target", "file:/etc/motd", "--reason", "r", "--expires", "2099-01-01",
                "--state", state)
    assert added.exit_code == 0, added.output  # type: ignore[attr-defined]
    rule = "1"  # the first rule of a new store
    other = run("ignore", "remove", staging, rule, "--state", state)
    assert isinstance(other.exception, ConfigError) and f"no ignore rule {rule} for" in str(other.exception)  # type: ignore[attr-defined]
    gone = run("ignore", "remove", prod, rule, "--state", state)
    assert gone.exit_code == 0, gone.output  # type: ignore[attr-defined]
    again = run("ignore", "remove", prod, rule, "--state", state)
    assert isinstance(again.exception, ConfigError)  # type: ignore[attr-defined]
