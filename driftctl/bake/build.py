"""``bake()``: a host's catalog + a base image -> a reproducible OCI image.

The base is read (pinned by its manifest digest), flattened into an ImageFS, every resource's
desired state is written into an upper level in a canonical order, and the upper level becomes one
layer. Same catalog + same base + same epoch -> the same bytes, whatever the order resources were
listed in, the umask, the working directory or the machine.
"""

from __future__ import annotations

import copy
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from driftctl.bake import oci, ociwrite
from driftctl.bake.accounts import Accounts
from driftctl.bake.fs import ImageFS
from driftctl.bake.layer import write_layer
from driftctl.bake.observe import image_facts, wanted_paths
from driftctl.bake.provenance import (
    L_CREATED,
    L_NOT_REPRODUCIBLE,
    catalog_digest,
    git_revision,
    git_source,
    labels,
    resolve_epoch,
)
from driftctl.bake.units import dpkg_installed
from driftctl.bake.writers import Baker, writers
from driftctl.errors import BakeError
from driftctl.model import Catalog, Resource, ResourceResult
from driftctl.resources.base import get_type


# Apply order inside an image: each type's ``bake_phase`` (accounts before what they own, directories
# before their files, content before edits of it, services last). Inside a phase resources are sorted
# by what they touch, so the input order never changes the image; edits of one file keep the catalog's
# order (that order is the meaning of two edits of the same file).
def _phase(type_name: str) -> int:
    rtype = get_type(type_name)
    return rtype.bake_phase if rtype is not None else 8


def _in_container(type_name: str) -> bool:
    """Types that need a running system: in sync in the base, or converged in a build container."""
    rtype = get_type(type_name)
    return rtype is not None and rtype.bake_in_container


def _sort_key(index: int, r: Resource) -> tuple[int, list[str], int]:
    phase = _phase(r.type)
    p = r.params
    if phase == 0:
        target = [f"{index:08d}"]  # packages and execs keep the catalog's (graph) order
    elif r.type in ("user", "group", "service"):
        target = [str(p.get("name", r.name))]
    elif r.type == "cron":
        target = [str(p.get("file") or f"user:{p.get('user') or 'root'}")]
    elif r.type == "authorized_key":
        target = [str(p.get("path") or f"user:{p.get('user')}")]
    else:
        target = str(p.get("file") or p.get("path") or r.name).split("/")
    return phase, target, index if phase == 5 or r.type == "authorized_key" else 0


def canonical_order(resources: list[Resource]) -> list[Resource]:
    indexed = sorted(enumerate(resources), key=lambda ir: (_sort_key(*ir), ir[1].id))
    return [r for _i, r in indexed]


@dataclass
class BakeResult:
    """What bake made: where, its digest (the manifest's), its base, and what each resource did."""

    out: Path
    format: str
    digest: str
    config_digest: str
    base_name: str
    base_digest: str
    layer_digest: str | None  # the layer bake added (None: the base already was the catalog)
    diff_id: str | None
    size: int  # bytes written at ``out``
    created: str
    epoch: int
    catalog_digest: str
    labels: dict[str, str]
    tag: str | None
    resources: list[ResourceResult] = field(default_factory=list)
    duration: float = 0.0


def bake(
    catalog: Catalog,
    base: str,
    out: str | Path,
    format: str = "oci-dir",
    *,
    tag: str | None = None,
    epoch: int | None = None,
    repo: str | Path | None = None,
    workdir: str | None = None,
    render: Callable[[dict[str, Any]], Catalog] | None = None,
    engine: bool | None = None,
) -> BakeResult:
    """Bake ``catalog`` onto the image ``base`` (see driftctl.bake.oci for reference forms).

    ``out`` is a directory (oci-dir) or a file (oci-archive, docker-archive). ``repo`` is the manifest
    tree: its git commit becomes the revision label and its last commit time the epoch when
    SOURCE_DATE_EPOCH is not set. ``tag`` names the image in the layout's index (and the archive).
    ``render(facts)`` renders the catalog again with the base image's facts, when the catalog says
    its templates use facts (``Catalog.uses_facts``): an image's facts are its own, not a host's.
    ``engine``: packages and execs the base lacks run in a podman build container (None: when podman
    is installed; False: never, refuse them). Such an image is marked converged-not-bit-reproducible.
    Raises BakeError (naming the resource) when a resource cannot be baked.
    """
    if format not in oci.FORMATS:
        raise BakeError(f"unknown format {format!r} (one of {', '.join(oci.FORMATS)})")
    started = time.monotonic()
    out = Path(out)
    repo_path = Path(repo) if repo is not None else None
    when = resolve_epoch(repo_path, epoch)
    with oci.open_image(base, workdir) as image:
        fs = ImageFS.load(image, wanted_paths(catalog))
        if catalog.uses_facts and render is not None:
            catalog = render(image_facts(fs, catalog.host))  # contents it now needs are read from the layers on demand
        early = _packages_and_execs(fs, catalog, image, base, when, engine)
        results = converge(fs, catalog, when, early.results)
        with tempfile.TemporaryDirectory(prefix="driftctl-bake-", dir=workdir) as tmp:
            layer = write_layer(fs, Path(tmp))
            new_layers = [layer] if layer is not None else []
            extra = {L_NOT_REPRODUCIBLE: ",".join(early.ran)} if early.ran else None
            image_labels = labels(catalog, when, _base_name(image, base), image.digest, git_revision(repo_path),
                                  git_source(repo_path), extra)
            config = _config(image, new_layers, image_labels, when, len(catalog.resources))
            config_raw, manifest_raw, _layers = ociwrite.compose(image, new_layers, config, image_labels)
            _write(out, format, image, new_layers, config_raw, manifest_raw, tag, when, Path(tmp))
    return BakeResult(
        out=out,
        format=format,
        digest=oci.sha256_digest(manifest_raw),
        config_digest=oci.sha256_digest(config_raw),
        base_name=base,
        base_digest=image.digest,
        layer_digest=layer.digest if layer else None,
        diff_id=layer.diff_id if layer else None,
        size=_size(out),
        created=image_labels[L_CREATED],
        epoch=when,
        catalog_digest=catalog_digest(catalog),
        labels=image_labels,
        tag=tag,
        resources=results,
        duration=time.monotonic() - started,
    )


def _base_name(image: oci.Image, ref: str) -> str | None:
    """A name for the base that does not depend on where its files were: never a local path."""
    transport, where, _tag, _pinned = oci.split_ref(ref)
    if transport == "containers-storage":
        return where
    tags = [d.get("annotations", {}).get(oci.REF_NAME) for d in _index_manifests(image.layout)]
    return tags[0] if len(tags) == 1 and tags[0] else None


def _index_manifests(layout: Path) -> list[dict[str, Any]]:
    import json

    try:
        return list(json.loads((layout / "index.json").read_bytes()).get("manifests") or [])
    except (OSError, ValueError):
        return []


def converge(fs: ImageFS, catalog: Catalog, epoch: int,
             done: dict[str, ResourceResult] | None = None) -> list[ResourceResult]:
    """Write every resource's desired state into ``fs``'s upper level; one result per resource.

    ``done`` holds the results of resources already handled (packages and execs).
    """
    accounts = Accounts.load(fs)
    b = Baker(fs, epoch, accounts, {r.params["path"] for r in catalog.resources
                                     if isinstance(r.params.get("path"), str)})
    table = writers()
    results: dict[str, ResourceResult] = dict(done or {})
    for r in canonical_order(catalog.resources):
        before = _state(fs, accounts)
        if r.id in results:
            continue
        if _in_container(r.type):
            checked = _check_in_base(fs, r, refuse=True)
            assert checked is not None  # refuse=True raises instead of answering None
            results[r.id] = checked
            continue
        writer = table.get(r.type)
        if writer is None:
            raise BakeError(f"{r.id} ({r.source}): bake does not know the resource type {r.type!r}")
        writer(b, r)
        if r.type in ("user", "group"):
            accounts.save(epoch)  # later resources (owners, home dirs) look the names up in the image
        changed = _state(fs, accounts) != before
        results[r.id] = ResourceResult(r.id, "changed" if changed else "ok",
                                       reason="baked" if changed else "in sync in the base", source=r.source)
    accounts.save(epoch)
    return [results[r.id] for r in catalog.resources]


def _state(fs: ImageFS, accounts: Accounts) -> tuple[int, int]:
    return fs.version, sum(t.version for t in (accounts.passwd, accounts.group, accounts.shadow, accounts.gshadow))


@dataclass
class _Early:
    results: dict[str, ResourceResult]
    ran: list[str]


def _packages_and_execs(fs: ImageFS, catalog: Catalog, image: oci.Image, ref: str, epoch: int,
                        engine: bool | None) -> _Early:
    """Packages and execs first (later resources edit what packages install): what the base already
    has is in sync; the rest runs in a build container when one may be used, else bake refuses."""
    from driftctl.bake.buildctr import engine_available, run_in_container

    results: dict[str, ResourceResult] = {}
    pending = []
    for r in catalog.resources:
        if not _in_container(r.type):
            continue
        found = _check_in_base(fs, r, refuse=False)
        if found is None:
            pending.append(r)
        else:
            results[r.id] = found
    if not pending:
        return _Early(results, [])
    use = engine if engine is not None else engine_available()
    if not use:
        for r in pending:
            _check_in_base(fs, r, refuse=True)  # raises the reason, naming the resource
    step = run_in_container(fs, catalog, pending, image, ref, epoch)
    for r in pending:
        ran = r.id in step.ran
        results[r.id] = ResourceResult(r.id, "changed" if ran else "ok", source=r.source,
                                       reason="converged in a build container" if ran else "in sync in the base")
    return _Early(results, step.ran)


def _check_in_base(fs: ImageFS, r: Resource, refuse: bool) -> ResourceResult | None:
    """Packages and commands need a running system: in sync when the base already has them; else
    None, or (``refuse``) a BakeError saying why (docs/bake.md explains the choice)."""
    p = r.params
    if not refuse:
        try:
            return _check_in_base(fs, r, refuse=True)
        except BakeError:
            return None
    if r.type == "package":
        if fs.get("/var/lib/dpkg/status") is None:
            raise BakeError(f"{r.id} ({r.source}): the base has no dpkg database, so bake cannot tell "
                            "whether the package is installed")
        installed = dpkg_installed(fs).get(p["name"])
        ensure = p.get("ensure") or "present"
        ok = (installed is None) if ensure == "absent" else (
            installed is not None and ensure in ("present", installed))
        if ok:
            return ResourceResult(r.id, "ok", reason="in sync in the base", source=r.source)
        raise BakeError(
            f"{r.id} ({r.source}): the base image has {p['name']} {installed or 'not installed'}, "
            f"the catalog wants {ensure}. Without a build container bake cannot run a package manager: "
            "install the package into the base image, or let bake use a podman build container "
            "(see docs/bake.md)")
    if p.get("refreshonly"):
        return ResourceResult(r.id, "skipped", reason="refresh-only: nothing is notified in an image",
                              source=r.source)
    creates = p.get("creates")
    if creates and fs.get(fs.resolve(creates, follow_last=True)) is not None:
        return ResourceResult(r.id, "ok", reason=f"{creates} exists in the base", source=r.source)
    raise BakeError(
        f"{r.id} ({r.source}): without a build container bake cannot run commands: run it when "
        "building the base image, give it a `creates:` path the base already has, or let bake use a "
        "podman build container (see docs/bake.md)")


def _config(image: oci.Image, layers: list[ociwrite.NewLayer], image_labels: dict[str, str], epoch: int,
            count: int) -> dict[str, Any]:
    config = copy.deepcopy(image.config)
    config.setdefault("architecture", oci.host_arch())
    config.setdefault("os", "linux")
    config["created"] = image_labels[L_CREATED]
    inner = config.setdefault("config", {}) or {}
    config["config"] = inner
    inner["Labels"] = {**(inner.get("Labels") or {}), **image_labels}
    rootfs = config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
    rootfs["diff_ids"] = list(rootfs.get("diff_ids") or []) + [nl.diff_id for nl in layers]
    history = list(config.get("history") or [])
    entry: dict[str, Any] = {"created": image_labels[L_CREATED], "created_by": f"driftctl bake ({count} resources)"}
    if not layers:
        entry["empty_layer"] = True
    history.append(entry)
    config["history"] = history
    return config


def _write(out: Path, format: str, image: oci.Image, layers: list[ociwrite.NewLayer], config_raw: bytes,
           manifest_raw: bytes, tag: str | None, epoch: int, tmp: Path) -> None:
    if format == "oci-dir":
        ociwrite.write_oci_dir(out, image, layers, config_raw, manifest_raw, tag)
        _normalise_modes(out)
    elif format == "oci-archive":
        layout = tmp / "layout"
        ociwrite.write_oci_dir(layout, image, layers, config_raw, manifest_raw, tag)
        ociwrite.write_oci_archive(out, layout, epoch)
    else:
        ociwrite.write_docker_archive(out, image, layers, config_raw, tag, epoch)


def _normalise_modes(root: Path) -> None:
    """Directories 0755, files 0644: the layout must not depend on the umask it was written under."""
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)  # noqa: S103 - an image layout is public by nature
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
