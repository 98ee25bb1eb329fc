"""Host side of ``group``: observe from /etc/group (parse_group of user.py); groupadd/groupmod/groupdel.

observe -> {"ensure": "present"|"absent", "gid"?: int}
"""

from driftctl.agent._core import register
from driftctl.agent.spawn import run
from driftctl.agent.user import parse_group, user_read


def group_observe(params, ctx):
    entry = parse_group(user_read("/etc/group")).get(params["name"])
    if entry is None:
        return {"ensure": "absent"}
    out = {"ensure": "present"}
    if params.get("ensure") != "absent" and params.get("gid") is not None:
        out["gid"] = entry["gid"]
    return out


def group_apply(params, changes, ctx):
    name = params["name"]
    if "ensure" in changes:
        if params.get("ensure") == "absent":
            run(["groupdel", "--", name], check=True)
            return
        argv = ["groupadd"]
        if params.get("gid") is not None:
            argv += ["-g", str(params["gid"])]
        if params.get("system"):
            argv.append("-r")
        run([*argv, "--", name], check=True)
        return
    if "gid" in changes:
        run(["groupmod", "-g", str(params["gid"]), "--", name], check=True)


register("group", group_observe, group_apply)
