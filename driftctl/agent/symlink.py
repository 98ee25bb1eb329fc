"""Host side of ``symlink``: a link at ``path`` pointing at ``target`` (the target need not exist).

A link is replaced atomically: a new link is made under a random name in the same directory (by
descriptor) and renamed over the old one, so the path never disappears. A file or an empty directory
in the way is replaced only with ``force`` (a file is backed up first); a non-empty directory never
is. The path to the link is walked by descriptor: a symlink someone else could have planted on the
way is never crossed.
"""

import os

from driftctl.agent._core import DIR_FLAGS, DIR_SYNC, Failure, backup_save, file_kind, register, suppress
from driftctl.agent.file import fs_describe_type, fs_probe_target, fs_target


def _symlink_seen(target):
    """What precheck needs of the entry at the path: its kind, link target, and whether a dir is empty."""
    st = target.lstat()
    if st is None:
        return {"ensure": "absent", "target": None}
    kind = file_kind(st)
    if kind == "link":
        return {"ensure": "link", "target": target.readlink()}
    seen = {"ensure": kind, "target": None}
    if kind == "directory":
        try:
            fd = os.open(target.name, DIR_FLAGS, dir_fd=target.dfd)
            try:
                seen["_nonempty"] = bool(os.listdir(fd))
            finally:
                os.close(fd)
        except OSError:
            seen["_nonempty"] = True
    return seen


def symlink_observe(params, ctx):
    target, unsafe = fs_probe_target(params["path"])
    if unsafe:
        return {"ensure": "absent", "target": None, "_refusal": unsafe}
    if target is None:
        return {"ensure": "absent", "target": None}
    with target:
        return _symlink_seen(target)


def symlink_precheck(params, observed, ctx):
    """Why apply would refuse for what is at the path (shared by plan and apply)."""
    if observed.get("_refusal"):
        return observed["_refusal"]
    path = params["path"]
    kind = observed.get("ensure") or "absent"
    if params.get("ensure", "present") == "absent":
        if kind in ("absent", "link"):
            return None
        return "%s is %s, not a symlink: not removing it" % (path, fs_describe_type(kind))
    if kind in ("absent", "link"):
        return None
    if kind == "directory":
        if not params.get("force"):
            return "%s is a directory: set force: true to replace an empty one with a symlink" % path
        if observed.get("_nonempty"):
            return "%s is a non-empty directory: driftctl never replaces it with a symlink" % path
        return None
    if kind == "file":
        if not params.get("force"):
            return "%s is a file: set force: true to replace it with a symlink" % path
        return None
    return "%s is %s: not replacing it with a symlink" % (path, fs_describe_type(kind))


def _symlink_replace(target, link_to):
    tmp = ".driftctl-%s" % os.urandom(8).hex()
    try:
        os.symlink(link_to, tmp, dir_fd=target.dfd)  # fails on an existing name: nobody can pre-plant it
        try:
            os.rename(tmp, target.name, src_dir_fd=target.dfd, dst_dir_fd=target.dfd)
        except BaseException:
            with suppress(OSError):
                os.unlink(tmp, dir_fd=target.dfd)
            raise
    except OSError as e:
        raise Failure("linking %s: %s" % (target.path, e.strerror)) from None
    DIR_SYNC.later(target.dfd)


def symlink_apply(params, changes, ctx):
    path = params["path"]
    absent = params.get("ensure", "present") == "absent"
    target = fs_target(path, missing_ok=absent)
    if target is None:
        return
    with target:
        seen = _symlink_seen(target)
        reason = symlink_precheck(params, seen, ctx)
        if reason:
            raise Failure(reason)
        kind = seen["ensure"]
        try:
            if absent:
                if kind == "link":
                    os.unlink(target.name, dir_fd=target.dfd)
                    DIR_SYNC.later(target.dfd)
                return
            link_to = params["target"]
            if kind == "link" and seen["target"] == link_to:
                return
            if kind == "directory":
                os.rmdir(target.name, dir_fd=target.dfd)
            elif kind == "file":
                backup_save(target, ctx)
        except OSError as e:
            raise Failure("%s: %s" % (path, e.strerror)) from None
        _symlink_replace(target, link_to)


register("symlink", symlink_observe, symlink_apply, precheck=symlink_precheck)
