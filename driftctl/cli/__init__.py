"""driftctl's command line. The only place that prints (through driftctl/cli/ui.py and driftctl/report/).

Each command group lives in its own module ``driftctl/cli/cmd_<name>.py`` exposing ``register(group)``.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from driftctl import __version__
from driftctl.cli import examples
from driftctl.errors import DriftctlError, ExitCode

# command -> the module (driftctl/cli/cmd_<module>.py) whose register(group) adds it, in the order of a
# user's workflow (--help's). A command's module is imported when the command is asked for: a check
# does not import bake's, the scheduler's or the worker's code (a test checks this table against them).
COMMANDS = {"init": "init", "inventory": "inventory", "facts": "facts",
            "plan": "converge", "check": "converge", "apply": "converge",
            "drift": "drift", "accept": "drift", "ignore": "drift", "history": "history", "report": "report",
            "schedule": "schedule", "bake": "bake", "bake-verify": "bake", "compare": "bake", "prune": "prune",
            "pull": "pull", "bundle": "bundle", "worker": "worker", "completion": "completion"}

# Ansible's check mode (ansible-playbook --check/-C) and the common --dry-run, typed on plan, check or apply
CHECK_MODE_FLAGS = ("--check", "-C", "--dry-run")


def check_mode_hint(command: str, option: str) -> str | None:
    """What to say instead of "no such option" when an Ansible user asks for check mode."""
    if option not in CHECK_MODE_FLAGS or command not in ("plan", "check", "apply"):
        return None
    if command == "apply":
        return (f"apply has no {option}: `driftctl plan INVENTORY` shows what apply would change, with diffs, "
                "and changes nothing (Ansible's --check --diff); `driftctl check INVENTORY` is the same for "
                "automation (exit 2 when changes are pending)")
    return (f"{command} has no {option}: it never changes anything (it already is Ansible's --check)"
            + ("; for automation use `driftctl check INVENTORY` (exit 2 when changes are pending)"
               if command == "plan" else "; `driftctl apply INVENTORY` makes the changes"))


class _Group(click.Group):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loaded: set[str] = set()

    def list_commands(self, ctx: click.Context) -> list[str]:
        for module in dict.fromkeys(COMMANDS.values()):
            self.load(module)
        return [n for n in COMMANDS if n in self.commands] + [n for n in self.commands if n not in COMMANDS]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            self.load(COMMANDS[cmd_name])
        return super().get_command(ctx, cmd_name)

    def load(self, module: str) -> None:
        """Import driftctl/cli/cmd_<module>.py and register its commands, with their examples."""
        if module in self._loaded:
            return
        self._loaded.add(module)
        before = set(self.commands)
        importlib.import_module(f"driftctl.cli.cmd_{module}").register(self)
        examples.attach(self, [n for n in self.commands if n not in before])

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except click.NoSuchOption as e:
            command = e.ctx.info_name if e.ctx is not None else None
            hint = check_mode_hint(command or "", e.option_name)
            if hint is None:
                raise
            raise click.UsageError(hint, ctx=e.ctx) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="driftctl")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Agentless configuration management that tells you what drifted, how and since when.

    Exit codes: 0 in sync, 2 changes or drift, 4 a resource failed, 8 a host unreachable
    (bits combine: 10 = changes + unreachable), 1 bad input (no host contacted), 75 locked.
    """
    from driftctl.cli.ui import core_warnings

    ctx.with_resource(core_warnings())  # every warning the core logs reaches stderr, for the whole command


examples.attach(cli, [])  # driftctl's own examples; each command's come with it (_Group.load)


def _two_malloc_arenas() -> None:
    """glibc gives threads that allocate their own malloc arenas (up to 8 per core); with a thread per
    host those are tens of half-empty heaps. Two arenas, as servers with many threads are told to use
    (MALLOC_ARENA_MAX=2): a 40-host first converge peaks ~4 MB lower. A value set by the user stays;
    another C library (no mallopt) is left alone."""
    import os

    if "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        import ctypes

        ctypes.CDLL(None).mallopt(-8, 2)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


def _fewer_collections() -> None:
    """A run holds every host's results until its report (a 100-host drift: ~1.5 million objects), and
    each young collection that reaches the oldest generation walks them all, holding the GIL that every
    host's connection waits for. Collecting the young generation every 10,000 allocations, not 700:
    a 100-host drift spent 0.39-0.41 s of CPU in the collector (longest pause 85-112 ms), 0.17-0.21 s
    after (longest 45-52 ms), at the same peak RSS. Set for the command line only, not for a program
    that imports driftctl."""
    import gc

    gc.set_threshold(10_000, 10, 10)


def main(argv: list[str] | None = None) -> None:
    from driftctl.cli.ui import error

    _two_malloc_arenas()
    _fewer_collections()
    try:
        rc = cli.main(args=argv, prog_name="driftctl", standalone_mode=False)
    except click.exceptions.Abort:
        error("aborted")
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(ExitCode.INPUT if e.exit_code == 2 else e.exit_code)
    except DriftctlError as e:
        error(str(e))
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        error("interrupted")
        sys.exit(130)
    sys.exit(rc if isinstance(rc, int) else 0)
