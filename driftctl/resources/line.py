"""The ``line`` resource type (controller side). The edit itself is driftctl.agent.line.edit_line."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from driftctl.errors import Location, ManifestError
from driftctl.model import Change
from driftctl.resources.base import Param, ResourceType, check_abs_path, register
from driftctl.resources.file import check_one_line, check_regex, require_given


@register
class Line(ResourceType):
    """One line in an existing text file (sshd_config, /etc/hosts, a .env file).

    The title is a free name. With ``match``, the first line matching the regular expression is
    replaced by ``text``; when nothing matches (or without ``match``), ``text`` is added unless the
    file already has it: after the last line matching ``after``, or at the end. ``text`` must match
    ``match`` itself, or every run would replace a line again. ``ensure: absent`` removes every line
    equal to ``text`` and every line matching ``match``. Other lines, their order and line endings
    (CRLF included) are kept; the file is rewritten atomically with its owner and mode, and the old
    one is kept in the backup directory. The file must exist (a line requires
    ``file:<path>`` automatically when the catalog has it); symlinks are never followed.

    Example::

        - line: sshd-no-root-login
          path: /etc/ssh/sshd_config
          match: "^#?PermitRootLogin "
          text: "PermitRootLogin no"
          notify: [service:ssh]
        - line: hosts-db
          path: /etc/hosts
          text: "10.0.0.5 db.internal"
          after: "^127\\\\."
        - line: no-telnet
          path: /etc/inetd.conf
          match: "^telnet"
          ensure: absent
    """

    name = "line"
    namevar = "name"
    bake_phase = 5
    bake_writer = "driftctl.bake.writers:bake_line"
    params = {
        "name": Param(str, "A free name for the resource (the title).", required=True, check=check_one_line),
        "path": Param(str, "Absolute path of the file to edit.", required=True, check=check_abs_path),
        "text": Param(str, "The line, without its newline. Required unless ensure is absent.", check=check_one_line),
        "match": Param(str, "Regular expression (Python re, searched in each line): the line to replace.",
                       check=check_regex),
        "after": Param(str, "Regular expression: a new line goes after the last line it matches.", check=check_regex),
        "ensure": Param(str, "present, or absent to remove the line(s).", default="present",
                        choices=("present", "absent")),
    }

    @classmethod
    def normalize(cls, params: dict[str, Any], location: Location) -> dict[str, Any]:
        require_given(cls, params, location)
        text, match = params.get("text"), params.get("match")
        if params["ensure"] == "present":
            if text is None:
                raise ManifestError("line: parameter 'text' is required (the line to make present)", location)
            if match is not None and not re.search(match, text):
                raise ManifestError(
                    f"line: text {text!r} does not match {match!r}",
                    location,
                    "the replaced line would not be found again, so every run would change the file",
                )
        else:
            if text is None and match is None:
                raise ManifestError("line: ensure: absent needs text or match (the lines to remove)", location)
            if params.get("after") is not None:
                raise ManifestError("line: ensure: absent takes no after", location)
        return params

    @classmethod
    def claims(cls, params: Mapping[str, Any]) -> list[str]:
        return [f"line:{params['path']}:{params.get('match') or params.get('text')}"]

    @classmethod
    def autorequire(cls, params: Mapping[str, Any]) -> list[str]:
        return [f"file:{params['path']}"]

    @classmethod
    def desired(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        if params.get("ensure") == "absent":
            return {"ensure": "absent", "line": None}
        return {"ensure": "present", "line": params["text"]}

    @classmethod
    def diff(cls, desired: Mapping[str, Any], observed: Mapping[str, Any], sensitive: bool = False,
             params: Mapping[str, Any] | None = None) -> list[Change]:
        if desired["ensure"] == "absent":
            if observed.get("ensure") == "present":
                return [Change("line", observed.get("line"), None)]
            return []
        if observed.get("ensure") == "present" and observed.get("line") == desired["line"]:
            return []
        return [Change("line", observed.get("line"), desired["line"])]

    @classmethod
    def describe(cls, change: Change) -> str:
        if change.after is None:
            return f"line removed: {change.before}"
        if change.before is None:
            return f"line added: {change.after}"
        return f"line replaced: {change.before} -> {change.after}"
