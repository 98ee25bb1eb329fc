"""The OCI reader/writer: three output formats that read back as one image, pinning by digest, layers
with whiteouts, opaque directories and hard links, and clear errors for what is not an image."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from test_bake_support import TINY_TAG, make_tiny_base, res, tiny_catalog

from driftctl.bake import bake, open_image, verify
from driftctl.bake.fs import ImageFS
from driftctl.bake.oci import canonical_json, write_index
from driftctl.errors import BakeError
from driftctl.model import Catalog

EPOCH = 1_700_000_000


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return make_tiny_base(tmp_path / "base")


def test_three_formats_read_back_as_the_same_image(base: Path, tmp_path: Path) -> None:
    catalog = tiny_catalog()
    oci_dir = bake(catalog, str(base), tmp_path / "img", "oci-dir", epoch=EPOCH, tag="web1")
    oci_tar = bake(catalog, str(base), tmp_path / "img.oci.tar", "oci-archive", epoch=EPOCH, tag="web1")
    docker = bake(catalog, str(base), tmp_path / "img.docker.tar", "docker-archive", epoch=EPOCH, tag="web1")
    assert oci_dir.digest == oci_tar.digest == docker.digest  # the OCI manifest digest of one image
    with open_image(str(tmp_path / "img.oci.tar")) as image:
        assert image.digest == oci_dir.digest
    with open_image(f"docker-archive:{tmp_path / 'img.docker.tar'}") as image:
        # docker-archive keeps layers uncompressed: another manifest, the same config and diff_ids
        assert image.config_descriptor.digest == oci_dir.config_digest
        assert image.diff_ids[-1] == oci_dir.diff_id
    with tarfile.open(tmp_path / "img.docker.tar") as tar:
        [entry] = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        assert entry["RepoTags"] == ["web1:latest"]
        assert all(m.mtime == EPOCH and m.uid == 0 and m.uname == "" for m in tar.getmembers())
    for path in ("img", "img.oci.tar", "img.docker.tar"):
        assert {r.status for r in verify(str(tmp_path / path), catalog)} == {"ok"}


def test_a_baked_image_is_a_base_for_the_next_bake(base: Path, tmp_path: Path) -> None:
    first = bake(tiny_catalog(), str(base), tmp_path / "one", epoch=EPOCH)
    second = bake(Catalog("h", [res("file", "/srv/app/config.ini", ensure="absent")]),
                  f"oci:{tmp_path / 'one'}", tmp_path / "two", epoch=EPOCH)
    with open_image(str(tmp_path / "two")) as image:
        assert len(image.layers) == 3
        assert image.labels["org.opencontainers.image.base.digest"] == first.digest
        fs = ImageFS.load(image)
        assert fs.get("/srv/app/config.ini") is None and fs.get("/srv/app") is not None
    assert second.resources[0].status == "changed"


def test_pinned_digest(base: Path) -> None:
    with open_image(str(base)) as image:
        digest = image.digest
    with open_image(f"{base}@{digest}") as image:
        assert image.digest == digest
    with pytest.raises(BakeError, match="not the pinned"):
        open_image(f"{base}@sha256:{'0' * 64}")


def test_whiteouts_opaque_dirs_and_hard_links_across_layers(tmp_path: Path) -> None:
    layout = make_tiny_base(tmp_path / "base", more_layers=[[
        ("etc", "dir", 0o755, 0, 0, ""),
        ("etc/.wh.motd", "file", 0o644, 0, 0, ""),
        ("etc/ssh", "dir", 0o700, 0, 0, ""),
        ("etc/ssh/.wh..wh..opq", "file", 0o644, 0, 0, ""),
        ("etc/ssh/new", "file", 0o600, 0, 0, "N"),
        ("usr/bin/tool", "file", 0o755, 0, 0, "T"),
        ("usr/bin/tool2", "hardlink", 0o755, 0, 0, "usr/bin/tool"),
    ]])
    with open_image(str(layout)) as image:
        fs = ImageFS.load(image)
        assert fs.get("/etc/motd") is None
        assert fs.listdir("/etc/ssh") == ["new"]
        ssh = fs.get("/etc/ssh")
        assert ssh is not None and ssh.mode == 0o700
        assert fs.read("/usr/bin/tool2") == b"T"  # read on demand from the uncompressed layer
        assert fs.read("/etc/passwd") is not None
        assert fs.resolve("/bin/tool2") == "/usr/bin/tool2"


def test_an_index_with_several_images_needs_a_tag(base: Path, tmp_path: Path) -> None:
    index = json.loads((base / "index.json").read_bytes())
    manifest = (base / "blobs" / "sha256" / index["manifests"][0]["digest"].partition(":")[2]).read_bytes()
    layout = tmp_path / "two"
    import shutil

    shutil.copytree(base, layout)
    write_index(layout, [(manifest, TINY_TAG), (manifest, "other")])
    with pytest.raises(BakeError, match="several images"):
        open_image(str(layout))
    with open_image(f"oci:{layout}:other") as image:
        assert image.digest == index["manifests"][0]["digest"]
    with pytest.raises(BakeError, match="no manifest tagged 'nope'"):
        open_image(f"oci:{layout}:nope")


def test_what_is_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(BakeError, match="not an OCI image layout"):
        open_image(str(tmp_path / "empty"))
    with tarfile.open(tmp_path / "x.tar", "w") as tar:
        info = tarfile.TarInfo("hello")
        tar.addfile(info)
    with pytest.raises(BakeError, match="neither an OCI archive"):
        open_image(str(tmp_path / "x.tar"))
    with pytest.raises(BakeError, match="unknown format"):
        bake(Catalog("h", []), str(tmp_path / "x.tar"), tmp_path / "o", "squashfs")


def test_refuses_to_overwrite_what_is_not_a_layout(base: Path, tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(BakeError, match="refusing to overwrite"):
        bake(tiny_catalog(), str(base), precious, epoch=EPOCH)
    assert (precious / "notes.txt").read_text() == "keep me"


def test_canonical_json() -> None:
    assert canonical_json({"b": 1, "a": [1, {"d": "é", "c": None}]}) == '{"a":[1,{"c":null,"d":"é"}],"b":1}'.encode()


def _docker_archive(base: Path, out: Path, layer_link: str) -> None:
    """The tiny base as `podman save` writes a docker-archive: <id>/layer.tar a symlink to the layer."""
    import gzip
    import io

    index = json.loads((base / "index.json").read_bytes())
    blobs = base / "blobs" / "sha256"
    manifest = json.loads((blobs / index["manifests"][0]["digest"].partition(":")[2]).read_bytes())
    config = (blobs / manifest["config"]["digest"].partition(":")[2]).read_bytes()
    layer = gzip.decompress((blobs / manifest["layers"][0]["digest"].partition(":")[2]).read_bytes())
    with tarfile.open(out, "w") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("layer-data.tar", layer)
        link = tarfile.TarInfo("abc/layer.tar")
        link.type, link.linkname = tarfile.SYMTYPE, layer_link
        tar.addfile(link)
        add("config.json", config)
        add("manifest.json", json.dumps([{"Config": "config.json", "RepoTags": ["tiny:1"],
                                          "Layers": ["abc/layer.tar"]}]).encode())


def test_docker_archive_with_layer_symlinks(base: Path, tmp_path: Path) -> None:
    _docker_archive(base, tmp_path / "ok.tar", "../layer-data.tar")
    with open_image(str(tmp_path / "ok.tar")) as image, open_image(str(base)) as oci:
        assert image.diff_ids == oci.diff_ids
        assert {p: e.mode for p, e in ImageFS.load(image).base.items()} == {
            p: e.mode for p, e in ImageFS.load(oci).base.items()}
    _docker_archive(base, tmp_path / "evil.tar", "../../etc/passwd")
    with pytest.raises(BakeError, match="unexpected archive entry"):
        open_image(str(tmp_path / "evil.tar"))
