"""The ``block`` resource type (controller side). The edit itself is driftctl.agent.block.edit_block."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from driftctl.agent import block as agent_block
from driftctl.errors import Location, ManifestError
from driftctl.model import Change
from driftctl.resources.base import Param, ResourceType, check_abs_path, register
from driftctl.resources.file import check_one_line, require_given

DEFAULT_MARKER = "# {mark} DRIFTCTL MANAGED BLOCK "


def check_marker(value: Any) -> str:
    if value.count("{mark}") != 1 or "\n" in value or "\r" in value:
        raise ValueError(f"must be one line holding {{mark}} once (BEGIN/END go there), not {value!r}")
    return str(value)


@register
class Block(ResourceType):
    """A block of lines between two marker lines in a text file (the Ansible blockinfile idea).

    The title is a free name. The markers are ``marker`` with ``{mark}`` replaced by BEGIN and END;
    the default, ``# {mark} DRIFTCTL MANAGED BLOCK <name>``, suits files whose comments start with
    ``#``. The lines between the markers are replaced by ``content``; a missing block is added at the
    end of the file. Duplicate blocks with the same markers are removed; a BEGIN marker without its
    END is an error, never a guess. The file must exist unless ``create: true`` (a block requires
    ``file:<path>`` automatically when the catalog has it). It is rewritten atomically with its
    owner, mode and line endings, and the old one is kept in the backup directory.

    Example::

        - block: hosts-cluster
          path: /etc/hosts
          content: |
            10.0.0.11 node1
            10.0.0.12 node2
        - block: sshd-sftp
          path: /etc/ssh/sshd_config
          marker: "# {mark} sftp chroot"
          content: |
            Match Group sftp
              ChrootDirectory /srv/sftp
          notify: [service:ssh]
    """

    name = "block"
    namevar = "name"
    bake_phase = 5
    bake_writer = "driftctl.bake.writers:bake_block"
    params = {
        "name": Param(str, "A free name for the resource (the title); part of the default marker.", required=True,
                      check=check_one_line),
        "path": Param(str, "Absolute path of the file to edit.", required=True, check=check_abs_path),
        "content": Param(str, "The lines of the block. Required unless ensure is absent."),
        "marker": Param(str, "Marker line template; {mark} becomes BEGIN and END. "
                             "Default: '# {mark} DRIFTCTL MANAGED BLOCK <name>'.", check=check_marker),
        "ensure": Param(str, "present, or absent to remove the block and its markers.", default="present",
                        choices=("present", "absent")),
        "create": Param(bool, "Create the file (0644) when it does not exist.", default=False),
    }

    @classmethod
    def normalize(cls, params: dict[str, Any], location: Location) -> dict[str, Any]:
        require_given(cls, params, location)
        if params.get("marker") is None:
            params["marker"] = DEFAULT_MARKER + params["name"]
        if params["ensure"] == "absent":
            if params.get("content") is not None:
                raise ManifestError("block: ensure: absent takes no content", location)
            return params
        if params.get("content") is None:
            raise ManifestError("block: parameter 'content' is required", location)
        begin, end = agent_block.block_markers(params["marker"])
        content = agent_block.block_normalize_content(params["content"])
        for n, text in enumerate(content.split("\n"), 1):
            if text.rstrip() in (begin, end):
                raise ManifestError(f"block: content line {n} is the block's own marker {text!r}", location)
        params["content"] = content
        return params

    @classmethod
    def claims(cls, params: Mapping[str, Any]) -> list[str]:
        return [f"block:{params['path']}:{params['marker']}"]

    @classmethod
    def autorequire(cls, params: Mapping[str, Any]) -> list[str]:
        return [f"file:{params['path']}"]

    @classmethod
    def desired(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        if params.get("ensure") == "absent":
            return {"ensure": "absent", "content": None, "in_sync": True}
        return {"ensure": "present", "content": params["content"], "in_sync": True}

    @classmethod
    def diff(cls, desired: Mapping[str, Any], observed: Mapping[str, Any], sensitive: bool = False,
             params: Mapping[str, Any] | None = None) -> list[Change]:
        have, old = observed.get("ensure"), observed.get("content")
        if desired["ensure"] == "absent":
            if have == "present" or observed.get("in_sync") is False:
                return [Change("block", old, None)]
            return []
        new = desired["content"]
        if have == "present" and old == new and observed.get("in_sync", True):
            return []
        text_diff = None
        if not sensitive and old != new:
            text_diff = "".join(difflib.unified_diff(
                (old or "").splitlines(keepends=True), new.splitlines(keepends=True),
                fromfile="block (host)" if have == "present" else "/dev/null", tofile="block (manifest)",
            ))
        return [Change("block", old if have == "present" else None, new, text_diff)]

    @classmethod
    def describe(cls, change: Change) -> str:
        if change.after is None:
            return "block removed"
        if change.before is None:
            lines = len(str(change.after).splitlines())
            return f"block added ({lines} line{'s' if lines != 1 else ''})"
        if change.before == change.after:
            return "duplicate blocks removed"
        return "block content changed"
