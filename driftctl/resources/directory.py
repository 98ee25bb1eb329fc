"""The ``directory`` resource type (controller side)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from driftctl.errors import Location
from driftctl.model import Change
from driftctl.resources.base import Param, ResourceType, check_abs_path, field_changes, register
from driftctl.resources.file import describe_ensure, forbid_when_absent, owner_params, parent_and_owners, require_given


def _count(paths: Any) -> int:
    """How many entries a list from the agent stands for (it ends "... and N more" past its limit)."""
    items = [str(p) for p in paths or []]
    if items and items[-1].startswith("... and "):
        return len(items) - 1 + int(items[-1].split()[2])
    return len(items)


def _paths_summary(paths: Any, limit: int = 5) -> str:
    items = [str(p) for p in paths or [] if not str(p).startswith("... and ")]
    shown = ", ".join(items[:limit])
    more = _count(paths) - min(limit, len(items))
    return shown + (f" (+{more} more)" if more > 0 else "")


@register
class Directory(ResourceType):
    """A directory: its owner, group and mode, optionally for everything below it, and what it holds.

    A missing directory is created (its parent must exist: declare a directory resource for it too;
    a directory requires its parent's resource automatically). ``ensure: absent`` removes an empty
    directory only. A symlink or a file at the path is never replaced.

    ``recurse: true`` gives every entry below the directory the same owner and group, and the mode as
    Puppet does: files get the mode as written, directories the search bit wherever the read bit is
    set ("0644" makes subdirectories 0755). ``purge: true`` removes every entry below that no
    resource of the catalog manages (without ``recurse``, only the directory's own entries are
    looked at). Entries that another resource manages keep their own settings under both. Neither
    follows a symlink. ``plan`` lists what recurse and purge would change.

    Example::

        - directory: /srv/app
          owner: app
          group: app
          mode: "0750"
        - directory: /etc/nginx/conf.d
          purge: true             # drop the configs the manifest does not declare
        - directory: /srv/app/data
          owner: app
          recurse: true
    """

    name = "directory"
    namevar = "path"
    bake_phase = 3
    bake_writer = "driftctl.bake.writers:bake_directory"
    keeps_managed_below = True
    params = {
        "path": Param(str, "Absolute path of the directory (the title).", required=True, check=check_abs_path),
        "ensure": Param(str, "present or absent (removes an empty directory).", default="present",
                        choices=("present", "absent")),
        **owner_params("the directory"),
        "recurse": Param(bool, "Apply owner, group and mode to everything below the directory too.", default=False),
        "purge": Param(bool, "Remove every entry below that no resource of the catalog manages.", default=False),
    }

    @classmethod
    def normalize(cls, params: dict[str, Any], location: Location) -> dict[str, Any]:
        require_given(cls, params, location)
        forbid_when_absent(cls, params, ("owner", "group", "mode", "recurse", "purge"), location)
        return params

    @classmethod
    def autorequire(cls, params: Mapping[str, Any]) -> list[str]:
        return parent_and_owners(params)

    @classmethod
    def desired(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        if params.get("ensure") == "absent":
            return {"ensure": "absent", "owner": None, "group": None, "mode": None,
                    "unmanaged": None, "recurse_mismatch": None}
        meta = any(params.get(k) is not None for k in ("owner", "group", "mode"))
        return {
            "ensure": "directory",
            "owner": params.get("owner"),
            "group": params.get("group"),
            "mode": params.get("mode"),
            "unmanaged": [] if params.get("purge") else None,
            "recurse_mismatch": [] if params.get("recurse") and meta else None,
        }

    @classmethod
    def diff(cls, desired: Mapping[str, Any], observed: Mapping[str, Any], sensitive: bool = False,
             params: Mapping[str, Any] | None = None) -> list[Change]:
        have = observed.get("ensure") or "absent"
        if desired["ensure"] == "absent":
            return [Change("ensure", have, "absent")] if have != "absent" else []
        changes = []
        if have != "directory":
            changes.append(Change("ensure", have, "directory"))
            if have != "absent":
                return changes  # a file or a link is in the way: apply refuses
        changes += field_changes(desired, observed, ("owner", "group", "mode"))
        if have == "directory":  # a directory about to be created holds nothing to purge or fix
            for key in ("unmanaged", "recurse_mismatch"):
                if desired.get(key) is not None and observed.get(key):
                    changes.append(Change(key, observed.get(key), []))
        return changes

    @classmethod
    def describe(cls, change: Change) -> str:
        if change.field == "ensure":
            return describe_ensure(change)
        if change.field == "unmanaged":
            return f"purge {_count(change.before)} unmanaged: {_paths_summary(change.before)}"
        if change.field == "recurse_mismatch":
            return f"recurse: fix owner/group/mode of {_count(change.before)}: {_paths_summary(change.before)}"
        return super().describe(change)
