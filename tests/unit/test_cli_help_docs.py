"""docs/cli.md is exactly what scripts/gen-cli-docs makes of the commands, whatever the terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from driftctl.cli import cli
from driftctl.cli.examples import EXAMPLES, command_paths

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gen-cli-docs"


def generate(**env: str) -> str:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--stdout"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env}, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_docs_cli_md_is_what_the_script_generates() -> None:
    current = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    assert generate() == current, "docs/cli.md is out of date: run scripts/gen-cli-docs"


def test_the_output_does_not_depend_on_the_terminal() -> None:
    assert generate(COLUMNS="40") == generate(COLUMNS="300", NO_COLOR="1")


def test_every_command_its_options_and_examples_are_in_it() -> None:
    text = generate()
    for path, command in command_paths(cli):
        assert f"\n### driftctl {path}\n" in text
        for param in command.params:
            if getattr(param, "hidden", False) or param.param_type_name != "option":
                continue
            assert f"`{', '.join(param.opts)}" in text or any(o in text for o in param.opts)
        for line in EXAMPLES[path]:
            assert line in text
    assert "driftctl completion bash" in text and "_DRIFTCTL_COMPLETE" in text


def test_check_mode_fails_on_a_stale_file_and_says_how_to_fix_it(tmp_path: Path) -> None:
    target = tmp_path / "cli.md"
    target.write_text(generate().replace("### driftctl plan", "### driftctl plan (old)"))
    stale = subprocess.run([sys.executable, str(SCRIPT), "--target", str(target), "--check"], capture_output=True,
                           text=True, timeout=120)
    assert stale.returncode == 1
    assert "run scripts/gen-cli-docs" in stale.stderr
    written = subprocess.run([sys.executable, str(SCRIPT), "--target", str(target)], capture_output=True, text=True,
                             timeout=120)
    assert written.returncode == 0, written.stderr
    fresh = subprocess.run([sys.executable, str(SCRIPT), "--target", str(target), "--check"], capture_output=True,
                           text=True, timeout=120)
    assert fresh.returncode == 0, fresh.stderr
