"""The ``authorized_key`` resource type (controller side). Host side: driftctl/agent/authorized_key.py."""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from driftctl.agent import authorized_key as agent_ak
from driftctl.errors import Location, ManifestError
from driftctl.model import Change
from driftctl.resources.base import Param, ResourceType, check_abs_path, field_changes, register
from driftctl.resources.user import check_account_name

# The key types sshd accepts: the agent's list, so the controller and the host can never disagree.
KEY_TYPES: tuple[str, ...] = agent_ak.AK_KEY_TYPES


def options_whole(text: str) -> bool:
    """Whether ``text`` is one options field of a key line by sshd's rule, as the agent reads it back:
    no whitespace outside double quotes, quotes balanced, nothing escaping what follows.

    Asked of the agent's own ``split_options`` (one implementation of the quoting): followed by a space
    and a word, the options must end exactly where ``text`` does. Unbalanced quotes or a trailing
    backslash swallow that space, whitespace outside quotes ends them early.
    """
    return tuple(agent_ak.split_options(text + " x")) == (text, "x")


@dataclass(frozen=True)
class PublicKey:
    """An OpenSSH public key line, split. ``material`` is the base64 blob: the key's identity."""

    type: str
    material: str
    comment: str

    @property
    def fingerprint(self) -> str:
        """As ``ssh-keygen -l`` shows it: SHA256:<unpadded base64 of the blob's sha256>."""
        digest = hashlib.sha256(base64.b64decode(self.material)).digest()
        return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def parse_public_key(line: str) -> PublicKey:
    """Check the shape of a public key line ("ssh-ed25519 AAAA... comment"); ValueError if wrong.

    The base64 blob must decode, and the key type written inside it must match the one in front.
    """
    fields = line.strip().split(None, 2)
    if len(fields) < 2:
        raise ValueError("must be a public key line: \"ssh-ed25519 AAAA... comment\"")
    key_type, material = fields[0], fields[1]
    if key_type not in KEY_TYPES:
        raise ValueError(f"has an unknown key type {key_type!r} (one of: {', '.join(KEY_TYPES)})")
    try:
        blob = base64.b64decode(material, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("has a key that is not valid base64 (was it cut or wrapped?)") from None
    if len(blob) < 4:
        raise ValueError("has a key that is too short")
    (size,) = struct.unpack(">I", blob[:4])
    inner = blob[4 : 4 + size]
    if inner != key_type.encode("ascii"):
        raise ValueError(f"says {key_type} but the key inside is {inner.decode('ascii', 'replace')[:40]!r}")
    if "\n" in line.strip():
        raise ValueError("must be one line")
    return PublicKey(key_type, material, fields[2].strip() if len(fields) > 2 else "")


def check_key(value: Any) -> str:
    key = parse_public_key(value)
    return " ".join(p for p in (key.type, key.material, key.comment) if p)


def check_options(value: Any) -> str:
    """authorized_keys options: a list (joined with commas) or one string; quotes must balance."""
    text = ",".join(value) if isinstance(value, list) else value
    if not all(isinstance(v, str) for v in (value if isinstance(value, list) else [value])):
        raise ValueError("must be a string or a list of strings")
    if "\n" in text:
        raise ValueError("cannot contain a newline")
    if not options_whole(text):
        raise ValueError(f"must have no space outside quotes and balanced quotes, not {text!r}")
    return str(text)


@register
class AuthorizedKey(ResourceType):
    """One public key in a user's ``authorized_keys``.

    The key's identity is its material (type and base64), not the comment: the same key with other
    options or another comment is updated in place. ``~/.ssh`` is created 0700 and the file written
    0600, owned by the user, atomically; no symlink inside the user's home is followed. When the key
    line has no comment, the comment on the host is left as it is.

    Parameters:
      name: a free name (the title)
      user: the account whose file this is (required)
      key: the full public key line, "ssh-ed25519 AAAA... comment" (required)
      options: key options, a string or a list ("from=\\"10.0.0.0/8\\"", no-port-forwarding)
      ensure: present (default) or absent
      path: the file (default the user's ~/.ssh/authorized_keys)

    Example:
      - authorized_key: alice-laptop
        user: alice
        key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx1... alice@laptop
        options: [no-agent-forwarding, 'from="10.0.0.0/8"']
    """

    name = "authorized_key"
    namevar = "name"
    bake_phase = 6
    bake_writer = "driftctl.bake.accounts:bake_authorized_key"
    params: ClassVar[dict[str, Param]] = {
        "name": Param(str, "a free name", required=True),
        "user": Param(str, "the account", required=True, check=check_account_name),
        "key": Param(str, "a public key line", required=True, check=check_key),
        "options": Param((str, list), "key options", default="", check=check_options),
        "ensure": Param(str, "present or absent", default="present", choices=("present", "absent")),
        "path": Param(str, "the authorized_keys file", check=check_abs_path),
    }

    @classmethod
    def normalize(cls, params: dict[str, Any], location: Location) -> dict[str, Any]:
        if params["ensure"] == "absent" and params["options"]:
            raise ManifestError("authorized_key: options make no sense with ensure: absent", location)
        params["options"] = params["options"] or ""
        return params

    @classmethod
    def claims(cls, params: Mapping[str, Any]) -> list[str]:
        where = params.get("path") or f"~{params['user']}/.ssh/authorized_keys"
        return [f"authorized_key:{where}:{parse_public_key(params['key']).fingerprint}"]

    @classmethod
    def autorequire(cls, params: Mapping[str, Any]) -> list[str]:
        return [f"user:{params['user']}"]

    @classmethod
    def desired(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        if params["ensure"] == "absent":
            return {"ensure": "absent"}
        key = parse_public_key(params["key"])
        return {"ensure": "present", "options": params["options"], "comment": key.comment or None}

    @classmethod
    def agent_params(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        key = parse_public_key(params["key"])
        return {
            "user": params["user"],
            "key": f"{key.type} {key.material}",
            "comment": key.comment or None,
            "options": params["options"],
            "ensure": params["ensure"],
            "path": params.get("path"),
        }

    @classmethod
    def diff(cls, desired: Mapping[str, Any], observed: Mapping[str, Any], sensitive: bool = False,
             params: Mapping[str, Any] | None = None) -> list[Change]:
        have = observed.get("ensure", "absent")
        if desired["ensure"] == "absent" or have == "absent":
            return [Change("ensure", have, desired["ensure"])] if have != desired["ensure"] else []
        return field_changes(desired, observed)

    @classmethod
    def describe(cls, change: Change) -> str:
        if change.field == "ensure":
            return "added" if change.after == "present" else "removed"
        return f"{change.field} {change.before or '(none)'} -> {change.after or '(none)'}"
