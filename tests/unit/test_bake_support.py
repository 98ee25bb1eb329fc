"""Helpers for the bake tests: a tiny base image built here, byte for byte the same on every run.

The tiny base is a small Debian-like root (accounts, /tmp 1777, /root 0700, /bin -> usr/bin, a
systemd unit, a cron spool, a dpkg database) written as a real OCI layout by hand with tarfile/gzip
and json only: independent of driftctl.bake's writer, so the tests check that writer against it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

from driftctl.errors import Location
from driftctl.model import Catalog, Resource

TINY_MTIME = 1_600_000_000
TINY_TAG = "tiny:1"

PASSWD = """root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
"""
GROUP = """root:x:0:
daemon:x:1:
adm:x:4:
crontab:x:101:
nogroup:x:65534:
"""
SHADOW = """root:*:19000:0:99999:7:::
daemon:*:19000:0:99999:7:::
nobody:*:19000:0:99999:7:::
"""
GSHADOW = """root:*::
daemon:*::
adm:*::
crontab:!::
nogroup:*::
"""
LOGIN_DEFS = """UID_MIN 1000
UID_MAX 60000
SYS_UID_MIN 100
SYS_UID_MAX 999
GID_MIN 1000
GID_MAX 60000
SYS_GID_MIN 100
SYS_GID_MAX 999
UMASK 022
HOME_MODE 0700
"""
DEMO_UNIT = """[Unit]
Description=demo

[Service]
ExecStart=/bin/true

[Install]
WantedBy=multi-user.target
Alias=demo-alias.service
"""
STATIC_UNIT = """[Unit]
Description=static

[Service]
ExecStart=/bin/true
"""
DPKG_STATUS = """Package: base-files
Status: install ok installed
Architecture: amd64
Version: 12.4

Package: gone
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0
"""

# (path, kind, mode, uid, gid, content-or-target)
TINY_TREE: list[tuple[str, str, int, int, int, str]] = [
    ("bin", "link", 0o777, 0, 0, "usr/bin"),
    ("etc", "dir", 0o755, 0, 0, ""),
    ("etc/cron.d", "dir", 0o755, 0, 0, ""),
    ("etc/group", "file", 0o644, 0, 0, GROUP),
    ("etc/gshadow", "file", 0o640, 0, 42, GSHADOW),
    ("etc/login.defs", "file", 0o644, 0, 0, LOGIN_DEFS),
    ("etc/motd", "file", 0o644, 0, 0, "welcome\n"),
    ("etc/passwd", "file", 0o644, 0, 0, PASSWD),
    ("etc/shadow", "file", 0o640, 0, 42, SHADOW),
    ("etc/skel", "dir", 0o755, 0, 0, ""),
    ("etc/skel/.profile", "file", 0o644, 0, 0, "# profile\n"),
    ("etc/ssh", "dir", 0o755, 0, 0, ""),
    ("etc/ssh/sshd_config", "file", 0o644, 0, 0, "Port 22\nPermitRootLogin yes\n"),
    ("etc/sysctl.d", "dir", 0o755, 0, 0, ""),
    ("etc/systemd", "dir", 0o755, 0, 0, ""),
    ("etc/systemd/system", "dir", 0o755, 0, 0, ""),
    ("home", "dir", 0o755, 0, 0, ""),
    ("lib", "link", 0o777, 0, 0, "usr/lib"),
    ("root", "dir", 0o700, 0, 0, ""),
    ("tmp", "dir", 0o1777, 0, 0, ""),
    ("usr", "dir", 0o755, 0, 0, ""),
    ("usr/bin", "dir", 0o755, 0, 0, ""),
    ("usr/bin/sh", "file", 0o755, 0, 0, "#!fake shell\n"),
    ("usr/lib", "dir", 0o755, 0, 0, ""),
    ("usr/lib/systemd", "dir", 0o755, 0, 0, ""),
    ("usr/lib/systemd/system", "dir", 0o755, 0, 0, ""),
    ("usr/lib/systemd/system/demo.service", "file", 0o644, 0, 0, DEMO_UNIT),
    ("usr/lib/systemd/system/static.service", "file", 0o644, 0, 0, STATIC_UNIT),
    ("var", "dir", 0o755, 0, 0, ""),
    ("var/lib", "dir", 0o755, 0, 0, ""),
    ("var/lib/dpkg", "dir", 0o755, 0, 0, ""),
    ("var/lib/dpkg/status", "file", 0o644, 0, 0, DPKG_STATUS),
    ("var/spool", "dir", 0o755, 0, 0, ""),
    ("var/spool/cron", "dir", 0o755, 0, 0, ""),
    ("var/spool/cron/crontabs", "dir", 0o1730, 0, 101, ""),
]


def _tar(tree: list[tuple[str, str, int, int, int, str]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, kind, mode, uid, gid, payload in tree:
            info = tarfile.TarInfo(path)
            info.mode, info.uid, info.gid, info.mtime = mode, uid, gid, TINY_MTIME
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "link":
                info.type, info.linkname = tarfile.SYMTYPE, payload
                tar.addfile(info)
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, payload
                tar.addfile(info)
            else:
                data = payload.encode()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _blob(layout: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return "sha256:" + digest


def _json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


Tree = list[tuple[str, str, int, int, int, str]]


def make_tiny_base(layout: Path, tree: Tree | None = None, more_layers: list[Tree] | None = None) -> Path:
    """Write the tiny base as an OCI layout at ``layout`` (tagged TINY_TAG); returns ``layout``.

    ``more_layers`` are stacked on top, uncompressed (``tar`` media type), to test layer handling.
    """
    raw = _tar(tree or TINY_TREE)
    gz = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=gz, mtime=0) as f:
        f.write(raw)
    layer = gz.getvalue()
    layers = [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
               "digest": _blob(layout, layer), "size": len(layer)}]
    diff_ids = ["sha256:" + hashlib.sha256(raw).hexdigest()]
    for extra in more_layers or []:
        plain = _tar(extra)
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                       "digest": _blob(layout, plain), "size": len(plain)})
        diff_ids.append("sha256:" + hashlib.sha256(plain).hexdigest())
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2020-09-13T12:26:40Z",
        "config": {"Cmd": ["/bin/sh"], "Labels": {"base": "tiny"}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2020-09-13T12:26:40Z", "created_by": "tiny base"}],
    }
    config_raw = _json(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": _blob(layout, config_raw), "size": len(config_raw)},
        "layers": layers,
    }
    manifest_raw = _json(manifest)
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": _blob(layout, manifest_raw), "size": len(manifest_raw),
                       "annotations": {"org.opencontainers.image.ref.name": TINY_TAG}}],
    }
    (layout / "index.json").write_bytes(_json(index))
    (layout / "oci-layout").write_bytes(_json({"imageLayoutVersion": "1.0.0"}))
    return layout


def res(type_: str, name: str, **params: object) -> Resource:
    """A resource as the manifest stage hands it over: validated, defaults filled in."""
    from driftctl.resources.base import get_type

    rtype = get_type(type_)
    assert rtype is not None, f"resource type {type_} is not available"
    raw = {rtype.namevar: name, **params}
    validated = rtype.validate(raw, Location("test.yaml", 1))
    return Resource(type_, rtype.title(validated), validated, Location("test.yaml", 1))


def layer_members(layer_tar: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(layer_tar), mode="r:*") as tar:
        return {m.name.rstrip("/"): m for m in tar.getmembers()}


def read_layout_files(layout: Path) -> dict[str, bytes]:
    """Every file of a layout by relative path, with its bytes: equal dicts = byte-identical layouts."""
    return {p.relative_to(layout).as_posix(): p.read_bytes() for p in sorted(layout.rglob("*")) if p.is_file()}


def tiny_catalog(host: str = "web1") -> Catalog:
    return Catalog(host, [
        res("group", "app", gid=2000),
        res("user", "app", uid=2000, group="app", shell="/bin/sh", home="/home/app", groups=["adm"]),
        res("directory", "/srv/app", owner="app", group="app", mode="0750"),
        res("directory", "/srv"),
        res("file", "/srv/app/config.ini", content="[app]\nport = 8080\n", owner="app", group="app", mode="0640"),
        res("file", "/bin/hello", content="#!/bin/sh\necho hello\n", mode="0755"),
        res("file", "/etc/motd", ensure="absent"),
        res("symlink", "/etc/app.ini", target="/srv/app/config.ini"),
        res("line", "sshd-no-root", path="/etc/ssh/sshd_config", text="PermitRootLogin no",
            match="^PermitRootLogin"),
        res("service", "demo", enabled=True),
    ])
