"""Host side of ``authorized_key``: one key line in a user's authorized_keys file.

Identity is the key material (type + base64), never the comment: a key whose options or comment
changed is updated in place, duplicates of it are removed.

The user owns their home, so every path below it is user-controlled: no symlink there is followed
(each component is checked with lstat), and the writes happen with the user's uid and gids, so a
swapped-in link could only reach what the user can write anyway. ~/.ssh is created 0700, the file
is written 0600 through atomic_write.

observe -> {"ensure": "present"|"absent", "options"?: str, "comment"?: str}
"""

import os
import pwd
import stat

from driftctl.agent._core import Failure, atomic_write, register

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


def _ak_check_components(home, path):
    """Refuse a path below ``home`` that goes through a symlink (or a non-directory)."""
    rel = os.path.relpath(path, home).split(os.sep)
    current = home
    for i, part in enumerate(rel):
        current = os.path.join(current, part)
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode):
            raise Failure("%s is a symlink: refusing to follow it" % current)
        if i < len(rel) - 1 and not stat.S_ISDIR(st.st_mode):
            raise Failure("%s is not a directory" % current)


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


def _ak_read(path):
    try:
        # never blocks on a FIFO planted by the user, never follows a link
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError as e:
        raise Failure("cannot read %s: %s" % (path, e.strerror)) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise Failure("%s is not a regular file: refusing to read or replace it" % path)
    with os.fdopen(fd, "rb") as f:
        return f.read().decode("utf-8", "replace")


# ---- handlers


def authorized_key_observe(params, ctx):
    _pw, home, path, inside = _ak_target(params)
    if inside:
        _ak_check_components(home, path)
    text = _ak_read(path)
    want_type, want_key = params["key"].split()[:2]
    for entry in parse_authorized_keys(text or ""):
        if entry["type"] == want_type and entry["key"] == want_key:
            out = {"ensure": "present"}
            if params.get("ensure") != "absent":
                out["options"] = entry["options"]
                if params.get("comment") is not None:
                    out["comment"] = entry["comment"]
            return out
    return {"ensure": "absent"}


def authorized_key_apply(params, changes, ctx):
    pw, home, path, inside = _ak_target(params)
    want_type, want_key = params["key"].split()[:2]
    with _AsUser(pw, inside):
        if inside:
            _ak_check_components(home, path)
            ssh_dir = os.path.dirname(path)
            if not os.path.lexists(ssh_dir):
                if not os.path.isdir(home):
                    raise Failure("home of %s (%s) does not exist" % (pw.pw_name, home))
                os.mkdir(ssh_dir, 0o700)
                os.chmod(ssh_dir, 0o700)
        text = _ak_read(path)
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
        data = ("\n".join(lines) + "\n") if lines else ""
        if inside and os.geteuid() != 0:
            atomic_write(path, data.encode("utf-8"), mode=0o600)
        else:
            atomic_write(path, data.encode("utf-8"), mode=0o600, uid=pw.pw_uid, gid=pw.pw_gid)


register("authorized_key", authorized_key_observe, authorized_key_apply)
