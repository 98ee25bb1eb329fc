"""Host side of ``file``, plus the filesystem helpers the other file-like types share.

Shipped after _core.py and before directory/symlink/line/block/cron/sysctl, which use the ``fs_*``
helpers defined here. Every top-level name carries its type's prefix: the modules are concatenated
into one program, so two modules' ``_helper`` would silently replace each other.

Imports of driftctl.agent modules stay on one line (hence the noqa): the shipper strips them line by
line, and a parenthesised import would leave its continuation lines behind.

Rules kept here: never follow or replace a symlink or a directory at a managed path; never create a
missing parent directory (the manifest declares directories); write through ``atomic_write`` only.
"""

import os  # noqa: I001  (agent imports stay on one line: see the docstring)
import stat

from driftctl.agent._core import CONTENT_LIMIT, Failure, atomic_write, backup_file, fsync_dir, group_name, read_regular, register, resolve_gid, resolve_uid, sha256_bytes, sha256_file, stat_path, user_name  # noqa: E501

# ---- helpers shared by the file-like types


def fs_owner_view(uid, wanted):
    """The owner as the manifest spells it: a number when the manifest gave a number, else the name."""
    if wanted is not None and str(wanted).isdigit():
        return str(uid)
    return user_name(uid)


def fs_group_view(gid, wanted):
    if wanted is not None and str(wanted).isdigit():
        return str(gid)
    return group_name(gid)


def fs_describe_type(path, kind):
    """``a symlink to /x`` / ``a directory``: how a refusal names what is in the way."""
    if kind == "link":
        try:
            return "a symlink (to %s)" % os.readlink(path)
        except OSError:
            return "a symlink"
    return "a %s" % kind


def fs_check_transitions(path):
    """Refuse a path whose ancestors cross a symlink that someone other than root could have planted.

    systemd-tmpfiles' "unsafe path transition" rule: a symlink is followed only when it and the
    directory holding it belong to root (or to the agent's own user) and nobody else can write that
    directory (unless it is sticky, where others cannot replace root's link). /var/run -> /run
    passes; a link in a user's home or in a group-writable tree does not.
    """
    me = os.geteuid()
    current = "/"
    for name in [p for p in path.split("/") if p][:-1]:
        nxt = os.path.join(current, name)
        try:
            st = os.lstat(nxt)
        except OSError:
            return  # a missing parent is fs_require_parent's to report
        if stat.S_ISLNK(st.st_mode):
            holder = os.lstat(current)
            others_write = holder.st_mode & 0o022 and not holder.st_mode & stat.S_ISVTX
            if st.st_uid not in (0, me) or holder.st_uid not in (0, me) or others_write:
                raise Failure(
                    "%s is a symlink that a user other than root could have planted (link owner uid %d, "
                    "in %s owned by uid %d, mode %04o): driftctl does not write through it"
                    % (nxt, st.st_uid, current, holder.st_uid, stat.S_IMODE(holder.st_mode))
                )
            current = os.path.realpath(nxt)
        else:
            current = nxt


def fs_require_parent(path):
    """Fail clearly when the parent directory is missing: driftctl never does an implicit mkdir -p."""
    fs_check_transitions(path)
    parent = os.path.dirname(path) or "/"
    st = stat_path(parent)
    if st is None:
        raise Failure(
            "parent directory %s does not exist (declare it with a directory resource; "
            "driftctl does not create parents implicitly)" % parent
        )
    if st["type"] == "link":
        # following a link in the parent is how /var/run -> /run works: only the target must be a dir
        if not os.path.isdir(parent):
            raise Failure("parent %s is a symlink to something that is not a directory" % parent)
    elif st["type"] != "directory":
        raise Failure("parent %s is %s, not a directory" % (parent, fs_describe_type(parent, st["type"])))


def fs_read_for_edit(path):
    """Read a text file that a line/block/cron/sysctl edit works on.

    Returns the text (undecodable bytes kept through surrogateescape, so an edit never loses them),
    or None when the path does not exist. Refuses symlinks, directories and other non-files.
    """
    st = stat_path(path)
    if st is None:
        return None
    if st["type"] != "file":
        raise Failure(
            "%s is %s: driftctl edits regular files only and never follows a symlink "
            "(manage the real path instead)" % (path, fs_describe_type(path, st["type"]))
        )
    with open(path, "rb") as f:
        data = f.read()
    return data.decode("utf-8", "surrogateescape")


def fs_write_edited(path, text, ctx, backup=True, create_mode=0o644, uid=-1, gid=-1):
    """Write an edited text file atomically, keeping the old file's owner and mode.

    A new file gets ``create_mode`` and ``uid``/``gid`` (-1: the agent's own). The old file is backed
    up by checksum first when ``backup`` is set.
    """
    data = text.encode("utf-8", "surrogateescape")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is None:
        fs_require_parent(path)
        atomic_write(path, data, mode=create_mode, uid=uid, gid=gid)
        return
    if not stat.S_ISREG(st.st_mode):
        raise Failure("%s is not a regular file: refusing to replace it" % path)
    if backup:
        backup_file(path, ctx)
    atomic_write(path, data, mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid)


def fs_set_meta(path, owner, group, mode, expect_dir=False):
    """chown/chmod an existing file or directory without following a symlink swapped in meanwhile.

    Opens the path with O_NOFOLLOW and works on the descriptor, so a link put there between observe
    and apply makes this fail instead of changing the link's target.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    if expect_dir:
        flags |= getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise Failure("cannot open %s to set owner/mode without following links: %s" % (path, e.strerror)) from None
    try:
        st = os.fstat(fd)
        uid = resolve_uid(owner) if owner is not None else -1
        gid = resolve_gid(group) if group is not None else -1
        if (uid != -1 and uid != st.st_uid) or (gid != -1 and gid != st.st_gid):
            os.fchown(fd, uid, gid)
        if mode is not None and stat.S_IMODE(st.st_mode) != int(mode, 8):
            os.fchmod(fd, int(mode, 8))
    finally:
        os.close(fd)


# ---- file


def file_observe(params, ctx):
    path = params["path"]
    st = stat_path(path)
    if st is None:
        return {"ensure": "absent", "content_sha256": None, "owner": None, "group": None, "mode": None}
    lst = os.lstat(path)
    observed = {
        "ensure": st["type"],
        "content_sha256": None,
        "owner": fs_owner_view(lst.st_uid, params.get("owner")),
        "group": fs_group_view(lst.st_gid, params.get("group")),
        "mode": st["mode"],
        "size": st["size"],
    }
    if st["type"] == "link":
        observed["target"] = os.readlink(path)
        observed["mode"] = None  # a link's own mode means nothing
    elif st["type"] == "file":
        sha, text = read_regular(path, want_text=bool(params.get("_want_content", ctx.want_content)))
        observed["content_sha256"] = sha
        if text is not None:
            observed["content"] = text
    return observed


def _file_refuse(path, kind):
    raise Failure(
        "%s is %s: driftctl never follows or replaces it for a file resource "
        "(remove it, or declare a %s resource for it)"
        % (path, fs_describe_type(path, kind), "symlink" if kind == "link" else kind)
    )


def _file_content(params, ctx):
    sha = params.get("content_sha256")
    if sha is None:
        return None
    data = ctx.blob(sha)
    if sha256_bytes(data) != sha:
        raise Failure("content sent for %s does not match its checksum" % params["path"])
    return data


def file_apply(params, changes, ctx):
    path = params["path"]
    st = stat_path(path)
    if params.get("ensure", "present") == "absent":
        if st is None:
            return
        if st["type"] != "file":
            _file_refuse(path, st["type"])
        if params.get("backup", True):
            backup_file(path, ctx)
        os.unlink(path)
        fsync_dir(os.path.dirname(path) or "/")
        return
    if st is not None and st["type"] != "file":
        _file_refuse(path, st["type"])
    owner, group, mode = params.get("owner"), params.get("group"), params.get("mode")
    sha = params.get("content_sha256")
    if st is None:
        fs_require_parent(path)
        data = _file_content(params, ctx)
        atomic_write(
            path,
            data if data is not None else b"",
            mode=int(mode, 8) if mode else 0o644,
            uid=resolve_uid(owner),
            gid=resolve_gid(group),
        )
        return
    if sha is not None and sha256_file(path) != sha:
        data = _file_content(params, ctx)
        lst = os.lstat(path)
        if params.get("backup", True):
            backup_file(path, ctx)
        # owner and mode the manifest does not manage are the old file's, not the agent's defaults
        atomic_write(
            path,
            data,
            mode=int(mode, 8) if mode else stat.S_IMODE(lst.st_mode),
            uid=resolve_uid(owner) if owner is not None else lst.st_uid,
            gid=resolve_gid(group) if group is not None else lst.st_gid,
        )
        return
    fs_set_meta(path, owner, group, mode)


register("file", file_observe, file_apply)

# the limit above which observe sends no text: the controller uses the same number for its side
FILE_CONTENT_LIMIT = CONTENT_LIMIT
