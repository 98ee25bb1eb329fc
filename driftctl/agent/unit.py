"""Host side of ``unit``: a systemd unit's files (unit file, drop-ins), daemon-reload, enablement, state.

observe -> {"content_sha256", "dropins": {name: sha or None}, "needs_reload", "enabled", "running"}, plus
``content``/``dropin_texts`` (the host's text of a file that differs, for the diff) and ``_cas``:
``{"unit_files": {path: _cas of what was seen, or None}}`` for every managed file, so each write is
checked against what the plan saw, one file at a time (the compare-and-swap of _core.py).

What systemd knows comes from one ``systemctl show`` per unit (``unit_systemd``, which the image
observer replaces with what the image's files say). Files are written with the file type's helpers:
the parent open by descriptor, a private temp file, fsync, rename; never through a planted symlink.

``ensure: absent``: stop, disable, remove the unit file and its .d (regular files only, each backed up
and checked against the plan), reload.

Apply: the files that differ are written; then enable/disable with ``--no-reload``; then one
``systemctl daemon-reload`` when a file or the enablement changed (or systemd runs an older copy);
then start/stop, or restart a running unit whose files changed. So a changed unit costs one reload
(~0.26 s measured in a fleet container), not two (``enable`` alone would reload again). A unit
(re)started by its apply is not restarted again when notified.
"""

import os  # noqa: I001  (agent imports stay on one line: see driftctl/agent/file.py)
import stat

from driftctl.agent._core import CAS_UNKNOWN, DIR_FLAGS, NOT_KNOWN, Failure, backup_save, cas_dict, cas_verify, file_kind, lstat_at, register  # noqa: E501
from driftctl.agent.spawn import run
from driftctl.agent.file import _file_writer, fs_describe_type, fs_probe_target, fs_target
from driftctl.agent.service import SYSTEMD_RUNNING_STATES, SystemdService, parse_systemctl_show, service_timed_out, systemctl_show  # noqa: E501

UNIT_DIR = "/etc/systemd/system"
UNIT_PROPS = "LoadState,ActiveState,SubState,UnitFileState,NeedDaemonReload,MainPID"
UNIT_QUERY_TIMEOUT = 60
# the enablement that ``ensure: absent`` undoes (``systemctl disable``); a static unit has none to undo
UNIT_DISABLABLE = ("enabled", "enabled-runtime", "indirect")
UNIT_STARTED = set()  # units this run started or restarted: a notification does not restart them again


# ---- pure


def unit_view(props):
    """``systemctl show`` properties of one unit -> what the resource compares (raw states kept)."""
    unit_file = props.get("UnitFileState", "")
    load = props.get("LoadState", "")
    masked = load == "masked" or unit_file.startswith("masked")
    return {
        "enabled": unit_file in ("enabled", "enabled-runtime", "static", "alias", "generated", "indirect"),
        "running": props.get("ActiveState") in SYSTEMD_RUNNING_STATES,
        # systemd says yes for a masked unit with drop-ins even right after a reload (it never loads
        # them): a masked unit runs no copy of its files, so there is nothing to reload for
        "needs_reload": props.get("NeedDaemonReload") == "yes" and not masked,
        "loaded": load not in ("not-found", ""),
        "masked": masked,
        "unit_file_state": unit_file,
        "active_state": props.get("ActiveState", ""),
    }


def unit_parse_show(text):
    """The output of ``systemctl show -p UNIT_PROPS UNIT`` -> unit_view (what unit_systemd reads)."""
    return unit_view(parse_systemctl_show(text))


def unit_files(params):
    """[(path, sha256)] of the files the resource manages: the unit file (when given), then the drop-ins."""
    name = params["name"]
    out = []
    if params.get("content_sha256"):
        out.append((UNIT_DIR + "/" + name, params["content_sha256"]))
    for dropin, sha in sorted((params.get("dropins") or {}).items()):
        out.append((UNIT_DIR + "/" + name + ".d/" + dropin, sha))
    return out


# ---- systemd


def unit_query_limit(timeout):
    return UNIT_QUERY_TIMEOUT if timeout is None or timeout > UNIT_QUERY_TIMEOUT else timeout


def unit_systemd(name, timeout=None):
    """systemd's view of the unit (unit_view), from one ``systemctl show``. An unknown unit is not an
    error: it is not enabled and not running (its file may be about to be written)."""
    return unit_view(systemctl_show([name], UNIT_PROPS, unit_query_limit(timeout))[0])


def unit_prefetch(params_list, ctx):
    """systemd's view of all of a probe's units from one ``systemctl show`` (as service_prefetch),
    bounded by the shortest ``timeout`` among them."""
    if ctx.facts.get("init") not in (None, "systemd"):
        return
    names, limits = [], []
    for params in params_list:
        if params["name"] not in names:
            names.append(params["name"])
            limits.append(unit_query_limit(params.get("timeout")))
    if len(names) < 2:
        return
    units = systemctl_show(names, UNIT_PROPS, min(limits))
    ctx.known.update((("unit", name), unit_view(units[i])) for i, name in enumerate(names))


def unit_observed_systemd(params, ctx):
    """systemd's view of the unit for observe: what the probe's prefetch read, else asked now."""
    known = ctx.take_known(("unit", params["name"]))
    return unit_systemd(params["name"], params.get("timeout")) if known is NOT_KNOWN else known


def unit_ctl(params, *args):
    argv = ["systemctl", *list(args)]
    try:
        run(argv, check=True, timeout=params.get("timeout"))
    except Failure as e:
        raise service_timed_out(e, argv, params["name"]) from None


# ---- observe


def unit_file_refusal(target, st):
    """Why a unit's file (a Target, lstat ``st``) that is not a regular file is never written: plan and
    apply say it in the same words."""
    link = target.readlink()
    hint = ", or unmask the unit" if link == "/dev/null" else ""
    return ("%s is %s: driftctl never follows or replaces it for a unit (remove it%s)"
            % (target.path, fs_describe_type(file_kind(st), link), hint))


def unit_refusal(params):
    """Why apply would refuse to write the unit's files, or None: a symlink planted on the way, a
    .d that is not a directory, something other than a regular file at a file's path. Checked for
    every file before any is written, so a refused unit leaves nothing half-written."""
    out = []
    if params.get("dropins"):
        target, unsafe = fs_probe_target(UNIT_DIR + "/" + params["name"] + ".d")
        if target is not None:
            with target:
                unsafe = unit_dir_refusal(target)
        if unsafe:
            out.append(unsafe)
    for path, _sha in unit_files(params):
        if out:
            break  # a refused .d: the drop-ins below it are not looked at through it
        target, unsafe = fs_probe_target(path)
        if unsafe:
            out.append(unsafe)
        elif target is not None:
            with target:
                st = target.lstat()
                if st is not None and not stat.S_ISREG(st.st_mode):
                    out.append(unit_file_refusal(target, st))
    return "; ".join(out) or None


def unit_dir_refusal(target):
    """Why the unit's .d directory (a Target) is not used: something other than a directory is there
    (a symlink is never followed to it, even root's), or None."""
    st = target.lstat()
    if st is None or stat.S_ISDIR(st.st_mode):
        return None
    return ("%s is %s, not a directory: driftctl never follows or replaces it for a unit's drop-ins"
            % (target.path, fs_describe_type(file_kind(st), target.readlink())))


def unit_observe_file(path, want_sha, want_text):
    """(sha or None when missing or not a file, its text when it differs and is small, _cas) of one file
    (what is in the way is unit_refusal's business)."""
    target = fs_probe_target(path)[0]
    if target is None:
        return None, None, None
    with target:
        st = target.lstat()
        if st is None:
            return None, None, None
        if not stat.S_ISREG(st.st_mode):
            return None, None, cas_dict(st, None)
        sha, text, _data, fst = target.read(want_text=want_text)
        if want_text and text is None and fst.st_size == 0:
            text = ""
        return sha, (text if sha != want_sha else None), cas_dict(fst, sha)


def unit_observe(params, ctx):
    if ctx.facts.get("init") not in (None, "systemd"):
        raise Failure("%s: this host does not run systemd (init: %s)" % (params["name"], ctx.facts.get("init")))
    if params.get("ensure") == "absent":
        return unit_observe_absent(params, ctx)
    want_text = bool(params.get("_want_content", ctx.want_content))
    observed = {}
    cas = {}
    dropins = {}
    texts = {}
    main = UNIT_DIR + "/" + params["name"]
    for path, sha in unit_files(params):
        got, text, seen = unit_observe_file(path, sha, want_text)
        cas[path] = seen
        if path == main:
            observed["content_sha256"] = got
            if text is not None:
                observed["content"] = text
        else:
            name = path.rsplit("/", 1)[1]
            dropins[name] = got
            if text is not None:
                texts[name] = text
    if params.get("dropins"):
        observed["dropins"] = dropins
        if texts:
            observed["dropin_texts"] = texts
    view = unit_observed_systemd(params, ctx)
    observed.update(needs_reload=view["needs_reload"], enabled=view["enabled"], running=view["running"])
    observed["_cas"] = {"unit_files": cas}
    refusal = unit_refusal(params)
    if refusal:
        observed["_refusal"] = refusal
    return observed


def unit_precheck(params, observed, ctx):
    return observed.get("_refusal")


# ---- ensure: absent


def unit_absent_scan(name):
    """The unit's files in /etc/systemd/system for ``ensure: absent``: ({path: _cas}, whether its .d
    directory exists, refusal or None). Only regular files are ever removed."""
    main = UNIT_DIR + "/" + name
    found, refusals, has_dir = {}, [], False
    target, unsafe = fs_probe_target(main)
    if unsafe or target is None:
        return {}, False, unsafe
    with target:
        st = target.lstat()
        if st is not None and not stat.S_ISREG(st.st_mode):
            refusals.append(unit_file_refusal(target, st))
        elif st is not None:
            found[main] = cas_dict(st, target.read()[0])
    with fs_target(main + ".d") as folder:
        refusal = unit_dir_refusal(folder)
        if refusal:
            refusals.append(refusal)
        elif folder.lstat() is not None:
            has_dir = True
            fd = os.open(folder.name, DIR_FLAGS, dir_fd=folder.dfd)
            try:
                for entry in sorted(os.listdir(fd)):
                    path = main + ".d/" + entry
                    st = lstat_at(fd, entry)
                    if st is None:
                        continue
                    if not stat.S_ISREG(st.st_mode):
                        refusals.append("%s is %s: driftctl removes only regular files from a unit's .d"
                                        % (path, fs_describe_type(file_kind(st))))
                        continue
                    with fs_target(path) as t:
                        found[path] = cas_dict(st, t.read()[0])
            finally:
                os.close(fd)
    return found, has_dir, "; ".join(refusals) or None


def unit_observe_absent(params, ctx):
    found, has_dir, refusal = unit_absent_scan(params["name"])
    view = unit_observed_systemd(params, ctx)
    # what absent compares is what it undoes: a static unit (no [Install], say a package's) stays static
    enabled = view["unit_file_state"] in UNIT_DISABLABLE
    # a refusal is something in the way (a link at the unit file, a directory in its .d): present
    observed = {"ensure": "present" if found or has_dir or refusal else "absent", "enabled": enabled,
                "running": view["running"], "_cas": {"unit_files": found}}
    if refusal:
        observed["_refusal"] = refusal
    return observed


def unit_apply_absent(params, ctx):
    """Stop, disable, remove the unit's files (backed up, each checked against the plan), reload."""
    name = params["name"]
    found, has_dir, refusal = unit_absent_scan(name)
    if refusal:
        raise Failure(refusal)
    view = unit_systemd(name, params.get("timeout"))
    if view["running"]:
        unit_ctl(params, "stop", "--", name)
    changed = False
    if view["unit_file_state"] in UNIT_DISABLABLE:
        unit_ctl(params, "disable", "--no-reload", "--", name)
        changed = True
    expects = ctx.expect
    try:
        for path in sorted(found, key=lambda p: (p == UNIT_DIR + "/" + name, p)):  # drop-ins first
            ctx.expect = unit_expected(expects, path)
            with fs_target(path) as target:
                cas_verify(target, ctx)  # before the backup too: a refused change leaves no trace
                if params.get("backup", True):
                    backup_save(target, ctx)
                target.unlink(ctx)
            changed = True
    finally:
        ctx.expect = expects
    if has_dir:
        with fs_target(UNIT_DIR + "/" + name + ".d") as folder:
            try:
                os.rmdir(folder.name, dir_fd=folder.dfd)
            except OSError as e:
                raise Failure("removing %s: %s" % (folder.path, e.strerror)) from None
        changed = True
    if changed or view["needs_reload"]:
        unit_ctl(params, "daemon-reload")


# ---- apply


def unit_expected(expects, path):
    """The ``_cas`` the plan saw for one of the unit's files (CAS_UNKNOWN: none sent)."""
    if isinstance(expects, dict) and isinstance(expects.get("unit_files"), dict):
        return expects["unit_files"].get(path)
    return CAS_UNKNOWN


def unit_dropin_dir(path):
    """Make the unit's .d directory (0755) when it is missing; never through or over a symlink."""
    target = fs_target(path)
    with target:
        refusal = unit_dir_refusal(target)
        if refusal:
            raise Failure(refusal)
        if target.lstat() is None:
            try:
                os.mkdir(target.name, 0o755, dir_fd=target.dfd)
            except OSError as e:
                raise Failure("creating %s: %s" % (path, e.strerror)) from None


def unit_write(params, path, sha, ctx):
    """Write one file of the unit when its content is not ``sha``; True when it was written."""
    if "/" + params["name"] + ".d/" in path:
        unit_dropin_dir(path.rsplit("/", 1)[0])
    target = fs_target(path)
    with target:
        st = target.lstat()
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise Failure(unit_file_refusal(target, st))
        if st is not None and target.read()[0] == sha:
            return False
        if st is not None:
            cas_verify(target, ctx)  # before the backup too: a refused change leaves no trace
            if params.get("backup", True):
                backup_save(target, ctx)
            mode, uid, gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
        else:
            mode, uid, gid = (0o600 if params.get("_sensitive") else 0o644), -1, -1  # the agent's own: root
        size = params.get("content_size") if sha == params.get("content_sha256") else None
        target.replace(_file_writer({"content_sha256": sha, "path": path}, ctx), mode, uid, gid, ctx=ctx, size=size)
    return True


def unit_set_enabled(params, view, enabled):
    """``systemctl enable|disable --no-reload`` (unmasking first): the caller reloads systemd once."""
    name = params["name"]
    if enabled:
        if view["masked"]:
            unit_ctl(params, "unmask", "--no-reload", "--", name)
        if view["unit_file_state"] != "static":
            unit_ctl(params, "enable", "--no-reload", "--", name)
        return
    if view["unit_file_state"] == "static":
        raise Failure("%s is a static unit (no [Install] section): it cannot be disabled, mask it" % name)
    unit_ctl(params, "disable", "--no-reload", "--", name)


def unit_apply(params, changes, ctx):
    if params.get("ensure") == "absent":
        unit_apply_absent(params, ctx)
        return
    name = params["name"]
    refusal = unit_refusal(params)
    if refusal:
        raise Failure(refusal)
    expects = ctx.expect
    written = False
    try:
        for path, sha in unit_files(params):
            ctx.expect = unit_expected(expects, path)
            written = unit_write(params, path, sha, ctx) or written
    finally:
        ctx.expect = expects
    # UnitFileState is read from the disk: right after the write, before any reload
    view = unit_systemd(name, params.get("timeout"))
    enable = params.get("enabled")
    enabling = enable is not None and view["enabled"] != enable
    if enabling:
        unit_set_enabled(params, view, enable)
    # one reload for the new files and the new links: enable/disable themselves were told not to
    if written or enabling or view["needs_reload"]:
        unit_ctl(params, "daemon-reload")
        view = unit_systemd(name, params.get("timeout"))
    provider = SystemdService(timeout=params.get("timeout"))
    state = params.get("state")
    if state == "stopped":
        if view["running"]:
            unit_ctl(params, "stop", "--", name)
        return
    if state == "started" and not view["running"]:
        provider.set_running(name, True)
        UNIT_STARTED.add(name)
    elif written and view["running"]:
        # the files changed under a running unit: it runs the new ones only after a restart
        unit_ctl(params, "restart", "--", name)
        UNIT_STARTED.add(name)


def unit_refresh(params, ctx):
    """Restart or reload when notified; left alone when stopped, or (re)started by this run already."""
    name = params["name"]
    if params.get("state") == "stopped" or params.get("ensure") == "absent" or name in UNIT_STARTED:
        return
    if not unit_systemd(name, params.get("timeout"))["running"]:
        return
    unit_ctl(params, params.get("refresh") or "restart", "--", name)
    UNIT_STARTED.add(name)


register("unit", unit_observe, unit_apply, unit_refresh, precheck=unit_precheck, prefetch=unit_prefetch)
