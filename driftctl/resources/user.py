"""The ``user`` resource type (controller side). Host side: driftctl/agent/user.py."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from driftctl.errors import Location, ManifestError
from driftctl.model import Change
from driftctl.resources.base import Param, ResourceType, check_abs_path, field_changes, register, sha256

# useradd's default NAME_REGEX (Debian), with dots, which it also accepts
ACCOUNT_NAME_RE = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}\$?$")
# a crypt(3) hash ($id$...), or a locked / disabled password ("!...", "*")
CRYPT_RE = re.compile(r"^(\$[0-9a-z]+\$[^:\s]+|![^:\s]*|\*)$")


def check_account_name(value: Any) -> str:
    if not isinstance(value, str) or not ACCOUNT_NAME_RE.match(value):
        raise ValueError(
            f"must be a user or group name (lower case letters, digits, _ . -; at most 32), not {value!r}"
        )
    return value


def check_id(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**32 - 1:
        raise ValueError(f"must be a number from 0 to 4294967294, not {value!r}")
    return value


def check_group_ref(value: Any) -> str | int:
    """A group by name or by gid; "1000" (a quoted number) is a gid."""
    if isinstance(value, str) and value.isdigit():
        return check_id(int(value))
    if isinstance(value, int):
        return check_id(value)
    return check_account_name(value)


def check_group_list(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise ValueError("must be a list of group names")
    return sorted({check_account_name(v) for v in value})


def check_comment(value: Any) -> str:
    if ":" in value or "\n" in value:
        raise ValueError("cannot contain ':' or a newline (they break /etc/passwd)")
    return str(value)


def check_crypt_hash(value: Any) -> str:
    # never echo the value: it is a secret
    if not CRYPT_RE.fullmatch(value):
        raise ValueError(
            "must be a crypt hash such as \"$y$...\" or \"$6$...\" (make one with `mkpasswd -m yescrypt`), "
            "or \"!\" for a locked password; a plain-text password is refused"
        )
    return value


def secret_digest(value: str) -> str:
    """How a secret field is compared and shown: the sha256 of the value (the agent does the same)."""
    return "sha256:" + sha256(value)


@register
class User(ResourceType):
    """A local user account, managed with useradd, usermod and userdel.

    Only the attributes you set are managed. ``groups`` with ``membership: minimum`` (the default)
    only adds the user to the groups listed; ``inclusive`` also removes them from every other
    supplementary group. ``password`` takes a crypt hash, never a plain password; it is compared
    and shown as the sha256 of the hash only, and set through ``chpasswd -e`` on stdin.
    ``system`` acts when the user is created, ``manage_home`` when it is created (the home is made
    from /etc/skel) and when ``home`` changes (the contents move); removing a user keeps its home.

    Parameters:
      name: the login name (the title)
      ensure: present (default) or absent
      uid: the numeric user id
      group: the primary group, by name or gid
      groups: supplementary groups (names)
      membership: minimum (default) or inclusive, for groups
      shell: the login shell, an absolute path
      home: the home directory, an absolute path
      manage_home: create the home on creation, move it when home changes (default true)
      comment: the GECOS field (full name)
      password: a crypt hash (secret)
      system: create a system account (a uid below 1000, no aging); default false

    Example:
      - user: deploy
        uid: 1500
        group: deploy
        groups: [adm, www-data]
        shell: /bin/bash
        comment: Deploy bot
        password: !secret "$y$j9T$..."
        require: [group:deploy]
    """

    name = "user"
    namevar = "name"
    bake_phase = 2
    bake_writer = "driftctl.bake.accounts:bake_user"
    secret_fields = ("password",)
    params: ClassVar[dict[str, Param]] = {
        "name": Param(str, "the login name", required=True, check=check_account_name),
        "ensure": Param(str, "present or absent", default="present", choices=("present", "absent")),
        "uid": Param(int, "numeric user id", check=check_id),
        "group": Param((str, int), "primary group, by name or gid", check=check_group_ref),
        "groups": Param(list, "supplementary groups", check=check_group_list),
        "membership": Param(
            str, "minimum: add to groups; inclusive: exactly groups", default="minimum",
            choices=("minimum", "inclusive"),
        ),
        "shell": Param(str, "login shell", check=check_abs_path),
        "home": Param(str, "home directory", check=check_abs_path),
        "manage_home": Param(bool, "create the home directory on creation", default=True),
        "comment": Param(str, "GECOS field", check=check_comment),
        "password": Param(str, "crypt hash (secret)", check=check_crypt_hash),
        "system": Param(bool, "system account (on creation)", default=False),
    }

    @classmethod
    def normalize(cls, params: dict[str, Any], location: Location) -> dict[str, Any]:
        if params["membership"] == "inclusive" and params["groups"] is None:
            raise ManifestError("user: membership: inclusive needs groups (an empty list removes them all)", location)
        return params

    @classmethod
    def autorequire(cls, params: Mapping[str, Any]) -> list[str]:
        out = []
        if isinstance(params.get("group"), str):
            out.append(f"group:{params['group']}")
        out += [f"group:{g}" for g in params.get("groups") or []]
        return out

    @classmethod
    def desired(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        if params["ensure"] == "absent":
            return {"ensure": "absent"}
        password = params.get("password")
        return {
            "ensure": "present",
            "uid": params.get("uid"),
            "group": params.get("group"),
            "groups": params.get("groups"),
            "shell": params.get("shell"),
            "home": params.get("home"),
            "comment": params.get("comment"),
            "password": secret_digest(password) if password is not None else None,
        }

    @classmethod
    def diff(cls, desired: Mapping[str, Any], observed: Mapping[str, Any], sensitive: bool = False,
             params: Mapping[str, Any] | None = None) -> list[Change]:
        return ensure_diff(desired, observed)

    @classmethod
    def describe(cls, change: Change) -> str:
        if change.field == "ensure":
            return "created" if change.after == "present" else "removed"
        if change.field == "password":
            return "password changed" if change.before else "password set"
        if change.field == "groups":
            return f"groups {_names(change.before)} -> {_names(change.after)}"
        return super().describe(change)


def ensure_diff(desired: Mapping[str, Any], observed: Mapping[str, Any]) -> list[Change]:
    """Diff of a resource with ``ensure``: creation and removal are one change each (the other
    fields are set by the creation); otherwise one change per managed field that differs."""
    have = observed.get("ensure", "absent")
    if desired["ensure"] == "absent":
        return [Change("ensure", have, "absent")] if have != "absent" else []
    if have == "absent":
        return [Change("ensure", "absent", "present")]
    return field_changes(desired, observed)


def _names(value: Any) -> str:
    if not value:
        return "(none)"
    return ",".join(str(v) for v in value)
