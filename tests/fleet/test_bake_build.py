"""bake with packages and commands: they run in a podman build container from the real Debian base
(the agent's own apply), the result is in the image, marked converged-not-bit-reproducible, and
verify agrees. Needs the Debian mirror (the container runs apt-get), as the fleet does."""

from __future__ import annotations

import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest
from test_bake_podman import EPOCH, debian_base, podman, res  # noqa: F401 - debian_base is a fixture

from driftctl.bake import bake, load_image, open_image, verify
from driftctl.bake.fs import ImageFS
from driftctl.bake.provenance import L_NOT_REPRODUCIBLE
from driftctl.model import Catalog

pytestmark = [pytest.mark.fleet, pytest.mark.podman, pytest.mark.slow]


def test_packages_and_execs_run_in_a_build_container(debian_base: str, tmp_path: Path) -> None:  # noqa: F811
    catalog = Catalog(
        "web1",
        [
            res("package", "hello"),
            res("exec", "marker", command=["/bin/sh", "-c", "echo made by exec > /opt/marker"], creates="/opt/marker"),
            # edits run after packages: the file a package installed can be edited in the same bake
            res("file", "/usr/share/doc/hello/NOTE", content="baked\n"),
            res("package", "openssh-server"),  # already in the base: nothing runs for it
        ],
    )
    result = bake(catalog, debian_base, tmp_path / "out", epoch=EPOCH)
    assert {r.id: r.status for r in result.resources} == {
        "package:hello": "changed",
        "exec:marker": "changed",
        "file:/usr/share/doc/hello/NOTE": "changed",
        "package:openssh-server": "ok",
    }
    assert result.labels[L_NOT_REPRODUCIBLE] == "package:hello,exec:marker"
    # the build container is gone (other sessions' containers come and go: look at ours only)
    names = podman("ps", "-a", "--format", "{{.Names}}").stdout.decode().split()
    assert [n for n in names if n.startswith("driftctl-bake-build-")] == []
    with open_image(str(tmp_path / "out")) as image:
        assert image.annotations[L_NOT_REPRODUCIBLE] == "package:hello,exec:marker"
        fs = ImageFS.load(image, lambda p: p.startswith("/opt/"))
        assert fs.read("/opt/marker") == b"made by exec\n"
        hello = fs.get("/usr/bin/hello")
        assert hello is not None and hello.mode == 0o755
        assert hello.mtime <= EPOCH  # clamped: nothing in the layer is newer than the epoch
        with image.open_layer(len(image.layers) - 1) as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
            names = [m.name for m in tar]
    assert "usr/bin/hello" in names and "var/lib/dpkg/status" in names
    # apt's lists and caches, logs, /tmp: what a package manager leaves that says nothing of the state
    assert not [n for n in names if n.startswith(("var/lib/apt/lists/", "var/cache/", "var/log/", "tmp/"))]
    assert {r.status for r in verify(str(tmp_path / "out"), catalog)} == {"ok"}

    name = f"localhost/driftctl-bake-test-{uuid.uuid4().hex[:8]}:latest"
    load_image(tmp_path / "out", "oci-dir", name)
    try:
        out = subprocess.run(
            ["podman", "run", "--rm", "--runtime", "runc", name, "hello"], capture_output=True, text=True, timeout=120
        )
        assert out.stdout == "Hello, world!\n"
    finally:
        podman("rmi", "-f", name, check=False)


def test_without_podman_the_same_catalog_is_refused(debian_base: str, tmp_path: Path) -> None:  # noqa: F811
    from driftctl.errors import BakeError

    with pytest.raises(BakeError, match="package:hello"):
        bake(Catalog("web1", [res("package", "hello")]), debian_base, tmp_path / "out", epoch=EPOCH, engine=False)
