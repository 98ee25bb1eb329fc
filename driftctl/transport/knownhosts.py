"""OpenSSH known_hosts files: look a host key up, and record a newly trusted one.

Supports what real files contain: comma-separated host lists, ``[host]:port`` entries, hashed
entries (``|1|salt|hmac``, OpenSSH's HashKnownHosts), ``*``/``?`` wildcards, ``!negated`` patterns,
``@revoked`` markers (``@cert-authority`` lines are skipped: host certificates are not supported).
Keys are compared by their public blob, so the comparison does not depend on paramiko's key classes.

A verdict is one of: ``known`` (the offered key is recorded for this host), ``unknown`` (no key is
recorded for the host), ``changed`` (other keys are recorded for the host; never accepted
automatically) or ``revoked`` (the key is marked ``@revoked``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import hmac
import os
import re
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

Verdict = Literal["known", "unknown", "changed", "revoked"]

# Serialises writers of the same file inside this process; fcntl.flock does it across processes.
_WRITE_LOCK = threading.Lock()


@dataclass(frozen=True)
class Entry:
    """One key line of a known_hosts file."""

    patterns: tuple[str, ...]
    key_type: str
    blob: bytes
    file: str
    line: int
    marker: str | None = None  # "@revoked" or None

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.blob)

    def matches(self, name: str) -> bool:
        """Whether ``name`` (``host`` or ``[host]:port``) is one of this entry's hosts.

        As in OpenSSH, a matching negated pattern excludes the host whatever else matches.
        """
        matched = False
        for pattern in self.patterns:
            if pattern.startswith("|1|"):
                if _hashed_match(pattern, name):
                    matched = True
            elif pattern.startswith("!"):
                if _wildcard_match(pattern[1:], name):
                    return False
            elif _wildcard_match(pattern, name):
                matched = True
        return matched


@dataclass
class Lookup:
    """The verdict for one offered key, with the entries that decided it."""

    verdict: Verdict
    offered_type: str
    offered_fingerprint: str
    recorded: list[Entry] = field(default_factory=list)  # the host's other keys (changed) / the match

    @property
    def recorded_fingerprints(self) -> list[str]:
        return [f"{e.key_type} {e.fingerprint} ({e.where})" for e in self.recorded]


def fingerprint(blob: bytes) -> str:
    """OpenSSH's SHA256 fingerprint of a public key blob: ``SHA256:<base64, no padding>``."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")


def host_name(host: str, port: int) -> str:
    """The name OpenSSH files a host under: ``host`` on port 22, ``[host]:port`` otherwise."""
    return host if port == 22 else f"[{host}]:{port}"


def _wildcard_match(pattern: str, name: str) -> bool:
    """OpenSSH patterns: ``*`` and ``?`` only (``[`` is literal, as in ``[host]:port``), case-insensitive."""
    if "*" not in pattern and "?" not in pattern:
        return pattern.lower() == name.lower()
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, name, re.IGNORECASE | re.DOTALL) is not None


def _hashed_match(pattern: str, name: str) -> bool:
    try:
        _, _, salt_b64, digest_b64 = pattern.split("|", 3)
        salt = base64.b64decode(salt_b64)
        digest = base64.b64decode(digest_b64)
    except (ValueError, binascii.Error):
        return False
    mine = hmac.new(salt, name.encode("utf-8"), hashlib.sha1).digest()
    return hmac.compare_digest(mine, digest)


def hash_name(name: str, salt: bytes | None = None) -> str:
    """``name`` hashed as OpenSSH's ``ssh-keygen -H`` does (``|1|salt|hmac-sha1``)."""
    salt = salt if salt is not None else os.urandom(20)
    digest = hmac.new(salt, name.encode("utf-8"), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def parse(text: str, file: str) -> list[Entry]:
    """Every usable key line of a known_hosts text. Broken lines are skipped, as OpenSSH does."""
    entries = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        marker = None
        if fields[0].startswith("@"):
            marker, fields = fields[0], fields[1:]
            if marker != "@revoked":  # @cert-authority: certificates are not supported
                continue
        if len(fields) < 3:
            continue
        patterns, key_type, key_b64 = fields[0], fields[1], fields[2]
        try:
            blob = base64.b64decode(key_b64, validate=True)
        except (ValueError, binascii.Error):
            continue
        entries.append(Entry(tuple(patterns.split(",")), key_type, blob, file, lineno, marker))
    return entries


@dataclass(frozen=True)
class _Parsed:
    """A file's entries, and where a name can be found among them without a scan: an entry whose every
    pattern is a plain name (no wildcard, negation or hash) is listed under each of those names; every
    other entry (wildcards, ``!``, hashed, ``@revoked``) has to be asked, and is in ``scan``."""

    entries: list[Entry]
    by_name: dict[str, list[int]]  # lower-cased name -> positions in entries
    scan: list[int]

    @classmethod
    def of(cls, entries: list[Entry]) -> _Parsed:
        by_name: dict[str, list[int]] = {}
        scan: list[int] = []
        for i, e in enumerate(entries):
            if e.marker is None and all(_plain(p) for p in e.patterns):
                for name in {p.lower() for p in e.patterns}:
                    by_name.setdefault(name, []).append(i)
            else:
                scan.append(i)
        return cls(entries, by_name, scan)

    def for_names(self, names: Sequence[str]) -> list[Entry]:
        """The entries that can match one of ``names`` or revoke a key, in file order."""
        found = set(self.scan)
        for n in names:
            found.update(self.by_name.get(n.lower(), ()))
        return [self.entries[i] for i in sorted(found)]


def _plain(pattern: str) -> bool:
    return not (pattern.startswith(("!", "|")) or "*" in pattern or "?" in pattern)


_PARSED: dict[tuple[str, int, int, int], _Parsed] = {}  # (path, inode, size, mtime) -> its entries
_PARSED_LOCK = threading.Lock()


def load(paths: Iterable[str], names: Sequence[str] | None = None) -> list[Entry]:
    """The entries of every existing file in ``paths`` (``~`` expanded), in order; missing files are skipped.
    A file is parsed once while it is unchanged (forty hosts connecting share one known_hosts).

    ``names``: only the entries that can decide for a host known under those names (its own, the
    patterns that may match it, every ``@revoked``): what ``check`` and ``recorded_types`` answer from
    them is what they answer from the whole file, without reading every host's lines for each host
    (a controller reaching N hosts would otherwise test N x N entries)."""
    entries: list[Entry] = []
    for path in paths:
        full = os.path.expanduser(path)
        try:
            with open(full, "rb") as f:
                st = os.fstat(f.fileno())
                key = (full, st.st_ino, st.st_size, st.st_mtime_ns)
                with _PARSED_LOCK:
                    parsed = _PARSED.get(key)
                if parsed is None:
                    parsed = _Parsed.of(parse(f.read().decode("utf-8", errors="replace"), full))
                    with _PARSED_LOCK:
                        if len(_PARSED) > 64:
                            _PARSED.clear()
                        _PARSED[key] = parsed
                entries.extend(parsed.entries if names is None else parsed.for_names(names))
        except FileNotFoundError:
            continue
        except IsADirectoryError:
            continue
    return entries


def check(entries: Sequence[Entry], names: Sequence[str], key_type: str, blob: bytes) -> Lookup:
    """Decide whether the key ``blob`` offered by a host known under any of ``names`` is trusted."""
    offered = fingerprint(blob)
    for e in entries:
        if e.marker == "@revoked" and e.blob == blob:
            return Lookup("revoked", key_type, offered, [e])
    mine = [e for e in entries if e.marker is None and any(e.matches(n) for n in names)]
    for e in mine:
        if e.blob == blob:
            return Lookup("known", key_type, offered, [e])
    if mine:
        return Lookup("changed", key_type, offered, mine)
    return Lookup("unknown", key_type, offered, [])


def recorded_types(entries: Sequence[Entry], names: Sequence[str]) -> list[str]:
    """The key types recorded for a host, in file order (to negotiate a key we can verify)."""
    types: list[str] = []
    for e in entries:
        if e.marker is None and e.key_type not in types and any(e.matches(n) for n in names):
            types.append(e.key_type)
    return types


def add(path: str, name: str, key_type: str, blob: bytes) -> None:
    """Record ``name``'s key in ``path`` atomically (temp file + fsync + rename), creating the file 0600.

    Safe against concurrent writers: threads of this process and other driftctl processes
    (an advisory lock on ``path.lock``). An existing identical line is not duplicated.
    """
    path = os.path.expanduser(path)
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    line = f"{name} {key_type} {base64.b64encode(blob).decode('ascii')}\n"
    with _WRITE_LOCK, open(path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            try:
                with open(path, encoding="utf-8") as f:
                    current = f.read()
            except FileNotFoundError:
                current = ""
            if line in current.splitlines(keepends=True):
                return
            if current and not current.endswith("\n"):
                current += "\n"
            fd, tmp = tempfile.mkstemp(prefix=".known_hosts-", dir=directory)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(current + line)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
