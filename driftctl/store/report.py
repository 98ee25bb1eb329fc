"""The report document (``driftctl.report/v1``): what every run produces and the store keeps.

The full contract is ``driftctl/store/report.schema.json`` (JSON Schema 2020-12), explained in
docs/report-schema.md. The store checks only what it needs to derive its tables (``check()``); the
tests validate documents against the JSON Schema itself.
"""

from __future__ import annotations

import json
import os
import posixpath
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from driftctl.errors import StoreError

SCHEMA_ID = "driftctl.report/v1"
COMMANDS = ("apply", "check", "plan", "drift")
HOST_STATUSES = ("ok", "changed", "drifted", "failed", "unreachable")
RESOURCE_STATUSES = ("ok", "changed", "failed", "skipped")
DRIFT_CLASSES = ("corrective", "pending", "both")
UNMANAGED_CHANGES = ("added", "removed", "changed")


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the report document."""
    text = resources.files("driftctl.store").joinpath("report.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def inventory_key(inventory: str | os.PathLike[str]) -> str:
    """How an inventory is named in the store: the path as given, normalised (``inventory/prod/`` and
    ``./inventory/prod`` are the same key). Not made absolute: controllers sharing a PostgreSQL store
    check the project out in different places."""
    text = os.fspath(inventory).replace(os.sep, "/")
    return posixpath.normpath(text) if text else text


def parse_time(value: Any, what: str) -> float:
    """An ISO 8601 time (naive means UTC) or epoch seconds -> epoch seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise StoreError(f"report: {what} is not an ISO 8601 time: {value!r}") from None
    else:
        raise StoreError(f"report: {what} must be an ISO 8601 time, not {type(value).__name__}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _fail(message: str) -> StoreError:
    return StoreError(f"report document: {message}")


def check(report: Any) -> None:
    """Refuse a document the store cannot derive its rows from (a bug in the producer, not user input).

    Messages name the place (``hosts[3].resources[7].status``), never a value of the user's data
    beyond the enumerations.
    """
    if not isinstance(report, dict):
        raise _fail("must be a JSON object")
    if report.get("schema") != SCHEMA_ID:
        raise _fail(f"schema must be {SCHEMA_ID!r}, not {report.get('schema')!r}")
    if report.get("command") not in COMMANDS:
        raise _fail(f"command must be one of {', '.join(COMMANDS)}")
    if not isinstance(report.get("inventory"), str) or not report["inventory"]:
        raise _fail("inventory must be a non-empty string")
    parse_time(report.get("started"), "started")
    if report.get("finished") is not None:
        parse_time(report["finished"], "finished")
    hosts = report.get("hosts")
    if not isinstance(hosts, list):
        raise _fail("hosts must be a list")
    seen: set[str] = set()
    for i, h in enumerate(hosts):
        where = f"hosts[{i}]"
        if not isinstance(h, dict) or not isinstance(h.get("name"), str) or not h["name"]:
            raise _fail(f"{where}.name must be a non-empty string")
        if h["name"] in seen:
            raise _fail(f"{where}: host {h['name']} appears twice")
        seen.add(h["name"])
        if h.get("status") not in HOST_STATUSES:
            raise _fail(f"{where}.status must be one of {', '.join(HOST_STATUSES)}")
        ids: set[str] = set()
        for j, r in enumerate(h.get("resources") or []):
            rw = f"{where}.resources[{j}]"
            if not isinstance(r, dict) or not isinstance(r.get("id"), str) or ":" not in r["id"]:
                raise _fail(f"{rw}.id must be a resource id (type:name)")
            if r["id"] in ids:
                raise _fail(f"{rw}: resource appears twice on host {h['name']}")
            ids.add(r["id"])
            if r.get("status") not in RESOURCE_STATUSES:
                raise _fail(f"{rw}.status must be one of {', '.join(RESOURCE_STATUSES)}")
            if r.get("drift") is not None and r["drift"] not in DRIFT_CLASSES:
                raise _fail(f"{rw}.drift must be null or one of {', '.join(DRIFT_CLASSES)}")
        paths: set[str] = set()
        for j, u in enumerate(h.get("unmanaged") or []):
            uw = f"{where}.unmanaged[{j}]"
            if not isinstance(u, dict) or not isinstance(u.get("path"), str) or not u["path"].startswith("/"):
                raise _fail(f"{uw}.path must be an absolute path")
            if u["path"] in paths:
                raise _fail(f"{uw}: path appears twice on host {h['name']}")
            paths.add(u["path"])
            if u.get("change") not in UNMANAGED_CHANGES:
                raise _fail(f"{uw}.change must be one of {', '.join(UNMANAGED_CHANGES)}")
