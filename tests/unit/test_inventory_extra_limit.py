"""``--limit @FILE``: Ansible's retry files, one pattern per line, alone or among other parts.

The oracle for what a file selects is ``ansible INV --list-hosts --limit @FILE`` on the same files.
Where Ansible only warns (a line naming nothing), driftctl stops, as it does for any --limit part,
and names the file and line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from driftctl.errors import InventoryError, Location
from driftctl.inventory import limit, load_inventory

HOSTS = "[web]\nweb1\nweb2\nweb3\n\n[db]\ndb1\ndb2\n\n[canary]\nweb3\n"


@pytest.fixture()
def inv(tmp_path):
    (tmp_path / "hosts").write_text(HOSTS)
    return load_inventory(tmp_path / "hosts")


def _file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_retry_file_selects_its_hosts(inv, tmp_path):
    f = _file(tmp_path, "site.retry", "web2\ndb1\n")
    assert limit.select_names(inv, f"@{f}") == ["web2", "db1"]


def test_blank_lines_and_surrounding_spaces_are_skipped(inv, tmp_path):
    f = _file(tmp_path, "r", "\n  web1  \n\n\ndb2\n\n")
    assert limit.select_names(inv, f"@{f}") == ["web1", "db2"]


def test_lines_are_patterns_and_mix_with_other_parts(inv, tmp_path):
    f = _file(tmp_path, "r", "web*\n!canary\n")
    assert limit.select_names(inv, f"@{f}") == ["web1", "web2"]
    g = _file(tmp_path, "g", "!web1\n")
    assert limit.select_names(inv, f"web,@{g}") == ["web2", "web3"]
    assert limit.select_names(inv, f"web:@{g}") == ["web2", "web3"]
    assert limit.select_names(inv, f"@{f}:db1") == ["web1", "web2", "db1"]


def test_relative_to_the_current_directory(inv, tmp_path):
    _file(tmp_path, "failed.txt", "db1\n")
    assert limit.select_names(inv, "@failed.txt", cwd=tmp_path) == ["db1"]


def test_a_line_that_names_nothing_is_an_error_at_its_file_and_line(inv, tmp_path):
    f = _file(tmp_path, "r", "web1\n\nwbe2\n")
    with pytest.raises(InventoryError) as e:
        limit.select_names(inv, f"@{f}")
    assert e.value.location == Location(str(f), 3)
    assert "host pattern 'wbe2' matches no host or group" in e.value.message
    assert e.value.hint == "did you mean 'web2'?"


def test_a_line_is_one_pattern_as_in_ansible(inv, tmp_path):
    f = _file(tmp_path, "r", "web1:db1\n")  # Ansible: one name "web1:db1", which matches nothing
    with pytest.raises(InventoryError, match="one host pattern per line") as e:
        limit.select_names(inv, f"@{f}")
    assert e.value.location == Location(str(f), 1)
    g = _file(tmp_path, "g", "web1,db1\n")
    with pytest.raises(InventoryError, match="one host pattern per line") as e:
        limit.select_names(inv, f"@{g}")
    assert e.value.location == Location(str(g), 1)
    h = _file(tmp_path, "h", "web[0:1]\n")  # a subscript's ':' is part of the one pattern
    assert limit.select_names(inv, f"@{h}") == ["web1", "web2"]


def test_missing_file_directory_and_empty_file_are_errors(inv, tmp_path):
    with pytest.raises(InventoryError, match=r"limit file nope\.retry not found") as e:
        limit.select_names(inv, "@nope.retry", cwd=tmp_path)
    assert e.value.location == Location("--limit")
    with pytest.raises(InventoryError, match="is a directory"):
        limit.select_names(inv, f"@{tmp_path}")
    # Ansible would apply no limit at all (every host): never that
    f = _file(tmp_path, "empty", "\n\n")
    with pytest.raises(InventoryError, match="names no host"):
        limit.select_names(inv, f"@{f}")
    with pytest.raises(InventoryError, match="names no limit file"):
        limit.select_names(inv, "@")


def test_selecting_nothing_names_the_limit_as_written(inv, tmp_path):
    f = _file(tmp_path, "r", "web1\n")
    with pytest.raises(InventoryError, match=r"--limit '@.*:&db' selects no host"):
        limit.select_names(inv, f"@{f}:&db")


def test_without_at_it_is_the_plain_pattern(inv):
    assert limit.select_names(inv, "web:!canary") == ["web1", "web2"]
    assert limit.select_names(inv, None) == ["web1", "web2", "web3", "db1", "db2"]


# -- the oracle -----------------------------------------------------------------------------------


def _ansible_list_hosts(inventory: Path, pattern: str, cwd: Path) -> list[str]:
    if os.environ.get("DRIFTCTL_SKIP_ANSIBLE"):
        pytest.skip("DRIFTCTL_SKIP_ANSIBLE=1")
    exe = shutil.which("ansible", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if exe is None:
        pytest.fail("ansible not found: pip install ansible-core (or set DRIFTCTL_SKIP_ANSIBLE=1)")
    home = cwd / "ansible-home"
    env = {**os.environ, "ANSIBLE_HOME": str(home), "ANSIBLE_LOCAL_TEMP": str(home / "tmp"), "ANSIBLE_NOCOLOR": "1",
           "PYTHONWARNINGS": "ignore"}
    r = subprocess.run([exe, "-i", str(inventory), "all", "--list-hosts", "--limit", pattern], capture_output=True,
                       text=True, timeout=120, env=env, cwd=cwd)
    assert r.returncode == 0, r.stdout + r.stderr
    return [line.strip() for line in r.stdout.splitlines()[1:] if line.strip()]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("files", "pattern"),
    [
        ({"a.retry": "web2\ndb1\n"}, "@a.retry"),
        ({"a.retry": "\nweb1\n\n  db2 \n"}, "@a.retry"),
        ({"a.retry": "web*\n!canary\n"}, "@a.retry"),
        ({"a.retry": "!web1\n"}, "web,@a.retry"),
        ({"a.retry": "web1\n", "b.retry": "db1\n"}, "@a.retry:@b.retry"),
        ({"a.retry": "web\n&canary\n"}, "@a.retry"),
        ({"a.retry": "web[0:1]\n~db[2]\n"}, "@a.retry"),
    ],
)
def test_same_hosts_as_ansible(tmp_path, files, pattern):
    (tmp_path / "hosts").write_text(HOSTS)
    for name, text in files.items():
        _file(tmp_path, name, text)
    ours = limit.select_names(load_inventory(tmp_path / "hosts"), pattern, cwd=tmp_path)
    assert sorted(ours) == sorted(_ansible_list_hosts(tmp_path / "hosts", pattern, tmp_path))
