"""JSON Schemas (draft 2020-12) of every ``--json`` output, published with the package.

Each file is ``driftctl/schemas/<name>.schema.json`` with ``$id`` ``urn:driftctl:<name>:v<version>``.
The run report (plan, check, apply, drift, ``report -f json``) keeps its own schema,
``driftctl/store/report.schema.json`` (``urn:driftctl:report:v1``), which ``facts`` refers to.
Versioning as for the report (docs/json.md): within a version fields are only added.

    >>> validator("history").validate(json.loads(output))   # needs the jsonschema package
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

__all__ = ["COMMAND_SCHEMAS", "NAMES", "REPORT", "load", "schema_id", "validator"]

REPORT = "report"  # the run report document's schema, in driftctl/store/

NAMES = ("inventory", "inventory-host", "inventory-graph", "facts", "history", "ignore-list", "schedule-list",
         "bake", "bake-verify", "compare", "prune", "accept")

# every command path with --json (or -f json) -> the schema of what it prints
COMMAND_SCHEMAS: dict[str, str] = {
    "inventory": "inventory",
    "inventory --host": "inventory-host",
    "inventory --graph": "inventory-graph",
    "facts": "facts",
    "plan": REPORT,
    "check": REPORT,
    "apply": REPORT,
    "drift": REPORT,
    "pull": REPORT,
    "bundle install": REPORT,
    "bundle remove": REPORT,
    "report -f json": REPORT,
    "history": "history",
    "ignore list": "ignore-list",
    "schedule list": "schedule-list",
    "bake": "bake",
    "bake-verify": "bake-verify",
    "compare": "compare",
    "prune": "prune",
    "accept": "accept",
}


def load(name: str) -> dict[str, Any]:
    """The schema ``name`` (one of NAMES, or "report")."""
    if name == REPORT:
        from driftctl.store import json_schema

        return json_schema()
    if name not in NAMES:
        raise KeyError(f"no JSON schema named {name!r} (known: {', '.join(NAMES)}, {REPORT})")
    text = resources.files("driftctl.schemas").joinpath(f"{name}.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def schema_id(name: str) -> str:
    """The ``$id`` of schema ``name``: ``urn:driftctl:<name>:v<version>``."""
    return str(load(name)["$id"])


def validator(name: str) -> Any:
    """A jsonschema Draft 2020-12 validator for ``name`` that resolves references between driftctl's schemas
    (facts refers to the report's), with formats checked. Needs the jsonschema package."""
    import jsonschema
    from referencing import Registry, Resource

    schemas = [load(n) for n in (*NAMES, REPORT)]
    registry: Registry[Any] = Registry().with_resources(
        (s["$id"], Resource.from_contents(s)) for s in schemas
    )
    return jsonschema.Draft202012Validator(load(name), registry=registry, format_checker=jsonschema.FormatChecker())
