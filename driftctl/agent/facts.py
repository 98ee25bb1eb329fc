"""System facts, gathered on the host in the same round trip as everything else."""

import os
import sys

from driftctl.agent._core import which


def _os_release():
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            continue
        values = {}
        for line in text.splitlines():
            if "=" in line and not line.startswith("#"):
                key, _, value = line.partition("=")
                values[key.strip()] = value.strip().strip('"').strip("'")
        return values
    return {}


def _init_system():
    if os.path.isdir("/run/systemd/system"):
        return "systemd"
    try:
        with open("/proc/1/comm") as f:
            comm = f.read().strip()
    except OSError:
        comm = ""
    if comm in ("systemd", "init", "openrc-init", "runit", "s6-svscan", "tini", "dumb-init"):
        return "sysv" if comm == "init" else comm
    return comm or "unknown"


def _package_manager():
    for name in ("apt-get", "dnf", "yum", "apk", "zypper", "pacman"):
        if which(name):
            return "apt" if name == "apt-get" else name
    return None


def facts_fqdn():
    """What ``socket.getfqdn()`` says (the first name with a dot of the host name's reverse lookup, or
    the name it resolves to), without importing the idna codec for it (~2 ms of each probe's 50), nor
    socket.py's enums (~2 ms more): its C module does the lookups."""
    import _socket  # for the FQDN only: kept off the start of agents that gather no facts

    name = _socket.gethostname()
    try:
        ascii_name = name.encode("ascii")  # given as bytes, the lookup needs no codec
    except UnicodeEncodeError:
        import socket

        return socket.getfqdn()
    try:
        hostname, aliases, _addresses = _socket.gethostbyaddr(ascii_name)
    except OSError:
        return name
    for candidate in [hostname, *aliases]:
        if "." in candidate:
            return candidate
    return hostname


def gather_facts():
    rel = _os_release()
    uname = os.uname()
    try:
        fqdn = facts_fqdn()
    except OSError:
        fqdn = uname.nodename
    return {
        "os": uname.sysname.lower(),
        "distribution": rel.get("ID", "unknown"),
        "distribution_like": rel.get("ID_LIKE", "").split(),
        "distribution_version": rel.get("VERSION_ID", ""),
        "distribution_codename": rel.get("VERSION_CODENAME", ""),
        "distribution_pretty": rel.get("PRETTY_NAME", ""),
        "kernel": uname.release,
        "architecture": uname.machine,
        "hostname": uname.nodename,
        "fqdn": fqdn,
        "python": "%d.%d.%d" % sys.version_info[:3],
        "python_executable": sys.executable,
        "init": _init_system(),
        "package_manager": _package_manager(),
        "cpus": os.cpu_count() or 1,
        "uid": os.getuid(),
    }
