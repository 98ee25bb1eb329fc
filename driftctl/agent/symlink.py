"""Host side of ``symlink``: a link at ``path`` pointing at ``target`` (the target need not exist).

A link is replaced atomically: a new link is made under a temporary name in the same directory and
renamed over the old one, so the path never disappears. A file or an empty directory in the way is
replaced only with ``force`` (a file is backed up first); a non-empty directory never is.
"""

import contextlib
import os
import tempfile

from driftctl.agent._core import Failure, backup_file, fsync_dir, register, stat_path
from driftctl.agent.file import fs_describe_type, fs_require_parent


def symlink_observe(params, ctx):
    path = params["path"]
    st = stat_path(path)
    if st is None:
        return {"ensure": "absent", "target": None}
    if st["type"] == "link":
        return {"ensure": "link", "target": os.readlink(path)}
    return {"ensure": st["type"], "target": None}


def _symlink_replace(path, target):
    directory = os.path.dirname(path) or "/"
    # mkdtemp gives a private name nobody else can take between our symlink() and rename()
    tmpdir = tempfile.mkdtemp(prefix=".driftctl-", dir=directory)
    tmp = os.path.join(tmpdir, "link")
    try:
        os.symlink(target, tmp)
        os.rename(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)  # still there only when the rename failed
        os.rmdir(tmpdir)
    fsync_dir(directory)


def symlink_apply(params, changes, ctx):
    path = params["path"]
    st = stat_path(path)
    kind = st["type"] if st else None
    if params.get("ensure", "present") == "absent":
        if kind is None:
            return
        if kind != "link":
            raise Failure("%s is %s, not a symlink: not removing it" % (path, fs_describe_type(path, kind)))
        os.unlink(path)
        fsync_dir(os.path.dirname(path) or "/")
        return
    target = params["target"]
    if kind is None:
        fs_require_parent(path)
    elif kind == "link":
        if os.readlink(path) == target:
            return
    elif kind == "directory":
        if not params.get("force"):
            raise Failure("%s is a directory: set force: true to replace an empty one with a symlink" % path)
        if os.listdir(path):
            raise Failure("%s is a non-empty directory: driftctl never replaces it with a symlink" % path)
        os.rmdir(path)
    elif kind == "file":
        if not params.get("force"):
            raise Failure("%s is a file: set force: true to replace it with a symlink" % path)
        backup_file(path, ctx)
    else:
        raise Failure("%s is %s: not replacing it with a symlink" % (path, fs_describe_type(path, kind)))
    _symlink_replace(path, target)


register("symlink", symlink_observe, symlink_apply)
