"""Host side of ``line``: one line in a text file, plus the pure text helpers block/cron/sysctl share.

``edit_line`` is a pure function of the file's text (importable on the controller:
``from driftctl.agent.line import edit_line``); observe and apply both call it, so they can never
disagree about what an apply would do. Line endings are kept per line; a line driftctl adds uses the
file's convention (CRLF when the first line ends in CRLF) and the file ends with a newline after it.
"""

from driftctl.agent._core import Failure, register
from driftctl.agent.file import fs_edit_begin, fs_edit_observe, fs_edit_precheck, fs_target, fs_write_edited


class TextEdit(object):
    """The result of a pure edit: the new ``text``, the ``action`` taken ("added", "replaced",
    "removed" or None when the text was already right) and the ``old`` lines it replaced or removed."""

    def __init__(self, text, action=None, old=None):
        self.text = text
        self.action = action
        self.old = old or []

    @property
    def changed(self):
        return self.action is not None

    def __repr__(self):
        return "TextEdit(action=%r, old=%r)" % (self.action, self.old)


def textedit_split(text):
    """Split text into [content, ending] pairs; ending is "\\n", "\\r\\n" or "" (last line, no newline).

    Only "\\n" ends a line (str.splitlines would also split on form feeds and U+2028).
    """
    parts = text.split("\n")
    out = []
    for part in parts[:-1]:
        if part.endswith("\r"):
            out.append([part[:-1], "\r\n"])
        else:
            out.append([part, "\n"])
    if parts[-1]:
        out.append([parts[-1], ""])
    return out


def textedit_newline(lines):
    """The newline convention of a file: CRLF when its first line ends in CRLF."""
    if lines and lines[0][1] == "\r\n":
        return "\r\n"
    return "\n"


def textedit_join(lines):
    return "".join(content + ending for content, ending in lines)


def textedit_insert(lines, index, new_contents):
    """Insert lines at ``index`` (in place), giving a final unterminated line a newline first."""
    nl = textedit_newline(lines)
    if index > 0 and lines[index - 1][1] == "":
        lines[index - 1][1] = nl
    lines[index:index] = [[c, nl] for c in new_contents]


def _line_compile(pattern, what):
    import re  # only a line or block that matches imports it (~5 ms of an agent's start)

    try:
        return re.compile(pattern)
    except re.error as e:
        raise ValueError("%s is not a valid regular expression: %s" % (what, e)) from None


def edit_line(text, line, match=None, ensure="present", after=None):
    """Make ``line`` present (or absent) in ``text``. Pure: returns a TextEdit.

    present: when ``match`` is given, the first line it matches (re.search) is replaced by ``line``;
    otherwise, or when nothing matches, the text is left alone if ``line`` is already there, and
    ``line`` is inserted after the last line matching ``after`` (or at the end when ``after`` is not
    given or matches nothing).
    absent: every line equal to ``line``, or matching ``match``, is removed.
    """
    lines = textedit_split(text)
    match_re = _line_compile(match, "match") if match else None
    if ensure == "absent":
        kept, removed = [], []
        for entry in lines:
            gone = (line is not None and entry[0] == line) or (match_re is not None and match_re.search(entry[0]))
            (removed if gone else kept).append(entry)
        if not removed:
            return TextEdit(text)
        return TextEdit(textedit_join(kept), "removed", [c for c, _ in removed])
    if line is None:
        raise ValueError("a line to make present is required")
    if match_re is not None:
        for entry in lines:
            if match_re.search(entry[0]):
                if entry[0] == line:
                    return TextEdit(text)
                old = entry[0]
                entry[0] = line
                return TextEdit(textedit_join(lines), "replaced", [old])
    if any(content == line for content, _ in lines):
        return TextEdit(text)
    index = len(lines)
    if after:
        after_re = _line_compile(after, "after")
        hits = [i for i, (content, _) in enumerate(lines) if after_re.search(content)]
        if hits:
            index = hits[-1] + 1
    textedit_insert(lines, index, [line])
    return TextEdit(textedit_join(lines), "added")


def _line_edit(params, text):
    try:
        return edit_line(text, params.get("text"), params.get("match"), params.get("ensure", "present"),
                         params.get("after"))
    except ValueError as e:
        raise Failure(str(e)) from None


def line_observe(params, ctx):
    """{"ensure": state, "line": the line now there}: ensure is "present" when the line is as wanted.

    Plus ``_cas`` (the file as seen) or ``_refusal`` (why apply would refuse).
    """
    text, extra = fs_edit_observe(params["path"])
    want = params.get("ensure", "present")
    if text is None:
        out = {"ensure": "absent", "line": None}
        if "_refusal" not in extra:
            out["file"] = "missing"
        return dict(out, **extra)
    edit = _line_edit(params, text)
    if want == "absent":
        out = {"ensure": "present" if edit.changed else "absent", "line": "\n".join(edit.old) or None}
    elif not edit.changed:
        out = {"ensure": "present", "line": params.get("text")}
    else:
        out = {"ensure": "absent", "line": edit.old[0] if edit.old else None}
    return dict(out, **extra)


def line_precheck(params, observed, ctx):
    """Why apply would refuse: a planted link or a non-regular file, or a missing file to add a line to."""
    reason = fs_edit_precheck(params, observed, ctx)
    if reason or observed.get("file") != "missing" or params.get("ensure", "present") == "absent":
        return reason
    return ("%s does not exist: a line is added to an existing file (declare it with a file resource)"
            % params["path"])


def line_apply(params, changes, ctx):
    path = params["path"]
    absent = params.get("ensure", "present") == "absent"
    target = fs_target(path, missing_ok=absent)
    if target is None:
        return
    with target:
        text = fs_edit_begin(target, line_precheck, params, ctx)
        if text is None:
            if absent:
                return
            raise Failure("%s does not exist: a line is added to an existing file (declare it with a file resource)"
                          % path)
        edit = _line_edit(params, text)
        if edit.changed:
            fs_write_edited(target, edit.text, ctx)


register("line", line_observe, line_apply, precheck=line_precheck)
