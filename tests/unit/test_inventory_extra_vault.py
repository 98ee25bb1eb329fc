"""Whole vault-encrypted inventory files whose format is told by their content (``hosts`` without an
extension, and ``*.ini``): decrypted first, then read as YAML or INI, every value a secret. Checked
against ``ansible-inventory --vault-password-file`` on files the real ``ansible-vault`` encrypted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from driftctl import vault
from driftctl.errors import InputError
from driftctl.inventory import load_inventory
from driftctl.secret import Secret

YAML_HOSTS = "all:\n  children:\n    web:\n      hosts:\n        web1: {ansible_host: 10.0.0.1, role: front}\n"
INI_HOSTS = "[web]\nweb1 ansible_host=10.0.0.1 role=front\n\n[web:vars]\nport=8080\n"


def _tool(name: str) -> str:
    if os.environ.get("DRIFTCTL_SKIP_ANSIBLE"):
        pytest.skip("DRIFTCTL_SKIP_ANSIBLE=1")
    exe = shutil.which(name, path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if exe is None:
        pytest.fail(f"{name} not found: pip install ansible-core (or set DRIFTCTL_SKIP_ANSIBLE=1)")
    return exe


def _run(args: list[str], home: Path) -> str:
    env = {**os.environ, "ANSIBLE_HOME": str(home), "ANSIBLE_LOCAL_TEMP": str(home / "tmp"), "PYTHONWARNINGS": "ignore"}
    r = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture()
def password(tmp_path: Path) -> Iterator[Path]:
    pw = tmp_path / "pw"
    pw.write_text("inventory-pass\n")
    pw.chmod(0o600)
    yield pw
    vault.install(None)


def _encrypted(tmp_path: Path, name: str, text: str, pw: Path) -> Path:
    inv = tmp_path / "inv"
    inv.mkdir(exist_ok=True)
    path = inv / name
    path.write_text(text)
    _run([_tool("ansible-vault"), "encrypt", "--vault-password-file", str(pw), str(path)], tmp_path / "ah")
    assert path.read_text().startswith("$ANSIBLE_VAULT;1.1;AES256")
    return inv


@pytest.mark.parametrize(("name", "text"), [("hosts", YAML_HOSTS), ("hosts", INI_HOSTS), ("hosts.ini", INI_HOSTS)])
def test_a_vaulted_hosts_file_is_read_by_its_plaintext(tmp_path, password, name, text):
    inv_dir = _encrypted(tmp_path, name, text, password)
    with pytest.raises(InputError, match="no vault password was given"):
        vault.install(None)
        load_inventory(inv_dir)
    vault.install(vault.Keyring.from_sources([str(password)], []))
    inv = load_inventory(inv_dir)
    assert list(inv.hosts) == ["web1"] and inv.members("web") == ["web1"]
    web1 = inv.hosts["web1"]
    assert web1.connection.address == "10.0.0.1"
    assert web1.vars["role"] == "front" and isinstance(web1.vars["role"], Secret)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: _plain(v) for k, v in value.items()}
    return value


@pytest.mark.slow
@pytest.mark.parametrize(("name", "text"), [("hosts", YAML_HOSTS), ("hosts", INI_HOSTS)])
def test_same_as_ansible_inventory(tmp_path, password, name, text):
    inv_dir = _encrypted(tmp_path, name, text, password)
    vault.install(vault.Keyring.from_sources([str(password)], []))
    ours = load_inventory(inv_dir)
    out = _run([_tool("ansible-inventory"), "-i", str(inv_dir), "--vault-password-file", str(password), "--list"],
               tmp_path / "ah")
    theirs = json.loads(out)["_meta"]["hostvars"]
    assert set(ours.hosts) == set(theirs)
    for host in ours.hosts.values():
        assert {k: str.__str__(v) if isinstance(v, Secret) else v for k, v in host.vars.items()} == \
            _plain(theirs[host.name])
