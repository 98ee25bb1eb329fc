"""Host side of ``package``: one provider class per package manager, chosen by ``supports(facts)``.

observe -> {"ensure", "version", "candidate"?}: ``ensure`` is stated in the manifest's terms
(``package_state``), so a package in sync observes exactly as desired and its fingerprint does not
move when a mirror publishes an update; the versions are there for the change line.

Parsers are pure functions of the command output (tested from captured output in tests/unit/data).
Every command runs with LC_ALL=C: apt-cache and rpm translate their labels otherwise.

Locks: a write waits for another package manager's lock at most ``lock_timeout`` seconds, then fails
this resource only, with the package manager's own words about who holds the lock. Reads (dpkg-query,
apt-cache policy, rpm -q, apk list) take no lock, so a probe never waits. apt waits by itself
(``-o DPkg::Lock::Timeout=N``, apt >= 1.9.11) for the dpkg frontend lock; the lists lock of
``apt-get update`` has no such option and is retried here. dnf waits for its lock forever by default:
it runs with ``exit_on_lock`` and is retried here. apk waits by itself (``apk --wait N``).
"""

import os
import time

from driftctl.agent._core import NOT_KNOWN, Failure, pattern, register, which
from driftctl.agent.spawn import run

PKG_STATE = {"apt_updated": False}  # `apt-get update` runs at most once per agent run
PKG_LOCK_TIMEOUT = 60  # seconds a write waits for another package manager's lock (Ansible's apt default)
PKG_LOCK_RETRY = 1.0  # seconds between tries where the tool does not wait by itself
PKG_LOCK_HINT = ("another package manager is working on this host (unattended-upgrades, apt-daily, a person?) "
                 "and still held the lock after %ss (lock_timeout): try again later, or raise lock_timeout")


def pkg_env(extra=None):
    env = dict(os.environ)
    env["LC_ALL"] = "C"
    env.pop("LANGUAGE", None)
    if extra:
        env.update(extra)
    return env


# ---- parsers (pure)

DPKG_QUERY_FORMAT = "${db:Status-Abbrev}\\t${Version}\\t${binary:Package}\\t${Architecture}\\n"


def dpkg_line(line):
    """One line of DPKG_QUERY_FORMAT -> (status, version, the names it answers for), or None.

    ``binary:Package`` carries ":arch" only for foreign or multi-arch-same packages ("libc6:amd64",
    "bash"); the line answers for that name, the bare name and, with ``Architecture`` (lines of the
    3-field format before it have none), bare:arch: ``bash:amd64`` is the native bash.
    """
    parts = line.split("\t")
    if len(parts) not in (3, 4):
        return None
    status, version, package = parts[:3]
    bare = package.split(":")[0]
    names = [package, bare]
    if len(parts) == 4 and parts[3]:
        names.append("%s:%s" % (bare, parts[3]))
    return status, version, names


def parse_dpkg_query(text):
    """Output of ``dpkg-query -W -f=DPKG_QUERY_FORMAT NAME...`` -> {package: version or None}.

    ``db:Status-Abbrev`` is three letters: wanted, current, error. A package counts as installed
    when its current state is installed (i) or only waiting for triggers (W, t); "rc" (removed,
    config files left) and half-installed states count as not installed, so install repairs them.
    Every name a line answers for is keyed (dpkg_line); the first installed line wins.
    """
    out: dict = {}
    for line in text.splitlines():
        parsed = dpkg_line(line)
        if parsed is None:
            continue
        status, version, names = parsed
        installed = len(status) >= 2 and status[1] in "iWt"
        value = version if installed and version else None
        for key in names:
            if out.get(key) is None:
                out[key] = value
    return out


def dpkg_lines_of(text, name):
    """The lines of a ``dpkg-query -W`` output for several names that answer for ``name`` (dpkg_line):
    what ``dpkg-query -W NAME`` alone prints."""
    keep = []
    for line in text.splitlines():
        parsed = dpkg_line(line)
        if parsed is not None and name in parsed[2]:
            keep.append(line)
    return "".join(line + "\n" for line in keep)


def parse_apt_cache_policy(text):
    """Output of ``apt-cache policy NAME...`` -> {package: {"installed": v|None, "candidate": v|None}}.

    A package apt does not know is simply absent from the output (apt says so on stderr).
    """
    out: dict = {}
    current = None
    for line in text.splitlines():
        if not line.startswith(" ") and line.endswith(":"):
            current = line[:-1]
            out[current] = {"installed": None, "candidate": None}
            continue
        if current is None:
            continue
        stripped = line.strip()
        for label, key in (("Installed:", "installed"), ("Candidate:", "candidate")):
            if stripped.startswith(label):
                value = stripped[len(label):].strip()
                out[current][key] = None if value in ("(none)", "") else value
    return out


RPM_QUERY_FORMAT = "%{NAME}\\t%{EPOCH}\\t%{VERSION}-%{RELEASE}\\t%{ARCH}\\n"
DNF_QUERY_FORMAT = "%{name}\\t%{epoch}\\t%{version}-%{release}\\t%{arch}\\n"


def parse_rpm_query(text):
    """Output of ``rpm -q --qf RPM_QUERY_FORMAT NAME`` (and of ``dnf repoquery --qf`` with the same
    fields) -> {name: "[epoch:]version-release"}.

    rpm prints "package NAME is not installed" for a missing package (no tab: skipped). An epoch of
    "(none)" or "0" is left out, as rpm and dnf show versions. With several versions or arches
    installed (kernels, multilib) the last line wins: rpm lists them oldest first.
    """
    out: dict = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) != 4:
            continue
        name, epoch, version, _arch = parts
        if epoch not in ("(none)", "0", ""):
            version = "%s:%s" % (epoch, version)
        out[name] = version
    return out


APK_LINE = r"^(?P<name>\S+?)-(?P<version>[0-9][^-\s]*-r[0-9]+)\s+\S+\s+\{[^}]*\}\s+\([^)]*\)(?P<rest>.*)$"


def parse_apk_list(text):
    """Output of ``apk list [--installed] NAME`` -> {name: {"installed": v|None, "candidate": v|None}}.

    Lines look like ``curl-8.5.0-r0 x86_64 {curl} (curl) [installed]`` or
    ``curl-8.6.0-r0 x86_64 {curl} (curl) [upgradable from: curl-8.5.0-r0]``. apk lists the best
    available version of each package, so a listed version is the candidate.
    """
    out: dict = {}
    for line in text.splitlines():
        m = pattern(APK_LINE).match(line.strip())
        if not m:
            continue
        name, version, rest = m.group("name"), m.group("version"), m.group("rest")
        entry = out.setdefault(name, {"installed": None, "candidate": None})
        entry["candidate"] = version
        if "[installed]" in rest:
            entry["installed"] = version
        up = pattern(r"\[upgradable from: (\S+)\]").search(rest)
        if up and up.group(1).startswith(name + "-"):
            entry["installed"] = up.group(1)[len(name) + 1:]
    return out


# apt 2: "Could not get lock PATH. It is held by process PID (NAME)"; apt 1.x: "... PATH - open (11: ...)"
APT_LOCK_LINE = r"Could not get lock \S.*"


def parse_apt_lock(text):
    """Output of an apt-get that could not take a lock (stdout and stderr together) -> apt's own line
    naming the lock and its holder ("Could not get lock /var/lib/dpkg/lock-frontend. It is held by
    process 1234 (unattended-upgr)"), or None when it is not a lock failure.

    With ``DPkg::Lock::Timeout`` apt says it while waiting ("Waiting for cache lock: ...", on stdout,
    once a second); without, as an error ("E: ..."). The last one wins: the holder may have changed.
    """
    found = None
    for line in text.splitlines():
        m = pattern(APT_LOCK_LINE).search(line)
        if m:
            found = m.group(0).rstrip(". ")
    return found


def parse_dnf_lock(text):
    """Output of a dnf or yum that found its lock taken (run with exit_on_lock) -> the line saying so,
    ("RPMDB already locked by 1234", "Existing lock /var/run/yum.pid: another copy is running as
    pid 1234."), or None."""
    for line in reversed(text.splitlines()):
        if "locked by" in line or "Existing lock" in line or "another copy is running" in line:
            return line.strip()
    return None


def parse_apk_lock(text):
    """Output of an apk that could not lock its database (after ``--wait``) -> apk's line, or None."""
    for line in reversed(text.splitlines()):
        if "lock" in line.lower() and ("ERROR" in line or "Unable" in line):
            return line.strip()
    return None


def pkg_lock_failure(command, what, lock_line, lock_timeout):
    """The Failure of a write that never got the package manager's lock: its own line, then the hint."""
    return Failure("%s %s: %s; %s" % (command, what, lock_line, PKG_LOCK_HINT % pkg_seconds(lock_timeout)))


def pkg_seconds(value):
    return "%g" % value


# ---- argv (pure: what each provider runs, given the resource's lock_timeout)


def apt_install_argv(target, lock_timeout, allow_downgrades=False):
    argv = [
        "apt-get", "install", "-y", "--no-install-recommends",
        "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
        # wait for a concurrent apt (unattended-upgrades, apt-daily) a bounded time, then fail
        "-o", "DPkg::Lock::Timeout=%d" % int(lock_timeout),
    ]
    if allow_downgrades:
        argv.append("--allow-downgrades")
    return [*argv, target]


def apt_remove_argv(name, lock_timeout):
    return ["apt-get", "remove", "-y", "-o", "DPkg::Lock::Timeout=%d" % int(lock_timeout), name]


def apt_update_argv(lock_timeout):
    # apt-get update takes the lists lock, which DPkg::Lock::Timeout does not cover (apt 2.6): the
    # option is for apt versions that do, the retry loop for the others
    return ["apt-get", "update", "-o", "DPkg::Lock::Timeout=%d" % int(lock_timeout)]


def dnf_argv(dnf, verb, target):
    # dnf waits for a lock held by another dnf forever, yum too: exit at once, and retry here
    return [dnf, "--setopt=exit_on_lock=True", verb, "-y", target]


def apk_argv(verb, target, lock_timeout, extra=()):
    return ["apk", "--wait", "%d" % int(lock_timeout), verb, *extra, target]


# ---- providers


class PackageProvider(object):
    """One package manager. ``query`` reads; the other methods write, waiting at most ``lock_timeout``
    seconds for another package manager's lock."""

    name = ""
    command = ""

    def __init__(self, lock_timeout=PKG_LOCK_TIMEOUT):
        self.lock_timeout = PKG_LOCK_TIMEOUT if lock_timeout is None else lock_timeout

    @classmethod
    def supports(cls, facts):
        return facts.get("package_manager") == cls.name

    def installed(self, name):
        """The installed version, or None."""
        raise NotImplementedError

    def candidate(self, name):
        """The version an install would bring, or None when the manager does not know the package."""
        raise NotImplementedError

    def install(self, name, version, known):
        raise NotImplementedError

    def remove(self, name):
        raise NotImplementedError

    def _write(self, argv, what, lock_line_of, env=None):
        """Run a write; while it fails on a lock, try again until lock_timeout has passed since the
        first try (a tool that waits by itself has used it up by then), then fail with the tool's line
        about the lock. Returns (rc, out, err) of a run that did not fail on a lock."""
        started = time.monotonic()
        while True:
            rc, out, err = run(argv, env=env or pkg_env())
            line = lock_line_of(out + "\n" + err) if rc != 0 else None
            if line is None:
                return rc, out, err
            if time.monotonic() - started + PKG_LOCK_RETRY > self.lock_timeout:
                raise pkg_lock_failure(self.command, what, line, self.lock_timeout)
            time.sleep(PKG_LOCK_RETRY)


class AptPackage(PackageProvider):
    name = "apt"
    command = "apt-get"

    def installed(self, name):
        return self.installed_many([name])[name]

    def installed_many(self, names):
        """{name: installed version or None} from one dpkg-query for all ``names``."""
        # dpkg-query reads /var/lib/dpkg/status without any lock: a held dpkg lock never blocks a probe
        rc, out, err = run(["dpkg-query", "-W", "-f=" + DPKG_QUERY_FORMAT, *names], env=pkg_env())
        if rc not in (0, 1):  # 1: some name matched no package
            raise Failure("dpkg-query failed: %s" % err.strip())
        return {name: parse_dpkg_query(dpkg_lines_of(out, name)).get(name) for name in names}

    def candidate(self, name):
        return self.candidates([name])[name]

    def candidates(self, names, strict=False):
        """{name: candidate version or None} from one ``apt-cache policy`` for all ``names``: it reads
        every package list without a binary cache, ~0.7 s of CPU with Debian's main lists, per call.
        ``strict``: a failed call raises rather than knowing no candidate."""
        # no binary cache rebuild: a probe writes nothing, not even /var/cache/apt/*.bin
        rc, out, err = run(["apt-cache", "-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache=",
                            "policy", *names], env=pkg_env())
        if strict and rc != 0:
            raise Failure("apt-cache policy exited %d: %s" % (rc, _tail(err or out)))
        policy = parse_apt_cache_policy(out)
        return {name: policy.get(name, {}).get("candidate") for name in names}

    def _lists_missing(self):
        try:
            names = os.listdir("/var/lib/apt/lists")
        except OSError:
            return True
        return not any(n.endswith("_Packages") or "_Packages." in n for n in names)

    def _update_once(self):
        if PKG_STATE["apt_updated"]:
            return
        rc, out, err = self._write(apt_update_argv(self.lock_timeout), "update", parse_apt_lock)
        if rc != 0:
            raise Failure("apt-get update exited %d: %s" % (rc, _tail(err or out)))
        PKG_STATE["apt_updated"] = True

    def install(self, name, version, known):
        if not known or self._lists_missing():
            self._update_once()
        target = name if version is None else "%s=%s" % (name, version)
        argv = apt_install_argv(target, self.lock_timeout, allow_downgrades=version is not None)
        env = pkg_env({"DEBIAN_FRONTEND": "noninteractive"})
        what = "install %s" % target
        rc, out, err = self._write(argv, what, parse_apt_lock, env)
        if rc == 100 and not PKG_STATE["apt_updated"] and "Unable to locate" in err + out:
            # the lists were there but stale: refresh once and try again
            self._update_once()
            rc, out, err = self._write(argv, what, parse_apt_lock, env)
        if rc != 0:
            raise Failure("apt-get install %s exited %d: %s" % (target, rc, _tail(err or out)))

    def remove(self, name):
        env = pkg_env({"DEBIAN_FRONTEND": "noninteractive"})
        rc, out, err = self._write(apt_remove_argv(name, self.lock_timeout), "remove %s" % name, parse_apt_lock, env)
        if rc != 0:
            raise Failure("apt-get remove %s exited %d: %s" % (name, rc, _tail(err or out)))


class DnfPackage(PackageProvider):
    name = "dnf"
    command = "dnf"

    @classmethod
    def supports(cls, facts):
        return facts.get("package_manager") in ("dnf", "yum")

    def _dnf(self):
        return (which("dnf") and "dnf") or "yum"

    def installed(self, name):
        _rc, out, _err = run(["rpm", "-q", "--qf", RPM_QUERY_FORMAT, name], env=pkg_env())
        return parse_rpm_query(out).get(name)

    def candidate(self, name):
        # dnf's --qf takes the same tags in lower case; the output format is RPM_QUERY_FORMAT's
        _rc, out, _err = run(
            # --cacheonly: a probe never refreshes repository metadata (a write, and network traffic)
            [self._dnf(), "-q", "--cacheonly", "repoquery", "--latest-limit=1", "--qf", DNF_QUERY_FORMAT, name],
            env=pkg_env(),
        )
        return parse_rpm_query(out).get(name)

    def _run_dnf(self, verb, target):
        dnf = self._dnf()
        rc, out, err = self._write(dnf_argv(dnf, verb, target), "%s %s" % (verb, target), parse_dnf_lock)
        if rc != 0:
            raise Failure("%s %s %s exited %d: %s" % (dnf, verb, target, rc, _tail(err or out)))

    def install(self, name, version, known):
        target = name if version is None else "%s-%s" % (name, version)
        verb = "install"
        if version is None and self.installed(name):
            verb = "upgrade"  # ensure=latest of an installed package
        self._run_dnf(verb, target)

    def remove(self, name):
        self._run_dnf("remove", name)


class ApkPackage(PackageProvider):
    name = "apk"
    command = "apk"

    def installed(self, name):
        rc, out, _err = run(["apk", "info", "-e", name], env=pkg_env())
        if rc != 0 or not out.strip():
            return None
        rc, out, _err = run(["apk", "list", "--installed", name], env=pkg_env())
        return parse_apk_list(out).get(name, {}).get("installed")

    def candidate(self, name):
        _rc, out, _err = run(["apk", "list", name], env=pkg_env())
        return parse_apk_list(out).get(name, {}).get("candidate")

    def _run_apk(self, verb, target, extra=()):
        # apk waits for its database lock by itself (--wait): one try, its own message when it gave up
        rc, out, err = run(apk_argv(verb, target, self.lock_timeout, extra), env=pkg_env())
        if rc != 0:
            line = parse_apk_lock(out + "\n" + err)
            if line is not None:
                raise pkg_lock_failure("apk", "%s %s" % (verb, target), line, self.lock_timeout)
            raise Failure("apk %s %s exited %d: %s" % (verb, target, rc, _tail(err or out)))

    def install(self, name, version, known):
        target = name if version is None else "%s=%s" % (name, version)
        extra = []
        if not known:
            extra.append("--update-cache")
        if version is None and self.installed(name):
            extra.append("--upgrade")
        self._run_apk("add", target, extra)

    def remove(self, name):
        self._run_apk("del", name)


PACKAGE_PROVIDERS = [AptPackage, DnfPackage, ApkPackage]


def choose_package_provider(params, facts):
    """The provider class named by ``provider:``, else the first whose ``supports(facts)`` is true."""
    wanted = params.get("provider")
    for cls in PACKAGE_PROVIDERS:
        if (wanted and cls.name == wanted) or (not wanted and cls.supports(facts)):
            return cls
    if wanted:
        raise Failure("no package provider named %r" % wanted)
    raise Failure("no package provider for this host (package manager: %s)" % facts.get("package_manager"))


def package_provider(params, facts):
    cls = choose_package_provider(params, facts)
    if not which(cls.command):
        raise Failure("package provider %s needs %s, which this host does not have" % (cls.name, cls.command))
    return cls(lock_timeout=params.get("lock_timeout"))


def _tail(text, lines=8):
    return " | ".join(text.strip().splitlines()[-lines:])[-1500:]


# ---- handlers


def package_state(ensure, installed, candidate):
    """What ``ensure`` reads as on the host, in the manifest's terms, so that an observed state in
    sync equals the desired one: "present" for any installed version when present is wanted,
    "latest" when the installed version is the candidate, else the installed version or "absent"."""
    if installed is None:
        return "absent"
    if ensure == "present":
        return "present"
    if ensure == "latest" and (candidate is None or candidate == installed):
        return "latest"
    return installed


def _apt_packages(params_list, ctx):
    """{name: ensure} of the resources apt manages, in their order; none on a host without apt-get
    (each resource then says so itself), nor those whose provider cannot be chosen (likewise)."""
    if not which(AptPackage.command):
        return {}
    ensure_of = {}
    for params in params_list:
        try:
            apt = choose_package_provider(params, ctx.facts) is AptPackage
        except Failure:
            continue
        if apt:
            ensure_of.setdefault(params["name"], params.get("ensure") or "present")
    return ensure_of


def package_prefetch(params_list, ctx):
    """The installed versions of all of a probe's apt packages from one dpkg-query, and the candidates
    of those that need one from one apt-cache policy, not one each (the other package managers ask
    per resource)."""
    ensure_of = _apt_packages(params_list, ctx)
    if len(ensure_of) < 2:
        return
    apt = AptPackage()
    installed = apt.installed_many(list(ensure_of))
    known = {("package", "apt", name): version for name, version in installed.items()}
    wanting = [name for name, ensure in ensure_of.items() if wants_candidate(ensure, installed[name])]
    if len(wanting) > 1:
        try:
            candidates = apt.candidates(wanting, strict=True)
        except Failure:
            candidates = {}  # those ask for themselves; the installed versions are known all the same
        known.update((("candidate", "apt", name), version) for name, version in candidates.items())
    ctx.known.update(known)


def package_apply_prefetch(params_list, ctx):
    """Before an apply installs two or more apt packages, their candidates from one apt-cache policy:
    package_apply asks whether apt knows each (to refresh the lists first when it does not), ~0.7 s
    of the host's CPU a question."""
    names = [name for name, ensure in _apt_packages(params_list, ctx).items() if ensure != "absent"]
    if len(names) < 2:
        return
    for name, version in AptPackage().candidates(names, strict=True).items():
        ctx.known[("apply-candidate", "apt", name)] = version


def wants_candidate(ensure, installed):
    """Whether observe asks what an install or upgrade would bring: it matters for latest, and for a
    package to install (the version in the change line)."""
    return ensure == "latest" or (installed is None and ensure != "absent")


def package_observe(params, ctx):
    """{"ensure": see package_state, "version": installed or None, "candidate"?: the version an
    install or upgrade would bring (only asked for when it matters)}."""
    provider = package_provider(params, ctx.facts)
    ensure = params.get("ensure") or "present"
    installed = ctx.take_known(("package", provider.name, params["name"]))
    if installed is NOT_KNOWN:
        installed = provider.installed(params["name"])
    out = {"version": installed}
    candidate = None
    if wants_candidate(ensure, installed):
        candidate = ctx.take_known(("candidate", provider.name, params["name"]))
        if candidate is NOT_KNOWN:
            candidate = provider.candidate(params["name"])
        out["candidate"] = candidate
    out["ensure"] = package_state(ensure, installed, candidate)
    return out


def package_apply(params, changes, ctx):
    if "ensure" not in changes:
        return
    provider = package_provider(params, ctx.facts)
    name = params["name"]
    ensure = params.get("ensure") or "present"
    if ensure == "absent":
        provider.remove(name)
        return
    known = provider.installed(name) is not None
    if not known:
        candidate = ctx.take_known(("apply-candidate", provider.name, name))  # asked before any change
        if candidate is NOT_KNOWN or PKG_STATE["apt_updated"]:
            candidate = provider.candidate(name)
        known = candidate is not None
    version = None if ensure in ("present", "latest") else ensure
    provider.install(name, version, known)
    if provider.installed(name) is None:
        raise Failure("%s reported success but %s is not installed" % (provider.command, name))


register("package", package_observe, package_apply, prefetch=package_prefetch,
         apply_prefetch=package_apply_prefetch)
