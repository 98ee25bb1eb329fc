"""Where and as whom to connect: the inventory's ConnectionSpec merged with ``~/.ssh/config``.

The inventory's ``address`` is looked up in ssh_config like the name typed after ``ssh``: ``HostName``,
``Port``, ``User``, ``IdentityFile``, ``IdentitiesOnly``, ``ProxyJump``, ``HostKeyAlias`` and
``UserKnownHostsFile`` are honoured, and ``Include``. Values set in the inventory win over ssh_config. A ProxyJump chain
(``[user@]host[:port]``, comma-separated, or ``ssh://`` URLs) names hosts that are looked up the same
way. ``StrictHostKeyChecking`` is deliberately ignored: driftctl never turns host key checks off.
"""

from __future__ import annotations

import getpass
import glob
import os
import re
import shlex
from dataclasses import dataclass, field

import paramiko

from driftctl.errors import ConfigError, Location
from driftctl.model import ConnectionSpec
from driftctl.transport.knownhosts import host_name

DEFAULT_CONFIG = "~/.ssh/config"
MAX_INCLUDE_DEPTH = 16
DEFAULT_KEYS = ("~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa")


@dataclass
class Endpoint:
    """One SSH server to connect to, fully resolved."""

    alias: str  # the name as written (inventory address or ProxyJump entry)
    hostname: str
    port: int
    user: str
    identity_files: list[str] = field(default_factory=list)  # tried first, in order
    identities_only: bool = False  # ssh_config IdentitiesOnly: no agent keys, no default keys
    known_hosts: list[str] = field(default_factory=list)  # from ssh_config UserKnownHostsFile
    key_alias: str | None = None  # ssh_config HostKeyAlias: the name its key is filed under
    jumps: list[Endpoint] = field(default_factory=list)  # ProxyJump chain, first hop first

    @property
    def key_names(self) -> list[str]:
        """The names this server's host key may be recorded under in known_hosts files."""
        if self.key_alias:
            return [host_name(self.key_alias, self.port)]
        names = [host_name(self.hostname, self.port)]
        if self.alias != self.hostname:
            names.append(host_name(self.alias, self.port))
        return names

    def __str__(self) -> str:
        return f"{self.user}@{self.hostname}:{self.port}"


def load_config(path: str | None) -> paramiko.SSHConfig | None:
    """The ssh_config at ``path`` (default ``~/.ssh/config``; a missing default file is no config)."""
    explicit = path is not None
    full = os.path.expanduser(path or DEFAULT_CONFIG)
    if not os.path.isfile(full):
        if explicit:
            raise ConfigError(f"ssh config file not found: {full}", Location("--ssh-config"))
        return None
    try:
        return paramiko.SSHConfig.from_text(_expand_includes(full, 0))
    except (paramiko.SSHException, OSError, ValueError) as e:
        raise ConfigError(f"cannot read ssh config: {e}", Location(full)) from e


_INCLUDE = re.compile(r"^\s*include(?:\s*=\s*|\s+)(.+)$", re.IGNORECASE)


def _expand_includes(path: str, depth: int) -> str:
    """The file's text with ``Include`` lines replaced by the files they name (paramiko has no Include).

    Relative names are under ~/.ssh, as for a user's config; globs are expanded in sorted order. The
    included text is inserted in place, so an Include inside a Host block applies to that block, as in
    OpenSSH (a Host line inside an included file stays active after it, unlike OpenSSH: keep them last).
    """
    if depth > MAX_INCLUDE_DEPTH:
        raise ConfigError(f"ssh config: Include nested deeper than {MAX_INCLUDE_DEPTH} (a loop?)", Location(path))
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    out = []
    for line in lines:
        m = _INCLUDE.match(line)
        if not m:
            out.append(line)
            continue
        for pattern in shlex.split(m.group(1)):
            pattern = os.path.expanduser(pattern)
            if not os.path.isabs(pattern):
                pattern = os.path.join(os.path.expanduser("~/.ssh"), pattern)
            for included in sorted(glob.glob(pattern)):
                if os.path.isfile(included):
                    out.append(_expand_includes(included, depth + 1))
    return "\n".join(out) + "\n"


def _lookup(config: paramiko.SSHConfig | None, alias: str) -> dict[str, object]:
    if config is None:
        return {}
    try:
        return dict(config.lookup(alias))
    except (paramiko.SSHException, ValueError) as e:
        raise ConfigError(f"ssh config for {alias}: {e}") from e


def _port(value: object, where: str) -> int:
    try:
        port = int(str(value))
    except ValueError:
        raise ConfigError(f"{where}: invalid port {value!r}") from None
    if not 0 < port < 65536:
        raise ConfigError(f"{where}: invalid port {value!r}")
    return port


def _files(value: object) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list) else str(value).split()
    return [os.path.expanduser(str(v)) for v in items if str(v).lower() != "none"]


def _endpoint(alias: str, opts: dict[str, object], user: str | None, port: int | None) -> Endpoint:
    return Endpoint(
        alias=alias,
        hostname=str(opts.get("hostname") or alias),
        port=port if port is not None else _port(opts.get("port", 22), f"ssh config Port for {alias}"),
        user=user or str(opts.get("user") or getpass.getuser()),
        identity_files=_files(opts.get("identityfile")),
        identities_only=str(opts.get("identitiesonly", "no")).lower() == "yes",
        known_hosts=_files(opts.get("userknownhostsfile")),
        key_alias=str(opts["hostkeyalias"]) if opts.get("hostkeyalias") else None,
    )


@dataclass(frozen=True)
class Hop:
    """One entry of a ProxyJump value."""

    user: str | None
    host: str
    port: int | None


def parse_jump(text: str) -> list[Hop]:
    """``[user@]host[:port]`` entries (comma-separated, ``ssh://`` allowed), first hop first."""
    hops = []
    for raw in text.split(","):
        item = raw.strip()
        if item.startswith("ssh://"):
            item = item[len("ssh://"):]
        if not item:
            raise ConfigError(f"invalid ProxyJump {text!r}: empty hop")
        user, _, hostport = item.rpartition("@")
        port: int | None = None
        if hostport.startswith("["):  # [v6addr]:port
            host, _, rest = hostport[1:].partition("]")
            if rest.startswith(":"):
                port = _port(rest[1:], f"ProxyJump {text!r}")
        elif hostport.count(":") == 1:
            host, _, p = hostport.partition(":")
            port = _port(p, f"ProxyJump {text!r}")
        else:
            host = hostport
        hops.append(Hop(user or None, host, port))
    return hops


def resolve(spec: ConnectionSpec, config: paramiko.SSHConfig | None) -> Endpoint:
    """The target endpoint for ``spec``, with its ProxyJump chain resolved.

    ConnectionSpec cannot tell an explicit ``port: 22`` from the default, so port 22 lets ssh_config's
    Port apply; any other inventory port wins.
    """
    opts = _lookup(config, spec.address)
    target = _endpoint(spec.address, opts, spec.user, spec.port if spec.port != 22 else None)
    if spec.key_file:
        target.identity_files.insert(0, os.path.expanduser(spec.key_file))
    jump = spec.proxy_jump or (str(opts["proxyjump"]) if opts.get("proxyjump") else None)
    if jump and jump.lower() != "none":
        for h in parse_jump(jump):
            hop = _endpoint(h.host, _lookup(config, h.host), h.user, h.port)
            # A bastion usually accepts the fleet's key: offer it after the hop's own identities.
            if spec.key_file:
                hop.identity_files.append(os.path.expanduser(spec.key_file))
            target.jumps.append(hop)
    return target
