"""known_hosts parsing, matching (plain, [host]:port, hashed by the real ssh-keygen, wildcards) and recording."""

from __future__ import annotations

import base64
import os
import shutil
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from driftctl.transport import knownhosts

needs_ssh_keygen = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")


def keypair(tmp_path: Path, name: str, kind: str = "ed25519") -> tuple[str, bytes]:
    """A real public key made by ssh-keygen: (type, blob)."""
    path = tmp_path / name
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True)
    ktype, b64 = path.with_suffix(".pub").read_text().split()[:2]
    return ktype, base64.b64decode(b64)


def line(names: str, ktype: str, blob: bytes) -> str:
    return f"{names} {ktype} {base64.b64encode(blob).decode()}\n"


@needs_ssh_keygen
def test_fingerprint_matches_ssh_keygen(tmp_path: Path) -> None:
    _, blob = keypair(tmp_path, "k")
    out = subprocess.run(["ssh-keygen", "-lf", str(tmp_path / "k.pub")], capture_output=True, text=True, check=True)
    assert knownhosts.fingerprint(blob) == out.stdout.split()[1]


@needs_ssh_keygen
def test_verdicts_known_unknown_changed(tmp_path: Path) -> None:
    ktype, blob = keypair(tmp_path, "a")
    _, other = keypair(tmp_path, "b")
    kh = tmp_path / "known_hosts"
    kh.write_text("# comment\n\n" + line("[10.0.0.5]:2222,web1", ktype, blob) + "garbage line\n")
    entries = knownhosts.load([str(kh), str(tmp_path / "missing")])
    assert len(entries) == 1 and entries[0].line == 3
    assert knownhosts.check(entries, ["[10.0.0.5]:2222"], ktype, blob).verdict == "known"
    assert knownhosts.check(entries, ["web1"], ktype, blob).verdict == "known"
    # same address, other port: a different host for OpenSSH
    assert knownhosts.check(entries, ["[10.0.0.5]:2200"], ktype, blob).verdict == "unknown"
    assert knownhosts.check(entries, ["10.0.0.5"], ktype, blob).verdict == "unknown"
    changed = knownhosts.check(entries, ["[10.0.0.5]:2222"], ktype, other)
    assert changed.verdict == "changed"
    assert changed.offered_fingerprint == knownhosts.fingerprint(other)
    assert changed.recorded[0].where == f"{kh}:3"


@needs_ssh_keygen
def test_hashed_entries_written_by_ssh_keygen_match(tmp_path: Path) -> None:
    ktype, blob = keypair(tmp_path, "a")
    kh = tmp_path / "known_hosts"
    kh.write_text(line("[127.0.0.1]:2201", ktype, blob) + line("db.example.com", ktype, blob))
    subprocess.run(["ssh-keygen", "-H", "-f", str(kh)], check=True, capture_output=True)
    text = kh.read_text()
    assert "127.0.0.1" not in text and text.startswith("|1|")
    entries = knownhosts.load([str(kh)])
    assert knownhosts.check(entries, ["[127.0.0.1]:2201"], ktype, blob).verdict == "known"
    assert knownhosts.check(entries, ["db.example.com"], ktype, blob).verdict == "known"
    assert knownhosts.check(entries, ["[127.0.0.1]:2202"], ktype, blob).verdict == "unknown"


@needs_ssh_keygen
def test_wildcards_negation_and_literal_brackets(tmp_path: Path) -> None:
    ktype, blob = keypair(tmp_path, "a")
    entries = knownhosts.parse(line("*.example.com,!bad.example.com,web?", ktype, blob), "f")
    assert knownhosts.check(entries, ["a.example.com"], ktype, blob).verdict == "known"
    assert knownhosts.check(entries, ["WEB1"], ktype, blob).verdict == "known"
    assert knownhosts.check(entries, ["bad.example.com"], ktype, blob).verdict == "unknown"
    assert knownhosts.check(entries, ["web10"], ktype, blob).verdict == "unknown"
    # "[" is literal in OpenSSH patterns, not a character class
    entries = knownhosts.parse(line("[1.2.3.4]:22", ktype, blob), "f")
    assert knownhosts.check(entries, ["1"], ktype, blob).verdict == "unknown"


@needs_ssh_keygen
def test_revoked_key_is_refused_even_for_another_name(tmp_path: Path) -> None:
    ktype, blob = keypair(tmp_path, "a")
    text = f"@revoked * {ktype} {base64.b64encode(blob).decode()}\n" + line("host1", ktype, blob)
    entries = knownhosts.parse(text, "f")
    assert knownhosts.check(entries, ["host1"], ktype, blob).verdict == "revoked"


@needs_ssh_keygen
def test_recorded_types_in_file_order(tmp_path: Path) -> None:
    t1, b1 = keypair(tmp_path, "a", "ecdsa")
    t2, b2 = keypair(tmp_path, "b", "ed25519")
    entries = knownhosts.parse(line("h", t1, b1) + line("h", t2, b2) + line("other", t2, b2), "f")
    assert knownhosts.recorded_types(entries, ["h"]) == ["ecdsa-sha2-nistp256", "ssh-ed25519"]


@needs_ssh_keygen
def test_add_creates_a_private_file_and_is_idempotent(tmp_path: Path) -> None:
    ktype, blob = keypair(tmp_path, "a")
    own = tmp_path / "state" / "known_hosts"
    knownhosts.add(str(own), "[127.0.0.1]:2201", ktype, blob)
    knownhosts.add(str(own), "[127.0.0.1]:2201", ktype, blob)
    assert stat.S_IMODE(own.stat().st_mode) == 0o600
    assert own.read_text().count("\n") == 1
    # OpenSSH itself accepts what we wrote
    out = subprocess.run(
        ["ssh-keygen", "-F", "[127.0.0.1]:2201", "-f", str(own)], capture_output=True, text=True, check=True
    )
    assert "[127.0.0.1]:2201" in out.stdout
    assert not [p for p in os.listdir(own.parent) if p.startswith(".known_hosts-")]  # no temp files left


@needs_ssh_keygen
def test_concurrent_adds_lose_nothing(tmp_path: Path) -> None:
    ktype, blob = keypair(tmp_path, "a")
    own = tmp_path / "known_hosts"
    names = [f"[127.0.0.1]:{2200 + i}" for i in range(40)]
    threads = [threading.Thread(target=knownhosts.add, args=(str(own), n, ktype, blob)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    entries = knownhosts.load([str(own)])
    assert sorted(e.patterns[0] for e in entries) == sorted(names)
