"""Host side of ``service``: systemd or sysv (init.d scripts), chosen by ``supports(facts)``.

observe -> {"enabled": bool, "running": bool} for the fields the resource manages.
A unit or init script that does not exist is a Failure, never "stopped".

Time: reading a state takes at most SERVICE_QUERY_TIMEOUT; a change (start, stop, enable, restart)
at most the resource's ``timeout``, else the resource's time limit (run() of _core). ``systemctl
start`` waits for the unit's start job, which for a oneshot unit has no time limit of its own: when
the call times out, this resource fails and says that systemd may still be running the job.
"""

import os

from driftctl.agent._core import NOT_KNOWN, Failure, pattern, register, which
from driftctl.agent.spawn import run

# ---- parsers (pure)

# UnitFileState values that mean "starts at boot" (static units have no [Install] and cannot be
# enabled or disabled: they start when something needs them, which is what enabled asks for)
SYSTEMD_ENABLED_STATES = ("enabled", "enabled-runtime", "static", "alias", "generated", "indirect")
SYSTEMD_RUNNING_STATES = ("active", "reloading", "refreshing")
SERVICE_QUERY_TIMEOUT = 60  # seconds for a read: systemctl show, an init script's status
# systemctl verbs that queue a job in systemd and wait for it: a timeout leaves the job running
SERVICE_JOB_VERBS = ("start", "stop", "restart", "reload", "reload-or-restart", "try-restart")


def parse_systemctl_show(text):
    """Output of ``systemctl show -p Prop1,Prop2 UNIT`` (``Key=value`` lines) -> dict."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key:
            out[key.strip()] = value.strip()
    return out


def split_systemctl_show(text):
    """Output of ``systemctl show -p Prop1,Prop2 UNIT1 UNIT2...`` -> one dict per unit, in the order
    asked (systemd prints each unit's lines, an empty line between two units)."""
    units = []
    block = []
    for line in [*text.splitlines(), ""]:
        if line.strip():
            block.append(line)
        elif block:
            units.append(parse_systemctl_show("\n".join(block)))
            block = []
    return units


def systemctl_show(names, props, timeout):
    """The properties ``props`` of each unit of ``names`` (dicts, in the order asked) from one
    ``systemctl show``; a failed call, or one that answers for another number of units, raises."""
    rc, out, err = run(["systemctl", "show", "--no-pager", "-p", props, "--", *names], timeout=timeout)
    if rc != 0:
        raise Failure("systemctl show %s exited %d: %s" % (" ".join(names), rc, (err or out).strip()))
    units = split_systemctl_show(out) if len(names) > 1 else [parse_systemctl_show(out)]
    if len(units) != len(names):
        raise Failure("systemctl show %s answered for %d units" % (" ".join(names), len(units)))
    return units


def systemd_state(props):
    """The properties of one unit -> {"enabled", "running", "masked", "loaded"} (raw states kept)."""
    unit_file = props.get("UnitFileState", "")
    return {
        "loaded": props.get("LoadState") not in ("not-found", ""),
        "masked": props.get("LoadState") == "masked" or unit_file.startswith("masked"),
        "enabled": unit_file in SYSTEMD_ENABLED_STATES,
        "running": props.get("ActiveState") in SYSTEMD_RUNNING_STATES,
        "unit_file_state": unit_file,
        "active_state": props.get("ActiveState", ""),
    }


RC_LINK = r"^S(\d\d)(.+)$"


def sysv_enabled(rc_listing, name, runlevels=("2", "3", "4", "5")):
    """Whether a sysv service starts at boot: an ``S??name`` link in any of the runlevel directories.

    ``rc_listing`` maps a runlevel ("2") to the entries of /etc/rc2.d (what ``ls /etc/rc2.d`` shows).
    """
    for level in runlevels:
        for entry in rc_listing.get(level, []):
            m = pattern(RC_LINK).match(entry)
            if m and m.group(2) == name:
                return True
    return False


def service_timed_out(failure, argv, name):
    """A timed-out call says what systemd may still be doing; any other Failure is passed on."""
    text = str(failure)
    if "timed out" not in text:
        return failure
    if argv[0] == "systemctl" and len(argv) > 1 and argv[1] in SERVICE_JOB_VERBS:
        return Failure("%s; systemd may still be running the %s job of %s (see `systemctl status %s`, "
                       "`systemctl list-jobs`)" % (text, argv[1], name, name))
    return failure


# ---- providers


class ServiceProvider(object):
    name = ""

    def __init__(self, timeout=None):
        self.timeout = timeout  # seconds a change may take; None: the resource's time limit

    @classmethod
    def supports(cls, facts):
        raise NotImplementedError

    def query_timeout(self):
        if self.timeout is not None and self.timeout < SERVICE_QUERY_TIMEOUT:
            return self.timeout
        return SERVICE_QUERY_TIMEOUT

    def state(self, name):
        """{"enabled": bool, "running": bool}; raises Failure when the service does not exist."""
        raise NotImplementedError

    def set_enabled(self, name, enabled):
        raise NotImplementedError

    def set_running(self, name, running):
        raise NotImplementedError

    def refresh(self, name, how):
        raise NotImplementedError


class SystemdService(ServiceProvider):
    name = "systemd"
    PROPS = "LoadState,ActiveState,SubState,UnitFileState,MainPID"

    @classmethod
    def supports(cls, facts):
        return facts.get("init") == "systemd"

    def states(self, names):
        """{name: systemd_state} of every unit of ``names`` from one ``systemctl show``."""
        units = systemctl_show(names, self.PROPS, self.query_timeout())
        return {name: systemd_state(units[i]) for i, name in enumerate(names)}  # no zip(strict=): python 3.8

    def state(self, name, known=NOT_KNOWN):
        """The unit's state (``known``: as a prefetch read it)."""
        st = self.states([name])[name] if known is NOT_KNOWN else known
        if not st["loaded"]:
            raise Failure("no such service: %s (systemd has no unit file for it)" % name)
        return st

    def _ctl(self, *args):
        argv = ["systemctl", *list(args)]
        try:
            run(argv, check=True, timeout=self.timeout)
        except Failure as e:
            raise service_timed_out(e, argv, args[-1]) from None

    def set_enabled(self, name, enabled):
        st = self.state(name)
        if enabled:
            if st["masked"]:
                self._ctl("unmask", "--", name)
            if st["unit_file_state"] == "static":
                return
            self._ctl("enable", "--", name)
        else:
            if st["unit_file_state"] == "static":
                raise Failure("%s is a static unit (no [Install] section): it cannot be disabled, mask it" % name)
            self._ctl("disable", "--", name)

    def set_running(self, name, running):
        self._ctl("start" if running else "stop", "--", name)
        if running:
            st = self.state(name)
            if not st["running"]:
                raise Failure("%s did not stay running (ActiveState=%s)" % (name, st["active_state"]))

    def refresh(self, name, how):
        self._ctl(how, "--", name)


class SysvService(ServiceProvider):
    """init.d scripts: ``service`` to start/stop/query, ``update-rc.d`` (Debian) for boot links."""

    name = "sysv"

    @classmethod
    def supports(cls, facts):
        return facts.get("init") != "systemd"

    def _script(self, name):
        path = os.path.join("/etc/init.d", name)
        if "/" in name or not os.path.isfile(path):
            raise Failure("no such service: %s (no /etc/init.d/%s)" % (name, name))
        return path

    def _service(self, name, action):
        argv = ["service", name, action] if which("service") else [self._script(name), action]
        timeout = self.query_timeout() if action == "status" else self.timeout
        try:
            return run(argv, timeout=timeout)
        except Failure as e:
            raise service_timed_out(e, argv, name) from None

    def state(self, name):
        self._script(name)
        listing = {}
        for level in ("2", "3", "4", "5"):
            try:
                listing[level] = os.listdir("/etc/rc%s.d" % level)
            except OSError:
                listing[level] = []
        rc, _out, _err = self._service(name, "status")
        # LSB: 0 running, 1-3 not running (dead with pid file, dead with lock, stopped), 4 unknown
        return {"enabled": sysv_enabled(listing, name), "running": rc == 0}

    def set_enabled(self, name, enabled):
        self._script(name)
        if which("update-rc.d"):
            if enabled:
                run(["update-rc.d", name, "defaults"], check=True, timeout=self.timeout)
            run(["update-rc.d", name, "enable" if enabled else "disable"], check=True, timeout=self.timeout)
        elif which("chkconfig"):
            run(["chkconfig", name, "on" if enabled else "off"], check=True, timeout=self.timeout)
        else:
            raise Failure("neither update-rc.d nor chkconfig is on this host: cannot change boot links")

    def set_running(self, name, running):
        action = "start" if running else "stop"
        rc, out, err = self._service(name, action)
        if rc != 0:
            raise Failure("service %s %s exited %d: %s" % (name, action, rc, (err or out).strip()[-500:]))

    def refresh(self, name, how):
        if how == "reload-or-restart":
            rc, out, err = self._service(name, "reload")
            if rc == 0:
                return
            how = "restart"
        rc, out, err = self._service(name, how)
        if rc != 0:
            raise Failure("service %s %s exited %d: %s" % (name, how, rc, (err or out).strip()[-500:]))


SERVICE_PROVIDERS = [SystemdService, SysvService]


def choose_service_provider(params, facts):
    """The provider class named by ``provider:``, else the first whose ``supports(facts)`` is true."""
    wanted = params.get("provider")
    for cls in SERVICE_PROVIDERS:
        if (wanted and cls.name == wanted) or (not wanted and cls.supports(facts)):
            return cls
    raise Failure("no service provider %s for this host (init: %s)" % (wanted or "", facts.get("init")))


def service_provider(params, facts):
    return choose_service_provider(params, facts)(timeout=params.get("timeout"))


# ---- handlers


def service_prefetch(params_list, ctx):
    """The state of all of a probe's systemd services from one ``systemctl show``, not one each (sysv
    services ask per resource). Bounded by the shortest ``timeout`` among them."""
    names, timeouts = [], []
    for params in params_list:
        try:
            provider = service_provider(params, ctx.facts)
        except Failure:
            continue  # its own observe says why
        if isinstance(provider, SystemdService) and params["name"] not in names:
            names.append(params["name"])
            timeouts.append(provider.query_timeout())
    if len(names) < 2:
        return
    for name, st in SystemdService(timeout=min(timeouts)).states(names).items():
        ctx.known[("service", "systemd", name)] = st


def service_observe(params, ctx):
    provider = service_provider(params, ctx.facts)
    known = ctx.take_known(("service", provider.name, params["name"]))
    st = provider.state(params["name"]) if known is NOT_KNOWN else provider.state(params["name"], known)
    out = {}
    for key in ("enabled", "running"):
        if params.get(key) is not None:
            out[key] = st[key]
    return out


def service_apply(params, changes, ctx):
    provider = service_provider(params, ctx.facts)
    name = params["name"]
    # boot state first: enabling never starts anything, and a unit just unmasked can then start
    if "enabled" in changes and params.get("enabled") is not None:
        provider.set_enabled(name, params["enabled"])
    if "running" in changes and params.get("running") is not None:
        provider.set_running(name, params["running"])


def service_refresh(params, ctx):
    """Restart or reload when notified; a service that is (and should stay) stopped is left alone."""
    if params.get("running") is False:
        return
    provider = service_provider(params, ctx.facts)
    if params.get("running") is None and not provider.state(params["name"])["running"]:
        return
    provider.refresh(params["name"], params.get("refresh") or "restart")


register("service", service_observe, service_apply, service_refresh, prefetch=service_prefetch)
