"""A daemonless OCI image reader (the writer is ociwrite.py) and the image model both share.

Reads a base image from an OCI image layout directory, an OCI archive (a tar of a layout), a
docker-archive (``docker save`` / ``podman save``), or a local podman image (exported with skopeo or
``podman save``), and pins it by its manifest digest.

Image references accepted by :func:`open_image`::

    oci:DIR[:TAG]             an OCI layout directory (TAG picks a manifest of its index.json)
    oci-archive:FILE[:TAG]    a tar of an OCI layout
    docker-archive:FILE       a docker-archive tar
    containers-storage:NAME   an image in podman's local storage (needs skopeo or podman)
    DIR | FILE | NAME         guessed: a directory, a tar file, else a local podman image
    any of those + @sha256:HEX  refuse the image unless its manifest digest is that one
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import posixpath
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from driftctl.errors import BakeError

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MT_DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"

GZIP_LAYER_TYPES = (MT_LAYER_GZIP, MT_DOCKER_LAYER_GZIP)
TAR_LAYER_TYPES = (MT_LAYER_TAR, MT_DOCKER_LAYER_TAR)

REF_NAME = "org.opencontainers.image.ref.name"
FORMATS = ("oci-dir", "oci-archive", "docker-archive")

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


def canonical_json(obj: Any) -> bytes:
    """The one byte form of a JSON document: sorted keys, no spaces, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def host_arch() -> str:
    machine = platform.machine()
    return _ARCH.get(machine, machine)


@dataclass(frozen=True)
class Descriptor:
    """A content descriptor: what a blob is, its digest and size (OCI image-spec descriptor.md)."""

    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Descriptor:
        try:
            return cls(data["mediaType"], data["digest"], int(data["size"]), dict(data.get("annotations") or {}))
        except (KeyError, TypeError, ValueError) as e:
            raise BakeError(f"malformed descriptor {data!r}") from e


class BlobStore:
    """The ``blobs/<alg>/<hex>`` tree of an OCI layout directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, digest: str) -> Path:
        alg, _, hexpart = digest.partition(":")
        if not hexpart or "/" in hexpart or "/" in alg or alg.startswith("."):
            raise BakeError(f"bad digest {digest!r}")
        return self.root / "blobs" / alg / hexpart

    def read(self, digest: str) -> bytes:
        try:
            data = self.path(digest).read_bytes()
        except OSError as e:
            raise BakeError(f"blob {digest} missing from {self.root}: {e}") from e
        if digest.startswith("sha256:") and sha256_digest(data) != digest:
            raise BakeError(f"blob {digest} in {self.root} does not match its digest")
        return data

    def open(self, digest: str) -> IO[bytes]:
        try:
            return self.path(digest).open("rb")
        except OSError as e:
            raise BakeError(f"blob {digest} missing from {self.root}: {e}") from e

    def put(self, data: bytes) -> str:
        digest = sha256_digest(data)
        dest = self.path(digest)
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            _write_atomic(dest, data)
        return digest


def _write_atomic(dest: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dest.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)  # a blob's mode must not depend on the caller's umask
    os.replace(tmp, dest)


@dataclass
class Image:
    """An image read from an OCI layout: its manifest (pinned by digest), config and layer blobs.

    ``name`` is what the user called it; ``digest`` is the manifest digest that pins it.
    """

    name: str
    layout: Path
    digest: str
    manifest: dict[str, Any]
    config: dict[str, Any]
    config_descriptor: Descriptor
    layers: list[Descriptor]
    manifest_size: int = 0
    annotations: dict[str, str] = field(default_factory=dict)
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    @property
    def blobs(self) -> BlobStore:
        return BlobStore(self.layout)

    @property
    def labels(self) -> dict[str, str]:
        return dict((self.config.get("config") or {}).get("Labels") or {})

    @property
    def diff_ids(self) -> list[str]:
        return list((self.config.get("rootfs") or {}).get("diff_ids") or [])

    def open_layer(self, index: int) -> IO[bytes]:
        """The uncompressed tar stream of layer ``index``."""
        desc = self.layers[index]
        raw = self.blobs.open(desc.digest)
        if desc.media_type in GZIP_LAYER_TYPES or _is_gzip(raw):
            import gzip

            return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
        if desc.media_type.endswith("+zstd"):
            raise BakeError(f"{self.name}: zstd layers are not supported (layer {desc.digest})")
        return raw

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Image:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_gzip(f: IO[bytes]) -> bool:
    pos = f.tell()
    magic = f.read(2)
    f.seek(pos)
    return magic == b"\x1f\x8b"


# ---------------------------------------------------------------- reading


def split_ref(ref: str) -> tuple[str, str, str | None, str | None]:
    """``transport, path-or-name, tag, pinned digest`` of an image reference."""
    pinned = None
    if "@sha256:" in ref:
        ref, _, hexpart = ref.rpartition("@sha256:")
        pinned = "sha256:" + hexpart
    for transport in ("oci", "oci-archive", "docker-archive", "containers-storage"):
        prefix = transport + ":"
        if ref.startswith(prefix):
            rest = ref[len(prefix):]
            tag = None
            if transport in ("oci", "oci-archive") and ":" in rest and not Path(rest).exists():
                rest, _, tag = rest.rpartition(":")
            if transport == "docker-archive" and ":" in rest and not Path(rest).exists():
                rest = rest.rpartition(":")[0]
            return transport, rest, tag, pinned
    path = Path(ref)
    if path.is_dir():
        return "oci", ref, None, pinned
    if path.is_file():
        return _archive_kind(path), ref, None, pinned
    return "containers-storage", ref, None, pinned


def _archive_kind(path: Path) -> str:
    try:
        with tarfile.open(path, "r:*") as tar:
            names = {m.name.lstrip("./") for m in _first_members(tar, 64)}
    except (tarfile.TarError, OSError) as e:
        raise BakeError(f"{path} is neither an OCI layout directory nor an image archive: {e}") from e
    if "oci-layout" in names:
        return "oci-archive"
    if "manifest.json" in names:
        return "docker-archive"
    raise BakeError(f"{path}: a tar, but neither an OCI archive (no oci-layout) nor a docker-archive")


def _first_members(tar: tarfile.TarFile, n: int) -> Iterator[tarfile.TarInfo]:
    for i, member in enumerate(tar):
        if i >= n:
            return
        yield member


def open_image(ref: str, workdir: str | None = None) -> Image:
    """Read the image ``ref`` (see the module docstring) into an OCI layout and parse it.

    Archives and podman images are unpacked into a temporary directory (under ``workdir`` if given)
    that lives until ``Image.close()``. Raises BakeError when the image cannot be read or when a
    pinned digest does not match.
    """
    transport, where, tag, pinned = split_ref(ref)
    tmp: tempfile.TemporaryDirectory[str] | None = None
    try:
        if transport == "oci":
            layout = Path(where)
        else:
            tmp = tempfile.TemporaryDirectory(prefix="driftctl-bake-", dir=workdir)
            layout = Path(tmp.name) / "layout"
            if transport == "oci-archive":
                _extract_layout(Path(where), layout)
            elif transport == "docker-archive":
                docker_archive_to_layout(Path(where), layout)
            else:
                export_local_image(where, layout)
                tag = tag or "image"
        image = read_layout(layout, tag, name=ref)
    except BaseException:
        if tmp is not None:
            tmp.cleanup()
        raise
    image._tmp = tmp
    if pinned and image.digest != pinned:
        image.close()
        raise BakeError(f"{ref}: manifest digest is {image.digest}, not the pinned {pinned}")
    return image


def read_layout(layout: Path, tag: str | None = None, name: str | None = None) -> Image:
    """Parse an OCI image layout directory; ``tag`` selects a manifest by its ref.name annotation."""
    name = name or str(layout)
    try:
        marker = json.loads((layout / "oci-layout").read_bytes())
        index = json.loads((layout / "index.json").read_bytes())
    except (OSError, ValueError) as e:
        raise BakeError(f"{name}: not an OCI image layout ({e})") from e
    if marker.get("imageLayoutVersion") != "1.0.0":
        raise BakeError(f"{name}: unsupported imageLayoutVersion {marker.get('imageLayoutVersion')!r}")
    store = BlobStore(layout)
    manifests = [Descriptor.from_json(m) for m in index.get("manifests") or []]
    if tag is not None:
        manifests = [m for m in manifests if m.annotations.get(REF_NAME) == tag]
        if not manifests:
            raise BakeError(f"{name}: no manifest tagged {tag!r} in index.json")
    if not manifests:
        raise BakeError(f"{name}: index.json lists no manifest")
    if len(manifests) > 1:
        tags = sorted(m.annotations.get(REF_NAME, m.digest) for m in manifests)
        raise BakeError(f"{name}: index.json lists several images; pick one with :TAG ({', '.join(tags)})")
    desc = _pick_platform(store, manifests[0], name)
    raw = store.read(desc.digest)
    manifest = json.loads(raw)
    if manifest.get("mediaType", MT_MANIFEST) not in (MT_MANIFEST, MT_DOCKER_MANIFEST):
        raise BakeError(f"{name}: unsupported manifest type {manifest.get('mediaType')!r}")
    config_desc = Descriptor.from_json(manifest["config"])
    config = json.loads(store.read(config_desc.digest))
    layers = [Descriptor.from_json(d) for d in manifest.get("layers") or []]
    return Image(
        name=name,
        layout=layout,
        digest=desc.digest,
        manifest=manifest,
        config=config,
        config_descriptor=config_desc,
        layers=layers,
        manifest_size=len(raw),
        annotations=dict(manifest.get("annotations") or {}),
    )


def _pick_platform(store: BlobStore, desc: Descriptor, name: str) -> Descriptor:
    """Follow an image index (a multi-platform image) to this machine's linux manifest."""
    depth = 0
    while desc.media_type in (MT_INDEX, MT_DOCKER_LIST):
        depth += 1
        if depth > 4:
            raise BakeError(f"{name}: image indexes nested too deep")
        index = json.loads(store.read(desc.digest))
        arch = host_arch()
        choices = [
            m for m in index.get("manifests") or []
            if (m.get("platform") or {}).get("os", "linux") == "linux"
            and (m.get("platform") or {}).get("architecture", arch) == arch
        ]
        if not choices:
            raise BakeError(f"{name}: no linux/{arch} image in the index")
        desc = Descriptor.from_json(choices[0])
    return desc


def _safe_members(tar: tarfile.TarFile, what: Path) -> list[tarfile.TarInfo]:
    """The archive's entries, refusing anything that could point outside it. Symlinks inside the
    archive are allowed (``podman save``'s docker-archive links ``<id>/layer.tar`` to ``<digest>.tar``)."""
    members = []
    for m in tar.getmembers():
        parts = Path(m.name).parts
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(m.name), m.linkname))
        link_ok = m.issym() and not m.linkname.startswith("/") and not resolved.startswith("..")
        if m.name.startswith("/") or ".." in parts or not (m.isfile() or m.isdir() or link_ok):
            raise BakeError(f"{what}: unexpected archive entry {m.name!r}")
        members.append(m)
    return members


def _extract_layout(archive: Path, dest: Path) -> None:
    dest.mkdir(parents=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            for m in _safe_members(tar, archive):
                target = dest / m.name
                if m.issym():
                    continue  # an OCI layout needs none
                if m.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(m)
                assert src is not None
                with target.open("wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
    except (tarfile.TarError, OSError) as e:
        raise BakeError(f"{archive}: cannot read the OCI archive: {e}") from e


def docker_archive_to_layout(archive: Path, dest: Path) -> None:
    """Convert a docker-archive into an OCI layout (layers kept as they are, uncompressed or gzip)."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = {m.name.lstrip("./") if m.name != "./" else m.name: m for m in _safe_members(tar, archive)}

            def read(name: str) -> bytes:
                member = members.get(name)
                src = tar.extractfile(member) if member is not None else None
                if src is None:
                    raise BakeError(f"{archive}: {name} is missing")
                return src.read()

            entries = json.loads(read("manifest.json"))
            if not isinstance(entries, list) or len(entries) != 1:
                raise BakeError(f"{archive}: holds {len(entries)} images; bake needs exactly one")
            entry = entries[0]
            store = BlobStore(dest)
            config_raw = read(entry["Config"])
            config_digest = store.put(config_raw)
            layers = []
            for name in entry["Layers"]:
                member = members.get(name)
                src = tar.extractfile(member) if member is not None else None
                if src is None:
                    raise BakeError(f"{archive}: layer {name} is missing")
                digest, size, gz = _copy_blob(src, store)
                layers.append(Descriptor(MT_LAYER_GZIP if gz else MT_LAYER_TAR, digest, size))
    except (tarfile.TarError, OSError, KeyError, ValueError) as e:
        raise BakeError(f"{archive}: cannot read the docker-archive: {e}") from e
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": Descriptor(MT_CONFIG, config_digest, len(config_raw)).to_json(),
        "layers": [d.to_json() for d in layers],
    }
    tags = entry.get("RepoTags") or []
    write_index(dest, [(canonical_json(manifest), tags[0] if tags else "image")])


def _copy_blob(src: IO[bytes], store: BlobStore) -> tuple[str, int, bool]:
    """Stream ``src`` into the store; returns digest, size and whether it is gzip."""
    h = hashlib.sha256()
    size = 0
    (store.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=store.root / "blobs" / "sha256")
    head = b""
    with os.fdopen(fd, "wb") as out:
        while chunk := src.read(1 << 20):
            if not head:
                head = chunk[:2]
            h.update(chunk)
            size += len(chunk)
            out.write(chunk)
    os.chmod(tmp, 0o644)
    digest = "sha256:" + h.hexdigest()
    os.replace(tmp, store.path(digest))
    return digest, size, head == b"\x1f\x8b"


def write_index(layout: Path, manifests: list[tuple[bytes, str | None]]) -> list[Descriptor]:
    """Write ``oci-layout`` and ``index.json`` for the given manifests (raw bytes, tag)."""
    layout.mkdir(parents=True, exist_ok=True)
    store = BlobStore(layout)
    descs = []
    for raw, tag in manifests:
        digest = store.put(raw)
        descs.append(Descriptor(MT_MANIFEST, digest, len(raw), {REF_NAME: tag} if tag else {}))
    _write_atomic(layout / "oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"}))
    index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [d.to_json() for d in descs]}
    _write_atomic(layout / "index.json", canonical_json(index))
    return descs


def export_local_image(name: str, dest: Path) -> None:
    """Export a local podman image into an OCI layout at ``dest`` (skopeo, else ``podman save``)."""
    if shutil.which("podman") and subprocess.run(
        ["podman", "image", "exists", name], capture_output=True
    ).returncode != 0:
        raise BakeError(f"base image {name!r}: not a directory, not an archive, not a local podman image")
    if shutil.which("skopeo"):
        # uncompressed layers: the export is 3x faster, and each layer's digest is then its diff_id,
        # which podman's storage keeps, so the pinned digest does not depend on a compressor version
        argv = ["skopeo", "copy", "--quiet", "--dest-oci-accept-uncompressed-layers",
                f"containers-storage:{name}", f"oci:{dest}:image"]
    elif shutil.which("podman"):
        # podman save writes the ref.name it likes; read_layout then finds the only manifest
        argv = ["podman", "save", "--quiet", "--format", "oci-dir", "-o", str(dest), name]
    else:
        raise BakeError(
            f"base image {name!r} is not a path, and neither skopeo nor podman is installed to export it"
        )
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BakeError(f"cannot export {name}: {' '.join(argv[:2])}: {proc.stderr.strip()[-500:]}")
    if argv[0] == "podman":
        _retag_single(dest, "image")


def _retag_single(layout: Path, tag: str) -> None:
    index = json.loads((layout / "index.json").read_bytes())
    for m in index.get("manifests") or []:
        m.setdefault("annotations", {})[REF_NAME] = tag
    _write_atomic(layout / "index.json", canonical_json(index))
