"""Unmanaged-drift baselines: what is under the ``watch:`` paths (type, hash, mode, owner, size).

Paths that a resource manages are excluded (the controller sends them); they are reported per
resource instead. Symlinks are never followed. Directory sizes and all mtimes are left out: they
change without anything a person would call a change.
"""

import os

from driftctl.agent._core import Failure, read_regular, stat_path, user_state_dir

WATCH_LIMIT = 20000  # entries per watched root; past it the answer says it was truncated
HASH_LIMIT = 64 * 1024 * 1024


def _entry(path):
    st = stat_path(path)
    if st is None:
        return None
    entry = {"type": st["type"], "mode": st["mode"], "owner": st["owner"], "group": st["group"]}
    if st["type"] == "file":
        entry["size"] = st["size"]
        if st["size"] <= HASH_LIMIT:
            try:
                # through the descriptor walker: a link swapped in (or planted on the way) is not followed
                entry["sha256"] = read_regular(path)[0]
            except Failure as e:
                entry["sha256"] = "unreadable: %s" % e
            except OSError as e:
                entry["sha256"] = "unreadable: %s" % e.strerror
    elif st["type"] == "link":
        try:
            entry["target"] = os.readlink(path)
        except OSError:
            entry["target"] = None
    return entry


def watch_own_dirs(ctx):
    """driftctl's own directories on the host, never unmanaged drift: the backups, the agent cache
    the launcher used (it says which, once it has checked the directory is the agent user's own) and
    pull mode's default cache (its checkouts, state and outbox change with every pull); for an agent
    that is not root, its own lock and backups too."""
    try:
        mine = user_state_dir()
    except Failure:
        mine = None
    own = (ctx.backup_dir, globals().get("launcher_cache_dir"), "/var/lib/driftctl/pull", mine)
    return set(d.rstrip("/") for d in own if d)


def scan_watch(watch, ctx):
    """{"entries": {path: entry}, "truncated": [roots cut at WATCH_LIMIT], "missing": [roots]}."""
    entries = {}
    truncated = []
    missing = []
    own = watch_own_dirs(ctx)
    for spec in watch:
        root = spec["path"]
        exclude = set(spec.get("exclude", [])) | own
        top = _entry(root)
        if top is None:
            missing.append(root)
            continue
        if root not in exclude:
            entries[root] = top
        if top["type"] != "directory":
            continue
        count = 0
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if os.path.join(dirpath, d) not in own)
            for name in sorted(dirnames) + sorted(filenames):
                path = os.path.join(dirpath, name)
                if path in exclude:
                    continue
                entry = _entry(path)
                if entry is None:
                    continue
                entries[path] = entry
                count += 1
            if count >= WATCH_LIMIT:
                truncated.append(root)
                break
    return {"entries": entries, "truncated": truncated, "missing": missing}
