"""Host side of ``cron``: one job in a user's crontab or in an /etc/cron.d file.

A job is identified by a ``# driftctl: <name>`` comment line; under it come its environment lines
(``NAME=value``) and then the job line. In /etc/cron.d files the job line carries the user column.
Note that cron applies an environment line to every job below it in the same crontab: that is
cron's rule, not driftctl's, and the reference docs say so.

User crontabs are read with ``crontab -l -u USER`` and written with ``crontab -u USER -`` on stdin
(argv, never a shell); ``-u`` is left out when the agent already runs as that user, since only root
may use it. ``edit_cron`` and ``cron_entry_lines`` are pure and importable on the controller.
"""

import os  # noqa: I001  (agent imports stay on one line: see file.py)
import pwd

from driftctl.agent._core import Failure, pattern, register
from driftctl.agent.spawn import run
from driftctl.agent.file import fs_edit_begin, fs_edit_observe, fs_edit_precheck, fs_remove_edited, fs_target, fs_write_edited  # noqa: E501
from driftctl.agent.line import TextEdit, textedit_insert, textedit_join, textedit_newline, textedit_split

CRON_MARK = "# driftctl: "
CRON_ENV_RE = r"^\s*[A-Za-z_][A-Za-z0-9_]*\s*="


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
        while j < len(lines) and pattern(CRON_ENV_RE).match(lines[j][0]):
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


def cron_read_user(params):
    """The user's crontab text ("" when there is none), or None when its user does not exist."""
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
    """{"ensure", "entry"}; for an /etc/cron.d file also ``_cas`` (the file as seen) or ``_refusal``."""
    extra = {}
    if params.get("file"):
        text, extra = fs_edit_observe(params["file"])
        if "_refusal" in extra:
            return dict({"ensure": "absent", "entry": None}, **extra)
        text = text or ""
    else:
        text = cron_read_user(params)
        if text is None:
            return {"ensure": "absent", "entry": None, "user": "missing"}
    current = cron_current(text, params["name"])
    if current is None:
        return dict({"ensure": "absent", "entry": None}, **extra)
    return dict({"ensure": "present", "entry": "\n".join(current)}, **extra)


def cron_precheck(params, observed, ctx):
    return fs_edit_precheck(params, observed, ctx)


def _cron_edit(params, text):
    ensure = params.get("ensure", "present")
    entry = cron_entry_lines(params) if ensure == "present" else []
    return edit_cron(text, params["name"], entry, ensure)


def cron_apply(params, changes, ctx):
    path = params.get("file")
    if not path:
        text = cron_read_user(params)
        if text is None:
            if params.get("ensure", "present") == "absent":
                return
            raise Failure("no such user: %s" % (params.get("user") or "root"))
        edit = _cron_edit(params, text)
        if edit.changed:
            run(_cron_user_argv(params.get("user") or "root", "-"), stdin=edit.text, check=True)
        return
    target = fs_target(path, missing_ok=params.get("ensure", "present") == "absent")
    if target is None:
        return
    with target:
        text = fs_edit_begin(target, cron_precheck, params, ctx)
        edit = _cron_edit(params, text or "")
        if not edit.changed:
            return
        if not edit.text.strip():
            # the last entry is gone: an empty /etc/cron.d file is only clutter
            if text is not None:
                fs_remove_edited(target, ctx)
            return
        # cron skips /etc/cron.d files that are not root's or that others can write: create them right
        fs_write_edited(target, edit.text, ctx, create_mode=0o644, uid=0, gid=0)


register("cron", cron_observe, cron_apply, precheck=cron_precheck)
