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


def _mixed_file(tmp_path: Path) -> tuple[list[str], list[bytes], list[str]]:
    """Two known_hosts files with every kind of line a host can be decided by, and the names asked."""
    blobs = [bytes([i]) * 51 for i in range(1, 9)]  # compared as opaque blobs: no real keys needed
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text(
        line("web1,WEB2", "ssh-ed25519", blobs[0]) + line("[10.0.0.5]:2222", "ssh-ed25519", blobs[1])
        + line("web1", "ecdsa-sha2-nistp256", blobs[2])
        + line("*.example.com,!bad.example.com", "ssh-ed25519", blobs[3])
        + line("web?", "ssh-rsa", blobs[4]) + line(knownhosts.hash_name("db.example.com"), "ssh-ed25519", blobs[5])
        + "@revoked " + line("elsewhere", "ssh-ed25519", blobs[6])
        + line("!web1,web1", "ssh-ed25519", blobs[7]) + "".join(
            line(f"host{i},[h{i}]:2200", "ssh-ed25519", bytes([i % 250 + 1]) * 40) for i in range(300)))
    b.write_text(line("Web1", "ssh-rsa", blobs[7]) + line("host7", "ssh-ed25519", blobs[0]))
    names = ["web1", "WEB2", "web3", "web10", "[10.0.0.5]:2222", "10.0.0.5", "a.example.com", "bad.example.com",
             "db.example.com", "elsewhere", "host7", "[h7]:2200", "HOST250", "[h7]:22", "nowhere"]
    return [str(a), str(tmp_path / "missing"), str(b)], [*blobs, bytes([8]) * 40], names


def test_entries_for_a_host_decide_as_the_whole_files_do(tmp_path: Path) -> None:
    """``load(paths, names)`` keeps only the lines that can decide for those names: every verdict, the
    entries named with it and the recorded key types are those of the whole files, for plain, wildcard,
    negated, hashed and revoked lines, across files and letter case."""
    paths, blobs, names = _mixed_file(tmp_path)
    whole = knownhosts.load(paths)
    for name in names:
        for asked in ([name], [name, "web1"]):
            some = knownhosts.load(paths, asked)
            assert len(some) < len(whole)
            assert knownhosts.recorded_types(some, asked) == knownhosts.recorded_types(whole, asked), asked
            for kind in ("ssh-ed25519", "ssh-rsa"):
                for blob in blobs:
                    want = knownhosts.check(whole, asked, kind, blob)
                    got = knownhosts.check(some, asked, kind, blob)
                    assert (got.verdict, got.recorded) == (want.verdict, want.recorded), (asked, blob[:1])


def test_a_host_among_thousands_reads_its_own_lines_only(tmp_path: Path) -> None:
    """Reaching each of N hosts must not test N lines each: a host of a 3,000-line file gets its own
    lines and the ones that need asking (a wildcard, a revoked key), not the file."""
    kh = tmp_path / "known_hosts"
    kh.write_text("".join(line(f"[10.1.{i // 250}.{i % 250}]:22{i % 3}", kind, bytes([i % 250 + 1]) * 40)
                          for i in range(1000) for kind in ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256"))
                  + line("*.lab", "ssh-ed25519", b"w" * 40) + "@revoked " + line("x", "ssh-rsa", b"r" * 40))
    some = knownhosts.load([str(kh)], ["[10.1.2.7]:220"])
    assert [(e.patterns, e.key_type) for e in some] == [
        (("[10.1.2.7]:220",), "ssh-ed25519"), (("[10.1.2.7]:220",), "ssh-rsa"),
        (("[10.1.2.7]:220",), "ecdsa-sha2-nistp256"), (("*.lab",), "ssh-ed25519"), (("x",), "ssh-rsa")]
