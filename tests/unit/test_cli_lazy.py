"""Each command's module is imported when the command is asked for (driftctl/cli/__init__.py COMMANDS)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest

from driftctl import cli as cli_pkg

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("module", sorted(set(cli_pkg.COMMANDS.values())))
def test_the_table_names_every_command_of_each_module(module: str) -> None:
    import importlib

    group = click.Group()
    importlib.import_module(f"driftctl.cli.cmd_{module}").register(group)
    assert list(group.commands) == [n for n, m in cli_pkg.COMMANDS.items() if m == module]


def test_every_command_module_is_in_the_table() -> None:
    modules = {p.stem.removeprefix("cmd_") for p in (REPO / "driftctl" / "cli").glob("cmd_*.py")
               if "\ndef register(" in p.read_text()}  # cmd_saved.py: plan -o / apply FILE, for cmd_converge
    assert modules == set(cli_pkg.COMMANDS.values())


@pytest.mark.parametrize(("argv", "loaded"), [
    (["check", "--help"], ["converge"]),
    (["drift", "--help"], ["converge", "drift"]),  # drift shares converge's options
    (["history", "--help"], ["history"]),
    (["--help"], sorted(set(cli_pkg.COMMANDS.values()))),
    (["no-such-command"], []),
])
def test_a_command_imports_only_its_own_module(argv: list[str], loaded: list[str]) -> None:
    code = (f"import sys\nfrom driftctl.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            "print(sorted(m[len('driftctl.cli.cmd_'):] for m in sys.modules if m.startswith('driftctl.cli.cmd_')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.stdout.strip().splitlines()[-1] == repr(loaded), out.stderr


def test_building_a_document_imports_no_renderer() -> None:
    """Every plan, check and apply builds its report document; the page, JUnit's XML and the store's
    history are imported only when a report is rendered (driftctl/report/__init__.py)."""
    code = ("import sys\nfrom driftctl.report import document\n"
            "print(sorted(m for m in ('driftctl.report.html', 'driftctl.report.junit', 'driftctl.report.past',"
            " 'xml.etree.ElementTree') if m in sys.modules))\n"
            "from driftctl.report import chart_from_store, render\nrender({'hosts': []}, 'json')\n"
            "print('driftctl.report.jsondoc' in sys.modules, callable(chart_from_store))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.stdout.split("\n")[:2] == ["[]", "True True"], out.stderr
