"""Manifests: ``manifests/site.yaml`` + roles + files -> a validated, ordered Catalog per host.

``load_site(root)`` reads the tree (structure only: every host-independent mistake is found here);
``compile_catalog(site, inventory, host, facts)`` renders and validates one host's catalog;
``preflight(site, inventory, hosts)`` compiles every host without facts before any connection.
The format is described in docs/manifests.md.
"""

from __future__ import annotations

from driftctl.manifest.canonical import digest
from driftctl.manifest.compile import applicable_files, compile_catalog, preflight
from driftctl.manifest.render import FactsPlaceholder
from driftctl.manifest.site import ManifestFile, ResourceDecl, Role, Site, SiteEntry, load_site

__all__ = [
    "FactsPlaceholder",
    "ManifestFile",
    "ResourceDecl",
    "Role",
    "Site",
    "SiteEntry",
    "applicable_files",
    "compile_catalog",
    "digest",
    "load_site",
    "preflight",
]
