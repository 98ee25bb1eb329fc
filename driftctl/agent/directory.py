"""Host side of ``directory``: presence, owner/group/mode, ``recurse`` and ``purge``.

``recurse`` gives every entry below the directory its owner and group, and its mode the way Puppet
does: files get the mode as written, directories also get the search bit wherever the read bit is
set (so "0644" makes directories 0755). ``purge`` removes every entry below that no resource of the
catalog manages; the engine passes the managed paths as ``params["_managed"]``. Paths that another
resource manages are left to that resource by both (its own owner/mode win, it is never purged).
Neither follows a symlink: links are chowned themselves (lchown), never their targets.
"""

import os
import shutil
import stat

from driftctl.agent._core import Failure, fsync_dir, register, resolve_gid, resolve_uid, stat_path
from driftctl.agent.file import fs_describe_type, fs_group_view, fs_owner_view, fs_require_parent, fs_set_meta

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


def directory_scan(params):
    """What recurse and purge would change: two sorted lists of paths.

    Walks without following symlinks. Managed paths are skipped (and not entered); a directory that
    only holds managed paths is kept and entered.
    """
    root = params["path"]
    managed = _directory_managed(params)
    recurse, purge = params.get("recurse"), params.get("purge")
    owner, group, mode = params.get("owner"), params.get("group"), params.get("mode")
    uid = resolve_uid(owner) if (recurse and owner is not None) else -1
    gid = resolve_gid(group) if (recurse and group is not None) else -1
    want_mode = int(mode, 8) if (recurse and mode) else None
    unmanaged, mismatch = [], []
    stack = [root]
    while stack:
        current = stack.pop()
        try:
            names = sorted(os.listdir(current))
        except OSError as e:
            raise Failure("cannot list %s: %s" % (current, e.strerror)) from None
        for name in names:
            child = os.path.join(current, name)
            if child in managed:
                continue
            st = os.lstat(child)
            is_dir = stat.S_ISDIR(st.st_mode)
            holds_managed = is_dir and _directory_is_ancestor(child, managed)
            if purge and not holds_managed:
                unmanaged.append(child)
                continue  # all of it goes: no point checking its owner
            if recurse:
                wrong = (uid != -1 and st.st_uid != uid) or (gid != -1 and st.st_gid != gid)
                if want_mode is not None and not stat.S_ISLNK(st.st_mode):
                    wrong = wrong or stat.S_IMODE(st.st_mode) != directory_child_mode(want_mode, is_dir)
                if wrong:
                    mismatch.append(child)
            # without recurse only the directory's own entries count (Puppet's purge does the same)
            if is_dir and recurse:
                stack.append(child)
    return sorted(unmanaged), sorted(mismatch)


def _directory_limited(paths):
    if len(paths) <= DIRECTORY_LIST_LIMIT:
        return paths
    return [*paths[:DIRECTORY_LIST_LIMIT], "... and %d more" % (len(paths) - DIRECTORY_LIST_LIMIT)]


def directory_observe(params, ctx):
    path = params["path"]
    st = stat_path(path)
    observed = {"ensure": "absent", "owner": None, "group": None, "mode": None}
    if st is None:
        return observed
    lst = os.lstat(path)
    observed.update(
        ensure=st["type"],
        owner=fs_owner_view(lst.st_uid, params.get("owner")),
        group=fs_group_view(lst.st_gid, params.get("group")),
        mode=st["mode"] if st["type"] != "link" else None,
    )
    wanted = params.get("purge") or params.get("recurse")
    if wanted and st["type"] == "directory" and params.get("ensure", "present") != "absent":
        unmanaged, mismatch = directory_scan(params)
        if params.get("purge"):
            observed["unmanaged"] = _directory_limited(unmanaged)
        if params.get("recurse"):
            observed["recurse_mismatch"] = _directory_limited(mismatch)
    return observed


def _directory_refuse(path, kind):
    raise Failure(
        "%s is %s: driftctl never follows or replaces it for a directory resource"
        % (path, fs_describe_type(path, kind))
    )


def _directory_remove(path):
    st = os.lstat(path)
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)  # rmtree removes links inside, never what they point to
    else:
        os.unlink(path)


def _directory_lchown(path, uid, gid):
    st = os.lstat(path)
    if (uid != -1 and st.st_uid != uid) or (gid != -1 and st.st_gid != gid):
        os.lchown(path, uid, gid)


def directory_apply(params, changes, ctx):
    path = params["path"]
    st = stat_path(path)
    if params.get("ensure", "present") == "absent":
        if st is None:
            return
        if st["type"] != "directory":
            _directory_refuse(path, st["type"])
        try:
            os.rmdir(path)
        except OSError as e:
            raise Failure(
                "cannot remove %s: %s (driftctl removes empty directories only)" % (path, e.strerror)
            ) from None
        fsync_dir(os.path.dirname(path) or "/")
        return
    owner, group, mode = params.get("owner"), params.get("group"), params.get("mode")
    if st is None:
        fs_require_parent(path)
        # created private, then given its owner and mode: never briefly open to others
        os.mkdir(path, 0o700)
        fsync_dir(os.path.dirname(path) or "/")
        fs_set_meta(path, owner, group, mode or "0755", expect_dir=True)
    elif st["type"] != "directory":
        _directory_refuse(path, st["type"])
    else:
        fs_set_meta(path, owner, group, mode, expect_dir=True)
    if not (params.get("purge") or params.get("recurse")):
        return
    unmanaged, mismatch = directory_scan(params)
    for victim in unmanaged:
        _directory_remove(victim)
    uid = resolve_uid(owner) if owner is not None else -1
    gid = resolve_gid(group) if group is not None else -1
    for entry in mismatch:
        est = os.lstat(entry)
        is_dir = stat.S_ISDIR(est.st_mode)
        want = directory_child_mode(int(mode, 8), is_dir) if mode else None
        if is_dir or stat.S_ISREG(est.st_mode):
            fs_set_meta(entry, owner, group, "%04o" % want if want is not None else None, expect_dir=is_dir)
        else:
            # links, fifos, sockets, devices: never opened (a device open can have effects)
            _directory_lchown(entry, uid, gid)
            if want is not None and not stat.S_ISLNK(est.st_mode) and stat.S_IMODE(est.st_mode) != want:
                os.chmod(entry, want)


register("directory", directory_observe, directory_apply)
