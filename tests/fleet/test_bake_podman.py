"""bake with the real Debian base: the base's /tmp, /root and /bin survive, a rebuild is byte-identical,
and the image boots in podman with systemd: testinfra finds every mode, owner and content, and the
agent observing the running container answers exactly what image_observe answers for the image.

Containers and images made here are named ``driftctl-bake-*`` and removed at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from driftctl.bake import bake, image_observe, load_image, open_image, verify
from driftctl.bake.fs import ImageFS
from driftctl.bake.observe import agent_item
from driftctl.errors import Location
from driftctl.model import Catalog, Resource
from driftctl.resources.base import get_type
from driftctl.ship import command, program_bytes

pytestmark = [pytest.mark.fleet, pytest.mark.podman, pytest.mark.slow]

FLEET_BASE = "localhost/driftctl-base:bookworm"
OWN_BASE = "localhost/driftctl-bake-base:bookworm"
EPOCH = 1_700_000_000
PACKAGES = "systemd,systemd-sysv,dbus,openssh-server,python3,sudo,cron,procps,iproute2"


def podman(*argv: str, check: bool = True, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(["podman", *argv], capture_output=True, input=stdin, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"podman {' '.join(argv)}: {proc.stderr.decode()[-800:]}")
    return proc


@pytest.fixture(scope="module")
def debian_base() -> str:
    """The fleet's Debian base when it is built, else our own (mmdebstrap, about 30 s, once)."""
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed")
    for name in (FLEET_BASE, OWN_BASE):
        if podman("image", "exists", name, check=False).returncode == 0:
            return name
    sources = Path("/etc/apt/sources.list.d/debian.sources").read_bytes()
    sources = b"\n".join(ln for ln in sources.splitlines() if not ln.startswith(b"#"))
    tar = Path("/var/tmp") / f"driftctl-bake-base-{os.getpid()}.tar"
    try:
        subprocess.run(
            ["mmdebstrap", "--variant=apt", f"--include={PACKAGES}", "bookworm", str(tar), "-"],
            input=sources,
            check=True,
            capture_output=True,
            timeout=900,
        )
        podman("import", str(tar), OWN_BASE)
    finally:
        tar.unlink(missing_ok=True)
    return OWN_BASE


def res(type_: str, name: str, **params: object) -> Resource:
    rtype = get_type(type_)
    assert rtype is not None
    validated = rtype.validate({rtype.namevar: name, **params}, Location("site.yaml", 1))
    return Resource(type_, rtype.title(validated), validated, Location("site.yaml", 1))


def catalog() -> Catalog:
    return Catalog(
        "web1",
        [
            res("group", "app", gid=2100),
            res("user", "app", uid=2100, group="app", shell="/bin/bash", groups=["adm"]),
            res("directory", "/srv"),
            res("directory", "/srv/app", owner="app", group="app", mode="0750"),
            res("file", "/srv/app/app.conf", content="port = 8080\n", owner="app", group="app", mode="0640"),
            res("file", "/bin/hello", content="#!/bin/sh\necho hello from the image\n", mode="0755"),
            res("file", "/tmp/marker", content="m\n"),
            res("file", "/root/.hushlogin", content=""),
            res("file", "/etc/issue.net", ensure="absent"),
            res("symlink", "/etc/app.conf", target="/srv/app/app.conf"),
            res(
                "line",
                "sshd-pubkey",
                path="/etc/ssh/sshd_config",
                text="PubkeyAuthentication yes",
                match="^#?PubkeyAuthentication",
            ),
            res("block", "motd", path="/etc/motd", content="baked by driftctl"),
            res("cron", "cleanup", user="app", minute="5", hour="4", command="/usr/bin/find /tmp -mtime +7 -delete"),
            res("cron", "rotate", file="driftctl-rotate", special="@daily", command="/usr/bin/true"),
            res("sysctl", "vm.swappiness", value="10"),
            res("service", "ssh", enabled=True, running=True),
            res("service", "cron", enabled=True, running=True),
            res("package", "openssh-server"),
        ],
    )


@pytest.fixture(scope="module")
def baked(debian_base: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bake") / "web1"
    bake(catalog(), debian_base, out, epoch=EPOCH, tag="web1")
    return out


def test_base_tmp_root_and_bin_survive(baked: Path) -> None:
    with open_image(str(baked)) as image:
        fs = ImageFS.load(image)
    tmp, root, bin_ = fs.get("/tmp"), fs.get("/root"), fs.get("/bin")
    assert tmp is not None and (tmp.kind, tmp.mode) == ("dir", 0o1777)
    assert root is not None and (root.kind, root.mode) == ("dir", 0o700)
    assert bin_ is not None and (bin_.kind, bin_.target) == ("link", "usr/bin")
    sh = fs.get(fs.resolve("/bin/sh", follow_last=True))
    assert sh is not None and sh.kind == "file"
    assert fs.get("/usr/bin/hello") is not None


def test_rebuild_with_the_real_base_is_byte_identical(debian_base: str, baked: Path, tmp_path: Path) -> None:
    shuffled = Catalog("web1", list(reversed(catalog().resources)))
    again = bake(shuffled, debian_base, tmp_path / "again", epoch=EPOCH, tag="web1")
    with open_image(str(baked)) as image:
        assert image.digest == again.digest
    files = sorted(p.relative_to(baked).as_posix() for p in baked.rglob("*") if p.is_file())
    assert files == sorted(
        p.relative_to(tmp_path / "again").as_posix() for p in (tmp_path / "again").rglob("*") if p.is_file()
    )
    for name in files:
        assert (baked / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name


@pytest.fixture(scope="module")
def container(baked: Path) -> Iterator[str]:
    """The baked image loaded into podman and booted with systemd (host keys made first, as a real
    host has its own)."""
    suffix = uuid.uuid4().hex[:8]
    image = f"localhost/driftctl-bake-test-{suffix}:latest"
    name = f"driftctl-bake-test-{suffix}"
    assert load_image(baked, "oci-dir", image, tag="web1") == "podman"
    try:
        podman(
            "run",
            "-d",
            "--name",
            name,
            "--systemd=always",
            "--runtime",
            "runc",
            "--ulimit",
            "nofile=4096:4096",
            "--ulimit",
            "nproc=4096:4096",
            image,
            "/bin/sh",
            "-c",
            "rm -f /etc/ssh/ssh_host_*; ssh-keygen -A >/dev/null; exec /sbin/init",
        )
        deadline = time.monotonic() + 90
        state = ""
        while time.monotonic() < deadline:
            state = podman("exec", name, "systemctl", "is-system-running", check=False).stdout.decode().strip()
            if state in ("running", "degraded"):
                break
            time.sleep(0.5)
        assert state in ("running", "degraded"), f"systemd did not finish booting: {state!r}"
        yield name
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)
        podman("rmi", "-f", image, check=False)


def test_the_image_runs_with_everything_in_place(container: str) -> None:
    import testinfra

    host = testinfra.get_host(f"podman://{container}")
    conf = host.file("/srv/app/app.conf")
    assert (conf.user, conf.group, conf.mode, conf.content_string) == ("app", "app", 0o640, "port = 8080\n")
    app = host.file("/srv/app")
    assert (app.is_directory, app.user, app.mode) == (True, "app", 0o750)
    assert host.file("/tmp").mode == 0o1777 and host.file("/root").mode == 0o700
    assert host.file("/bin").is_symlink and host.run("/bin/hello").stdout == "hello from the image\n"
    assert host.file("/etc/app.conf").linked_to == "/srv/app/app.conf"
    assert not host.file("/etc/issue.net").exists
    assert "PubkeyAuthentication yes" in host.file("/etc/ssh/sshd_config").content_string
    user = host.user("app")
    assert (user.uid, user.group, user.shell) == (2100, "app", "/bin/bash") and "adm" in user.groups
    assert "5 4 * * * /usr/bin/find /tmp -mtime +7 -delete" in host.run("crontab -l -u app").stdout
    assert host.file("/etc/cron.d/driftctl-rotate").mode == 0o644
    assert host.service("ssh").is_enabled and host.service("ssh").is_running
    assert host.service("cron").is_running
    assert host.run("sshd -t").rc == 0


def _agent_probe(container: str, cat: Catalog) -> dict[str, dict]:
    request = {
        "v": 1,
        "op": "probe",
        "facts": False,
        "resources": [{"id": r.id, "type": r.type, "params": agent_item(r, cat)} for r in cat.resources],
    }
    proc = podman("exec", "-i", container, *command("python3"), stdin=program_bytes() + json.dumps(request).encode())
    answer = json.loads(proc.stdout)
    assert answer["ok"], answer
    return answer["resources"]


def test_the_agent_on_the_running_container_agrees_with_image_observe(container: str, baked: Path) -> None:
    cat = catalog()
    live = _agent_probe(container, cat)
    image = image_observe(str(baked), cat)
    # a sysctl's live value is the kernel's (podman shares the host's): compare what is persisted
    for probe in (live, image):
        probe["sysctl:vm.swappiness"]["observed"].pop("value", None)
    # an inode number is the container's storage's, not the image's: the rest of _cas must agree
    for probe in (live, image):
        for got in probe.values():
            cas = got.get("observed", {}).get("_cas")
            if isinstance(cas, dict):
                cas.pop("ino", None)
    # podman's systemd mode mounts a fresh tmpfs on /tmp: what an image has there is hidden at run time
    assert live.pop("file:/tmp/marker")["observed"]["ensure"] == "absent"
    assert image.pop("file:/tmp/marker")["observed"]["ensure"] == "file"
    assert image == live
    assert {r.status for r in verify(str(baked), cat)} == {"ok"}


def test_the_base_reads_the_same_in_every_form(debian_base: str, tmp_path: Path) -> None:
    """A podman image, its `podman save` docker-archive and oci-archive, and a skopeo OCI layout: one
    filesystem, and a catalog bakes onto each and verifies."""
    # the three exports read the same image and write files of their own: made at once, not one by one
    with ThreadPoolExecutor(3) as pool:
        exports = [
            pool.submit(podman, "save", "-q", "--format", "docker-archive", "-o", str(tmp_path / "docker.tar"),
                        debian_base),
            pool.submit(podman, "save", "-q", "--format", "oci-archive", "-o", str(tmp_path / "oci.tar"),
                        debian_base),
            pool.submit(
                subprocess.run,
                ["skopeo", "copy", "-q", f"containers-storage:{debian_base}", f"oci:{tmp_path / 'layout'}:b"],
                check=True,
                capture_output=True,
            ),
        ]
        for export in exports:
            export.result()
    small = Catalog(
        "web1", [res("file", "/etc/baked", content="x\n", mode="0600"), res("service", "ssh", enabled=True)]
    )
    views = []
    for ref in (
        debian_base,
        f"docker-archive:{tmp_path / 'docker.tar'}",
        str(tmp_path / "oci.tar"),
        f"oci:{tmp_path / 'layout'}:b",
    ):
        with open_image(ref) as image:
            fs = ImageFS.load(image)
            views.append({p: (e.kind, e.mode, e.uid, e.gid, e.target) for p, e in fs.base.items()})
        out = tmp_path / f"out-{len(views)}"
        bake(small, ref, out, epoch=EPOCH)
        assert {r.status for r in verify(str(out), small)} == {"ok"}, ref
    assert len(views[0]) > 5000
    assert all(v == views[0] for v in views[1:])
