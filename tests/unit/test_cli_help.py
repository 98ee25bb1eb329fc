"""Every command's --help has a description and examples, every example parses against its command, and
the habits users bring from Ansible (check mode) and the flags every other command shares get an answer."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from driftctl.cli import cli
from driftctl.cli.examples import EXAMPLES, command_paths, split_example

REPO = Path(__file__).resolve().parents[2]
PATHS = command_paths(cli)


def driftctl(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "driftctl", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=120)


def test_the_walk_sees_groups_and_their_subcommands() -> None:
    names = [path for path, _ in PATHS]
    for expected in ("plan", "apply", "drift", "ignore", "ignore add", "ignore list", "ignore remove",
                     "schedule install", "schedule list", "schedule remove", "init", "completion"):
        assert expected in names


@pytest.mark.parametrize("path", [p for p, _ in PATHS])
def test_every_command_has_a_description_and_examples_in_its_help(path: str) -> None:
    command = dict(PATHS)[path]
    assert (command.help or "").strip(), f"`driftctl {path}` has no description (driftctl/cli/examples.py)"
    assert EXAMPLES.get(path), f"`driftctl {path}` has no examples: add them to driftctl/cli/examples.py"
    result = CliRunner().invoke(cli, [*path.split(), "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    assert "Examples:" in result.output
    for line in EXAMPLES[path]:
        assert line in result.output  # click keeps each example on its own line, unwrapped


def test_driftctl_help_shows_the_first_steps() -> None:
    from driftctl.cli.examples import ROOT_EXAMPLES

    result = CliRunner().invoke(cli, ["--help"], terminal_width=100)
    assert result.exit_code == 0
    for line in ROOT_EXAMPLES:
        assert line in result.output
        argv = shlex.split(split_example(line)[0])
        if argv[1] != "COMMAND":
            command = dict(PATHS)[argv[1]]
            command.make_context(argv[1], argv[2:])


def test_subcommands_without_a_description_get_one_in_the_group_listing() -> None:
    result = CliRunner().invoke(cli, ["ignore", "--help"], terminal_width=100)
    listing = result.output.split("Commands:")[1]
    for name in ("add", "list", "remove"):
        line = next(x for x in listing.splitlines() if x.strip().startswith(name + " "))
        assert len(line.split(maxsplit=1)) == 2, f"ignore {name} has no description: {line!r}"


EXAMPLE_CASES = [(path, line) for path, _ in PATHS for line in EXAMPLES.get(path, ())]


@pytest.mark.parametrize(("path", "line"), EXAMPLE_CASES, ids=[f"{p}:{i}" for i, (p, _) in enumerate(EXAMPLE_CASES)])
def test_every_example_parses_against_its_command(path: str, line: str) -> None:
    """Each example names its command and only options it has, with the arguments it needs (click parses
    it; nothing runs)."""
    command_text, _ = split_example(line)
    argv = shlex.split(command_text)
    for i, word in enumerate(argv):  # what the shell does with the output is not the command's
        if word in (">", ">>", "|", "&&"):
            argv = argv[:i]
            break
    words = path.split()
    assert argv[: 1 + len(words)] == ["driftctl", *words], f"an example of `{path}` runs something else: {line}"
    command = dict(PATHS)[path]
    args = argv[1 + len(words):]
    # a group's examples run its subcommands (a group with options of its own, as bundle, runs itself too)
    if isinstance(command, click.Group) and args and args[0] in command.commands:
        sub = command.commands[args[0]]
        command, args = sub, args[1:]
    with command.make_context(command.name or path, list(args)) as ctx:
        assert ctx.params is not None


def test_an_example_naming_an_unknown_option_is_caught() -> None:
    """The parse above is a real check: an option the command lacks fails it."""
    command = dict(PATHS)["history"]
    with pytest.raises(click.NoSuchOption):
        command.make_context("history", ["inventory/prod", "--tail", "3"])


# -- Ansible's check mode ------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["plan", "--check"], ["check", "-C"], ["apply", "--check"],
                                  ["apply", "--dry-run"], ["apply", "-C"]])
def test_check_mode_flags_point_to_plan_and_check(argv: list[str]) -> None:
    result = driftctl(*argv, "inventory/prod")
    assert result.returncode == 1
    assert "No such option" not in result.stderr
    assert f"{argv[0]} has no {argv[1]}" in result.stderr
    if argv[0] == "apply":
        assert "driftctl plan INVENTORY" in result.stderr and "changes nothing" in result.stderr
    if argv[0] in ("plan", "apply"):
        assert "driftctl check INVENTORY" in result.stderr
    else:
        assert "never changes anything" in result.stderr and "driftctl apply INVENTORY" in result.stderr
    assert result.stdout == ""


def test_other_unknown_options_are_still_no_such_option() -> None:
    result = driftctl("drift", "--check", "inventory/prod")
    assert result.returncode == 1
    assert "No such option '--check'" in result.stderr
    result = driftctl("apply", "--frobnicate", "inventory/prod")
    assert "No such option '--frobnicate'" in result.stderr


# -- consistent flags: history --last, bake-verify INVENTORY IMAGE --------------------------------------


@pytest.fixture
def history_store(tmp_path: Path) -> str:
    import time

    from test_store_history_cli import HOUR, motd, save, sshd

    from driftctl.model import Change, HostResult

    url = str(tmp_path / "store.sqlite")
    now = time.time()
    save(url, "apply", now - 50 * HOUR, [
        HostResult("web1", "changed", [motd("changed", changes=[Change("mode", "0600", "0644")]), sshd()]),
        HostResult("web2", "unreachable", error="connection refused"),
    ])
    save(url, "drift", now - 3 * HOUR, [HostResult("web1", "ok", [motd(drift="corrective"), sshd()])])
    return url


def _events(result: subprocess.CompletedProcess[str]) -> list[str]:
    import json

    assert result.returncode == 0, result.stderr
    return [e["kind"] for e in json.loads(result.stdout)["events"]]


def test_history_last_n_is_the_latest_n_events(history_store: str) -> None:
    every = _events(driftctl("history", "inventory/prod", "--state", history_store, "--json"))
    assert len(every) == 3
    assert _events(driftctl("history", "inventory/prod", "--state", history_store, "--json", "--last", "1")) \
        == every[-1:]
    assert "--last N" in driftctl("history", "--help").stdout
    assert "--limit" not in driftctl("history", "--help").stdout  # -l/--limit is a host pattern elsewhere


def test_history_limit_n_still_works_with_a_deprecation_warning(history_store: str) -> None:
    result = driftctl("history", "inventory/prod", "--state", history_store, "--json", "--limit", "2")
    assert _events(result) == _events(driftctl("history", "inventory/prod", "--state", history_store, "--json",
                                               "--last", "2"))
    assert "deprecated" in result.stderr and "--last 2" in result.stderr


def test_history_limit_given_a_host_pattern_points_to_host(history_store: str) -> None:
    result = driftctl("history", "inventory/prod", "--state", history_store, "--limit", "web1")
    assert result.returncode == 1
    assert "--host HOST" in result.stderr
    both = driftctl("history", "inventory/prod", "--state", history_store, "--limit", "2", "--last", "2")
    assert both.returncode == 1 and "only --last" in both.stderr


def test_bake_verify_takes_the_inventory_as_its_first_argument(tmp_path: Path) -> None:
    result = driftctl("bake-verify", "--help")
    assert "bake-verify [OPTIONS] INVENTORY IMAGE" in result.stdout
    assert "-i," not in result.stdout  # the old form is a hidden alias
    wrong = driftctl("bake-verify", "image-only", "--host", "web1")
    assert wrong.returncode == 1 and "INVENTORY IMAGE" in wrong.stderr
    # both forms reach the inventory (a missing one is the same input error)
    for argv in (["bake-verify", str(tmp_path / "nope"), "img", "--host", "web1"],
                 ["bake-verify", "img", "-i", str(tmp_path / "nope"), "--host", "web1"]):
        result = driftctl(*argv)
        assert result.returncode == 1
        assert f"{tmp_path / 'nope'}: inventory not found" in result.stderr
