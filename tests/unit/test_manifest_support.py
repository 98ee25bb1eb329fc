"""Shared helpers for the manifest/render/graph tests: small resource types, a hand-built Inventory,
and manifest trees written from text. (No tests here; the name keeps it among the manifest tests.)

The types are private to these tests (passed as ``types=``), never registered: the real types
live in driftctl/resources/ and are tested against the example site in test_manifest_site.py.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from driftctl.errors import Location, ManifestError
from driftctl.inventory import Inventory
from driftctl.model import ConnectionSpec, Host
from driftctl.resources.base import Param, ResourceType, check_abs_path, check_mode


class TFile(ResourceType):
    """A file (test double of the real type's schema)."""

    name = "file"
    namevar = "path"
    params: ClassVar[dict[str, Param]] = {
        "path": Param(str, "path", required=True, check=check_abs_path),
        "ensure": Param(str, "ensure", default="present", choices=("present", "absent")),
        "content": Param(str, "content"),
        "template": Param(str, "template"),
        "source": Param(str, "source"),
        "mode": Param(str, "mode", check=check_mode),
        "owner": Param(str, "owner"),
    }

    @classmethod
    def normalize(cls, params: dict[str, Any], location: Location) -> dict[str, Any]:
        given = [k for k in ("content", "template", "source") if params.get(k) is not None]
        if len(given) > 1:
            raise ManifestError(f"file: give one of content, template, source (not {' and '.join(given)})", location)
        return params

    @classmethod
    def autorequire(cls, params: Mapping[str, Any]) -> list[str]:
        parent = str(Path(params["path"]).parent)
        out = [f"directory:{parent}"]
        if params.get("owner"):
            out.append(f"user:{params['owner']}")
        return out


class TDirectory(ResourceType):
    name = "directory"
    namevar = "path"
    params: ClassVar[dict[str, Param]] = {
        "path": Param(str, "path", required=True, check=check_abs_path),
        "mode": Param(str, "mode", check=check_mode),
    }

    @classmethod
    def autorequire(cls, params: Mapping[str, Any]) -> list[str]:
        return [f"directory:{Path(params['path']).parent}"]


class TLine(ResourceType):
    name = "line"
    namevar = "name"
    params: ClassVar[dict[str, Param]] = {
        "name": Param(str, "name", required=True),
        "path": Param(str, "path", required=True, check=check_abs_path),
        "text": Param(str, "text", required=True),
        "match": Param(str, "match"),
    }

    @classmethod
    def claims(cls, params: Mapping[str, Any]) -> list[str]:
        return [f"line:{params['path']}:{params['match'] or params['text']}"]


class TPackage(ResourceType):
    name = "package"
    namevar = "name"
    params: ClassVar[dict[str, Param]] = {
        "name": Param(str, "name", required=True),
        "ensure": Param(str, "ensure", default="present", choices=("present", "absent", "latest")),
    }


class TService(ResourceType):
    name = "service"
    namevar = "name"
    params: ClassVar[dict[str, Param]] = {
        "name": Param(str, "name", required=True),
        "enabled": Param(bool, "enabled"),
        "running": Param(bool, "running"),
        "port": Param(int, "port"),
    }


class TUser(ResourceType):
    name = "user"
    namevar = "name"
    params: ClassVar[dict[str, Param]] = {
        "name": Param(str, "name", required=True),
        "uid": Param(int, "uid"),
        "shell": Param(str, "shell"),
        "groups": Param(list, "groups"),
        "password": Param(str, "password"),
    }


TYPES: dict[str, type[ResourceType]] = {
    t.name: t for t in (TFile, TDirectory, TLine, TPackage, TService, TUser)
}


def make_inventory(hosts: dict[str, tuple[list[str], dict[str, Any]]]) -> Inventory:
    """A real Inventory built by hand: ``name -> (groups, vars)``, in that order."""
    return Inventory(Path("test-inventory"), hosts={
        name: Host(name, dict(variables), ("all", *groups), ConnectionSpec(address=name))
        for name, (groups, variables) in hosts.items()
    })


def inventory(**extra_vars: Any) -> Inventory:
    """web1, web2 (group web) and db1 (group db); ``extra_vars`` go to every host."""
    return make_inventory({
        "web1": (["web"], {"port": 8080, **extra_vars}),
        "web2": (["web"], {**extra_vars}),
        "db1": (["db"], {**extra_vars}),
    })


def write_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    """Write ``files`` (path -> text, dedented; bytes as they are) under ``root``; returns root."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(textwrap.dedent(text).lstrip("\n"))
    return root
