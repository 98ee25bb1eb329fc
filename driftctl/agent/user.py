"""Host side of ``user``: observe from /etc/passwd, /etc/group and /etc/shadow; change with
useradd/usermod/userdel (argv) and chpasswd -e (the hash goes over stdin, never argv).

The files are parsed rather than read through pwd/grp (which also answer for LDAP/NSS users that
useradd cannot manage) and spwd (gone in Python 3.13).

observe -> {"ensure": "present"|"absent", "uid", "group", "groups", "shell", "home", "comment",
"password"} with only the fields the resource manages. ``password`` is "sha256:" + the sha256 of the
shadow hash: the hash itself never leaves the host.
"""

from driftctl.agent._core import Failure, register, sha256_bytes
from driftctl.agent.spawn import run

# ---- parsers (pure)


def parse_passwd(text):
    """/etc/passwd text -> {name: {"uid", "gid", "comment", "home", "shell"}}; NIS "+" lines skipped."""
    out: dict = {}
    for line in text.splitlines():
        if not line or line.startswith(("#", "+", "-")):
            continue
        parts = line.split(":")
        if len(parts) != 7 or not parts[2].isdigit() or not parts[3].isdigit():
            continue
        name, _pw, uid, gid, comment, home, shell = parts
        out.setdefault(name, {"uid": int(uid), "gid": int(gid), "comment": comment, "home": home, "shell": shell})
    return out


def parse_group(text):
    """/etc/group text -> {name: {"gid": int, "members": [names]}}."""
    out: dict = {}
    for line in text.splitlines():
        if not line or line.startswith(("#", "+", "-")):
            continue
        parts = line.split(":")
        if len(parts) != 4 or not parts[2].isdigit():
            continue
        name, _pw, gid, members = parts
        out.setdefault(name, {"gid": int(gid), "members": [m for m in members.split(",") if m]})
    return out


def parse_shadow(text):
    """/etc/shadow text -> {name: password field} (a crypt hash, "!"/"*" for locked, "" for none)."""
    out: dict = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) < 2:
            continue
        out.setdefault(parts[0], parts[1])
    return out


def secret_digest(value):
    return "sha256:" + sha256_bytes(value.encode("utf-8"))


def user_read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""
    except PermissionError:
        raise Failure("cannot read %s: the agent needs root (become) for users and passwords" % path) from None


def supplementary_groups(groups, name):
    return sorted(g for g, info in groups.items() if name in info["members"])


# ---- handlers


def user_observe(params, ctx):
    name = params["name"]
    users = parse_passwd(user_read("/etc/passwd"))
    entry = users.get(name)
    if entry is None:
        return {"ensure": "absent"}
    out: dict = {"ensure": "present"}
    if params.get("ensure") == "absent":
        return out
    groups = parse_group(user_read("/etc/group"))
    if params.get("uid") is not None:
        out["uid"] = entry["uid"]
    want_group = params.get("group")
    if want_group is not None:
        if isinstance(want_group, int) or str(want_group).isdigit():
            out["group"] = entry["gid"]
        else:
            names = [g for g, info in sorted(groups.items()) if info["gid"] == entry["gid"]]
            out["group"] = names[0] if names else entry["gid"]
    if params.get("groups") is not None:
        have = supplementary_groups(groups, name)
        if params.get("membership") == "inclusive":
            out["groups"] = have
        else:
            # minimum: only the wanted groups matter, so other memberships are neither drift nor shown
            out["groups"] = sorted(set(have) & set(params["groups"]))
    for key in ("shell", "home", "comment"):
        if params.get(key) is not None:
            out[key] = entry[key]
    if params.get("password") is not None:
        out["password"] = secret_digest(parse_shadow(user_read("/etc/shadow")).get(name, ""))
    return out


def _user_set_password(name, hashed):
    run(["chpasswd", "-e"], stdin="%s:%s\n" % (name, hashed), check=True)


def _user_create(params):
    argv = ["useradd"]
    if params.get("uid") is not None:
        argv += ["-u", str(params["uid"])]
    if params.get("group") is not None:
        argv += ["-g", str(params["group"])]
    if params.get("groups"):
        argv += ["-G", ",".join(params["groups"])]
    for key, flag in (("shell", "-s"), ("home", "-d"), ("comment", "-c")):
        if params.get(key) is not None:
            argv += [flag, params[key]]
    if params.get("system"):
        argv.append("-r")
    argv.append("-m" if params.get("manage_home") else "-M")
    argv += ["--", params["name"]]
    run(argv, check=True)
    if params.get("password") is not None:
        _user_set_password(params["name"], params["password"])


def user_apply(params, changes, ctx):
    name = params["name"]
    if "ensure" in changes:
        if params.get("ensure") == "absent":
            # the home stays: removing an account must not destroy its data (remove it with a file resource)
            run(["userdel", "--", name], check=True)
        else:
            _user_create(params)
        return
    argv = ["usermod"]
    if "uid" in changes:
        argv += ["-u", str(params["uid"])]
    if "group" in changes:
        argv += ["-g", str(params["group"])]
    if "groups" in changes:
        if params.get("membership") == "inclusive":
            argv += ["-G", ",".join(params["groups"])]
        else:
            have = supplementary_groups(parse_group(user_read("/etc/group")), name)
            missing = [g for g in params["groups"] if g not in have]
            if missing:
                argv += ["-a", "-G", ",".join(missing)]
    for key, flag in (("shell", "-s"), ("home", "-d"), ("comment", "-c")):
        if key in changes:
            argv += [flag, params[key]]
    if "home" in changes and params.get("manage_home"):
        argv.append("-m")  # move the old home's contents to the new one
    if len(argv) > 1:
        run([*argv, "--", name], check=True)
    if "password" in changes:
        _user_set_password(name, params["password"])


register("user", user_observe, user_apply)
