"""What part of a run to do, and in what order: ``--tags``/``--skip-tags`` (driftctl/tags.py) and
``--serial``/``--max-fail-percentage`` (driftctl/batches.py), for plan, check, apply and drift.

Every value is checked before any host is contacted: a bad one is an input error (exit 1).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click

from driftctl import batches
from driftctl.cli.options import options
from driftctl.errors import ConfigError
from driftctl.tags import TagSelection, check_known, selection

F = TypeVar("F", bound=Callable[..., Any])

NAMES = ("tags", "skip_tags", "serial", "max_fail_percentage")


def tags_option(f: F) -> F:
    return click.option(
        "-t", "--tags", "tags", multiple=True, metavar="TAG[,TAG]",
        help="Only resources with one of these tags (repeatable; special: all, tagged, untagged, always, "
             "never, as in Ansible). A tag no resource has is an error. The run is marked partial.")(f)


def skip_tags_option(f: F) -> F:
    return click.option("--skip-tags", "skip_tags", multiple=True, metavar="TAG[,TAG]",
                        help="Leave out resources with one of these tags (repeatable; wins over --tags).")(f)


def serial_option(f: F) -> F:
    return click.option(
        "--serial", metavar="N|N%|LIST",
        help="Run hosts in batches, one batch after the other: N hosts, N% of them, or a list as Ansible's "
             "serial (1,5,25%: the last value repeats).")(f)


def max_fail_option(f: F) -> F:
    return click.option(
        "--max-fail-percentage", "max_fail_percentage", metavar="P",
        help="With --serial: when more than P% of a batch fails or is unreachable, later batches do not start "
             "(exit bit 16). A batch where every host failed always stops them, as in Ansible.")(f)


def run_options(f: F) -> F:
    return options(tags_option, skip_tags_option, serial_option, max_fail_option)(f)


@dataclass
class RunOptions:
    tags: tuple[str, ...] = ()
    skip_tags: tuple[str, ...] = ()
    serial: str | None = None
    max_fail_percentage: str | None = None
    # parsed by parse()
    selection: TagSelection = field(default_factory=TagSelection)
    steps: list[batches.Step] | None = None
    max_fail: float | None = None

    def parse(self) -> RunOptions:
        """Check and parse every value (ConfigError, exit 1, before anything is loaded or contacted)."""
        self.selection = selection(self.tags, self.skip_tags)
        self.steps = batches.parse_serial(self.serial) if self.serial is not None else None
        if self.max_fail_percentage is not None:
            self.max_fail = batches.parse_max_fail(self.max_fail_percentage)
            if self.steps is None:
                raise ConfigError("--max-fail-percentage needs --serial",
                                  hint="without batches every host runs at once: there is nothing later to stop")
        return self

    def configure(self, engine: Any, site: Any) -> None:
        """Give ``engine`` the selection and the batches. A tag that no resource of the manifests has is
        an error here, before any connection; when some tags are templated, the check waits for the
        rendered catalogs (still before any host's work)."""
        from driftctl.manifest.compile import site_tags

        chosen = self.selection
        known, templated = site_tags(site)
        if templated:
            engine.tags_known = known
        else:
            check_known(chosen, known, str(site.root))
        engine.tags = chosen
        engine.serial = self.steps
        engine.max_fail = self.max_fail


def pass_run_options(f: F) -> F:
    """Collect --tags, --skip-tags, --serial and --max-fail-percentage into one parsed ``run_opts``."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        given = {n: kwargs.pop(n, None) for n in NAMES}
        opts = RunOptions(tags=tuple(given["tags"] or ()), skip_tags=tuple(given["skip_tags"] or ()),
                          serial=given["serial"], max_fail_percentage=given["max_fail_percentage"]).parse()
        return f(*args, run_opts=opts, **kwargs)

    return wrapper  # type: ignore[return-value]
