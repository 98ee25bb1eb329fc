"""Which SSH algorithms driftctl accepts: safe defaults like OpenSSH's, and the setting that widens them.

By default driftctl uses what the installed paramiko supports **minus** what OpenSSH no longer offers
by default: CBC ciphers, 3DES, Blowfish, RC4; MD5 and SHA-1 MACs and 96-bit truncated MACs; SHA-1 key
exchanges and the 1024-bit group1; ``ssh-rsa`` (RSA with SHA-1) and ``ssh-dss`` signatures for host
keys and for our own keys (``rsa-sha2-256``/``rsa-sha2-512`` are fine). Strict key exchange (the
Terrapin fix, ``kex-strict-s-v00@openssh.com``) is always advertised and is required when the server
offers it.

The setting ``ssh_algorithms`` (driftctl.yaml, ``DRIFTCTL_SSH_ALGORITHMS``), and per host the inventory
variable ``driftctl_ssh_algorithms``, change these lists with OpenSSH's syntax::

    ciphers=+aes128-cbc,macs=+hmac-sha1      # append (after the safe ones: used only if nothing better)
    kex=^diffie-hellman-group14-sha1          # put first
    macs=-hmac-sha2-512                       # remove
    ciphers=aes256-ctr,aes128-ctr             # replace the whole list

Categories: ``ciphers``, ``macs``, ``kex``, ``hostkeys``, ``pubkeys`` (OpenSSH's ``Ciphers``, ``MACs``,
``KexAlgorithms``, ``HostKeyAlgorithms``, ``PubkeyAcceptedAlgorithms`` are accepted too). Entries are
separated by commas (a word with ``=`` starts a new category), semicolons or spaces. The host's value
applies after the global one. Every connection that ends up using a weak algorithm is warned about.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import paramiko

from driftctl.errors import ConfigError, Location

SETTING = "ssh_algorithms"
HOST_VARIABLE = "driftctl_ssh_algorithms"

#: category -> (paramiko.Transport attribute with the preference list, attribute with the supported table)
CATEGORIES: dict[str, tuple[str, str]] = {
    "ciphers": ("_preferred_ciphers", "_cipher_info"),
    "macs": ("_preferred_macs", "_mac_info"),
    "kex": ("_preferred_kex", "_kex_info"),
    "hostkeys": ("_preferred_keys", "_key_info"),
    "pubkeys": ("_preferred_pubkeys", "_key_info"),
}
ALIASES = {
    "cipher": "ciphers",
    "mac": "macs",
    "kexalgorithms": "kex",
    "hostkeyalgorithms": "hostkeys",
    "pubkeyacceptedalgorithms": "pubkeys",
    "pubkeyacceptedkeytypes": "pubkeys",
}
#: what each category is called in messages
LABELS = {"ciphers": "ciphers", "macs": "MACs", "kex": "key exchanges", "hostkeys": "host key algorithms",
          "pubkeys": "public key algorithms"}
STRICT_KEX_SERVER = "kex-strict-s-v00@openssh.com"
CERT_SUFFIX = "-cert-v01@openssh.com"


def weakness(category: str, name: str) -> str | None:
    """Why ``name`` is not used by default in ``category`` (None: it is fine)."""
    n = name.lower()
    if category == "ciphers":
        for prefix, why in (("3des", "3DES"), ("des", "DES"), ("blowfish", "Blowfish"), ("arcfour", "RC4"),
                            ("rc4", "RC4"), ("cast128", "CAST-128")):
            if n.startswith(prefix):
                return why
        if "cbc" in n:
            return "CBC mode"
        return None
    if category == "macs":
        if "md5" in n:
            return "MD5"
        if "sha1" in n:
            return "SHA-1"
        if "-96" in n:
            return "truncated to 96 bits"
        if "ripemd" in n:
            return "RIPEMD-160"
        return None
    if category == "kex":
        if "sha1" in n:
            return "SHA-1"
        if "group1-" in n:
            return "1024-bit group"
        return None
    if category in ("hostkeys", "pubkeys"):
        base = n[: -len(CERT_SUFFIX)] if n.endswith(CERT_SUFFIX) else n
        if base == "ssh-rsa":
            return "RSA signatures with SHA-1"
        if base == "ssh-dss":
            return "DSA"
        return None
    raise ValueError(category)


def supported(category: str) -> tuple[str, ...]:
    """Algorithms of ``category`` the installed paramiko implements (certificate variants excluded)."""
    table: Mapping[str, object] = getattr(paramiko.Transport, CATEGORIES[category][1])
    return tuple(a for a in table if not a.endswith(CERT_SUFFIX))


def defaults(category: str) -> tuple[str, ...]:
    """paramiko's preference list for ``category`` without the weak algorithms."""
    preferred: tuple[str, ...] = getattr(paramiko.Transport, CATEGORIES[category][0])
    return tuple(a for a in preferred if weakness(category, a) is None)


@dataclass(frozen=True)
class Change:
    """One ``category=[+-^]names`` entry of the setting."""

    category: str
    op: str  # "+" append, "-" remove, "^" put first, "=" replace
    names: tuple[str, ...]
    source: str  # the setting it came from, for messages

    def apply(self, current: tuple[str, ...]) -> tuple[str, ...]:
        if self.op == "+":
            return current + tuple(n for n in self.names if n not in current)
        if self.op == "-":
            return tuple(a for a in current if a not in self.names)
        if self.op == "^":
            return self.names + tuple(a for a in current if a not in self.names)
        return self.names

    def __str__(self) -> str:
        return f"{self.category}={'' if self.op == '=' else self.op}{','.join(self.names)}"


def parse(text: str | None, setting: str = SETTING, where: Location | None = None) -> tuple[Change, ...]:
    """The entries of one setting value. Unknown categories and algorithms are a ConfigError naming it."""
    if text is None or not text.strip():
        return ()

    def bad(message: str, hint: str | None = None) -> ConfigError:
        return ConfigError(f"{setting}: {message} (in {text!r})", where, hint)

    groups: list[tuple[str, str, list[str]]] = []
    for token in (t for t in re.split(r"[,;\s]+", text.strip()) if t):
        if "=" in token:
            key, _, value = token.partition("=")
            category = ALIASES.get(key.strip().lower(), key.strip().lower())
            if category not in CATEGORIES:
                raise bad(f"unknown category {key!r}", f"categories: {', '.join(CATEGORIES)}")
            op = value[:1] if value[:1] in ("+", "-", "^") else "="
            first = value[1:] if op != "=" else value
            groups.append((category, op, [first] if first else []))
        elif not groups:
            raise bad(f"{token!r} has no category", "write CATEGORY=ALGORITHMS, e.g. ciphers=+aes128-cbc")
        else:
            groups[-1][2].append(token)
    changes = []
    version = paramiko.__version__
    for category, op, names in groups:
        if not names:
            raise bad(f"{category}= names no algorithm")
        known = supported(category)
        for name in names:
            if name not in known:
                what = f"unknown algorithm {name!r}"
                if name.endswith(CERT_SUFFIX):
                    what = f"{name!r}: certificate algorithms follow their key algorithm; name the plain one"
                elif weakness(category, name):  # a real one, that this paramiko dropped for being weak
                    what = f"{name!r} ({weakness(category, name)}) is not implemented by paramiko {version}"
                raise bad(f"{category}: {what}", f"paramiko {version} supports: {', '.join(known)}")
        changes.append(Change(category, op, tuple(dict.fromkeys(names)), setting))
    return tuple(changes)


@dataclass(frozen=True)
class Policy:
    """The algorithm lists for one host, in preference order, and which weak ones were allowed by whom."""

    lists: Mapping[str, tuple[str, ...]]
    allowed_by: Mapping[tuple[str, str], str] = field(default_factory=dict)  # (category, weak name) -> setting

    def get(self, category: str) -> tuple[str, ...]:
        return self.lists[category]

    def allows(self, category: str, name: str) -> bool:
        return name in self.lists[category]

    def apply(self, t: paramiko.Transport) -> None:
        """Make ``t`` (not yet started) offer exactly these lists."""
        for category, (attr, _) in CATEGORIES.items():
            setattr(t, attr, self.lists[category])


def policy(*changes: Iterable[Change], where: Location | None = None) -> Policy:
    """The safe defaults changed by each setting's entries in turn (global first, then the host's)."""
    lists = {c: defaults(c) for c in CATEGORIES}
    allowed_by: dict[tuple[str, str], str] = {}
    for entries in changes:
        for change in entries:
            lists[change.category] = change.apply(lists[change.category])
            for name in change.names:
                if change.op != "-" and weakness(change.category, name):
                    allowed_by[(change.category, name)] = change.source
            if not lists[change.category]:
                raise ConfigError(f"{change.source}: {change} leaves no {LABELS[change.category]}", where)
    kept = {k: v for k, v in allowed_by.items() if v and k[1] in lists[k[0]]}
    return Policy(lists, kept)


# ---- what the server offered


@dataclass(frozen=True)
class Offer:
    """The algorithm lists of the server's KEXINIT (client-to-server direction for ciphers and MACs)."""

    kex: tuple[str, ...]
    hostkeys: tuple[str, ...]
    ciphers: tuple[str, ...]
    macs: tuple[str, ...]
    strict_kex: bool

    @classmethod
    def from_kexinit(cls, payload: bytes) -> Offer:
        """Parse a KEXINIT payload after its message type byte (cookie, then ten name-lists)."""
        m = paramiko.Message(payload)
        m.get_bytes(16)
        lists = [tuple(m.get_list()) for _ in range(10)]
        kex = tuple(a for a in lists[0] if not a.startswith(("ext-info-", "kex-strict-")))
        return cls(kex, lists[1], lists[2], lists[4], STRICT_KEX_SERVER in lists[0])

    def get(self, category: str) -> tuple[str, ...]:
        return tuple(getattr(self, category))


#: the categories a server offers (pubkeys are the client's own signatures: not negotiated in KEXINIT)
NEGOTIATED = ("kex", "hostkeys", "ciphers", "macs")


@dataclass(frozen=True)
class Mismatch:
    """A category where the server offers nothing the policy allows."""

    category: str
    offered: tuple[str, ...]
    allow: tuple[str, ...]  # weak algorithms that, allowed, would make it work (empty: none would)


def mismatches(offer: Offer, pol: Policy) -> list[Mismatch]:
    """Categories without a common algorithm, and what the setting would have to allow."""
    out = []
    for category in NEGOTIATED:
        offered = offer.get(category)
        names = offered
        if category == "hostkeys":  # certificates are negotiated along with their key algorithm
            names = tuple(a[: -len(CERT_SUFFIX)] if a.endswith(CERT_SUFFIX) else a for a in offered)
        if any(pol.allows(category, a) for a in names):
            continue
        known = supported(category)
        usable = [a for a in dict.fromkeys(names) if a in known]
        out.append(Mismatch(category, offered, tuple(usable[:1])))
    return out


def refusal_message(where: str, offer: Offer, missing: list[Mismatch]) -> str:
    """Why the connection to ``where`` was refused, and the setting that would allow it."""
    parts = []
    for m in missing:
        shown = ", ".join(
            f"{a} ({weakness(m.category, a)})" if weakness(m.category, a) else a for a in m.offered
        ) or "nothing"
        parts.append(f"{LABELS[m.category]} {shown}")
    text = f"{where} offers only SSH algorithms driftctl refuses: {'; '.join(parts)}"
    if all(m.allow for m in missing):
        value = ",".join(f"{m.category}=+{','.join(m.allow)}" for m in missing)
        text += (
            f". Best: enable modern algorithms in the server's sshd_config. To accept these weak ones anyway "
            f'(warned about on every run), set {SETTING}: "{value}" in driftctl.yaml or '
            f"DRIFTCTL_{SETTING.upper()}={value} for every host, or {HOST_VARIABLE}: \"{value}\" in the "
            "inventory for this host only"
        )
    else:
        text += (
            f". paramiko {paramiko.__version__} implements none of them, so no setting can allow it: enable modern "
            "algorithms in the server's sshd_config"
        )
    return text


# ---- what a connection ended up using


def weak_in_use(t: paramiko.Transport) -> list[tuple[str, str, str]]:
    """(category, algorithm, weakness) of every weak algorithm the started transport ``t`` negotiated."""
    used: list[tuple[str, str]] = []
    kex = getattr(getattr(t, "kex_engine", None), "name", None)
    if kex:
        used.append(("kex", kex))
    if t.host_key_type:
        used.append(("hostkeys", t.host_key_type))
    ciphers = [c for c in _negotiated(t, "cipher") if c]
    used += [("ciphers", c) for c in ciphers]
    info: Mapping[str, Mapping[str, object]] = getattr(paramiko.Transport, "_cipher_info", {})
    if not any(info.get(c, {}).get("is_aead") for c in ciphers):  # with GCM the MAC is negotiated, not used
        used += [("macs", m) for m in _negotiated(t, "mac") if m]
    out = []
    for category, name in dict.fromkeys(used):
        why = weakness(category, name)
        if why:
            out.append((category, name, why))
    return out


def _negotiated(t: paramiko.Transport, what: str) -> tuple[str | None, str | None]:
    """paramiko's agreed ``cipher`` or ``mac``, (client-to-server, server-to-client)."""
    return getattr(t, f"local_{what}", None), getattr(t, f"remote_{what}", None)


def strict_kex_agreed(t: paramiko.Transport) -> bool:
    return bool(getattr(t, "agreed_on_strict_kex", False))


def terrapin_exposed(t: paramiko.Transport) -> bool:
    """A CBC cipher with an encrypt-then-MAC MAC and no strict key exchange: open to Terrapin."""
    if strict_kex_agreed(t):
        return False
    pairs = zip(_negotiated(t, "cipher"), _negotiated(t, "mac"), strict=True)
    return any(c and m and "cbc" in c and m.endswith("-etm@openssh.com") for c, m in pairs)


class RecordingTransport(paramiko.Transport):
    """A paramiko client transport that keeps the server's first KEXINIT (``offer``) for error messages."""

    offer: Offer | None = None

    def _parse_kex_init(self, m: paramiko.Message) -> None:
        if self.offer is None:
            with contextlib.suppress(Exception):  # a malformed KEXINIT is paramiko's to reject, below
                self.offer = Offer.from_kexinit(m.asbytes())
        super()._parse_kex_init(m)  # type: ignore[misc]
