"""The HTML report's chart: drift runs and apply runs over time, one inline SVG, no script.

Two lanes share one time axis, one slot per run, oldest left: drift runs above (drifted resources
stacked by class, as the store's ``drift_series`` counts them), apply runs below (resources changed
and failed). Each lane has its own scale: a first converge changes thousands of resources and would
flatten every drift bar on a shared one. Every segment carries a tooltip (``<title>``).
Colours are SVG presentation attributes and CSS classes, never ``style=`` (the page's CSP allows
styles by hash only).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from driftctl.report.common import host_counts, hosts, parse_time

CHART_CLASSES = ("corrective", "both", "pending", "unmanaged")
APPLY_CLASSES = ("changed", "failed")
COLORS = {"corrective": "#d9534f", "both": "#9b59b6", "pending": "#f0ad4e", "unmanaged": "#5b8fd9",
          "changed": "#00897b", "failed": "#6d1b1b"}
CHART_COMMANDS = ("drift", "apply")


@dataclass
class ChartRun:
    """One run in the chart: a drift run's drifted subjects per class, or an apply's changed/failed
    resources, summed over hosts."""

    run_id: int | None
    time: datetime | None
    counts: dict[str, int] = field(default_factory=dict)
    command: str = "drift"

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def chart_from_document(doc: Mapping[str, Any]) -> list[ChartRun]:
    """The chart of a single run (drift or apply), when no store is at hand."""
    command = doc.get("command")
    if command == "apply":
        s = doc.get("summary") or {}
        counts = {"changed": int(s.get("resources_changed") or 0), "failed": int(s.get("resources_failed") or 0)}
        return [ChartRun(None, parse_time(doc.get("started")), counts, "apply")]
    if command != "drift":
        return []
    counts = dict.fromkeys(CHART_CLASSES, 0)
    for h in hosts(doc):
        c = host_counts(h)
        for cls, n in c.by_class.items():
            counts[cls] = counts.get(cls, 0) + n
        counts["unmanaged"] += c.unmanaged
    return [ChartRun(None, parse_time(doc.get("started")), counts)]


def chart_from_store(store: Any, inventory: str, limit: int = 60, until_run: int | None = None,
                     applies: bool = False) -> list[ChartRun]:
    """The latest ``limit`` drift runs of an inventory (up to run ``until_run``), oldest first, with their
    drift per class; with ``applies``, apply runs too (resources changed and failed, from each run's
    stored summary), the latest ``limit`` runs of both. Runs that found or changed nothing are in the
    chart too (as empty bars): drift_series leaves them out.
    """
    wanted = 100_000 if until_run is not None else limit
    found = list(store.runs(inventory, limit=wanted, command="drift"))
    if applies:
        found += store.runs(inventory, limit=wanted, command="apply")
        found.sort(key=lambda r: (r.started, r.id), reverse=True)
    if until_run is not None:
        found = [r for r in found if r.id <= until_run]
    runs = list(reversed(found[:limit]))
    if not runs:
        return []
    chart: dict[int, ChartRun] = {}
    for r in runs:
        if r.command == "apply":
            s = r.summary or {}
            counts = {"changed": int(s.get("resources_changed") or 0), "failed": int(s.get("resources_failed") or 0)}
            chart[r.id] = ChartRun(r.id, r.started, counts, "apply")
        else:
            chart[r.id] = ChartRun(r.id, r.started, dict.fromkeys(CHART_CLASSES, 0))
    for p in store.drift_series(inventory, since=runs[0].started):
        run = chart.get(p.run_id)
        if run is not None and run.command == "drift":
            run.counts[p.drift_class] = run.counts.get(p.drift_class, 0) + p.count
    return list(chart.values())


def e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def fmt_time(dt: datetime | None) -> str:
    return dt.strftime("%Y-%m-%d %H:%M") if dt else "?"


def _name(run: ChartRun) -> str:
    if run.command == "apply":
        return f"apply #{run.run_id}" if run.run_id is not None else "this apply"
    return f"run #{run.run_id}" if run.run_id is not None else "this run"


@dataclass
class _Lane:
    top: float
    height: float
    runs: list[tuple[int, ChartRun]]
    classes: tuple[str, ...]
    empty_note: str
    empty_color: str

    @property
    def peak(self) -> int:
        return max((r.total for _, r in self.runs), default=0)


def chart_svg(runs: Sequence[ChartRun]) -> str:
    """Stacked bars, one slot per run: drift runs in the upper lane, apply runs in the lower one."""
    if not runs:
        return '<p class="dim">No drift or apply run recorded yet.</p>'
    drift = [(i, r) for i, r in enumerate(runs) if r.command != "apply"]
    apply = [(i, r) for i, r in enumerate(runs) if r.command == "apply"]
    width, left, right, top, axis = 760, 40, 10, 10, 30
    lanes: list[_Lane] = []
    y = float(top)
    if drift or not apply:
        lanes.append(_Lane(y, 170.0 if apply else 200.0, drift, CHART_CLASSES, "no drift", "#2e7d32"))
        y += lanes[-1].height + (26 if apply else 0)
    if apply:
        lanes.append(_Lane(y, 70.0 if drift else 200.0, apply, APPLY_CLASSES, "nothing changed", "#9e9e9e"))
        y += lanes[-1].height
    height = int(y + axis)
    plot_w = width - left - right
    slot = plot_w / len(runs)
    bar = max(1.0, slot * 0.8)
    label = "Drifted resources per drift run, stacked by class" + (
        "; resources changed per apply run below" if apply else "")
    parts = [f'<svg role="img" aria-label="{e(label)}" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}">']
    for lane in lanes:
        ymax = max(1, lane.peak)
        bottom = lane.top + lane.height
        for frac in (0.0, 0.5, 1.0) if lane.height > 100 else (0.0, 1.0):
            value = ymax * frac
            ly = bottom - lane.height * frac
            parts.append(f'<line x1="{left}" y1="{ly:.1f}" x2="{width - right}" y2="{ly:.1f}" stroke="#e0e0e0"/>')
            text = f"{value:.0f}" if value == int(value) else f"{value:.1f}"
            parts.append(f'<text x="{left - 6}" y="{ly + 4:.1f}" text-anchor="end">{text}</text>')
        if lane.classes is APPLY_CLASSES and drift:
            parts.append(f'<text x="{left}" y="{lane.top - 6:.1f}">applies</text>')
        for i, run in lane.runs:
            x = left + i * slot + (slot - bar) / 2
            by = bottom
            name, when = _name(run), fmt_time(run.time)
            for cls in lane.classes:
                n = run.counts.get(cls, 0)
                if not n:
                    continue
                h = max(2.0, lane.height * n / ymax)  # a few beside thousands still show
                by -= h
                parts.append(f'<rect x="{x:.1f}" y="{by:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                             f'fill="{COLORS[cls]}"><title>{e(name)} {e(when)}: {n} {e(cls)}</title></rect>')
            if not run.total:
                parts.append(f'<rect x="{x:.1f}" y="{bottom - 1:.1f}" width="{bar:.1f}" height="1" '
                             f'fill="{lane.empty_color}"><title>{e(name)} {e(when)}: {lane.empty_note}</title></rect>')
    middle = len(runs) // 2
    far_enough = slot * min(middle, len(runs) - 1 - middle) >= 130  # labels are ~100 px wide
    picks = sorted({0, len(runs) - 1} | ({middle} if far_enough else set()))
    for i in picks:
        x = left + i * slot + slot / 2
        anchor = "start" if i == 0 and len(runs) > 1 else "end" if i == len(runs) - 1 and len(runs) > 1 else "middle"
        parts.append(f'<text x="{x:.1f}" y="{height - 10}" text-anchor="{anchor}">{e(fmt_time(runs[i].time))}</text>')
    parts.append("</svg>")
    shown = CHART_CLASSES + (APPLY_CLASSES if apply else ())
    legend = "".join(f'<span><i class="sw-{c}"></i>{e(c if c in CHART_CLASSES else c + " (apply)")}</span>'
                     for c in shown)
    caption = []
    if drift:
        peak = max(r.total for _, r in drift)
        caption.append(f"{len(drift)} drift run(s); the latest found {drift[-1][1].total} drifted resource(s) and "
                       f"unmanaged change(s); the most in one run: {peak}")
    if apply:
        caption.append(f"{len(apply)} apply run(s); the latest changed {apply[-1][1].counts.get('changed', 0)} "
                       f"resource(s)")
    return "\n".join(parts) + f'\n<div class="legend">{legend}</div>\n<p class="dim">{e("; ".join(caption))}.</p>'


def legend_css() -> str:
    """The legend's colour swatches, as CSS classes (the CSP allows no ``style=`` attribute)."""
    return "".join(f".sw-{c}{{background:{color}}}" for c, color in COLORS.items())
