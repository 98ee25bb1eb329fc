"""Renderings of the report document (``driftctl.report/v1``, built by driftctl/report/document.py).

Each renderer is a pure function from the document to text:

=============  ============================  =======================================================
format         file (``write_reports``)      for
=============  ============================  =======================================================
json           driftctl-report.json          machines: the document itself, keys sorted
junit          driftctl-report.xml           CI: drift and failures as failed tests
markdown       driftctl-report.md            a pull request or an issue
html           driftctl-report.html          people: one self-contained page: filters, history, chart
prometheus     driftctl.prom                 node_exporter's textfile collector
=============  ============================  =======================================================

``render(doc, fmt, chart=None, history=None)`` gives the text of one format; ``write_reports(doc,
directory)`` writes them all atomically. The HTML page's chart of drift and applies over time and each
resource's past events need the store (``store=``); without it the chart shows this run alone and no
past is shown.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from driftctl.errors import ConfigError
from driftctl.fileio import ReportWriteError, write_atomic
from driftctl.report.common import parse_time

if TYPE_CHECKING:
    from driftctl.report.html import ChartRun, chart_from_document, chart_from_store
    from driftctl.report.past import History, history_from_store

# The renderers are imported when a report is rendered: a run that only builds its document (every
# plan, check and apply) does not import the page, JUnit's XML or the store's history (~25 ms).
_LAZY = {"ChartRun": "html", "chart_from_document": "html", "chart_from_store": "html",
         "History": "past", "history_from_store": "past"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"driftctl.report.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


FORMATS: tuple[str, ...] = ("json", "junit", "markdown", "html", "prometheus")
ALL = FORMATS
T = TypeVar("T")
FILE_NAMES: dict[str, str] = {
    "json": "driftctl-report.json",
    "junit": "driftctl-report.xml",
    "markdown": "driftctl-report.md",
    "html": "driftctl-report.html",
    "prometheus": "driftctl.prom",
}

__all__ = [
    "ALL",
    "FILE_NAMES",
    "FORMATS",
    "ChartRun",
    "History",
    "ReportWriteError",
    "chart_for",
    "chart_from_document",
    "chart_from_store",
    "history_for",
    "history_from_store",
    "render",
    "write_atomic",
    "write_reports",
]


def render(doc: Mapping[str, Any], fmt: str, chart: Sequence[ChartRun] | None = None,
           history: History | None = None) -> str:
    """The document in one format. HTML only: ``chart``, runs from ``chart_from_store``; ``history``, each
    resource's past from ``history_from_store``."""
    if fmt not in FILE_NAMES:
        raise ConfigError(f"unknown report format {fmt!r} (known: {', '.join(FORMATS)})")
    module = importlib.import_module(f"driftctl.report.{'jsondoc' if fmt == 'json' else fmt}")
    if fmt == "html":
        return str(module.render(doc, chart, history))
    return str(module.render(doc))


def _from_store(doc: Mapping[str, Any], store: Any, read: Callable[[Any, str], T]) -> T | None:
    """``read(opened_store, inventory)`` on ``store`` (a Store or a store URL), or None.

    A store that cannot be read costs the page its history, never the report.
    """
    if store is None or not doc.get("inventory"):
        return None
    from driftctl.errors import DriftctlError

    inventory = str(doc["inventory"])
    try:
        if isinstance(store, (str, Path)):
            from driftctl.store import open_store

            with open_store(store) as opened:
                return read(opened, inventory)
        return read(store, inventory)
    except DriftctlError:
        return None


def chart_for(doc: Mapping[str, Any], store: Any = None) -> list[ChartRun] | None:
    """The drift runs and apply runs of the document's inventory from ``store`` (a Store or a store URL),
    or None."""
    from driftctl.report.html import chart_from_store

    return _from_store(doc, store, lambda s, inv: chart_from_store(s, inv, applies=True))


def history_for(doc: Mapping[str, Any], store: Any = None) -> History | None:
    """Each host's and resource's past events up to the document's run, from ``store``, or None."""
    from driftctl.report.past import history_from_store

    until = parse_time(doc.get("finished") or doc.get("started"))
    return _from_store(doc, store, lambda s, inv: history_from_store(s, inv, until=until))


def _page_data(doc: Mapping[str, Any], store: Any) -> tuple[list[ChartRun] | None, History | None]:
    """chart_for and history_for with the store opened once."""
    from driftctl.report.html import chart_from_store
    from driftctl.report.past import history_from_store

    until = parse_time(doc.get("finished") or doc.get("started"))
    found = _from_store(doc, store, lambda s, inv: (chart_from_store(s, inv, applies=True),
                                                     history_from_store(s, inv, until=until)))
    return found if found is not None else (None, None)


def write_reports(doc: Mapping[str, Any], directory: Path, formats: Iterable[str] = ALL,
                  store: Any = None) -> list[Path]:
    """Write the document in each format into ``directory`` (created if missing), atomically, mode 0644.

    ``store`` (a Store, or a store URL/path) gives the HTML page its chart of drift and applies over time
    and each resource's past events.
    Returns the paths written, in the order of ``formats``. Raises ReportWriteError, ConfigError.
    """
    wanted = list(formats)
    for fmt in wanted:
        if fmt not in FILE_NAMES:
            raise ConfigError(f"unknown report format {fmt!r} (known: {', '.join(FORMATS)})")
    chart, history = _page_data(doc, store) if "html" in wanted else (None, None)
    directory = Path(directory)
    return [write_atomic(directory / FILE_NAMES[fmt], render(doc, fmt, chart, history)) for fmt in wanted]
