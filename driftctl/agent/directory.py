"""Host side of ``directory``: presence, owner/group/mode, ``recurse`` and ``purge``.

``recurse`` gives every entry below the directory its owner and group, and its mode the way Puppet
does: files get the mode as written, directories also get the search bit wherever the read bit is
set (so "0644" makes directories 0755). ``purge`` removes every entry below that no resource of the
catalog manages; the engine passes the managed paths as ``params["_managed"]``. Paths that another
resource manages are left to that resource by both (its own owner/mode win, it is never purged).
Neither follows a symlink: links are chowned themselves (lchown), never their targets.
"""

import os
import stat

from driftctl.agent._core import DIR_SYNC, Failure, file_kind, register, resolve_gid, resolve_uid
from driftctl.agent.file import fs_describe_type, fs_group_view, fs_owner_view, fs_probe_target, fs_set_meta, fs_target

DIRECTORY_LIST_LIMIT = 200  # entries named in observe; more are counted, so a plan stays readable


def directory_child_mode(mode, is_dir):
    """The mode ``recurse`` gives an entry below the directory (int)."""
    if not is_dir:
        return mode
    for read_bit, exec_bit in ((0o400, 0o100), (0o040, 0o010), (0o004, 0o001)):
        if mode & read_bit:
            mode |= exec_bit
    return mode


def _directory_managed(params):
    root = params["path"].rstrip("/") or "/"
    managed = set()
    for p in params.get("_managed") or []:
        p = p.rstrip("/")
        if p != root and p.startswith(root.rstrip("/") + "/"):
            managed.add(p)
    return managed


def _directory_is_ancestor(path, managed):
    prefix = path + "/"
    return any(m.startswith(prefix) for m in managed)


class _DirectoryWalk(object):
    """recurse/purge over the tree below a directory, entirely relative to directory descriptors.

    Every directory is opened with O_NOFOLLOW relative to its parent's descriptor and checked to be
    the very inode the walk saw, so swapping a path component for a symlink mid-walk cannot send a
    chown, chmod or unlink anywhere else. With ``fix`` set, entries are converged as they are met;
    without it, the walk only collects (observe).
    """

    def __init__(self, params, fix=False):
        self.root = params["path"]
        self.managed = _directory_managed(params)
        self.recurse, self.purge = params.get("recurse"), params.get("purge")
        owner, group, mode = params.get("owner"), params.get("group"), params.get("mode")
        self.uid = resolve_uid(owner) if (self.recurse and owner is not None) else -1
        self.gid = resolve_gid(group) if (self.recurse and group is not None) else -1
        self.mode = int(mode, 8) if (self.recurse and mode) else None
        self.fix = fix
        self.unmanaged, self.mismatch = [], []

    def wants_mode(self, st):
        # links have no mode of their own; fifos, sockets and devices are never opened, and Linux
        # cannot chmod them without a path: owner and group only
        if self.mode is None or not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
            return None
        return directory_child_mode(self.mode, stat.S_ISDIR(st.st_mode))

    def wrong(self, st):
        if (self.uid != -1 and st.st_uid != self.uid) or (self.gid != -1 and st.st_gid != self.gid):
            return True
        want = self.wants_mode(st)
        return want is not None and stat.S_IMODE(st.st_mode) != want

    def run(self):
        # the path TO the directory is walked by descriptor too (no planted link on the way)
        with fs_target(self.root) as target:
            try:
                top = os.open(target.name, os.O_RDONLY | DIRECTORY_OPEN_FLAGS, dir_fd=target.dfd)
            except OSError as e:
                raise Failure("cannot open %s: %s" % (self.root, e.strerror)) from None
        stack = [(top, self.root)]
        try:
            while stack:
                dfd, dpath = stack.pop()
                try:
                    self._one_directory(dfd, dpath, stack)
                finally:
                    os.close(dfd)
        finally:
            for dfd, _ in stack:
                os.close(dfd)
        self.unmanaged.sort()
        self.mismatch.sort()
        return self

    def _one_directory(self, dfd, dpath, stack):
        for name in sorted(os.listdir(dfd)):
            child = os.path.join(dpath, name)
            if child in self.managed:
                continue
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                continue  # gone meanwhile: nothing to purge or fix
            is_dir = stat.S_ISDIR(st.st_mode)
            if self.purge and not (is_dir and _directory_is_ancestor(child, self.managed)):
                self.unmanaged.append(child)
                if self.fix:
                    _directory_remove_at(dfd, name, st)
                continue  # all of it goes: no point checking its owner
            if self.recurse and self.wrong(st):
                self.mismatch.append(child)
                if self.fix:
                    self._converge_at(dfd, name, st)
            # without recurse only the directory's own entries count (Puppet's purge does the same)
            if is_dir and self.recurse:
                stack.append((_directory_open_at(dfd, name, st), child))

    def _converge_at(self, dfd, name, st):
        if stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode):
            flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
            fd = os.open(name, flags, dir_fd=dfd)
            try:
                _directory_same(st, os.fstat(fd), name)
                if self.uid != -1 or self.gid != -1:
                    os.fchown(fd, self.uid, self.gid)
                want = self.wants_mode(st)
                if want is not None:
                    os.fchmod(fd, want)
            finally:
                os.close(fd)
        elif self.uid != -1 or self.gid != -1:
            # links, fifos, sockets, devices: never opened (a device open can have effects)
            os.chown(name, self.uid, self.gid, dir_fd=dfd, follow_symlinks=False)


DIRECTORY_OPEN_FLAGS = getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def _directory_same(seen, now, name):
    if (seen.st_dev, seen.st_ino) != (now.st_dev, now.st_ino):
        raise Failure("%s was replaced while driftctl was walking its directory: not touched" % name)


def _directory_open_at(dfd, name, st):
    fd = os.open(name, os.O_RDONLY | DIRECTORY_OPEN_FLAGS, dir_fd=dfd)
    try:
        _directory_same(st, os.fstat(fd), name)
    except Failure:
        os.close(fd)
        raise
    return fd


def _directory_remove_at(dfd, name, st):
    """Remove ``name`` (a whole tree if it is a directory) relative to ``dfd``, never through a link."""
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dfd)
        return
    fd = _directory_open_at(dfd, name, st)
    try:
        for child in os.listdir(fd):
            try:
                cst = os.stat(child, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            _directory_remove_at(fd, child, cst)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dfd)


def directory_scan(params):
    """What recurse and purge would change: two sorted lists of paths (read-only).

    Walks without following symlinks. Managed paths are skipped (and not entered); a directory that
    only holds managed paths is kept and entered.
    """
    walk = _DirectoryWalk(params).run()
    return walk.unmanaged, walk.mismatch


def _directory_limited(paths):
    if len(paths) <= DIRECTORY_LIST_LIMIT:
        return paths
    return [*paths[:DIRECTORY_LIST_LIMIT], "... and %d more" % (len(paths) - DIRECTORY_LIST_LIMIT)]


def directory_observe(params, ctx):
    path = params["path"]
    observed = {"ensure": "absent", "owner": None, "group": None, "mode": None}
    target, unsafe = fs_probe_target(path)
    if unsafe:
        return dict(observed, _refusal=unsafe)
    if target is None:
        return observed
    with target:
        st = target.lstat()
        if st is None:
            return observed
        kind = file_kind(st)
        observed.update(
            ensure=kind,
            owner=fs_owner_view(st.st_uid, params.get("owner")),
            group=fs_group_view(st.st_gid, params.get("group")),
            mode="%04o" % stat.S_IMODE(st.st_mode) if kind != "link" else None,
        )
        if kind == "link":
            observed["target"] = target.readlink()
    wanted = params.get("purge") or params.get("recurse")
    if wanted and kind == "directory" and params.get("ensure", "present") != "absent":
        unmanaged, mismatch = directory_scan(params)
        if params.get("purge"):
            observed["unmanaged"] = _directory_limited(unmanaged)
        if params.get("recurse"):
            observed["recurse_mismatch"] = _directory_limited(mismatch)
    return observed


def directory_precheck(params, observed, ctx):
    """Why apply would refuse: a planted link on the way, or something other than a directory there."""
    if observed.get("_refusal"):
        return observed["_refusal"]
    kind = observed.get("ensure")
    if kind in (None, "absent", "directory"):
        return None
    return "%s is %s: driftctl never follows or replaces it for a directory resource" % (
        params["path"], fs_describe_type(kind, observed.get("target")))


def directory_apply(params, changes, ctx):
    path = params["path"]
    absent = params.get("ensure", "present") == "absent"
    target = fs_target(path, missing_ok=absent)
    if target is None:
        return
    owner, group, mode = params.get("owner"), params.get("group"), params.get("mode")
    with target:
        st = target.lstat()
        seen = {"ensure": file_kind(st) if st is not None else "absent"}
        if seen["ensure"] == "link":
            seen["target"] = target.readlink()
        reason = directory_precheck(params, seen, ctx)
        if reason:
            raise Failure(reason)
        if absent:
            if st is None:
                return
            try:
                os.rmdir(target.name, dir_fd=target.dfd)
            except OSError as e:
                raise Failure(
                    "cannot remove %s: %s (driftctl removes empty directories only)" % (path, e.strerror)
                ) from None
            DIR_SYNC.later(target.dfd)
            return
        if st is None:
            # created private, then given its owner and mode: never briefly open to others
            try:
                os.mkdir(target.name, 0o700, dir_fd=target.dfd)
            except OSError as e:
                raise Failure("creating %s: %s" % (path, e.strerror)) from None
            DIR_SYNC.later(target.dfd)
            fs_set_meta(target, owner, group, mode or "0755", expect_dir=True)
        else:
            fs_set_meta(target, owner, group, mode, expect_dir=True)
    if not (params.get("purge") or params.get("recurse")):
        return
    _DirectoryWalk(params, fix=True).run()


register("directory", directory_observe, directory_apply, precheck=directory_precheck)
