"""Renderings of the report document (``driftctl.report/v1``, built by driftctl/report/document.py).

Each renderer is a pure function from the document to text:

=============  ============================  =======================================================
format         file (``write_reports``)      for
=============  ============================  =======================================================
json           driftctl-report.json          machines: the document itself, keys sorted
junit          driftctl-report.xml           CI: drift and failures as failed tests
markdown       driftctl-report.md            a pull request or an issue
html           driftctl-report.html          people: one self-contained page with a drift chart
prometheus     driftctl.prom                 node_exporter's textfile collector
=============  ============================  =======================================================

``render(doc, fmt, chart=None)`` gives the text of one format; ``write_reports(doc, directory)``
writes them all atomically. The HTML chart of drift over time needs the store (``store=``); without
it the chart shows this run alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from driftctl.errors import ConfigError
from driftctl.fileio import ReportWriteError, write_atomic
from driftctl.report import html, jsondoc, junit, markdown, prometheus
from driftctl.report.html import ChartRun, chart_from_document, chart_from_store

FORMATS: tuple[str, ...] = ("json", "junit", "markdown", "html", "prometheus")
ALL = FORMATS
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
    "ReportWriteError",
    "chart_for",
    "chart_from_document",
    "chart_from_store",
    "render",
    "write_atomic",
    "write_reports",
]


def render(doc: Mapping[str, Any], fmt: str, chart: Sequence[ChartRun] | None = None) -> str:
    """The document in one format. ``chart`` (HTML only): drift runs from ``chart_from_store``."""
    if fmt == "json":
        return jsondoc.render(doc)
    if fmt == "junit":
        return junit.render(doc)
    if fmt == "markdown":
        return markdown.render(doc)
    if fmt == "html":
        return html.render(doc, chart)
    if fmt == "prometheus":
        return prometheus.render(doc)
    raise ConfigError(f"unknown report format {fmt!r} (known: {', '.join(FORMATS)})")


def chart_for(doc: Mapping[str, Any], store: Any = None) -> list[ChartRun] | None:
    """The drift history of the document's inventory from ``store`` (a Store or a store URL), or None.

    A store that cannot be read costs the chart its history, never the report.
    """
    if store is None or not doc.get("inventory"):
        return None
    from driftctl.errors import DriftctlError

    if isinstance(store, (str, Path)):
        from driftctl.store import open_store

        try:
            with open_store(store) as opened:
                return chart_from_store(opened, str(doc["inventory"]))
        except DriftctlError:
            return None
    try:
        return chart_from_store(store, str(doc["inventory"]))
    except DriftctlError:
        return None


def write_reports(doc: Mapping[str, Any], directory: Path, formats: Iterable[str] = ALL,
                  store: Any = None) -> list[Path]:
    """Write the document in each format into ``directory`` (created if missing), atomically, mode 0644.

    ``store`` (a Store, or a store URL/path) gives the HTML page its drift-over-time chart.
    Returns the paths written, in the order of ``formats``. Raises ReportWriteError, ConfigError.
    """
    wanted = list(formats)
    for fmt in wanted:
        if fmt not in FILE_NAMES:
            raise ConfigError(f"unknown report format {fmt!r} (known: {', '.join(FORMATS)})")
    chart = chart_for(doc, store) if "html" in wanted else None
    directory = Path(directory)
    return [write_atomic(directory / FILE_NAMES[fmt], render(doc, fmt, chart)) for fmt in wanted]
