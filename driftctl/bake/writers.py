"""Bake's apply side: put a resource's desired state into the image's new layer.

Each ``bake_<type>(b, resource)`` does to the ImageFS what the agent's apply does to a host, with the
same refusals (never replace a symlink or a directory at a file's path, never create a missing parent
implicitly) so that a catalog that bakes also applies, and the other way round. Text edits reuse the
agent's pure editors (``edit_line``, ``edit_block``...): one implementation of what a line resource
means. Paths are resolved through the image's symlinks in their parents (``/bin`` -> ``usr/bin``).
"""

from __future__ import annotations

import importlib
import posixpath
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from driftctl.agent import block as agent_block
from driftctl.agent import cron as agent_cron
from driftctl.agent import directory as agent_directory
from driftctl.agent import line as agent_line
from driftctl.agent import sysctl as agent_sysctl
from driftctl.bake.accounts import Accounts, agent_params
from driftctl.bake.fs import Entry, ImageFS
from driftctl.errors import BakeError
from driftctl.model import Resource

Writer = Callable[["Baker", Resource], None]


def writers() -> dict[str, Writer]:
    """Each resource type's bake writer, as the type declares it (``bake_writer = "module:function"``);
    types that need a running system (``bake_in_container``) have none."""
    from driftctl.resources.base import all_types

    out: dict[str, Writer] = {}
    for name, rtype in all_types().items():
        if rtype.bake_writer:
            module, _, function = rtype.bake_writer.partition(":")
            out[name] = getattr(importlib.import_module(module), function)
    return out


@dataclass
class Baker:
    """What every writer gets: the image view, the bake epoch, the accounts and the catalog's paths."""

    fs: ImageFS
    epoch: int
    accounts: Accounts
    managed: set[str] = field(default_factory=set)  # paths some resource manages (directory purge)

    def path(self, path: str) -> str:
        """``path`` as it lives in the image: parents' symlinks resolved, the last component not."""
        return self.fs.resolve(path)

    def fail(self, r: Resource, message: str) -> BakeError:
        return BakeError(f"{r.id} ({r.source}): {message}")

    def require_parent(self, r: Resource, path: str) -> None:
        parent = posixpath.dirname(path) or "/"
        entry = self.fs.get(self.fs.resolve(parent, follow_last=True))
        if entry is None:
            raise self.fail(r, f"parent directory {parent} does not exist in the image "
                               "(declare it with a directory resource)")
        if entry.kind != "dir":
            raise self.fail(r, f"parent {parent} is not a directory in the image")

    def uid(self, owner: Any, default: int) -> int:
        uid = self.accounts.uid_of(owner)
        return default if uid is None else uid

    def gid(self, group: Any, default: int) -> int:
        gid = self.accounts.gid_of(group)
        return default if gid is None else gid

    def put(self, path: str, entry: Entry) -> None:
        """Put ``entry`` unless the image already has exactly that (keeps the layer minimal)."""
        old = self.fs.get(path)
        if old is not None and _same(self.fs, path, old, entry):
            return
        entry.mtime = self.epoch
        self.fs.put(path, entry)

    def write_text(self, r: Resource, path: str, text: str, create_mode: int = 0o644,
                   uid: int = 0, gid: int = 0) -> None:
        """Replace a text file's content, keeping its owner and mode (a new file gets the given ones)."""
        old = self.fs.get(path)
        data = text.encode("utf-8", "surrogateescape")
        if old is None:
            self.require_parent(r, path)
            self.put(path, Entry("file", create_mode, uid, gid, size=len(data), data=data))
        else:
            self.put(path, Entry("file", old.mode, old.uid, old.gid, size=len(data), data=data))

    def read_for_edit(self, r: Resource, path: str) -> str | None:
        entry = self.fs.get(path)
        if entry is None:
            return None
        if entry.kind != "file":
            raise self.fail(r, f"{path} is a {entry.kind} in the image: driftctl edits regular files only "
                               "and never follows a symlink (manage the real path instead)")
        return self.fs.read_text(path)


def _same(fs: ImageFS, path: str, old: Entry, new: Entry) -> bool:
    if (old.kind, old.mode, old.uid, old.gid, old.target) != (new.kind, new.mode, new.uid, new.gid, new.target):
        return False
    if new.kind != "file":
        return True
    if old.size != len(new.data or b"") and old.data is None:
        return False
    return fs.read(path) == (new.data or b"")


# ---------------------------------------------------------------- file, directory, symlink


def file_content(r: Resource) -> bytes | None:
    """The bytes a file resource wants, through its type's blobs() when the type is loaded."""
    from driftctl.resources.base import get_type

    rtype = get_type("file")
    if rtype is not None:
        sha = rtype.agent_params(r.params).get("content_sha256")
        if sha is None:
            return None
        blobs = rtype.blobs(r.params)
        if sha in blobs:
            return blobs[sha]
    content = r.params.get("content")
    if content is None:
        return None
    return content.encode("utf-8") if isinstance(content, str) else bytes(content)


def bake_file(b: Baker, r: Resource) -> None:
    p = r.params
    path = b.path(p["path"])
    cur = b.fs.get(path)
    if p.get("ensure", "present") == "absent":
        if cur is None:
            return
        if cur.kind != "file":
            raise b.fail(r, f"{path} is a {cur.kind} in the image: a file resource never removes it")
        b.fs.remove(path)
        return
    if cur is not None and cur.kind != "file":
        raise b.fail(r, f"{path} is a {cur.kind} in the image: driftctl never follows or replaces it "
                        "for a file resource")
    if cur is None:
        b.require_parent(r, path)
    data = file_content(r)
    if data is None:
        data = (b.fs.read(path) or b"") if cur is not None else b""
    mode = int(p["mode"], 8) if p.get("mode") else (cur.mode if cur else 0o644)
    uid = b.uid(p.get("owner"), cur.uid if cur else 0)
    gid = b.gid(p.get("group"), cur.gid if cur else 0)
    b.put(path, Entry("file", mode, uid, gid, size=len(data), data=data))


def bake_directory(b: Baker, r: Resource) -> None:
    directory_child_mode = agent_directory.directory_child_mode
    p = agent_params(r)
    path = b.path(p["path"])
    cur = b.fs.get(path)
    if p.get("ensure", "present") == "absent":
        if cur is None:
            return
        if cur.kind != "dir":
            raise b.fail(r, f"{path} is a {cur.kind} in the image, not a directory")
        if b.fs.listdir(path):
            raise b.fail(r, f"{path} is not empty in the image (driftctl removes empty directories only)")
        b.fs.remove(path)
        return
    if cur is not None and cur.kind != "dir":
        raise b.fail(r, f"{path} is a {cur.kind} in the image: driftctl never replaces it with a directory")
    if cur is None:
        b.require_parent(r, path)
    mode = int(p["mode"], 8) if p.get("mode") else (cur.mode if cur else 0o755)
    uid = b.uid(p.get("owner"), cur.uid if cur else 0)
    gid = b.gid(p.get("group"), cur.gid if cur else 0)
    b.put(path, Entry("dir", mode, uid, gid))
    if not (p.get("recurse") or p.get("purge")):
        return
    managed = {m for m in b.managed if m.startswith(path.rstrip("/") + "/")}
    stack = [path]
    while stack:
        current = stack.pop()
        for name in b.fs.listdir(current):
            child = posixpath.join(current, name)
            if child in managed:
                continue
            entry = b.fs.get(child)
            assert entry is not None
            holds_managed = entry.kind == "dir" and any(m.startswith(child + "/") for m in managed)
            if p.get("purge") and not holds_managed:
                b.fs.remove(child)
                continue
            if p.get("recurse"):
                new = Entry(entry.kind, entry.mode, entry.uid, entry.gid, size=entry.size,
                            data=b.fs.read(child) if entry.kind == "file" else None, target=entry.target)
                new.uid = b.uid(p.get("owner"), entry.uid)
                new.gid = b.gid(p.get("group"), entry.gid)
                if p.get("mode") and entry.kind != "link":
                    new.mode = directory_child_mode(int(p["mode"], 8), entry.kind == "dir")
                if entry.kind != "other":
                    b.put(child, new)
            if entry.kind == "dir" and (p.get("recurse") or holds_managed):
                stack.append(child)


def bake_symlink(b: Baker, r: Resource) -> None:
    p = agent_params(r)
    path = b.path(p["path"])
    cur = b.fs.get(path)
    if p.get("ensure", "present") == "absent":
        if cur is None:
            return
        if cur.kind != "link":
            raise b.fail(r, f"{path} is a {cur.kind} in the image, not a symlink: not removing it")
        b.fs.remove(path)
        return
    if cur is None:
        b.require_parent(r, path)
    elif cur.kind == "dir":
        if not p.get("force"):
            raise b.fail(r, f"{path} is a directory: set force: true to replace an empty one with a symlink")
        if b.fs.listdir(path):
            raise b.fail(r, f"{path} is a non-empty directory: driftctl never replaces it with a symlink")
        b.fs.remove(path)
    elif cur.kind == "file" and not p.get("force"):
        raise b.fail(r, f"{path} is a file: set force: true to replace it with a symlink")
    elif cur.kind == "other":
        raise b.fail(r, f"{path} is a special file: not replacing it with a symlink")
    b.put(path, Entry("link", 0o777, 0, 0, target=p["target"]))


# ---------------------------------------------------------------- text edits


def bake_line(b: Baker, r: Resource) -> None:
    edit_line = agent_line.edit_line
    p = agent_params(r)
    path = b.path(p["path"])
    text = b.read_for_edit(r, path)
    if text is None:
        if p.get("ensure", "present") == "absent":
            return
        raise b.fail(r, f"{path} does not exist in the image: a line is added to an existing file "
                        "(declare it with a file resource)")
    try:
        edit = edit_line(text, p.get("text"), p.get("match"), p.get("ensure", "present"), p.get("after"))
    except ValueError as e:
        raise b.fail(r, str(e)) from None
    if edit.changed:
        b.write_text(r, path, edit.text)


def bake_block(b: Baker, r: Resource) -> None:
    block_markers, edit_block = agent_block.block_markers, agent_block.edit_block
    p = agent_params(r)
    path = b.path(p["path"])
    text = b.read_for_edit(r, path)
    if text is None:
        if p.get("ensure", "present") == "absent":
            return
        if not p.get("create"):
            raise b.fail(r, f"{path} does not exist in the image (set create: true to create it with the block)")
        text = ""
    begin, end = block_markers(p["marker"])
    try:
        edit = edit_block(text, p.get("content"), begin, end, p.get("ensure", "present"))
    except ValueError as e:
        raise b.fail(r, f"{path}: {e}") from None
    if edit.changed:
        b.write_text(r, path, edit.text)


# ---------------------------------------------------------------- cron, sysctl

CRONTABS = "/var/spool/cron/crontabs"
CRONTAB_HEADER_LINES = 3  # Debian's crontab(1) writes three comment lines and `crontab -l` skips them
SYSCTL_DIRS = ("/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d")


def crontab_text(spool: str | None) -> str:
    """A crontab spool file as ``crontab -l`` shows it: up to three leading comment lines skipped
    (Debian's crontab skips them blindly, taking them for the header it writes)."""
    if spool is None:
        return ""
    lines = spool.split("\n")
    skip = 0
    while skip < CRONTAB_HEADER_LINES and skip < len(lines) and lines[skip].startswith("#"):
        skip += 1
    return "\n".join(lines[skip:])


def crontab_spool(text: str, epoch: int) -> str:
    """What ``crontab -u USER -`` stores for ``text``: its header, with the bake epoch as install time."""
    when = time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(epoch))
    return ("# DO NOT EDIT THIS FILE - edit the master and reinstall.\n"
            f"# (driftctl bake installed on {when})\n"
            "# (Cron version -- $Id: crontab.c,v 2.13 1994/01/17 03:20:37 vixie Exp $)\n" + text)


def bake_cron(b: Baker, r: Resource) -> None:
    cron_entry_lines, edit_cron = agent_cron.cron_entry_lines, agent_cron.edit_cron
    p = agent_params(r)
    ensure = p.get("ensure", "present")
    entry = cron_entry_lines(p) if ensure == "present" else []
    if p.get("file"):
        path = b.path(p["file"])
        text = b.read_for_edit(r, path) or ""
        edit = edit_cron(text, p["name"], entry, ensure)
        if not edit.changed:
            return
        if not edit.text.strip():
            b.fs.remove(path)  # the last entry is gone: an empty /etc/cron.d file is only clutter
            return
        # cron skips /etc/cron.d files that are not root's or that others can write
        b.write_text(r, path, edit.text, create_mode=0o644, uid=0, gid=0)
        return
    user = p.get("user") or "root"
    if b.accounts.passwd.find(user) is None:
        if ensure == "absent":
            return
        raise b.fail(r, f"no user {user!r} in the image (declare it with a user resource)")
    path = b.path(posixpath.join(CRONTABS, user))
    old = b.fs.get(path)
    text = crontab_text(b.read_for_edit(r, path))
    edit = edit_cron(text, p["name"], entry, ensure)
    if not edit.changed:
        return
    if b.fs.get(b.fs.resolve(CRONTABS, follow_last=True)) is None:
        raise b.fail(r, f"{CRONTABS} does not exist in the image (is cron installed in the base?)")
    # what crontab(1) makes: owned by the user, group crontab, 0600
    uid = b.accounts.uid_of(user) or 0
    gid = old.gid if old is not None else (b.accounts.gid_of("crontab") if b.accounts.group.find("crontab") else 0)
    data = crontab_spool(edit.text, b.epoch).encode("utf-8", "surrogateescape")
    b.put(path, Entry("file", 0o600, uid, gid or 0, size=len(data), data=data))


def bake_sysctl(b: Baker, r: Resource) -> None:
    edit_sysctl, sysctl_value = agent_sysctl.edit_sysctl, agent_sysctl.sysctl_value
    p = agent_params(r)
    if not p.get("persist", True) or not p.get("file"):
        raise b.fail(r, "an image has no running kernel: a sysctl is baked only when persisted "
                        "(persist: true and a file)")
    path = b.path(p["file"])
    text = b.read_for_edit(r, path)
    edit = edit_sysctl(text or "", p["key"], sysctl_value(p["value"]))
    if edit.changed:
        b.write_text(r, path, edit.text, create_mode=0o644)


def sysctl_boot_values(fs: ImageFS) -> dict[str, str]:
    """{relpath: value} that systemd-sysctl applies at boot: sysctl.d files by name (/etc first
    shadows the same name elsewhere), in name order, a later assignment winning; then /etc/sysctl.conf.
    """
    sysctl_parse = agent_sysctl.sysctl_parse
    files: dict[str, str] = {}
    for directory in SYSCTL_DIRS:
        real = fs.resolve(directory, follow_last=True)
        entry = fs.get(real)
        if entry is None or entry.kind != "dir":
            continue
        for name in fs.listdir(real):
            if name.endswith(".conf") and name not in files:
                files[name] = posixpath.join(real, name)
    values: dict[str, str] = {}
    paths = [files[n] for n in sorted(files)]
    conf = fs.resolve("/etc/sysctl.conf", follow_last=True)
    if conf not in {fs.resolve(p, follow_last=True) for p in paths}:
        paths.append(conf)
    for path in paths:
        values.update(sysctl_parse(fs.read_text(fs.resolve(path, follow_last=True)) or ""))
    return values


# ---------------------------------------------------------------- services


def bake_service(b: Baker, r: Resource) -> None:
    """A service's unit state in the image (driftctl/bake/units.py), at the bake's epoch."""
    from driftctl.bake.units import bake_service as bake_unit

    bake_unit(b.fs, r, b.epoch)
