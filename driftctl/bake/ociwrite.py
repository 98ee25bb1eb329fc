"""Writing OCI images reproducibly: an image layout directory, an OCI archive, a docker-archive.

Every byte is fixed by the inputs: canonical JSON, sorted tar entries with root owners and the
epoch's mtime, blobs 0644. The base's layers are copied as they are (hard links when bake exported
the base itself).
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from driftctl.bake.oci import (
    MT_CONFIG,
    MT_LAYER_GZIP,
    MT_MANIFEST,
    TAR_LAYER_TYPES,
    BlobStore,
    Descriptor,
    Image,
    canonical_json,
    sha256_digest,
    write_index,
)
from driftctl.errors import BakeError


@dataclass
class NewLayer:
    """A layer made by bake: the compressed blob and its uncompressed digest (the diff_id)."""

    gzip_path: Path
    digest: str
    size: int
    diff_id: str
    tar_path: Path  # the uncompressed tar (docker-archive wants it)


def det_tarinfo(name: str, size: int, mode: int, mtime: int, is_dir: bool = False) -> tarfile.TarInfo:
    """A tar header with fixed, machine-independent metadata (root owner, no names)."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = mode
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
    return info


def write_det_tar(out: IO[bytes], files: dict[str, Path | bytes], mtime: int) -> None:
    """A reproducible tar of ``files`` (archive name -> path or bytes), directories implied, sorted."""
    dirs: set[str] = set()
    for name in files:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    entries: list[tuple[list[str], str, bool]] = [(d.split("/"), d, True) for d in dirs]
    entries += [(n.split("/"), n, False) for n in files]
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for _key, name, is_dir in sorted(entries):
            if is_dir:
                tar.addfile(det_tarinfo(name + "/", 0, 0o755, mtime, is_dir=True))
                continue
            src = files[name]
            if isinstance(src, bytes):
                tar.addfile(det_tarinfo(name, len(src), 0o644, mtime), io.BytesIO(src))
            else:
                with src.open("rb") as f:
                    tar.addfile(det_tarinfo(name, src.stat().st_size, 0o644, mtime), f)


def compose(
    base: Image,
    new_layers: list[NewLayer],
    config: dict[str, Any],
    annotations: dict[str, str],
) -> tuple[bytes, bytes, list[Descriptor]]:
    """Raw config and manifest of base + new layers. Returns (config bytes, manifest bytes, layers)."""
    config_raw = canonical_json(config)
    layers = list(base.layers) + [Descriptor(MT_LAYER_GZIP, nl.digest, nl.size) for nl in new_layers]
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": Descriptor(MT_CONFIG, sha256_digest(config_raw), len(config_raw)).to_json(),
        "layers": [d.to_json() for d in layers],
        "annotations": annotations,
    }
    return config_raw, canonical_json(manifest), layers


def write_oci_dir(
    out: Path, base: Image, new_layers: list[NewLayer], config_raw: bytes, manifest_raw: bytes, tag: str | None
) -> None:
    """Write a complete OCI layout at ``out`` (replacing what a previous bake left there)."""
    if out.exists():
        if not (out / "oci-layout").exists() and any(out.iterdir()):
            raise BakeError(f"{out} exists and is not an OCI layout: refusing to overwrite it")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    os.chmod(out, 0o755)  # noqa: S103 - an image layout is public by nature
    store = BlobStore(out)
    (out / "blobs" / "sha256").mkdir(parents=True)
    for p in (out / "blobs", out / "blobs" / "sha256"):
        os.chmod(p, 0o755)  # noqa: S103
    # blobs of a base that bake exported itself can be hard links: nobody else holds those files
    private = base._tmp is not None
    for desc in base.layers:
        _link_or_copy(base.blobs.path(desc.digest), store.path(desc.digest), private)
    for nl in new_layers:
        _link_or_copy(nl.gzip_path, store.path(nl.digest), True)
    store.put(config_raw)
    write_index(out, [(manifest_raw, tag)])


def _link_or_copy(src: Path, dest: Path, may_link: bool) -> None:
    if dest.exists():
        return
    tmp = dest.with_name(".tmp-" + dest.name)
    if may_link:
        try:
            os.link(src, tmp)
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
            return
        except OSError:
            tmp.unlink(missing_ok=True)
    shutil.copyfile(src, tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, dest)


def write_oci_archive(out: Path, layout: Path, mtime: int) -> None:
    """Tar an OCI layout reproducibly (an ``oci-archive``)."""
    files: dict[str, Path | bytes] = {}
    for path in sorted(layout.rglob("*")):
        if path.is_file():
            files[path.relative_to(layout).as_posix()] = path
    _write_tar_file(out, files, mtime)


def write_docker_archive(
    out: Path, base: Image, new_layers: list[NewLayer], config_raw: bytes, tag: str | None, mtime: int
) -> None:
    """A docker-archive (``docker load`` / ``podman load``): uncompressed layers named by diff_id."""
    with tempfile.TemporaryDirectory(prefix="driftctl-bake-") as tmpdir:
        files: dict[str, Path | bytes] = {}
        layer_names = []
        for i, desc in enumerate(base.layers):
            diff_id = base.diff_ids[i]
            name = f"{diff_id.partition(':')[2]}.tar"
            if desc.media_type in TAR_LAYER_TYPES and desc.digest == diff_id:
                files[name] = base.blobs.path(desc.digest)
            else:
                plain = Path(tmpdir) / name
                with base.open_layer(i) as src, plain.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                files[name] = plain
            layer_names.append(name)
        for nl in new_layers:
            name = f"{nl.diff_id.partition(':')[2]}.tar"
            files[name] = nl.tar_path
            layer_names.append(name)
        config_name = f"{sha256_digest(config_raw).partition(':')[2]}.json"
        files[config_name] = config_raw
        repo_tags = [tag] if tag and ":" in tag.rpartition("/")[2] else [f"{tag}:latest"] if tag else []
        files["manifest.json"] = canonical_json([{"Config": config_name, "RepoTags": repo_tags, "Layers": layer_names}])
        _write_tar_file(out, files, mtime)


def _write_tar_file(out: Path, files: dict[str, Path | bytes], mtime: int) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write_det_tar(f, files, mtime)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
