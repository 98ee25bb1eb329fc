"""bake: byte-identical rebuilds, a golden digest, the layer's shape (parents, symlinks, whiteouts, gzip),
provenance labels. The base is the tiny image of test_bake_support, built here byte for byte."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
from pathlib import Path

import pytest
from test_bake_support import (
    TINY_TAG,
    layer_members,
    make_tiny_base,
    read_layout_files,
    res,
    tiny_catalog,
)

from driftctl import __version__
from driftctl.bake import bake, open_image
from driftctl.bake.provenance import resolve_epoch
from driftctl.errors import BakeError
from driftctl.model import Catalog

EPOCH = 1_700_000_000

# The digest of tiny_catalog() baked onto the tiny base at EPOCH. It changes only when the bytes bake
# writes change: then check the new layer by hand (test_layer_* below say what it must hold) and
# update it, saying why in the commit.
# 073e617c...: service gained a ``timeout`` param (9f822de), so service:demo's params hold
# ``timeout: None`` and the io.driftctl.catalog.digest label (config and manifest) changed; the layer
# and every other label are byte for byte those of 05a1d947...
GOLDEN_DIGEST = "sha256:073e617c1e16e8604e84ae40b2e2a37ff5d96e3fd2c2b41801d5b5e713d5446c"


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return make_tiny_base(tmp_path / "base")


def _layer(out: Path, digest: str) -> dict:
    return layer_members(gzip.decompress((out / "blobs" / "sha256" / digest.partition(":")[2]).read_bytes()))


def _bake_in(cwd: Path, base: Path, catalog: Catalog, out: Path, umask: int, fmt: str = "oci-dir") -> str:
    """Bake from another working directory and umask, with a relative base path."""
    old_cwd, old_umask = os.getcwd(), os.umask(umask)
    cwd.mkdir(parents=True, exist_ok=True)
    try:
        os.chdir(cwd)
        return bake(catalog, os.path.relpath(base, cwd), out, fmt, epoch=EPOCH, tag="web1").digest
    finally:
        os.chdir(old_cwd)
        os.umask(old_umask)


def test_rebuild_is_byte_identical_whatever_the_order_umask_and_cwd(base: Path, tmp_path: Path) -> None:
    catalog = tiny_catalog()
    shuffled = Catalog(catalog.host, list(reversed(catalog.resources)))
    first = _bake_in(tmp_path / "a", base, catalog, tmp_path / "one", 0o022)
    second = _bake_in(tmp_path / "b" / "deeper", base, shuffled, tmp_path / "two", 0o077)
    assert first == second
    one, two = read_layout_files(tmp_path / "one"), read_layout_files(tmp_path / "two")
    assert one == two
    modes = {(p.relative_to(tmp_path / "two").as_posix(), p.stat().st_mode & 0o777)
             for p in (tmp_path / "two").rglob("*")}
    assert modes == {(p.relative_to(tmp_path / "one").as_posix(), p.stat().st_mode & 0o777)
                     for p in (tmp_path / "one").rglob("*")}


@pytest.mark.parametrize("fmt", ["oci-archive", "docker-archive"])
def test_archives_are_byte_identical_too(base: Path, tmp_path: Path, fmt: str) -> None:
    catalog = tiny_catalog()
    _bake_in(tmp_path / "a", base, catalog, tmp_path / "one.tar", 0o022, fmt)
    _bake_in(tmp_path / "b", base, Catalog("web1", list(reversed(catalog.resources))), tmp_path / "two.tar", 0o077, fmt)
    assert (tmp_path / "one.tar").read_bytes() == (tmp_path / "two.tar").read_bytes()


def test_uid_allocation_does_not_depend_on_input_order(base: Path, tmp_path: Path) -> None:
    users = [res("user", "zed"), res("user", "amy"), res("user", "mia", system=True)]
    a = bake(Catalog("h", users), str(base), tmp_path / "a", epoch=EPOCH)
    b = bake(Catalog("h", users[::-1]), str(base), tmp_path / "b", epoch=EPOCH)
    assert a.digest == b.digest
    passwd = _layer(tmp_path / "a", a.layer_digest or "")["etc/passwd"]
    assert passwd is not None
    with open_image(str(tmp_path / "a")) as image:
        from driftctl.bake.fs import ImageFS

        text = ImageFS.load(image, lambda p: p == "/etc/passwd").read_text("/etc/passwd") or ""
    rows = {r.split(":")[0]: r.split(":") for r in text.splitlines()}
    # sorted by name: amy gets the first free uid, zed the next; a system user counts down from 999
    assert (rows["amy"][2], rows["zed"][2], rows["mia"][2]) == ("1000", "1001", "999")


def test_golden_digest(base: Path, tmp_path: Path) -> None:
    result = bake(tiny_catalog(), str(base), tmp_path / "out", epoch=EPOCH, tag="web1")
    assert result.digest == GOLDEN_DIGEST


def test_layer_keeps_parent_metadata_and_resolves_symlinked_parents(base: Path, tmp_path: Path) -> None:
    catalog = Catalog("h", [
        res("file", "/tmp/marker", content="x"),
        res("file", "/root/.hushlogin", content=""),
        res("file", "/bin/hello", content="#!/bin/sh\n", mode="0755"),
    ])
    result = bake(catalog, str(base), tmp_path / "out", epoch=EPOCH)
    members = _layer(tmp_path / "out", result.layer_digest or "")
    # parents carry the base's metadata, else the runtime recreates them 0755 root
    assert (members["tmp"].mode, members["tmp"].mtime) == (0o1777, 1_600_000_000)
    assert members["root"].mode == 0o700
    # /bin is a symlink to usr/bin in the base: the file goes to usr/bin, /bin stays a link
    assert "bin" not in members and "bin/hello" not in members
    assert members["usr/bin/hello"].mode == 0o755
    assert members["usr/bin/hello"].mtime == EPOCH
    assert [m.uname for m in members.values()] == [""] * len(members)
    names = list(members)
    assert names == sorted(names, key=lambda n: n.split("/"))


def test_absent_file_is_a_whiteout(base: Path, tmp_path: Path) -> None:
    result = bake(Catalog("h", [res("file", "/etc/motd", ensure="absent")]), str(base), tmp_path / "out",
                  epoch=EPOCH)
    members = _layer(tmp_path / "out", result.layer_digest or "")
    assert set(members) == {"etc", "etc/.wh.motd"}
    assert members["etc/.wh.motd"].size == 0


def test_gzip_header_has_no_time_and_no_name(base: Path, tmp_path: Path) -> None:
    result = bake(tiny_catalog(), str(base), tmp_path / "out", epoch=EPOCH)
    blob = (tmp_path / "out" / "blobs" / "sha256" / (result.layer_digest or "").partition(":")[2]).read_bytes()
    assert blob[:3] == b"\x1f\x8b\x08"
    flags, mtime = blob[3], int.from_bytes(blob[4:8], "little")
    assert flags & 0x08 == 0  # FNAME
    assert mtime == 0


def test_labels_and_annotations(base: Path, tmp_path: Path) -> None:
    result = bake(tiny_catalog(), str(base), tmp_path / "out", epoch=EPOCH, tag="web1")
    with open_image(str(tmp_path / "out")) as image:
        labels = image.labels
        assert image.annotations == {k: v for k, v in labels.items() if k != "base"}  # base's own label
        assert image.digest == result.digest
        assert image.config["created"] == "2023-11-14T22:13:20Z"
        assert image.config["config"]["Cmd"] == ["/bin/sh"]  # the base's config is kept
        assert len(image.diff_ids) == 2 and image.diff_ids[-1] == result.diff_id
    with open_image(str(base)) as b:
        base_digest = b.digest
    assert labels["org.opencontainers.image.created"] == "2023-11-14T22:13:20Z"
    assert labels["org.opencontainers.image.base.digest"] == base_digest
    assert labels["org.opencontainers.image.base.name"] == TINY_TAG
    assert labels["io.driftctl.version"] == __version__
    assert labels["io.driftctl.host"] == "web1"
    assert labels["io.driftctl.catalog.digest"].startswith("sha256:")
    assert labels["base"] == "tiny"
    assert "org.opencontainers.image.revision" not in labels  # no repository given


def test_revision_and_epoch_from_the_manifest_repository(base: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "repo"
    repo = root / "manifests"
    repo.mkdir(parents=True)

    def commit(path: Path, when: int) -> str:
        path.write_text(str(when))
        env = {**os.environ, "GIT_AUTHOR_DATE": f"@{when} +0000", "GIT_COMMITTER_DATE": f"@{when} +0000"}
        git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t"]
        subprocess.run([*git, "add", "."], check=True, env=env)
        subprocess.run([*git, "commit", "-q", "-m", "m"], check=True, env=env)
        return subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()

    subprocess.run(["git", "-C", str(root), "init", "-q"], check=True)
    manifests_commit = commit(repo / "site.yaml", 1_650_000_000)
    commit(root / "README", 1_660_000_000)  # elsewhere in the repository: must not change the image
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    assert resolve_epoch(repo) == 1_650_000_000
    assert resolve_epoch(None) == 0
    result = bake(tiny_catalog(), str(base), tmp_path / "out", repo=repo)
    assert result.labels["org.opencontainers.image.revision"] == manifests_commit
    assert result.created == "2022-04-15T05:20:00Z"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "86400")
    assert resolve_epoch(repo) == 86400
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(BakeError, match="SOURCE_DATE_EPOCH"):
        resolve_epoch(repo)


def test_catalog_in_sync_with_the_base_adds_no_layer(base: Path, tmp_path: Path) -> None:
    catalog = Catalog("h", [res("file", "/etc/motd", content="welcome\n"), res("directory", "/tmp", mode="1777")])
    result = bake(catalog, str(base), tmp_path / "out", epoch=EPOCH)
    assert result.layer_digest is None
    assert [r.status for r in result.resources] == ["ok", "ok"]
    with open_image(str(tmp_path / "out")) as image, open_image(str(base)) as b:
        assert [d.digest for d in image.layers] == [d.digest for d in b.layers]
        assert json.loads(json.dumps(image.config["history"]))[-1]["empty_layer"] is True
