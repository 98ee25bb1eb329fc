"""Host side of ``file``, plus the filesystem helpers the other file-like types share.

Shipped after _core.py and before directory/symlink/line/block/cron/sysctl, which use the ``fs_*``
helpers defined here. Every top-level name carries its type's prefix: the modules are concatenated
into one program, so two modules' ``_helper`` would silently replace each other.

Imports of driftctl.agent modules stay on one line (hence the noqa): the shipper strips them line by
line, and a parenthesised import would leave its continuation lines behind.

Rules kept here: never follow or replace a symlink or a directory at a managed path; never cross a
symlink a user other than root could have planted on the way to it; never create a missing parent
directory (the manifest declares directories); every read and write goes through ``Target`` (the
parent directory open by descriptor, see _core.py).

Modes: a new file without ``mode`` is created 0644, except the file of a sensitive resource
(``params["_sensitive"]``), which is 0600 from its first byte to the end (the temp file is 0600 and
the final fchmod keeps it so). An existing file keeps its mode unless ``mode`` is given. Content is
written only through ``ctx.copy_blob(sha, fd)``, which returns (bytes, sha256 of what it wrote); the
hash is checked before the rename. When the controller sends ``content_size``, a file system with
less free space than that fails before anything is written.
"""

import os  # noqa: I001  (agent imports stay on one line: see the docstring)
import stat

from driftctl.agent._core import CONTENT_LIMIT, Failure, PathMissing, Target, UnsafePath, backup_save, cas_check_read, cas_dict, cas_verify, file_kind, group_name, new_sha256, register, resolve_gid, resolve_uid, sha256_bytes, user_name  # noqa: E501

EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

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


def fs_describe_type(kind, link_target=None):
    """``a symlink (to /x)`` / ``a directory``: how a refusal names what is in the way."""
    if kind == "link":
        return "a symlink (to %s)" % link_target if link_target is not None else "a symlink"
    return "a %s" % kind


def fs_target(path, missing_ok=False):
    """Target(path) (its parent open by descriptor). A missing parent fails clearly, or gives None with
    ``missing_ok``: driftctl never does an implicit mkdir -p."""
    try:
        return Target(path)
    except PathMissing as e:
        if missing_ok:
            return None
        parent = os.path.dirname(path.rstrip("/")) or "/"
        if e.kind is not None and e.where == parent:
            raise Failure("parent %s is a %s, not a directory" % (parent, e.kind)) from None
        raise Failure(
            "parent directory %s does not exist (declare it with a directory resource; "
            "driftctl does not create parents implicitly)" % parent
        ) from None


def fs_probe_target(path):
    """For observe: (Target or None when the path cannot exist, the refusal for a planted link or None)."""
    try:
        return fs_target(path, missing_ok=True), None
    except UnsafePath as e:
        return None, str(e)


def fs_set_meta(target, owner, group, mode, expect_dir=False):
    """chown/chmod an existing entry through an O_NOFOLLOW descriptor opened in its directory.

    A link put there between observe and apply makes this fail instead of changing the link's target.
    """
    fd = target.open_meta(expect_dir)
    try:
        st = os.fstat(fd)
        uid = resolve_uid(owner) if owner is not None else -1
        gid = resolve_gid(group) if group is not None else -1
        if (uid != -1 and uid != st.st_uid) or (gid != -1 and gid != st.st_gid):
            os.fchown(fd, uid, gid)
        if mode is not None and stat.S_IMODE(st.st_mode) != int(mode, 8):
            os.fchmod(fd, int(mode, 8))
    except OSError as e:
        raise Failure("setting owner/mode of %s: %s" % (target.path, e.strerror)) from None
    finally:
        os.close(fd)


# ---- text files that line/block/cron/sysctl/authorized_key edit


def fs_edit_refusal(path, kind, link_target=None):
    return ("%s is %s: driftctl edits regular files only and never follows a symlink "
            "(manage the real path instead)" % (path, fs_describe_type(kind, link_target)))


def fs_edit_read(target):
    """(text or None when missing, ``_cas`` of what was read or None, refusal or None) of a file to edit.

    Undecodable bytes are kept through surrogateescape, so an edit never loses them.
    """
    if target is None:
        return None, None, None
    st = target.lstat()
    if st is None:
        return None, None, None
    if not stat.S_ISREG(st.st_mode):
        return None, None, fs_edit_refusal(target.path, file_kind(st), target.readlink())
    sha, _text, data, fst = target.read(keep_all=True)
    return data.decode("utf-8", "surrogateescape"), cas_dict(fst, sha), None


def fs_edit_observe(path):
    """For the observe of an edit type: (text or None, extra keys: ``_cas`` or ``_refusal``)."""
    target, unsafe = fs_probe_target(path)
    if unsafe:
        return None, {"_refusal": unsafe}
    try:
        text, cas, refusal = fs_edit_read(target)
    finally:
        if target is not None:
            target.close()
    if refusal:
        return None, {"_refusal": refusal}
    return text, {"_cas": cas}


def fs_edit_precheck(params, observed, ctx):
    """The precheck of every edit type: a planted link on the way, or a file that is not regular."""
    return observed.get("_refusal")


def fs_edit_begin(target, precheck, params, ctx):
    """Apply side of an edit: read the current file, refuse as precheck would, and refuse when the file
    is no longer what the probe saw. Returns the text (None: missing)."""
    text, cas, refusal = fs_edit_read(target)
    seen = {"_refusal": refusal} if refusal else ({"file": "missing"} if text is None else {})
    reason = precheck(params, seen, ctx)
    if reason:
        raise Failure(reason)
    cas_check_read(target.path, cas, ctx)
    return text


def fs_write_edited(target, text, ctx, backup=True, create_mode=0o644, uid=-1, gid=-1):
    """Write an edited text file atomically, keeping the old file's owner and mode.

    A new file gets ``create_mode`` and ``uid``/``gid`` (-1: the agent's own). The old file is backed
    up first when ``backup`` is set. The file must still be what the probe saw at the rename.
    """
    data = text.encode("utf-8", "surrogateescape")
    st = target.lstat()
    if st is not None:
        if not stat.S_ISREG(st.st_mode):
            raise Failure("%s is not a regular file: refusing to replace it" % target.path)
        if backup:
            backup_save(target, ctx)
        create_mode, uid, gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid

    data_sha = sha256_bytes(data)

    def fill(fd):
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        return len(data), data_sha

    target.replace(fill, create_mode, uid, gid, ctx=ctx, size=len(data))


def fs_remove_edited(target, ctx, backup=True):
    """Remove an edited file (cron.d's last entry gone): backed up, compare-and-swap checked."""
    if backup:
        backup_save(target, ctx)
    target.unlink(ctx)


# ---- file


def file_observe(params, ctx):
    path = params["path"]
    absent = {"ensure": "absent", "content_sha256": None, "owner": None, "group": None, "mode": None}
    target, unsafe = fs_probe_target(path)
    if unsafe:
        return dict(absent, _refusal=unsafe)
    if target is None:
        return dict(absent, _cas=None)
    with target:
        st = target.lstat()
        if st is None:
            return dict(absent, _cas=None)
        kind = file_kind(st)
        observed = {
            "ensure": kind,
            "content_sha256": None,
            "owner": fs_owner_view(st.st_uid, params.get("owner")),
            "group": fs_group_view(st.st_gid, params.get("group")),
            "mode": "%04o" % stat.S_IMODE(st.st_mode),
            "size": st.st_size,
        }
        if kind == "link":
            observed["target"] = target.readlink()
            observed["mode"] = None  # a link's own mode means nothing
            observed["_cas"] = cas_dict(st, None)
        elif kind == "file":
            want = bool(params.get("_want_content", ctx.want_content))
            sha, text, _data, fst = target.read(want_text=want)
            if want and text is None and fst.st_size == 0:
                text = ""
            observed["content_sha256"] = sha
            observed["_cas"] = cas_dict(fst, sha)
            # the text travels only when a diff will be shown: the content is managed and differs
            wanted = params.get("content_sha256")
            if text is not None and wanted is not None and wanted != sha:
                observed["content"] = text
        else:
            observed["_cas"] = cas_dict(st, None)
    return observed


def file_precheck(params, observed, ctx):
    """Why apply would refuse: a planted link on the way, or something other than a file at the path."""
    if observed.get("_refusal"):
        return observed["_refusal"]
    kind = observed.get("ensure")
    if kind in (None, "absent", "file"):
        return None
    return (
        "%s is %s: driftctl never follows or replaces it for a file resource "
        "(remove it, or declare a %s resource for it)"
        % (params["path"], fs_describe_type(kind, observed.get("target")), "symlink" if kind == "link" else kind)
    )


def file_default_mode(params):
    return 0o600 if params.get("_sensitive") else 0o644


def _file_hash_written(fd):
    """sha256 of the file behind the write-only descriptor ``fd`` (re-opened for reading via /proc)."""
    os.fsync(fd)
    try:
        rfd = os.open("/proc/self/fd/%d" % fd, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise Failure("cannot verify the content written: %s" % e.strerror) from None
    try:
        h = new_sha256(size=os.fstat(rfd).st_size)
        for chunk in iter(lambda: os.read(rfd, 1 << 20), b""):
            h.update(chunk)
    finally:
        os.close(rfd)
    return h.hexdigest()


def _file_writer(params, ctx):
    """A ``fill`` that streams the content through ctx.copy_blob and checks its hash before the rename."""
    sha = params.get("content_sha256")

    def fill(fd):
        if sha is None:  # no content managed: a new file is empty (its hash, so the run knows what it wrote)
            return 0, EMPTY_SHA256
        copied = ctx.copy_blob(sha, fd)
        if isinstance(copied, tuple):  # (bytes, sha256 hashed while writing)
            n, got = copied
        else:  # a copy_blob that returns the byte count only: hash what landed in the temp file
            n, got = copied, _file_hash_written(fd)
        if got != sha:
            raise Failure("content sent for %s does not match its checksum" % params["path"])
        return n, got

    return fill


def file_apply(params, changes, ctx):
    path = params["path"]
    absent = params.get("ensure", "present") == "absent"
    target = fs_target(path, missing_ok=absent)
    if target is None:
        return
    with target:
        st = target.lstat()
        seen = {"ensure": file_kind(st) if st is not None else "absent"}
        if seen["ensure"] == "link":
            seen["target"] = target.readlink()
        reason = file_precheck(params, seen, ctx)
        if reason:
            raise Failure(reason)
        if absent:
            if st is None:
                return
            cas_verify(target, ctx)  # before the backup too: a refused change leaves no trace
            if params.get("backup", True):
                backup_save(target, ctx)
            target.unlink(ctx)
            return
        owner, group, mode = params.get("owner"), params.get("group"), params.get("mode")
        sha = params.get("content_sha256")
        size = params.get("content_size")
        if st is None:
            target.replace(
                _file_writer(params, ctx),
                int(mode, 8) if mode else file_default_mode(params),
                resolve_uid(owner),
                resolve_gid(group),
                ctx=ctx,
                size=size,
            )
            return
        if sha is not None and target.read()[0] != sha:
            cas_verify(target, ctx)
            if params.get("backup", True):
                backup_save(target, ctx)
            # owner and mode the manifest does not manage are the old file's, not the agent's defaults
            target.replace(
                _file_writer(params, ctx),
                int(mode, 8) if mode else stat.S_IMODE(st.st_mode),
                resolve_uid(owner) if owner is not None else st.st_uid,
                resolve_gid(group) if group is not None else st.st_gid,
                ctx=ctx,
                size=size,
            )
            return
        fs_set_meta(target, owner, group, mode)


register("file", file_observe, file_apply, precheck=file_precheck)

# the limit above which observe sends no text: the controller uses the same number for its side
FILE_CONTENT_LIMIT = CONTENT_LIMIT
