"""Host side of ``authorized_key``: one key line in a user's authorized_keys file.

Identity is the key material (type + base64), never the comment: a key whose options or comment
changed is updated in place, duplicates of it are removed.

The user owns their home, so every path below it is user-controlled: the path to the home is walked
by descriptor with the usual rule (root's links only), and below it no symlink and no ``..`` is
followed at all; the writes happen relative to those descriptors with the user's uid and gids, so
even a race could only reach what the user can write anyway. ~/.ssh is created 0700, the file is
written 0600 (temp file and rename inside ~/.ssh's descriptor). A path outside the home is walked
like any other file's.

observe -> {"ensure": "present"|"absent", "options"?: str, "comment"?: str, "_cas" | "_refusal"}
"""

import os
import pwd

from driftctl.agent._core import (
    Failure,
    PathMissing,
    Target,
    UnsafePath,
    cas_verify,
    register,
    sha256_bytes,
    suppress,
    walk_dir,
)
from driftctl.agent.file import fs_edit_begin, fs_edit_precheck, fs_edit_read, fs_target

AK_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ssh-dss",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)


# ---- parser (pure)


def split_options(line):
    """Split a key line into (options, rest): options end at the first whitespace outside quotes."""
    quoted = False
    escaped = False
    for i, ch in enumerate(line):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch in " \t" and not quoted:
            return line[:i], line[i:].lstrip()
    return line, ""


def parse_authorized_keys(text):
    """authorized_keys text -> [{"line": index, "options", "type", "key", "comment"}], keys only.

    Comments, blank lines and lines that are not keys are left out (and left alone on write).
    """
    out = []
    for index, raw in enumerate(text.splitlines()):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        options = ""
        first = line.split(None, 1)[0]
        if first not in AK_KEY_TYPES:
            options, line = split_options(line)
        fields = line.split(None, 2)
        if len(fields) < 2 or fields[0] not in AK_KEY_TYPES:
            continue
        out.append(
            {
                "line": index,
                "options": options,
                "type": fields[0],
                "key": fields[1],
                "comment": fields[2].strip() if len(fields) > 2 else "",
            }
        )
    return out


def format_key_line(options, key_type, key, comment):
    parts = [p for p in (options, key_type, key, comment) if p]
    return " ".join(parts)


# ---- safe paths


def _ak_target(params):
    try:
        pw = pwd.getpwnam(params["user"])
    except KeyError:
        raise Failure("no such user: %s" % params["user"]) from None
    home = os.path.normpath(pw.pw_dir)
    path = params.get("path") or os.path.join(home, ".ssh", "authorized_keys")
    inside = home != "/" and (path + "/").startswith(home + "/")
    return pw, home, path, inside


class _AkPlace(object):
    """The authorized_keys file's directory, open by descriptor: below the home strictly (no link at
    all), elsewhere by the usual rule. ``create_ssh``: make a missing ~/.ssh (0700) first."""

    def __init__(self, home, path, inside, create_ssh=False):
        self.home_fd = None
        if not inside:
            self.target = fs_target(path, missing_ok=True)
            return
        self.home_fd, shown = walk_dir(home)
        try:
            rel = os.path.relpath(path, home)
            if create_ssh:
                parts = rel.split("/")
                if len(parts) == 2:
                    with suppress(FileExistsError):
                        os.mkdir(parts[0], 0o700, dir_fd=self.home_fd)
            try:
                self.target = Target(rel, base=(self.home_fd, shown), strict=True)
            except PathMissing as e:
                if e.kind is not None:  # a file where a directory should be
                    raise Failure(str(e)) from None
                self.target = None
        except BaseException:
            os.close(self.home_fd)
            raise

    def close(self):
        if self.target is not None:
            self.target.close()
        if self.home_fd is not None:
            os.close(self.home_fd)


class _AsUser(object):
    """Run a block with the user's effective uid/gid/groups (when the agent is root and the path is theirs)."""

    def __init__(self, pw, active):
        self.pw = pw
        self.active = active and os.geteuid() == 0 and pw.pw_uid != 0
        self.saved: tuple = (0, [])

    def __enter__(self):
        if self.active:
            self.saved = (os.getegid(), os.getgroups())
            gids = os.getgrouplist(self.pw.pw_name, self.pw.pw_gid)
            os.setgroups(gids)
            os.setegid(self.pw.pw_gid)
            os.seteuid(self.pw.pw_uid)
        return self

    def __exit__(self, *exc):
        if self.active:
            os.seteuid(0)
            os.setegid(self.saved[0])
            os.setgroups(self.saved[1])
        return False


# ---- handlers


def authorized_key_observe(params, ctx):
    _pw, home, path, inside = _ak_target(params)
    try:
        place = _AkPlace(home, path, inside)
    except UnsafePath as e:
        return {"ensure": "absent", "_refusal": str(e)}
    except PathMissing:
        return {"ensure": "absent", "_cas": None}
    try:
        text, cas, refusal = fs_edit_read(place.target)
    finally:
        place.close()
    if refusal:
        return {"ensure": "absent", "_refusal": refusal}
    want_type, want_key = params["key"].split()[:2]
    for entry in parse_authorized_keys(text or ""):
        if entry["type"] == want_type and entry["key"] == want_key:
            out = {"ensure": "present", "_cas": cas}
            if params.get("ensure") != "absent":
                out["options"] = entry["options"]
                if params.get("comment") is not None:
                    out["comment"] = entry["comment"]
            return out
    return {"ensure": "absent", "_cas": cas}


def authorized_key_precheck(params, observed, ctx):
    """A planted link on the way (any link below the home), or a key file that is not regular."""
    return fs_edit_precheck(params, observed, ctx)


def ak_edit(text, params):
    """The authorized_keys text with the manifest's key line in place (or removed, for ensure absent).

    The key's line is replaced where it first appears (other lines for the same key go); a new key is
    appended. Without a ``comment`` in the manifest the comment on the host is kept. Shared by the
    agent and bake (bake/accounts.py), so a host and an image get the same file."""
    want_type, want_key = params["key"].split()[:2]
    lines = (text or "").splitlines()
    found = [e for e in parse_authorized_keys(text or "") if e["type"] == want_type and e["key"] == want_key]
    matches = [e["line"] for e in found]
    comment = params.get("comment")
    if comment is None:  # the manifest's key has no comment: keep the one on the host
        comment = found[0]["comment"] if found else ""
    new_line = format_key_line(params.get("options") or "", want_type, want_key, comment)
    if params.get("ensure") == "absent":
        lines = [ln for i, ln in enumerate(lines) if i not in matches]
    elif matches:
        first = matches[0]
        lines = [new_line if i == first else ln for i, ln in enumerate(lines) if i == first or i not in matches]
    else:
        lines.append(new_line)
    return ("\n".join(lines) + "\n") if lines else ""


def authorized_key_apply(params, changes, ctx):
    pw, home, path, inside = _ak_target(params)
    with _AsUser(pw, inside):
        try:
            place = _AkPlace(home, path, inside, create_ssh=params.get("ensure") != "absent")
        except PathMissing as e:
            raise Failure("%s (home of %s is %s)" % (e, pw.pw_name, home)) from None
        try:
            target = place.target
            if target is None:
                if params.get("ensure") == "absent":
                    return
                raise Failure("the directory of %s does not exist" % path)
            text = fs_edit_begin(target, authorized_key_precheck, params, ctx)
            data = ak_edit(text, params).encode("utf-8")
            as_user = inside and os.geteuid() != 0
            uid, gid = (-1, -1) if as_user else (pw.pw_uid, pw.pw_gid)

            data_sha = sha256_bytes(data)

            def fill(fd):
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                return len(data), data_sha

            cas_verify(target, ctx)
            target.replace(fill, 0o600, uid, gid, ctx=ctx, size=len(data))
        finally:
            place.close()


register("authorized_key", authorized_key_observe, authorized_key_apply, precheck=authorized_key_precheck)
