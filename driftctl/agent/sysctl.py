"""Host side of ``sysctl``: the live kernel value (/proc/sys) and the value persisted in a sysctl.d file.

Keys follow sysctl.d(5): when the first separator is a dot, dots and slashes swap
(``net.ipv4.conf.eth0/100.rp_filter`` is ``/proc/sys/net/ipv4/conf/eth0.100/rp_filter``); when it is
a slash, the key is the path. Values are compared with whitespace normalised, since the kernel
separates the numbers of ``net.ipv4.tcp_rmem`` with tabs. ``edit_sysctl`` is pure.
"""

import os

from driftctl.agent._core import Failure, register
from driftctl.agent.file import fs_edit_begin, fs_edit_observe, fs_edit_precheck, fs_target, fs_write_edited
from driftctl.agent.line import TextEdit, textedit_insert, textedit_join, textedit_split

SYSCTL_ROOT = "/proc/sys"


def sysctl_relpath(key):
    """The key as a path below /proc/sys."""
    key = key.strip().lstrip("-")
    dot, slash = key.find("."), key.find("/")
    if slash != -1 and (dot == -1 or slash < dot):
        return key.strip("/")
    return key.translate(str.maketrans("./", "/."))


def sysctl_value(value):
    """A value as compared and written: runs of whitespace become one space."""
    return " ".join(str(value).split())


def _sysctl_assignment(content):
    """(relpath, value) of a ``key = value`` line, or None for comments, blanks and junk."""
    stripped = content.strip()
    if not stripped or stripped[0] in "#;" or "=" not in stripped:
        return None
    key, _, value = stripped.partition("=")
    if not key.strip():
        return None
    return sysctl_relpath(key), sysctl_value(value)


def sysctl_parse(text):
    """{relpath: value} of a sysctl.d file; a later line wins, as systemd-sysctl applies them."""
    values = {}
    for content, _ in textedit_split(text):
        parsed = _sysctl_assignment(content)
        if parsed is not None:
            values[parsed[0]] = parsed[1]
    return values


def edit_sysctl(text, key, value):
    """Make ``key`` hold ``value`` in a sysctl.d file's text. Pure: returns a TextEdit.

    The first line setting the key is rewritten (``key = value``) and later ones are removed, so the
    file says it once; a key not set yet is appended.
    """
    rel, value = sysctl_relpath(key), sysctl_value(value)
    lines = textedit_split(text)
    hits = [i for i, (c, _) in enumerate(lines) if (_sysctl_assignment(c) or (None,))[0] == rel]
    if not hits:
        textedit_insert(lines, len(lines), ["%s = %s" % (key, value)])
        return TextEdit(textedit_join(lines), "added")
    first = hits[0]
    old = _sysctl_assignment(lines[first][0])[1]
    if old == value and len(hits) == 1:
        return TextEdit(text)
    for i in reversed(hits[1:]):
        del lines[i]
    if old != value:
        lines[first][0] = "%s = %s" % (key, value)
    if not lines[first][1]:
        lines[first][1] = "\n"
    return TextEdit(textedit_join(lines), "replaced", [old])


def _sysctl_proc(key):
    rel = sysctl_relpath(key)
    if ".." in rel.split("/"):  # a key never leaves /proc/sys
        raise Failure("%s is not a kernel parameter name" % key)
    return SYSCTL_ROOT + "/" + rel


def sysctl_live(key):
    """The live value, or None when the kernel has no such key."""
    path = _sysctl_proc(key)
    try:
        with open(path) as f:
            return sysctl_value(f.read())
    except (FileNotFoundError, NotADirectoryError):
        return None
    except IsADirectoryError:
        raise Failure("%s is a group of keys (%s is a directory), not one key" % (key, path)) from None
    except OSError as e:
        raise Failure("cannot read %s: %s" % (path, e.strerror)) from None


def sysctl_observe(params, ctx):
    key = params["key"]
    observed = {"value": sysctl_live(key), "persisted": None}
    path = params.get("file")
    if path:
        text, extra = fs_edit_observe(path)
        observed.update(extra)
        if text is not None:
            observed["persisted"] = sysctl_parse(text).get(sysctl_relpath(key))
    return observed


def sysctl_precheck(params, observed, ctx):
    """A planted link on the way to the sysctl.d file, or a file there that is not regular."""
    if params.get("file") and params.get("persist", True):
        return fs_edit_precheck(params, observed, ctx)
    return None


def sysctl_apply(params, changes, ctx):
    key, value = params["key"], sysctl_value(params["value"])
    errors = []
    # the file first: in a container /proc/sys is often read-only, and persisting still counts
    if "persisted" in changes and params.get("persist", True):
        with fs_target(params["file"]) as target:
            text = fs_edit_begin(target, sysctl_precheck, params, ctx)
            edit = edit_sysctl(text or "", key, value)
            if edit.changed:
                fs_write_edited(target, edit.text, ctx, create_mode=0o644)
    if "value" in changes:
        path = _sysctl_proc(key)
        try:
            # no O_CREAT: a key the kernel does not have must fail, never become a file
            fd = os.open(path, os.O_WRONLY | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0))
            try:
                os.write(fd, (value + "\n").encode("utf-8"))
            finally:
                os.close(fd)
        except (FileNotFoundError, NotADirectoryError):
            errors.append("the kernel has no key %s (no %s)" % (key, path))
        except OSError as e:
            errors.append(
                "cannot set %s: %s (a container's /proc/sys is usually read-only, and some keys belong "
                "to the host's network namespace)" % (key, e.strerror)
            )
    if errors:
        raise Failure("; ".join(errors))


register("sysctl", sysctl_observe, sysctl_apply, precheck=sysctl_precheck)
