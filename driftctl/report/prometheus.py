"""A textfile for node_exporter's textfile collector (``--collector.textfile.directory``).

Metrics (all gauges, labelled by ``inventory``):

- ``driftctl_drifted_resources{inventory,host,class}``: drifted resources not ignored, per class
  (corrective, pending, both); absent for an unreachable host (unknown is not "no drift");
- ``driftctl_unmanaged_changes{inventory,host}``: unmanaged changes not ignored (absent when unreachable
  or when the watch paths were not examined);
- ``driftctl_host_up{inventory,host}``: 0 when the host was unreachable, else 1;
- ``driftctl_resources{inventory,host,status}``: resources examined by status (ok, changed, failed, skipped);
- ``driftctl_last_run_timestamp_seconds{inventory,command}``, ``driftctl_last_run_exit_code{inventory,command}``,
  ``driftctl_run_duration_seconds{inventory,command}``: the run itself.

Alert example: ``driftctl_drifted_resources{class="corrective"} > 0`` or
``time() - driftctl_last_run_timestamp_seconds{command="drift"} > 7200`` (the schedule stopped).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from driftctl.report.common import DRIFT_CLASSES, RESOURCE_STATUSES, duration, host_counts, hosts, parse_time


def escape_label(value: Any) -> str:
    """A label value per the exposition format: backslash, double quote and newline escaped."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class _Family:
    def __init__(self, name: str, help_text: str) -> None:
        self.name = name
        self.help = help_text
        self.samples: list[str] = []

    def add(self, labels: Mapping[str, Any], value: float) -> None:
        inner = ",".join(f'{k}="{escape_label(v)}"' for k, v in labels.items())
        self.samples.append(f"{self.name}{{{inner}}} {_number(value)}")

    def text(self) -> str:
        head = [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} gauge"]
        return "\n".join(head + self.samples) + "\n"


def render(doc: Mapping[str, Any]) -> str:
    inventory = str(doc.get("inventory", ""))
    command = str(doc.get("command", ""))
    drifted = _Family("driftctl_drifted_resources",
                      "Drifted resources (not ignored) found by the last drift run, per drift class.")
    unmanaged = _Family("driftctl_unmanaged_changes",
                        "Changes under watched paths that no resource manages (not ignored).")
    up = _Family("driftctl_host_up", "1 if the host was reached in the last run, 0 if it was unreachable.")
    res = _Family("driftctl_resources", "Resources examined on the host in the last run, by status.")
    stamp = _Family("driftctl_last_run_timestamp_seconds", "When the last run finished (Unix time).")
    code = _Family("driftctl_last_run_exit_code",
                   "Exit code of the last run: 0 in sync, 2 drift/changes, 4 failed, 8 unreachable (bits combine).")
    took = _Family("driftctl_run_duration_seconds", "How long the last run took.")
    for h in hosts(doc):
        c = host_counts(h)
        up.add({"inventory": inventory, "host": c.name}, 0 if c.status == "unreachable" else 1)
        if c.status == "unreachable":
            continue  # no sample: nothing is known about its drift
        for status in RESOURCE_STATUSES:
            res.add({"inventory": inventory, "host": c.name, "status": status}, c.by_status.get(status, 0))
        if command == "drift":
            for cls in DRIFT_CLASSES:
                drifted.add({"inventory": inventory, "host": c.name, "class": cls}, c.by_class.get(cls, 0))
            if c.unmanaged_examined:
                unmanaged.add({"inventory": inventory, "host": c.name}, c.unmanaged)
    run = {"inventory": inventory, "command": command}
    when = parse_time(doc.get("finished")) or parse_time(doc.get("started"))
    if when is not None:
        stamp.add(run, when.timestamp())
    if isinstance(doc.get("exit_code"), int):
        code.add(run, doc["exit_code"])
    seconds = duration(doc)
    if seconds is not None:
        took.add(run, seconds)
    families = [drifted, unmanaged, up, res, stamp, code, took]
    return "".join(f.text() for f in families if f.samples)
