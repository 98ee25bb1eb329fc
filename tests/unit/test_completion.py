"""``driftctl completion bash|zsh|fish``: the script click generates, loaded into a real bash."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent  # the venv's bin: the completion script calls `driftctl` back


def driftctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "driftctl"), *args], capture_output=True, text=True, timeout=60)


def complete_in_bash(words: list[str], cword: int) -> list[str]:
    """Source `driftctl completion bash` in bash, then ask it as the shell does on TAB."""
    script = (
        'source <(driftctl completion bash) || exit 3\n'
        'COMP_WORDS=(' + " ".join(f"'{w}'" for w in words) + f'); COMP_CWORD={cword}\n'
        '_driftctl_completion driftctl 2>/dev/null\n'
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [line for line in proc.stdout.splitlines() if line]


def test_bash_completes_a_command() -> None:
    assert complete_in_bash(["driftctl", "pl"], 1) == ["plan"]
    assert complete_in_bash(["driftctl", "sched"], 1) == ["schedule"]


def test_bash_completes_options_subcommands_and_choices() -> None:
    assert complete_in_bash(["driftctl", "history", "inventory/prod", "--la"], 3) == ["--last"]
    assert complete_in_bash(["driftctl", "schedule", "i"], 2) == ["install"]
    assert sorted(complete_in_bash(["driftctl", "report", "inventory/prod", "-f", ""], 4)) == \
        ["html", "json", "junit", "markdown", "prometheus"]
    assert complete_in_bash(["driftctl", "completion", "z"], 2) == ["zsh"]


@pytest.mark.parametrize(("shell", "marker"), [
    ("bash", "complete -o nosort -F _driftctl_completion driftctl"),
    ("zsh", "#compdef driftctl"),
    ("fish", "complete --no-files --command driftctl"),
])
def test_each_shell_gets_its_script(shell: str, marker: str) -> None:
    result = driftctl("completion", shell)
    assert result.returncode == 0, result.stderr
    assert marker in result.stdout
    assert f"_DRIFTCTL_COMPLETE={shell}_complete" in result.stdout.replace('"', "")


def test_an_unknown_shell_is_an_input_error() -> None:
    result = driftctl("completion", "tcsh")
    assert result.returncode == 1
    assert "'tcsh' is not one of 'bash', 'zsh', 'fish'" in result.stderr


def _script(shell: str, tmp_path: Path) -> Path:
    path = tmp_path / f"driftctl.{shell}"
    result = driftctl("completion", shell)
    assert result.returncode == 0, result.stderr
    path.write_text(result.stdout)
    return path


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
def test_fish_loads_the_script_and_completes_with_it(tmp_path: Path) -> None:
    script = _script("fish", tmp_path)
    assert subprocess.run(["fish", "--no-execute", str(script)], capture_output=True, timeout=60).returncode == 0
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}", "HOME": str(tmp_path)}
    asked = "; ".join(f"complete -C '{line}'" for line in ("driftctl pl", "driftctl report inv -f j"))
    proc = subprocess.run(["fish", "--no-config", "-c", f"source {script}; {asked}"], capture_output=True,
                          text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert [line.split("\t")[0] for line in proc.stdout.splitlines()] == ["plan", "json", "junit"]


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_loads_the_script_and_registers_the_completion(tmp_path: Path) -> None:
    script = _script("zsh", tmp_path)
    assert subprocess.run(["zsh", "-n", str(script)], capture_output=True, timeout=60).returncode == 0
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}", "HOME": str(tmp_path)}
    proc = subprocess.run(["zsh", "-f", "-c", f"autoload -U compinit; compinit -u -D; source {script}; "
                           "print -r -- ${_comps[driftctl]}"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "_driftctl_completion"
    # what the function asks driftctl for, as zsh does on TAB after "driftctl sched"
    answer = subprocess.run([str(BIN / "driftctl")], capture_output=True, text=True, timeout=60,
                            env={**env, "COMP_WORDS": "driftctl sched", "COMP_CWORD": "1",
                                 "_DRIFTCTL_COMPLETE": "zsh_complete"})
    assert answer.stdout.splitlines()[:2] == ["plain", "schedule"]
