"""The ``group`` resource type (controller side). Host side: driftctl/agent/group.py."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from driftctl.model import Change
from driftctl.resources.base import Param, ResourceType, register
from driftctl.resources.user import check_account_name, check_id, ensure_diff


@register
class Group(ResourceType):
    """A local group, managed with groupadd, groupmod and groupdel.

    ``system`` acts when the group is created (a gid from the system range). Members are managed
    from the user side (``user``'s ``groups``).

    Parameters:
      name: the group name (the title)
      ensure: present (default) or absent
      gid: the numeric group id
      system: create a system group; default false

    Example:
      - group: deploy
        gid: 1500
    """

    name = "group"
    namevar = "name"
    bake_phase = 1
    bake_writer = "driftctl.bake.accounts:bake_group"
    params: ClassVar[dict[str, Param]] = {
        "name": Param(str, "the group name", required=True, check=check_account_name),
        "ensure": Param(str, "present or absent", default="present", choices=("present", "absent")),
        "gid": Param(int, "numeric group id", check=check_id),
        "system": Param(bool, "system group (on creation)", default=False),
    }

    @classmethod
    def desired(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        if params["ensure"] == "absent":
            return {"ensure": "absent"}
        return {"ensure": "present", "gid": params.get("gid")}

    @classmethod
    def diff(cls, desired: Mapping[str, Any], observed: Mapping[str, Any], sensitive: bool = False,
             params: Mapping[str, Any] | None = None) -> list[Change]:
        return ensure_diff(desired, observed)

    @classmethod
    def describe(cls, change: Change) -> str:
        if change.field == "ensure":
            return "created" if change.after == "present" else "removed"
        return super().describe(change)
