"""The parsed-YAML cache: big files come from it, edited files never do, secrets never go into it,
and a directory another user could write is not used."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from driftctl import parsecache, vault, yamlsrc
from driftctl.inventory.loader import load_inventory

CANARY = "canary-5f0e9d1c-not-for-disk"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("DRIFTCTL_CACHE_DIR", str(d))
    return d


@pytest.fixture
def keyring(tmp_path: Path) -> Iterator[str]:
    pw = tmp_path / "pw"
    pw.write_text("hunter2\n")
    vault.install(vault.Keyring.from_sources([str(pw)], []))
    yield "hunter2"
    vault.install(None)


def big_hosts(n: int = 3000, extra: str = "") -> str:
    lines = ["all:", "  vars:", "    ntp: pool.example.com", extra, "  hosts:"]
    lines += [f"    host-{i:05d}:\n      ansible_host: 10.0.{i // 250}.{i % 250}" for i in range(n)]
    return "\n".join(lines) + "\n"


def entries(d: Path) -> list[Path]:
    return sorted(d.glob("*.pickle")) if d.exists() else []


def test_a_big_file_is_parsed_once_and_served_with_its_lines(cache: Path, tmp_path: Path) -> None:
    f = tmp_path / "hosts.yaml"
    f.write_text(big_hosts())
    first = yamlsrc.load_file(f)
    assert len(entries(cache)) == 1
    (e,) = entries(cache)
    assert e.stat().st_mode & 0o777 == 0o600 and cache.stat().st_mode & 0o777 == 0o700
    again = yamlsrc.load_file(f)
    assert again == first
    hosts = again["all"]["hosts"]
    assert hosts.loc("host-00007").line == first["all"]["hosts"].loc("host-00007").line == 20
    assert again["all"]["hosts"]["host-00007"].location == first["all"]["hosts"]["host-00007"].location


def test_the_cached_parse_is_what_is_returned(cache: Path, tmp_path: Path) -> None:
    """The entry really is used: a parse planted under the file's key comes back (so the test above
    is not passing by parsing again)."""
    f = tmp_path / "hosts.yaml"
    text = big_hosts()
    f.write_text(text)
    yamlsrc.load_file(f)
    parsecache.put(str(f), text, {"planted": True})
    assert yamlsrc.load_file(f) == {"planted": True}


def test_an_edited_file_is_parsed_again(cache: Path, tmp_path: Path) -> None:
    f = tmp_path / "hosts.yaml"
    f.write_text(big_hosts())
    yamlsrc.load_file(f)
    f.write_text(big_hosts().replace("10.0.0.7\n", "10.9.9.9\n"))
    assert yamlsrc.load_file(f)["all"]["hosts"]["host-00007"]["ansible_host"] == "10.9.9.9"
    assert len(entries(cache)) == 2


def test_small_files_and_errors_are_not_cached(cache: Path, tmp_path: Path) -> None:
    small = tmp_path / "small.yaml"
    small.write_text("a: 1\n")
    assert yamlsrc.load_file(small) == {"a": 1}
    bad = tmp_path / "bad.yaml"
    bad.write_text(big_hosts() + "  oops: [\n")
    with pytest.raises(yamlsrc.InputError, match="invalid YAML"):
        yamlsrc.load_file(bad)
    assert entries(cache) == []


def test_a_secret_value_is_never_written_to_the_cache(cache: Path, tmp_path: Path, keyring: str) -> None:
    vaulted = vault.encrypt_string("db_password", CANARY, keyring).replace("\n", "\n    ")
    for n, (key, extra) in enumerate([("token", f"    token: !secret {CANARY}"), ("db_password", f"    {vaulted}")]):
        f = tmp_path / f"hosts{n}.yaml"
        f.write_text(big_hosts(extra=extra))
        data = yamlsrc.load_file(f)
        assert data["all"]["vars"][key] == CANARY
    assert entries(cache) == []


def test_a_whole_vaulted_inventory_is_never_written_to_the_cache(cache: Path, tmp_path: Path, keyring: str) -> None:
    inv = tmp_path / "inv"
    inv.mkdir()
    (inv / "hosts.yml").write_text(vault.encrypt(big_hosts(extra=f"    api_key: {CANARY}"), keyring))
    found = load_inventory(inv)
    assert "host-00007" in found.hosts
    assert entries(cache) == []
    for p in cache.rglob("*") if cache.exists() else []:
        assert CANARY.encode() not in p.read_bytes()


def test_an_unsafe_directory_is_not_used(cache: Path, tmp_path: Path) -> None:
    f = tmp_path / "hosts.yaml"
    f.write_text(big_hosts())
    cache.mkdir(mode=0o700)
    cache.chmod(0o777)  # anyone could plant entries
    yamlsrc.load_file(f)
    assert entries(cache) == []
    cache.chmod(0o700)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    cache.rmdir()
    cache.symlink_to(elsewhere)  # a link where the directory should be
    yamlsrc.load_file(f)
    assert list(elsewhere.iterdir()) == []


def test_a_corrupt_or_foreign_entry_is_a_miss(cache: Path, tmp_path: Path) -> None:
    f = tmp_path / "hosts.yaml"
    text = big_hosts()
    f.write_text(text)
    want = yamlsrc.load_file(f)
    (e,) = entries(cache)
    e.write_bytes(b"not a pickle")
    assert yamlsrc.load_file(f) == want
    (e,) = entries(cache)
    parsecache.put(str(f), text, {"planted": True})
    e.chmod(0o644)  # readable by others: not what this cache writes, so not trusted
    assert yamlsrc.load_file(f) == want


def test_off_turns_it_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTCTL_CACHE_DIR", "off")
    assert parsecache.directory() is None
    f = tmp_path / "hosts.yaml"
    f.write_text(big_hosts())
    assert yamlsrc.load_file(f)["all"]["hosts"]["host-00001"]["ansible_host"] == "10.0.0.1"


def test_at_most_max_entries_are_kept(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parsecache, "MAX_ENTRIES", 3)
    for n in range(5):
        f = tmp_path / f"h{n}.yaml"
        f.write_text(big_hosts())
        yamlsrc.load_file(f)
        for k, e in enumerate(sorted(entries(cache), key=lambda p: p.stat().st_mtime)):
            os.utime(e, (k, k))  # distinct ages, oldest first, whatever the clock's resolution
    assert len(entries(cache)) == 3
