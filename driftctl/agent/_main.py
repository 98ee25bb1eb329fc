"""Agent entry point: read one JSON request from stdin, answer one JSON document on stdout.

Ops:
  facts  -> {"facts": {...}}
  probe  -> {"facts": {...}?, "resources": {id: {"observed": {...}} | {"error": "..."}}, "watch": {...}?}
  apply  -> {"results": {id: {"status": "ok|changed|failed|skipped", "error"?, "observed"?,
                               "refreshed"?: true}}}

Apply items come in graph order: {"id", "type", "params", "changes": [field, ...],
"depends": [ids], "notify": [ids]}. An item whose dependency failed or was skipped is skipped;
notified items with a refresh handler are refreshed once, after every change, in order.
"""

import base64
import fcntl
import json
import os
import stat
import sys
import traceback

from driftctl.agent._core import TYPES, Ctx, Failure
from driftctl.agent.facts import gather_facts


def _handler(item):
    handler = TYPES.get(item["type"])
    if handler is None:
        raise Failure("this agent has no resource type %r" % item["type"])
    return handler


def _observe(item, ctx):
    try:
        return {"observed": _handler(item).observe(item["params"], ctx)}
    except Failure as e:
        return {"error": str(e)}
    except Exception as e:  # a bug or an unexpected host state: report it on this resource only
        return {"error": "%s: %s" % (type(e).__name__, e)}


def op_probe(req):
    facts = gather_facts()
    ctx = Ctx(facts=facts, want_content=req.get("want_content", True))
    answer = {"resources": {}}
    if req.get("facts", True):
        answer["facts"] = facts
    for item in req.get("resources", []):
        answer["resources"][item["id"]] = _observe(item, ctx)
    _watch(req, ctx, answer)
    return answer


def _watch(req, ctx, answer):
    """The watch scan, if asked; its failure is reported in the answer, never fatal to the probe."""
    if not req.get("watch") or "scan_watch" not in globals():
        return
    try:
        answer["watch"] = globals()["scan_watch"](req["watch"], ctx)
    except Exception as e:
        answer["watch"] = {"entries": {}, "truncated": [], "missing": [], "error": "%s: %s" % (type(e).__name__, e)}


LOCK_DIR = "/run/driftctl"


class Locked(Failure):
    """Another driftctl apply holds this host's lock (answered as ``"locked": true``)."""


def _host_lock(directory):
    """One apply at a time per host: an flock held until this process exits (so never left stale).

    The lock lives in a directory only root can write (never /tmp or /run/lock, where anyone could
    plant a symlink for root to follow and truncate), opened without following links.
    """
    try:
        if not os.path.lexists(directory):
            os.mkdir(directory, 0o700)
        st = os.lstat(directory)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
            raise Failure("refusing the lock directory %s: not a directory owned by us and closed to others"
                          % directory)
        fd = os.open(os.path.join(directory, "apply.lock"),
                     os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as e:
        raise Failure("cannot take the host lock in %s: %s" % (directory, e.strerror)) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise Failure("refusing the host lock: %s/apply.lock is not a regular file" % directory)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
        os.close(fd)
        raise Locked("host is being changed by %s" % holder) from None
    os.ftruncate(fd, 0)
    os.write(fd, ("driftctl apply pid %d" % os.getpid()).encode())
    return fd


def op_apply(req):
    _host_lock(req.get("lock_dir") or LOCK_DIR)
    blobs = dict((k, base64.b64decode(v)) for k, v in req.get("blobs", {}).items())
    ctx = Ctx(facts=gather_facts(), blobs=blobs, backup_dir=req.get("backup_dir") or Ctx().backup_dir)
    results = {}
    notified = []
    for item in req.get("resources", []):
        rid = item["id"]
        bad = [d for d in item.get("depends", []) if results.get(d, {}).get("status") in ("failed", "skipped")]
        if bad:
            results[rid] = {"status": "skipped", "error": "dependency %s did not converge" % ", ".join(bad)}
            continue
        if item.get("failed"):  # could not even be observed: nothing after it may run
            results[rid] = {"status": "failed", "error": item["failed"]}
            continue
        changes = item.get("changes")
        before = None
        if item.get("deferred"):
            # not observable at plan time (its user or package did not exist yet): observe it now,
            # after its dependencies, and converge what differs from the desired state sent along
            seen = _observe(item, ctx)
            if "error" in seen:
                results[rid] = {"status": "failed", "error": seen["error"]}
                continue
            before = seen["observed"]
            desired = item["deferred"]["desired"]
            changes = [k for k, v in sorted(desired.items()) if before.get(k) != v]
            if not changes:
                results[rid] = {"status": "ok", "before": before, "observed": before}
                continue
        if not changes:
            results[rid] = {"status": "ok"}
            continue
        try:
            _handler(item).apply(item["params"], changes, ctx)
            results[rid] = {"status": "changed"}
        except Failure as e:
            results[rid] = {"status": "failed", "error": str(e)}
            continue
        except Exception as e:
            results[rid] = {"status": "failed", "error": "%s: %s" % (type(e).__name__, e)}
            continue
        results[rid].update(_observe(item, ctx))
        if before is not None:
            results[rid]["before"] = before
        for target in item.get("notify", []):
            if target not in notified:
                notified.append(target)
    for item in req.get("resources", []):
        rid = item["id"]
        if rid not in notified or results[rid]["status"] in ("failed", "skipped"):
            continue
        try:
            handler = _handler(item)
            if handler.refresh is None:
                continue
            handler.refresh(item["params"], ctx)
            results[rid]["refreshed"] = True
        except Failure as e:
            results[rid].update(status="failed", error="refresh failed: %s" % e)
        except Exception as e:
            results[rid].update(status="failed", error="refresh failed: %s: %s" % (type(e).__name__, e))
    answer = {"results": results}
    _watch(req, ctx, answer)
    return answer


OPS = {"facts": lambda req: {"facts": gather_facts()}, "probe": op_probe, "apply": op_apply}


def main():
    try:
        req = json.loads(sys.stdin.buffer.read().decode("utf-8"))
        if req.get("v") != 1:
            raise Failure("unsupported protocol version %r" % req.get("v"))
        op = OPS.get(req.get("op"))
        if op is None:
            raise Failure("unknown op %r" % req.get("op"))
        answer = op(req)
        answer.update(v=1, ok=True)
    except Locked as e:
        answer = {"v": 1, "ok": False, "locked": True, "error": str(e)}
    except Failure as e:
        answer = {"v": 1, "ok": False, "error": str(e)}
    except Exception:
        answer = {"v": 1, "ok": False, "error": traceback.format_exc(limit=5)}
    sys.stdout.write(json.dumps(answer, separators=(",", ":")))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
