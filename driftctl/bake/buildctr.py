"""Packages and commands for bake: run them in a throwaway build container, keep what they changed.

A package manager and an ``exec`` need a running system, so bake cannot write their result itself.
When podman is installed, bake starts a container from the base image, runs the driftctl agent's own
probe and apply for the ``package`` and ``exec`` resources in it (the same code that converges a
host), and turns the container's filesystem changes (``podman diff`` + ``podman export``) into entries
of the new layer. What such a step produces is converged, not bit-reproducible: dpkg writes dates into
its logs, postinst scripts create users with today's date... Volatile paths (caches, logs, apt lists)
are dropped, every mtime is clamped to the bake epoch, and the image is marked with the annotation
``io.driftctl.converged-not-bit-reproducible`` naming the resources that ran. Without podman,
bake refuses such resources (unless the base already has them), naming them.
"""

from __future__ import annotations

import json
import posixpath
import shutil
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from driftctl.bake.fs import Entry, ImageFS, ancestors
from driftctl.bake.oci import Image, split_ref
from driftctl.errors import BakeError
from driftctl.model import Catalog, Resource

PREFIX = "driftctl-bake-build"
# paths a package manager changes that say nothing about the converged state (and differ every run)
# (paths inside the build container's export, never opened on this machine)
VOLATILE = (
    "/var/cache/", "/var/lib/apt/lists/", "/var/log/", "/tmp/", "/run/", "/var/tmp/", "/proc/", "/sys/",  # noqa: S108
    "/dev/", "/root/.cache/", "/var/lib/dpkg/triggers/Lock", "/var/lib/dpkg/lock",
    "/var/cache/ldconfig/aux-cache", "/etc/resolv.conf", "/etc/hostname", "/etc/hosts",
)
VOLATILE_SUFFIXES = ("-old", ".dpkg-old", "~")
# the shadow tools' backup copies (passwd-, shadow-...): written with the day of the run
VOLATILE_FILES = frozenset(f"/etc/{n}-" for n in ("passwd", "group", "shadow", "gshadow", "subuid", "subgid"))


def engine_available() -> bool:
    return shutil.which("podman") is not None


def _podman(*argv: str, stdin: bytes | None = None, timeout: float = 1800) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(["podman", *argv], input=stdin, capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        raise BakeError(f"podman {argv[0]} failed: {proc.stderr.decode('utf-8', 'replace').strip()[-600:]}")
    return proc


@dataclass
class BuildStep:
    """What the build container did: the resources it converged and the paths it changed."""

    ran: list[str] = field(default_factory=list)  # ids applied (changed) in the container
    in_sync: list[str] = field(default_factory=list)  # ids the base already had
    changed_paths: int = 0
    removed_paths: int = 0


@contextmanager
def _base_in_podman(image: Image, ref: str) -> Iterator[str]:
    """The base as a podman image name: itself when it came from podman's storage, else a temporary
    copy (removed afterwards)."""
    transport, where, tag, _pinned = split_ref(ref)
    if transport == "containers-storage":
        yield where
        return
    name = f"localhost/{PREFIX}-base-{image.digest.partition(':')[2][:12]}-{uuid.uuid4().hex[:6]}:latest"
    source = f"oci:{image.layout}" + (f":{tag}" if transport == "oci" and tag else "")
    if shutil.which("skopeo"):
        proc = subprocess.run(["skopeo", "copy", "--quiet", source, f"containers-storage:{name}"],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise BakeError(f"cannot hand the base to podman for the build container: {proc.stderr.strip()[-500:]}")
    else:
        raise BakeError("running packages/commands for bake needs skopeo to hand the base to podman")
    try:
        yield name
    finally:
        subprocess.run(["podman", "rmi", "-f", name], capture_output=True)


def _agent(container: str, request: dict[str, Any]) -> dict[str, Any]:
    from driftctl.ship import command, program_bytes

    # protocol 1: one answer document, no frames (nothing streams into a build container)
    payload = json.dumps({"v": 1, **request}, separators=(",", ":")).encode()
    proc = subprocess.run(["podman", "exec", "-i", container, *command("python3", cache=False)],
                          input=program_bytes() + payload, capture_output=True, timeout=3600)
    try:
        answer: dict[str, Any] = json.loads(proc.stdout)
    except ValueError:
        tail = proc.stderr.decode("utf-8", "replace").strip()[-500:]
        raise BakeError(f"the agent did not answer in the build container (exit {proc.returncode}; "
                        f"does the base have python3?): {tail}") from None
    if not answer.get("ok"):
        raise BakeError(f"the agent failed in the build container: {answer.get('error')}")
    return answer


def run_in_container(fs: ImageFS, catalog: Catalog, resources: list[Resource], image: Image, ref: str,
                     epoch: int) -> BuildStep:
    """Converge ``resources`` (packages, execs) in a container of the base; put the changes into ``fs``."""
    from driftctl.bake.observe import agent_item
    from driftctl.resources.base import get_type

    step = BuildStep()
    if not engine_available():
        raise BakeError("podman is not installed: " + ", ".join(r.id for r in resources)
                        + " need a build container (or a base image that already has them)")
    items = [{"id": r.id, "type": r.type, "params": agent_item(r, catalog)} for r in resources]
    with _base_in_podman(image, ref) as base_name:
        name = f"{PREFIX}-{uuid.uuid4().hex[:10]}"
        _podman("run", "-d", "--name", name, "--runtime", "runc", "--ulimit", "nofile=4096:4096",
                "--ulimit", "nproc=4096:4096", base_name, "sleep", "infinity")
        try:
            probe = _agent(name, {"op": "probe", "facts": False, "resources": items})["resources"]
            todo = []
            for r, item in zip(resources, items, strict=True):
                got = probe.get(r.id, {})
                if "error" in got:
                    raise BakeError(f"{r.id} ({r.source}): cannot observe it in the build container: {got['error']}")
                rtype = get_type(r.type)
                assert rtype is not None
                changes = rtype.diff(rtype.desired(r.params), got["observed"], r.sensitive)
                if not changes:
                    step.in_sync.append(r.id)
                    continue
                todo.append({**item, "changes": [c.field for c in changes],
                             "depends": [d for d in r.require if d in probe], "notify": []})
            if todo:
                results = _agent(name, {"op": "apply", "resources": todo})["results"]
                for item in todo:
                    got = results.get(item["id"], {})
                    if got.get("status") in ("failed", "skipped"):
                        raise BakeError(f"{item['id']}: failed in the build container: {got.get('error')}")
                    step.ran.append(str(item["id"]))
                _collect(fs, name, epoch, step)
        finally:
            subprocess.run(["podman", "rm", "-f", "-t", "0", name], capture_output=True)
    return step


def _volatile(path: str) -> bool:
    return (path.startswith(VOLATILE) or path + "/" in VOLATILE or path.endswith(VOLATILE_SUFFIXES)
            or path in VOLATILE_FILES)


def _collect(fs: ImageFS, container: str, epoch: int, step: BuildStep) -> None:
    """The container's changes (podman diff), read from ``podman export``, into ``fs``'s upper level."""
    diff = json.loads(_podman("diff", "--format", "json", container).stdout or b"{}")
    wanted = {p for p in [*(diff.get("added") or []), *(diff.get("changed") or [])] if not _volatile(p)}
    deleted = sorted(p for p in diff.get("deleted") or [] if not _volatile(p))
    entries: dict[str, Entry] = {}
    proc = subprocess.Popen(["podman", "export", container], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for m in tar:
                path = posixpath.normpath("/" + m.name.lstrip("./"))
                if path not in wanted:
                    continue
                mtime = min(int(m.mtime), epoch) if epoch else 0  # clamp, as reproducible-builds.org says
                if m.isdir():
                    entries[path] = Entry("dir", m.mode & 0o7777, m.uid, m.gid, mtime)
                elif m.issym():
                    entries[path] = Entry("link", 0o777, m.uid, m.gid, mtime, target=m.linkname)
                elif m.isreg():
                    f = tar.extractfile(m)
                    data = f.read() if f is not None else b""
                    entries[path] = Entry("file", m.mode & 0o7777, m.uid, m.gid, mtime, len(data), data)
                elif m.islnk():
                    target = posixpath.normpath("/" + m.linkname.lstrip("./"))
                    src = entries.get(target)
                    linked = src.data if src is not None else fs.read(target)
                    entries[path] = Entry("file", m.mode & 0o7777, m.uid, m.gid, mtime, len(linked or b""), linked)
    finally:
        proc.stdout.close()
        if proc.wait() != 0:
            raise BakeError(f"podman export {container} failed")
    for path in deleted:
        fs.remove(fs.resolve(path))
    for path in sorted(entries, key=lambda p: p.split("/")):
        for anc in ancestors(path):
            # a directory the container created is taken from the export; others stay as they are
            if fs.get(anc) is None and anc not in entries:
                fs.put(anc, Entry("dir", 0o755, 0, 0, epoch))
        old = fs.get(path)
        if old is not None and old.kind == "dir" and entries[path].kind != "dir":
            fs.remove(path)
        fs.put(path, entries[path])
    step.changed_paths, step.removed_paths = len(entries), len(deleted)
