"""Host side of ``package``: one provider class per package manager, chosen by ``supports(facts)``.

observe -> {"ensure", "version", "candidate"?}: ``ensure`` is stated in the manifest's terms
(``package_state``), so a package in sync observes exactly as desired and its fingerprint does not
move when a mirror publishes an update; the versions are there for the change line.

Parsers are pure functions of the command output (tested from captured output in tests/unit/data).
Every command runs with LC_ALL=C: apt-cache and rpm translate their labels otherwise.
"""

import os
import re

from driftctl.agent._core import Failure, register, run, which

PKG_STATE = {"apt_updated": False}  # `apt-get update` runs at most once per agent run


def pkg_env(extra=None):
    env = dict(os.environ)
    env["LC_ALL"] = "C"
    env.pop("LANGUAGE", None)
    if extra:
        env.update(extra)
    return env


# ---- parsers (pure)

DPKG_QUERY_FORMAT = "${db:Status-Abbrev}\\t${Version}\\t${binary:Package}\\n"


def parse_dpkg_query(text):
    """Output of ``dpkg-query -W -f=DPKG_QUERY_FORMAT NAME...`` -> {package: version or None}.

    ``db:Status-Abbrev`` is three letters: wanted, current, error. A package counts as installed
    when its current state is installed (i) or only waiting for triggers (W, t); "rc" (removed,
    config files left) and half-installed states count as not installed, so install repairs them.
    ``binary:Package`` carries ":arch" only for foreign or multi-arch-same packages; both the
    qualified and the bare name are keyed.
    """
    out: dict = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) != 3:
            continue
        status, version, package = parts
        installed = len(status) >= 2 and status[1] in "iWt"
        value = version if installed and version else None
        for key in (package, package.split(":")[0]):
            if out.get(key) is None:
                out[key] = value
    return out


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


APK_LINE = re.compile(r"^(?P<name>\S+?)-(?P<version>[0-9][^-\s]*-r[0-9]+)\s+\S+\s+\{[^}]*\}\s+\([^)]*\)(?P<rest>.*)$")


def parse_apk_list(text):
    """Output of ``apk list [--installed] NAME`` -> {name: {"installed": v|None, "candidate": v|None}}.

    Lines look like ``curl-8.5.0-r0 x86_64 {curl} (curl) [installed]`` or
    ``curl-8.6.0-r0 x86_64 {curl} (curl) [upgradable from: curl-8.5.0-r0]``. apk lists the best
    available version of each package, so a listed version is the candidate.
    """
    out: dict = {}
    for line in text.splitlines():
        m = APK_LINE.match(line.strip())
        if not m:
            continue
        name, version, rest = m.group("name"), m.group("version"), m.group("rest")
        entry = out.setdefault(name, {"installed": None, "candidate": None})
        entry["candidate"] = version
        if "[installed]" in rest:
            entry["installed"] = version
        up = re.search(r"\[upgradable from: (\S+)\]", rest)
        if up and up.group(1).startswith(name + "-"):
            entry["installed"] = up.group(1)[len(name) + 1:]
    return out


# ---- providers


class PackageProvider(object):
    """One package manager. ``query`` reads; the other methods write."""

    name = ""
    command = ""

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


class AptPackage(PackageProvider):
    name = "apt"
    command = "apt-get"
    INSTALL = [
        "apt-get", "install", "-y", "--no-install-recommends",
        "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
        # wait for a concurrent apt (unattended-upgrades, apt-daily) instead of failing at once
        "-o", "DPkg::Lock::Timeout=300",
    ]

    def installed(self, name):
        rc, out, err = run(["dpkg-query", "-W", "-f=" + DPKG_QUERY_FORMAT, name], env=pkg_env())
        if rc not in (0, 1):
            raise Failure("dpkg-query failed: %s" % err.strip())
        return parse_dpkg_query(out).get(name)

    def candidate(self, name):
        # no binary cache rebuild: a probe writes nothing, not even /var/cache/apt/*.bin
        _rc, out, _err = run(["apt-cache", "-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache=",
                              "policy", name], env=pkg_env())
        return parse_apt_cache_policy(out).get(name, {}).get("candidate")

    def _lists_missing(self):
        try:
            names = os.listdir("/var/lib/apt/lists")
        except OSError:
            return True
        return not any(n.endswith("_Packages") or "_Packages." in n for n in names)

    def _update_once(self):
        if PKG_STATE["apt_updated"]:
            return
        run(["apt-get", "update", "-o", "DPkg::Lock::Timeout=300"], env=pkg_env(), check=True)
        PKG_STATE["apt_updated"] = True

    def install(self, name, version, known):
        if not known or self._lists_missing():
            self._update_once()
        target = name if version is None else "%s=%s" % (name, version)
        argv = list(self.INSTALL)
        if version is not None:
            argv.append("--allow-downgrades")
        env = pkg_env({"DEBIAN_FRONTEND": "noninteractive"})
        rc, out, err = run([*argv, target], env=env)
        if rc == 100 and not PKG_STATE["apt_updated"] and "Unable to locate" in err + out:
            # the lists were there but stale: refresh once and try again
            self._update_once()
            rc, out, err = run([*argv, target], env=env)
        if rc != 0:
            raise Failure("apt-get install %s exited %d: %s" % (target, rc, _tail(err or out)))

    def remove(self, name):
        env = pkg_env({"DEBIAN_FRONTEND": "noninteractive"})
        run(["apt-get", "remove", "-y", "-o", "DPkg::Lock::Timeout=300", name], env=env, check=True)


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

    def install(self, name, version, known):
        target = name if version is None else "%s-%s" % (name, version)
        verb = "install"
        if version is None and self.installed(name):
            verb = "upgrade"  # ensure=latest of an installed package
        run([self._dnf(), verb, "-y", target], env=pkg_env(), check=True)

    def remove(self, name):
        run([self._dnf(), "remove", "-y", name], env=pkg_env(), check=True)


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

    def install(self, name, version, known):
        target = name if version is None else "%s=%s" % (name, version)
        argv = ["apk", "add"]
        if not known:
            argv.append("--update-cache")
        if version is None and self.installed(name):
            argv.append("--upgrade")
        run([*argv, target], env=pkg_env(), check=True)

    def remove(self, name):
        run(["apk", "del", name], env=pkg_env(), check=True)


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
    return cls()


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


def package_observe(params, ctx):
    """{"ensure": see package_state, "version": installed or None, "candidate"?: the version an
    install or upgrade would bring (only asked for when it matters)}."""
    provider = package_provider(params, ctx.facts)
    ensure = params.get("ensure") or "present"
    installed = provider.installed(params["name"])
    out = {"version": installed}
    candidate = None
    if ensure == "latest" or (installed is None and ensure != "absent"):
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
    known = provider.installed(name) is not None or provider.candidate(name) is not None
    version = None if ensure in ("present", "latest") else ensure
    provider.install(name, version, known)
    if provider.installed(name) is None:
        raise Failure("%s reported success but %s is not installed" % (provider.command, name))


register("package", package_observe, package_apply)
