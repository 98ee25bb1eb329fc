"""Host side of ``block``: a block of lines between BEGIN and END marker lines in a text file.

``edit_block`` is pure (``from driftctl.agent.block import edit_block``). The first marked block is
the managed one; later blocks with the same markers are removed, so a file edited by hand or by an
old tool converges to exactly one. A BEGIN without its END is an error rather than a guess: the end
of the block would be wherever we decided, and the lines after it might be someone else's.
"""

from driftctl.agent._core import Failure, register
from driftctl.agent.file import fs_edit_begin, fs_edit_observe, fs_edit_precheck, fs_target, fs_write_edited
from driftctl.agent.line import TextEdit, textedit_insert, textedit_join, textedit_newline, textedit_split


def block_markers(marker):
    """The BEGIN and END lines of a marker template (``{mark}`` is replaced)."""
    return marker.replace("{mark}", "BEGIN"), marker.replace("{mark}", "END")


def block_normalize_content(content):
    """Content as stored between the markers: "\\n" line ends, a final newline unless empty."""
    content = (content or "").replace("\r\n", "\n")
    if content and not content.endswith("\n"):
        content += "\n"
    return content


def block_find(lines, begin, end):
    """[(begin index, end index)] of every marked block; raises ValueError for a BEGIN without END."""
    found = []
    i = 0
    while i < len(lines):
        if lines[i][0].rstrip() == begin:
            j = i + 1
            while j < len(lines) and lines[j][0].rstrip() != end:
                j += 1
            if j == len(lines):
                raise ValueError("line %d has the BEGIN marker %r but no END marker follows" % (i + 1, begin))
            found.append((i, j))
            i = j + 1
        else:
            i += 1
    return found


def block_current(text, begin, end):
    """The content of the first marked block in ``text``, or None."""
    lines = textedit_split(text)
    blocks = block_find(lines, begin, end)
    if not blocks:
        return None
    b, e = blocks[0]
    return "".join(c + "\n" for c, _ in lines[b + 1:e])


def edit_block(text, content, begin, end, ensure="present"):
    """Make the block with these markers hold ``content`` (or be gone). Pure: returns a TextEdit.

    ``old`` holds the old content of the first block (one string) when one was replaced or removed.
    """
    lines = textedit_split(text)
    blocks = block_find(lines, begin, end)
    old = None
    if blocks:
        b, e = blocks[0]
        old = "".join(c + "\n" for c, _ in lines[b + 1:e])
    if ensure == "absent":
        if not blocks:
            return TextEdit(text)
        for b, e in reversed(blocks):
            del lines[b:e + 1]
        return TextEdit(textedit_join(lines), "removed", [old])
    content = block_normalize_content(content)
    body = content.split("\n")[:-1] if content else []
    wanted = [begin, *body, end]
    if not blocks:
        textedit_insert(lines, len(lines), wanted)
        return TextEdit(textedit_join(lines), "added")
    b, e = blocks[0]
    if len(blocks) == 1 and [c for c, _ in lines[b:e + 1]] == wanted:
        return TextEdit(text)
    for b2, e2 in reversed(blocks[1:]):
        del lines[b2:e2 + 1]
    nl = textedit_newline(lines)
    new = [[c, nl] for c in wanted]
    new[-1][1] = lines[e][1] or nl  # the END line keeps its own ending; the file ends with a newline
    lines[b:e + 1] = new
    return TextEdit(textedit_join(lines), "replaced", [old])


def _block_edit(params, text):
    begin, end = block_markers(params["marker"])
    try:
        return edit_block(text, params.get("content"), begin, end, params.get("ensure", "present"))
    except ValueError as e:
        raise Failure("%s: %s" % (params["path"], e)) from None


def block_observe(params, ctx):
    """{"ensure": "present"|"absent" (a block is there), "content": its content, "in_sync": bool}.

    Plus ``_cas`` (the file as seen) or ``_refusal`` (why apply would refuse).
    """
    text, extra = fs_edit_observe(params["path"])
    if text is None:
        out = {"ensure": "absent", "content": None, "in_sync": params.get("ensure") == "absent"}
        if "_refusal" not in extra:
            out["file"] = "missing"
        return dict(out, **extra)
    begin, end = block_markers(params["marker"])
    edit = _block_edit(params, text)
    try:
        current = block_current(text, begin, end)
    except ValueError as e:
        raise Failure("%s: %s" % (params["path"], e)) from None
    out = {"ensure": "absent" if current is None else "present", "content": current, "in_sync": not edit.changed}
    return dict(out, **extra)


def block_precheck(params, observed, ctx):
    """Why apply would refuse: a planted link or a non-regular file, or a missing file without create."""
    reason = fs_edit_precheck(params, observed, ctx)
    if reason or observed.get("file") != "missing" or params.get("ensure", "present") == "absent":
        return reason
    if params.get("create"):
        return None
    return "%s does not exist (set create: true to create it with the block)" % params["path"]


def block_apply(params, changes, ctx):
    path = params["path"]
    absent = params.get("ensure", "present") == "absent"
    target = fs_target(path, missing_ok=absent)
    if target is None:
        return
    with target:
        text = fs_edit_begin(target, block_precheck, params, ctx)
        if text is None:
            if absent:
                return
            if not params.get("create"):
                raise Failure("%s does not exist (set create: true to create it with the block)" % path)
            text = ""
        edit = _block_edit(params, text)
        if edit.changed:
            fs_write_edited(target, edit.text, ctx)


register("block", block_observe, block_apply, precheck=block_precheck)
