"""Where a baked image comes from: the epoch its timestamps use, the git revision, the labels."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from driftctl import __version__
from driftctl.bake.oci import canonical_json
from driftctl.errors import BakeError
from driftctl.model import Catalog

L_CREATED = "org.opencontainers.image.created"
L_REVISION = "org.opencontainers.image.revision"
L_SOURCE = "org.opencontainers.image.source"
L_BASE_NAME = "org.opencontainers.image.base.name"
L_BASE_DIGEST = "org.opencontainers.image.base.digest"
L_VERSION = "io.driftctl.version"
L_CATALOG = "io.driftctl.catalog.digest"
L_HOST = "io.driftctl.host"
L_NOT_REPRODUCIBLE = "io.driftctl.converged-not-bit-reproducible"


def _git(repo: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = proc.stdout.strip()
    return out if proc.returncode == 0 and out else None


def resolve_epoch(repo: Path | None, explicit: int | None = None) -> int:
    """The time every baked timestamp uses: ``explicit``, else $SOURCE_DATE_EPOCH, else the manifest
    repository's last commit time, else 0 (reproducible-builds.org's convention)."""
    if explicit is not None:
        return int(explicit)
    env = os.environ.get("SOURCE_DATE_EPOCH")
    if env:
        if not env.isdigit():
            raise BakeError(f"SOURCE_DATE_EPOCH must be a number of seconds, not {env!r}")
        return int(env)
    if repo is not None:
        # the last commit that touched the manifest tree: commits elsewhere in the repository must
        # not change the image
        commit_time = _git(repo, "log", "-1", "--format=%ct", "--", ".")
        if commit_time and commit_time.isdigit():
            return int(commit_time)
    return 0


def git_revision(repo: Path | None) -> str | None:
    """The last commit of the manifest tree, if the manifests live in git (uncommitted changes are
    not in it: bake from a clean tree to make the label mean what it says)."""
    return _git(repo, "log", "-1", "--format=%H", "--", ".") if repo is not None else None


def git_source(repo: Path | None) -> str | None:
    """The manifest repository's origin URL, if it has one (never a local path: it would vary)."""
    return _git(repo, "config", "--get", "remote.origin.url") if repo is not None else None


def rfc3339(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"sha256": hashlib.sha256(value).hexdigest()}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def catalog_digest(catalog: Catalog) -> str:
    """The catalog's digest: the manifest stage's if it set one, else a sha256 over the resources
    sorted by id (so the order resources were listed in does not change it)."""
    if catalog.digest:
        return catalog.digest
    doc = sorted(
        ({"id": r.id, "params": _plain(r.params), "sensitive": r.sensitive} for r in catalog.resources),
        key=lambda d: d["id"],
    )
    return "sha256:" + hashlib.sha256(canonical_json({"host": catalog.host, "resources": doc})).hexdigest()


def labels(
    catalog: Catalog,
    epoch: int,
    base_name: str | None,
    base_digest: str,
    revision: str | None,
    source: str | None,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    out = {
        L_CREATED: rfc3339(epoch),
        L_BASE_DIGEST: base_digest,
        L_VERSION: __version__,
        L_CATALOG: catalog_digest(catalog),
        L_HOST: catalog.host,
    }
    if base_name:
        out[L_BASE_NAME] = base_name
    if revision:
        out[L_REVISION] = revision
    if source:
        out[L_SOURCE] = source
    out.update(extra or {})
    return out
