"""``driftctl completion bash|zsh|fish``: print the shell's completion script (click's own shell completion).

The script calls ``driftctl`` back with ``_DRIFTCTL_COMPLETE=<shell>_complete`` set; click answers with
the commands, options and choices that fit. See docs/cli.md for where to put each script.
"""

from __future__ import annotations

import sys

import click

SHELLS = ("bash", "zsh", "fish")
PROG = "driftctl"
COMPLETE_VAR = "_DRIFTCTL_COMPLETE"


def completion_script(shell: str) -> str:
    from click.shell_completion import get_completion_class

    from driftctl.cli import cli

    cls = get_completion_class(shell)
    if cls is None:  # pragma: no cover - click.Choice allows only the shells click knows
        raise click.BadParameter(f"no completion for {shell}", param_hint="SHELL")
    return cls(cli, {}, PROG, COMPLETE_VAR).source()


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
def completion_cmd(shell: str) -> int:
    """Print the completion script for SHELL (bash >= 4.4, zsh, fish): commands, options, choices.

    Load it now with `eval "$(driftctl completion bash)"`, or save it where the shell looks (below).
    """
    text = completion_script(shell)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def register(group: click.Group) -> None:
    group.add_command(completion_cmd)
