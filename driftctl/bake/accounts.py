"""The image's own account databases (/etc/passwd, group, shadow, gshadow), parsed and edited.

Bake cannot run useradd in an image without a container, so it edits the four files the way the
shadow tools do, deterministically: new ids are allocated from the image's login.defs ranges (system
accounts from SYS_*_MAX downwards, others from the highest id in use upwards, like useradd), and the
"last password change" day comes from the bake epoch (SOURCE_DATE_EPOCH), never from today's date.
Lines bake does not touch keep their bytes and their order; new lines are appended.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from driftctl.agent import authorized_key as agent_ak
from driftctl.bake.fs import Entry, ImageFS
from driftctl.errors import BakeError
from driftctl.model import Resource

if TYPE_CHECKING:
    from driftctl.bake.writers import Baker


def agent_params(r: Resource) -> dict[str, Any]:
    """The params the agent's apply would get for ``r`` (its type's ``agent_params``): bake mirrors
    that apply, so it reads the same normalised values (a key split from its comment, ...)."""
    from driftctl.resources.base import get_type

    rtype = get_type(r.type)
    return dict(rtype.agent_params(r.params)) if rtype is not None else dict(r.params)


PASSWD = "/etc/passwd"  # noqa: S105 - a path, not a password
GROUP = "/etc/group"
SHADOW = "/etc/shadow"
GSHADOW = "/etc/gshadow"
LOGIN_DEFS = "/etc/login.defs"

# (fields, mode) of each database when the image has none
_SHAPES = {PASSWD: (7, 0o644), GROUP: (4, 0o644), SHADOW: (9, 0o640), GSHADOW: (4, 0o640)}


@dataclass
class Table:
    """One colon-separated database: its rows in file order, editable by first field (the name)."""

    path: str
    rows: list[list[str]]
    trailing_newline: bool = True
    dirty: bool = False
    version: int = 0  # bumped by every real change

    @classmethod
    def parse(cls, path: str, text: str | None) -> Table:
        if not text:
            return cls(path, [])
        lines = text.split("\n")
        trailing = lines[-1] == ""
        if trailing:
            lines.pop()
        return cls(path, [ln.split(":") for ln in lines], trailing)

    def find(self, name: str) -> list[str] | None:
        for row in self.rows:
            if row and row[0] == name:
                return row
        return None

    def set(self, row: list[str]) -> None:
        for i, old in enumerate(self.rows):
            if old and old[0] == row[0]:
                if old != row:
                    self.rows[i] = row
                    self.dirty = True
                    self.version += 1
                return
        self.rows.append(row)
        self.dirty = True
        self.version += 1

    def delete(self, name: str) -> None:
        before = len(self.rows)
        self.rows = [r for r in self.rows if not (r and r[0] == name)]
        if len(self.rows) != before:
            self.dirty = True
            self.version += 1

    def text(self) -> str:
        body = "\n".join(":".join(r) for r in self.rows)
        return body + ("\n" if self.rows and self.trailing_newline else "")


@dataclass
class Accounts:
    """The four databases of an image plus the id ranges of its login.defs."""

    fs: ImageFS
    passwd: Table
    group: Table
    shadow: Table
    gshadow: Table
    defs: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, fs: ImageFS) -> Accounts:
        defs: dict[str, str] = {}
        for line in (fs.read_text(LOGIN_DEFS) or "").splitlines():
            parts = line.split()
            if len(parts) >= 2 and not parts[0].startswith("#"):
                defs[parts[0]] = parts[1]
        return cls(
            fs,
            Table.parse(PASSWD, fs.read_text(PASSWD)),
            Table.parse(GROUP, fs.read_text(GROUP)),
            Table.parse(SHADOW, fs.read_text(SHADOW)),
            Table.parse(GSHADOW, fs.read_text(GSHADOW)),
            defs,
        )

    # ---- lookups
    def uid_of(self, owner: str | int | None) -> int | None:
        if owner is None:
            return None
        if isinstance(owner, int) or str(owner).isdigit():
            return int(owner)
        row = self.passwd.find(str(owner))
        if row is None or len(row) < 3:
            raise BakeError(f"no user {owner!r} in the image's {PASSWD} (declare it with a user resource)")
        return int(row[2])

    def gid_of(self, group: str | int | None) -> int | None:
        if group is None:
            return None
        if isinstance(group, int) or str(group).isdigit():
            return int(group)
        row = self.group.find(str(group))
        if row is None or len(row) < 3:
            raise BakeError(f"no group {group!r} in the image's {GROUP} (declare it with a group resource)")
        return int(row[2])

    def user_name(self, uid: int) -> str:
        for row in self.passwd.rows:
            if len(row) >= 3 and row[2] == str(uid):
                return row[0]
        return str(uid)

    def group_name(self, gid: int) -> str:
        for row in self.group.rows:
            if len(row) >= 3 and row[2] == str(gid):
                return row[0]
        return str(gid)

    def _def(self, key: str, default: int) -> int:
        try:
            return int(self.defs.get(key, default))
        except ValueError:
            return default

    def _used(self, table: Table) -> set[int]:
        return {int(r[2]) for r in table.rows if len(r) >= 3 and r[2].isdigit()}

    def next_id(self, kind: str, system: bool, prefer: int | None = None) -> int:
        """A free uid ("UID") or gid ("GID") as useradd/groupadd would pick it."""
        table = self.passwd if kind == "UID" else self.group
        used = self._used(table)
        if prefer is not None and prefer not in used:
            return prefer
        if system:
            lo, hi = self._def(f"SYS_{kind}_MIN", 100), self._def(f"SYS_{kind}_MAX", 999)
            for candidate in range(hi, lo - 1, -1):
                if candidate not in used:
                    return candidate
        else:
            lo, hi = self._def(f"{kind}_MIN", 1000), self._def(f"{kind}_MAX", 60000)
            in_range = [i for i in used if lo <= i <= hi]
            candidate = max(in_range) + 1 if in_range else lo
            if candidate <= hi:
                return candidate
            for candidate in range(lo, hi + 1):
                if candidate not in used:
                    return candidate
        raise BakeError(f"no free {kind.lower()} left in the image's {'system ' if system else ''}range")

    def members(self, group: str) -> list[str]:
        row = self.group.find(group)
        if row is None or len(row) < 4 or not row[3]:
            return []
        return row[3].split(",")

    def set_members(self, group: str, members: list[str]) -> None:
        row = self.group.find(group)
        if row is None:
            return
        self.group.set([*row[:3], ",".join(members)])
        srow = self.gshadow.find(group)
        if srow is not None:
            srow = [*srow, "", "", "", ""][:4]
            self.gshadow.set([*srow[:3], ",".join(members)])

    def groups_of(self, user: str) -> list[str]:
        """Supplementary groups of ``user``, sorted."""
        return sorted(r[0] for r in self.group.rows if len(r) >= 4 and user in r[3].split(","))

    # ---- writing back
    def save(self, epoch_mtime: int) -> None:
        """Put every changed database into the image's new layer, keeping each file's owner and mode."""
        for table in (self.passwd, self.group, self.shadow, self.gshadow):
            if not table.dirty:
                continue
            old = self.fs.get(table.path)
            if old is not None and old.kind != "file":
                raise BakeError(f"{table.path} is not a regular file in the image")
            mode = old.mode if old is not None else _SHAPES[table.path][1]
            gid = old.gid if old is not None else (self.gid_of("shadow") if table.path in (SHADOW, GSHADOW)
                                                   and self.group.find("shadow") else 0) or 0
            uid = old.uid if old is not None else 0
            data = table.text().encode("utf-8", "surrogateescape")
            self.fs.put(table.path, Entry("file", mode, uid, gid, epoch_mtime, len(data), data))
            table.dirty = False


# ---------------------------------------------------------------- writers: user, group, authorized_key


def _shadow_day(epoch: int) -> str:
    # the day of the last password change comes from the bake epoch; with no epoch it stays empty
    # (aging off) rather than "0", which would force a password change at the first login
    return str(epoch // 86400) if epoch > 0 else ""


def _useradd_default(fs: ImageFS, key: str, default: str) -> str:
    for line in (fs.read_text("/etc/default/useradd") or "").splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and name == key and value:
            return value.strip().strip('"')
    return default


def bake_group(b: Baker, r: Resource) -> None:
    acc, p = b.accounts, agent_params(r)
    name = p["name"]
    row = acc.group.find(name)
    if p.get("ensure", "present") == "absent":
        if row is not None:
            acc.group.delete(name)
            acc.gshadow.delete(name)
        return
    if row is None:
        gid = p.get("gid")
        if gid is None:
            gid = acc.next_id("GID", bool(p.get("system")))
        elif str(gid) in {r2[2] for r2 in acc.group.rows if len(r2) >= 3}:
            raise b.fail(r, f"gid {gid} is already used in the image's {GROUP}")
        acc.group.set([name, "x", str(gid), ""])
        acc.gshadow.set([name, "!", "", ""])
    elif p.get("gid") is not None and row[2] != str(p["gid"]):
        acc.group.set([row[0], row[1], str(p["gid"]), *row[3:4]])


def bake_user(b: Baker, r: Resource) -> None:
    """useradd / usermod / userdel on the image's databases, as the agent's apply does on a host."""
    p = agent_params(r)
    row = b.accounts.passwd.find(p["name"])
    if p.get("ensure", "present") == "absent":
        if row is not None:
            _remove_user(b, p, row)
        return
    if row is None:
        _add_user(b, r, p)
    else:
        _update_user(b, p, row)
    if p.get("groups") is not None:
        _set_groups(b, r, p["name"], p["groups"], inclusive=p.get("membership") == "inclusive")


def _remove_user(b: Baker, p: dict[str, Any], row: list[str]) -> None:
    """userdel [-r]: the user, its memberships, its private group, and its home with manage_home."""
    acc, name = b.accounts, p["name"]
    acc.passwd.delete(name)
    acc.shadow.delete(name)
    for group in acc.groups_of(name):
        acc.set_members(group, [m for m in acc.members(group) if m != name])
    own = acc.group.find(name)
    if own is not None and len(row) > 3 and own[2] == row[3] and not acc.members(name):
        acc.group.delete(name)  # userdel removes the user's private group too
        acc.gshadow.delete(name)
    if p.get("manage_home") and len(row) > 5 and b.fs.exists(row[5]) and row[5] != "/":
        b.fs.remove(b.path(row[5]))


def _add_user(b: Baker, r: Resource, p: dict[str, Any]) -> None:
    """useradd [-m]: a new uid (or the given one, if free), the primary group, shadow, the home."""
    acc, fs, name = b.accounts, b.fs, p["name"]
    system = bool(p.get("system"))
    uid = p.get("uid")
    if uid is None:
        uid = acc.next_id("UID", system)
    elif str(uid) in {r2[2] for r2 in acc.passwd.rows if len(r2) >= 3}:
        raise b.fail(r, f"uid {uid} is already used in the image's {PASSWD}")
    gid = _primary_gid(b, p, uid, system)
    home = p.get("home") or posixpath.join(_useradd_default(fs, "HOME", "/home"), name)
    shell = p.get("shell") or _useradd_default(fs, "SHELL", "/bin/sh")
    acc.passwd.set([name, "x", str(uid), str(gid), p.get("comment") or "", home, shell])
    aging = ["", "", "", ""] if system else ["0", "99999", "7", ""]
    acc.shadow.set([name, p.get("password") or "!", _shadow_day(b.epoch), *aging, "", ""])
    if p.get("manage_home", True):
        _make_home(b, r, home, uid, int(gid or 0))


def _primary_gid(b: Baker, p: dict[str, Any], uid: Any, system: bool) -> Any:
    """The new user's group: the one named, else its own group if one exists, else a new private group
    of the same name (USERGROUPS_ENAB), with the uid as gid when that is free."""
    acc, name = b.accounts, p["name"]
    if p.get("group") is not None:
        return acc.gid_of(p["group"])
    if acc.group.find(name) is not None:
        return acc.gid_of(name)
    gid = acc.next_id("GID", system, prefer=uid)
    acc.group.set([name, "x", str(gid), ""])
    acc.gshadow.set([name, "!", "", ""])
    return gid


def _update_user(b: Baker, p: dict[str, Any], row: list[str]) -> None:
    """usermod: the fields the resource names, and the password (its change day with it)."""
    acc = b.accounts
    row = list(row) + [""] * (7 - len(row))
    if p.get("uid") is not None:
        row[2] = str(p["uid"])
    if p.get("group") is not None:
        row[3] = str(acc.gid_of(p["group"]))
    for key, index in (("comment", 4), ("home", 5), ("shell", 6)):
        if p.get(key) is not None:
            row[index] = p[key]
    acc.passwd.set(row[:7])
    if p.get("password") is not None:
        _set_password(b, p["name"], p["password"])


def _set_password(b: Baker, name: str, password: str) -> None:
    acc = b.accounts
    srow = acc.shadow.find(name)
    srow = list(srow) + [""] * (9 - len(srow)) if srow else [name, "", "", "", "", "", "", "", ""]
    if srow[1] != password:
        srow[1] = password
        srow[2] = _shadow_day(b.epoch)
    acc.shadow.set(srow[:9])


def _set_groups(b: Baker, r: Resource, name: str, wanted: list[str], inclusive: bool) -> None:
    """usermod -aG (and, with membership: inclusive, out of every group not wanted)."""
    acc = b.accounts
    for group in wanted:
        if acc.group.find(group) is None:
            raise b.fail(r, f"no group {group!r} in the image (declare it with a group resource)")
        members = acc.members(group)
        if name not in members:
            acc.set_members(group, [*members, name])
    if inclusive:
        for group in acc.groups_of(name):
            if group not in wanted:
                acc.set_members(group, [m for m in acc.members(group) if m != name])


def _make_home(b: Baker, r: Resource, home: str, uid: int, gid: int) -> None:
    """useradd -m: the home directory from login.defs' HOME_MODE (else UMASK), /etc/skel copied in."""
    fs = b.fs
    path = b.path(home)
    if fs.exists(path):
        return
    b.require_parent(r, path)
    defs = b.accounts.defs
    try:
        mode = int(defs["HOME_MODE"], 8) if "HOME_MODE" in defs else 0o777 & ~int(defs.get("UMASK", "022"), 8)
    except ValueError:
        mode = 0o755
    b.put(path, Entry("dir", mode, uid, gid))
    stack = ["/etc/skel"]
    while stack:
        src = stack.pop()
        if fs.get(src) is None:
            continue
        for name in fs.listdir(src):
            child = posixpath.join(src, name)
            entry = fs.get(child)
            if entry is None or entry.kind == "other":
                continue
            dest = path + child[len("/etc/skel"):]
            data = fs.read(child) if entry.kind == "file" else None
            b.put(dest, Entry(entry.kind, entry.mode, uid, gid, size=len(data or b""), data=data,
                              target=entry.target))
            if entry.kind == "dir":
                stack.append(child)


def bake_authorized_key(b: Baker, r: Resource) -> None:
    acc, p, fs = b.accounts, agent_params(r), b.fs
    row = acc.passwd.find(p["user"])
    if row is None or len(row) < 6:
        raise b.fail(r, f"no user {p['user']!r} in the image (declare it with a user resource)")
    uid, gid, home = int(row[2]), int(row[3]), posixpath.normpath(row[5])
    path = p.get("path") or posixpath.join(home, ".ssh", "authorized_keys")
    inside = home != "/" and (path + "/").startswith(home + "/")
    real = b.path(path)
    want_type, want_key = p["key"].split()[:2]
    entry = fs.get(real)
    if entry is not None and entry.kind != "file":
        raise b.fail(r, f"{path} is a {entry.kind} in the image: refusing to follow or replace it")
    text = fs.read_text(real) if entry is not None else None
    if p.get("ensure") == "absent" and not any(
            e["type"] == want_type and e["key"] == want_key for e in agent_ak.parse_authorized_keys(text or "")):
        return
    data = agent_ak.ak_edit(text, p).encode("utf-8")  # the agent's own edit: host and image agree
    if inside:
        ssh_dir = posixpath.dirname(real)
        if fs.get(ssh_dir) is None:
            if fs.get(b.path(home)) is None:
                raise b.fail(r, f"home of {p['user']} ({home}) does not exist in the image")
            b.put(ssh_dir, Entry("dir", 0o700, uid, gid))
    else:
        b.require_parent(r, real)
    b.put(real, Entry("file", 0o600, uid, gid, size=len(data), data=data))
