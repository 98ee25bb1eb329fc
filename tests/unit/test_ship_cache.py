"""The controller's cache of built agent programs: used only when private and whole, else rebuilt."""

from __future__ import annotations

import hashlib
import os
import zlib
from pathlib import Path

import pytest

from driftctl import ship

SOURCE = '"""doc"""\nx = 1  # a comment\n'


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "driftctl" / "programs" / (hashlib.sha256(SOURCE.encode()).hexdigest() + ".z")


def test_built_once_then_read_from_the_cache(cache: Path) -> None:
    built = ship._built(SOURCE)
    assert zlib.decompress(built).decode() == ship.compact(SOURCE)
    assert oct(cache.stat().st_mode & 0o777) == "0o600" and oct(cache.parent.stat().st_mode & 0o777) == "0o700"
    marker = zlib.compress(b"from the cache")
    cache.write_bytes(marker)
    assert ship._built(SOURCE) == marker


def test_a_truncated_program_is_built_again(cache: Path) -> None:
    ship._built(SOURCE)
    cache.write_bytes(cache.read_bytes()[:5])
    assert zlib.decompress(ship._built(SOURCE)).decode() == ship.compact(SOURCE)


@pytest.mark.parametrize("how", ["group-writable dir", "world-writable file", "symlinked file"])
def test_a_program_others_could_have_written_is_not_used(cache: Path, tmp_path: Path, how: str) -> None:
    ship._built(SOURCE)
    planted = zlib.compress(b"planted")
    if how == "group-writable dir":
        cache.write_bytes(planted)
        os.chmod(cache.parent, 0o770)
    elif how == "world-writable file":
        cache.write_bytes(planted)
        os.chmod(cache, 0o666)
    else:
        (tmp_path / "elsewhere").write_bytes(planted)
        cache.unlink()
        cache.symlink_to(tmp_path / "elsewhere")
    assert ship._built(SOURCE) != planted
