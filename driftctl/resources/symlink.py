"""The ``symlink`` resource type (controller side)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from driftctl.errors import Location, ManifestError
from driftctl.model import Change
from driftctl.resources.base import Param, ResourceType, check_abs_path, register
from driftctl.resources.file import describe_ensure, parent_directory, require_given


def check_target(value: Any) -> str:
    if not value or "\0" in value:
        raise ValueError(f"must be a path, not {value!r}")
    return str(value)


@register
class Symlink(ResourceType):
    """A symbolic link at ``path`` pointing at ``target`` (absolute or relative; it need not exist).

    A link with another target is replaced atomically (a new link renamed over it). Something else
    in the way is replaced only with ``force: true``: a file (backed up first) or an empty
    directory; a non-empty directory never is. ``ensure: absent`` removes a link, never a file.
    The parent directory must exist (a link requires its parent's directory resource automatically).

    Example::

        - symlink: /etc/nginx/sites-enabled/app
          target: /etc/nginx/sites-available/app
          notify: [service:nginx]
        - symlink: /usr/local/bin/python
          target: python3
          force: true
    """

    name = "symlink"
    namevar = "path"
    bake_phase = 4
    bake_writer = "driftctl.bake.writers:bake_symlink"
    params = {
        "path": Param(str, "Absolute path of the link (the title).", required=True, check=check_abs_path),
        "target": Param(str, "What the link points at. Required unless ensure is absent.", check=check_target),
        "ensure": Param(str, "present or absent (removes the link).", default="present",
                        choices=("present", "absent")),
        "force": Param(bool, "Replace a file or an empty directory that is in the way.", default=False),
    }

    @classmethod
    def normalize(cls, params: dict[str, Any], location: Location) -> dict[str, Any]:
        require_given(cls, params, location)
        if params["ensure"] == "present" and params.get("target") is None:
            raise ManifestError("symlink: parameter 'target' is required", location)
        if params["ensure"] == "absent" and params.get("target") is not None:
            raise ManifestError("symlink: ensure: absent takes no target", location)
        return params

    @classmethod
    def autorequire(cls, params: Mapping[str, Any]) -> list[str]:
        out = []
        parent = parent_directory(params["path"])
        if parent:
            out.append(f"directory:{parent}")
        target = params.get("target")
        if isinstance(target, str) and target.startswith("/"):
            # the link works either way; requiring what it points at gives the right order when both exist
            out += [f"file:{target}", f"directory:{target.rstrip('/') or '/'}"]
        return out

    @classmethod
    def desired(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        if params.get("ensure") == "absent":
            return {"ensure": "absent", "target": None}
        return {"ensure": "link", "target": params["target"]}

    @classmethod
    def diff(cls, desired: Mapping[str, Any], observed: Mapping[str, Any], sensitive: bool = False,
             params: Mapping[str, Any] | None = None) -> list[Change]:
        have = observed.get("ensure") or "absent"
        if desired["ensure"] == "absent":
            return [Change("ensure", have, "absent")] if have != "absent" else []
        if have not in ("link", "absent"):
            return [Change("ensure", have, "link")]
        if observed.get("target") != desired["target"]:
            return [Change("target", observed.get("target"), desired["target"])]
        return []

    @classmethod
    def describe(cls, change: Change) -> str:
        if change.field == "target":
            if change.before is None:
                return f"created -> {change.after}"
            return f"target {change.before} -> {change.after}"
        if change.field == "ensure" and change.after == "link":
            return f"replace {change.before} with a symlink"  # apply says so when force is missing
        return describe_ensure(change)
