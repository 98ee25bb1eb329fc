"""Host side of ``cron``: one job in a user's crontab or in an /etc/cron.d file.

A job is identified by a ``# driftctl: <name>`` comment line; under it come its environment lines
(``NAME=value``) and then the job line. In /etc/cron.d files the job line carries the user column.
Note that cron applies an environment line to every job below it in the same crontab: that is
cron's rule, not driftctl's, and the reference docs say so.

User crontabs are read with ``crontab -l -u USER`` and written with ``crontab -u USER -`` on stdin
(argv, never a shell); ``-u`` is left out when the agent already runs as that user, since only root
may use it. ``edit_cron`` and ``cron_entry_lines`` are pure and importable on the controller.
"""

import os
import pwd
import re

from driftctl.agent._core import Failure, backup_file, fsync_dir, register, run
from driftctl.agent.file import fs_read_for_edit, fs_write_edited
from driftctl.agent.line import TextEdit, textedit_insert, textedit_join, textedit_newline, textedit_split

CRON_MARK = "# driftctl: "
CRON_ENV_RE = re.compile(r"^\s*[A-Za-z_][A-Za-z0-9_]*\s*=")


def cron_env_value(value):
    """A value as an environment line holds it: quoted when empty or padded, which cron would lose.

    Debian's crontab refuses ``MAILTO=`` ("bad minute": without a value the line is not an
    assignment); ``MAILTO=""`` is the empty value. cron strips one pair of matching quotes.
    """
    value = str(value)
    if value == "" or value != value.strip():
        return "'%s'" % value if '"' in value else '"%s"' % value
    return value


def cron_entry_lines(params):
    """The lines under an entry's marker comment: its environment, then the job line."""
    lines = ["%s=%s" % (k, cron_env_value(v)) for k, v in (params.get("environment") or {}).items()]
    if params.get("special"):
        when = params["special"]
    else:
        when = " ".join(str(params.get(f) or "*") for f in ("minute", "hour", "day", "month", "weekday"))
    if params.get("file"):
        lines.append("%s %s %s" % (when, params.get("user") or "root", params["command"]))
    else:
        lines.append("%s %s" % (when, params["command"]))
    return lines


def cron_find(lines, name):
    """[(start, stop)] line ranges of every entry marked for ``name`` (the marker line included).

    An entry is the marker, the environment lines after it, and the next line if it is a job (not
    blank, not a comment): a marker followed by nothing usable is still found, so it gets repaired.
    """
    marker = CRON_MARK + name
    found = []
    i = 0
    while i < len(lines):
        if lines[i][0].rstrip() != marker:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and CRON_ENV_RE.match(lines[j][0]):
            j += 1
        if j < len(lines) and lines[j][0].strip() and not lines[j][0].lstrip().startswith("#"):
            j += 1
        found.append((i, j))
        i = j
    return found


def cron_current(text, name):
    """The lines under the first marker for ``name`` (a list), or None when there is no such entry."""
    lines = textedit_split(text)
    found = cron_find(lines, name)
    if not found:
        return None
    start, stop = found[0]
    return [c for c, _ in lines[start + 1:stop]]


def edit_cron(text, name, entry, ensure="present"):
    """Make the entry ``name`` hold the lines ``entry`` (or be gone). Pure: returns a TextEdit.

    The first marked entry is rewritten in place, later duplicates are removed, a new entry is
    appended. The result always ends with a newline: cron ignores a last line without one.
    """
    lines = textedit_split(text)
    found = cron_find(lines, name)
    old = [c for c, _ in lines[found[0][0] + 1:found[0][1]]] if found else []
    if ensure == "absent":
        if not found:
            return TextEdit(text)
        for start, stop in reversed(found):
            del lines[start:stop]
        return TextEdit(textedit_join(lines), "removed", old)
    wanted = [CRON_MARK + name, *entry]
    if not found:
        textedit_insert(lines, len(lines), wanted)
        return TextEdit(textedit_join(lines), "added")
    start, stop = found[0]
    if len(found) == 1 and [c for c, _ in lines[start:stop]] == wanted and lines[stop - 1][1]:
        return TextEdit(text)
    for s2, e2 in reversed(found[1:]):
        del lines[s2:e2]
    nl = textedit_newline(lines)
    lines[start:stop] = [[c, nl] for c in wanted]
    return TextEdit(textedit_join(lines), "replaced", old)


def _cron_self(user):
    try:
        return pwd.getpwuid(os.getuid()).pw_name == user
    except KeyError:
        return False


def _cron_user_argv(user, *args):
    argv = ["crontab"]
    if not _cron_self(user):
        argv += ["-u", user]
    return argv + list(args)


def cron_read(params):
    """The crontab's text ("" when there is none), or None when its user does not exist."""
    if params.get("file"):
        text = fs_read_for_edit(params["file"])
        return "" if text is None else text
    user = params.get("user") or "root"
    try:
        pwd.getpwnam(user)
    except KeyError:
        return None
    rc, out, err = run(_cron_user_argv(user, "-l"))
    if rc == 0:
        return out
    if "no crontab" in err.lower():
        return ""
    if rc == 127:
        raise Failure("crontab is not installed on this host (install cron)")
    raise Failure("crontab -l for %s exited %d: %s" % (user, rc, err.strip()[-300:]))


def cron_observe(params, ctx):
    text = cron_read(params)
    if text is None:
        return {"ensure": "absent", "entry": None, "user": "missing"}
    current = cron_current(text, params["name"])
    if current is None:
        return {"ensure": "absent", "entry": None}
    return {"ensure": "present", "entry": "\n".join(current)}


def cron_apply(params, changes, ctx):
    ensure = params.get("ensure", "present")
    text = cron_read(params)
    if text is None:
        if ensure == "absent":
            return
        raise Failure("no such user: %s" % (params.get("user") or "root"))
    entry = cron_entry_lines(params) if ensure == "present" else []
    edit = edit_cron(text, params["name"], entry, ensure)
    if not edit.changed:
        return
    path = params.get("file")
    if path:
        if not edit.text.strip():
            # the last entry is gone: an empty /etc/cron.d file is only clutter
            backup_file(path, ctx)
            os.unlink(path)
            fsync_dir(os.path.dirname(path) or "/")
            return
        # cron skips /etc/cron.d files that are not root's or that others can write: create them right
        fs_write_edited(path, edit.text, ctx, create_mode=0o644, uid=0, gid=0)
        return
    user = params.get("user") or "root"
    run(_cron_user_argv(user, "-"), stdin=edit.text, check=True)


register("cron", cron_observe, cron_apply)
