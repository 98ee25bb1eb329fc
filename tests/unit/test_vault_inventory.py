"""A vaulted inventory loads as ``ansible-inventory --list --vault-id ...`` loads it.

The inventory (tests/unit/data/vault/inventory, encrypted by the real ansible-vault) holds ``!vault``
values of format 1.1 and 1.2 in group_vars/web.yml, a whole encrypted group_vars/all.yml (1.1) and a
whole encrypted host_vars/web1/secrets.yml (1.2, id prod). ansible-inventory prints ``!vault`` values
still encrypted (``{"__ansible_vault": ...}``): those are decrypted with ``ansible-vault decrypt``, so
both the variables and the plaintexts come from ansible-core.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from driftctl import vault
from driftctl.errors import InventoryError
from driftctl.inventory import load_inventory
from driftctl.secret import Secret

DATA = Path(__file__).parent / "data" / "vault"
pytestmark = pytest.mark.slow  # ansible-inventory and ansible-vault take a second or two each


@pytest.fixture(autouse=True)
def no_keyring():
    vault.install(None)
    yield
    vault.install(None)


def _tool(name: str) -> str:
    if os.environ.get("DRIFTCTL_SKIP_ANSIBLE"):
        pytest.skip("DRIFTCTL_SKIP_ANSIBLE=1")
    found = shutil.which(name, path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        pytest.fail(f"{name} not found: pip install ansible-core (or set DRIFTCTL_SKIP_ANSIBLE=1)")
    return found


def _env() -> dict[str, str]:
    return {**os.environ, "ANSIBLE_HOME": tempfile.mkdtemp(prefix="driftctl-ah-"), "PYTHONWARNINGS": "ignore"}


@pytest.fixture
def inventory(tmp_path: Path) -> tuple[Path, list[str]]:
    """A copy of the inventory and its password files (mode 0600), and the --vault-id arguments."""
    shutil.copytree(DATA / "inventory", tmp_path / "inventory")
    ids = []
    for label in ("default", "prod"):
        p = tmp_path / f"pw-{label}"
        shutil.copy(DATA / f"pw-{label}", p)
        p.chmod(0o600)
        ids.append(f"{label}@{p}")
    return tmp_path / "inventory", ids


def _ansible_vars(path: Path, ids: list[str], files: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    args = [a for i in ids for a in ("--vault-id", i)] + [a for f in files for a in ("--vault-password-file", f)]
    r = subprocess.run([_tool("ansible-inventory"), "-i", str(path), "--list", *args], capture_output=True,
                       text=True, timeout=180, env=_env())
    assert r.returncode == 0, r.stderr
    import json

    hostvars: dict[str, dict[str, Any]] = json.loads(r.stdout)["_meta"]["hostvars"]
    plain: dict[str, str] = {}

    def open_vault(value: Any) -> Any:
        if isinstance(value, dict) and set(value) == {"__ansible_vault"}:
            envelope = value["__ansible_vault"]
            if envelope not in plain:
                d = subprocess.run([_tool("ansible-vault"), "decrypt", *args, "--output", "-", "-"], input=envelope,
                                   capture_output=True, text=True, timeout=180, env=_env())
                assert d.returncode == 0, d.stderr
                plain[envelope] = d.stdout
            return plain[envelope]
        if isinstance(value, dict):
            return {k: open_vault(v) for k, v in value.items()}
        if isinstance(value, list):
            return [open_vault(v) for v in value]
        return value

    return {h: open_vault(v) for h, v in hostvars.items()}


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


VAULTED = {"db_password", "api_token", "multiline_key", "unicode_secret", "block16"}  # !vault values
WHOLE = {"ntp_server", "site_secret", "web1_key"}  # string values of whole encrypted files (web.yml sets nested)


@pytest.mark.parametrize("how", ["--vault-id", "--vault-password-file"])
def test_vaulted_inventory_same_as_ansible_inventory(inventory, how):
    path, ids = inventory
    files: tuple[str, ...] = ()
    if how == "--vault-password-file":  # the default id's password as a plain password file
        files, ids = (ids[0].partition("@")[2],), ids[1:]
    vault.install(vault.Keyring.from_sources(files, ids))
    ours = load_inventory(path)
    theirs = _ansible_vars(path, ids, files)
    assert set(ours.hosts) == set(theirs) == {"web1", "web2"}
    for name, host in ours.hosts.items():
        assert host.vars == theirs[name], name
        for key, value in host.vars.items():
            secret = key in VAULTED or key in WHOLE
            for s in _strings(value):
                assert isinstance(s, Secret) == secret, (name, key)
    assert ours.hosts["web1"].vars["multiline_key"] == "-----BEGIN KEY-----\nAAAA\nBBBB\n-----END KEY-----\n"
    assert ours.hosts["web1"].vars["web1_port"] == 2222  # a whole file's numbers stay numbers


def test_whole_encrypted_hosts_file_same_as_ansible(inventory, tmp_path):
    """hosts.yml encrypted as a whole (by driftctl: ansible-inventory must read it too); its variables
    are secrets, its host and group names are not."""
    path, ids = inventory
    hosts = path / "hosts.yml"
    hosts.write_text(vault.encrypt(hosts.read_text().replace("app_port: 8080", "app_port: '8080'\n"
                                                             "          app_pass: hosts-file-secret"),
                                   (tmp_path / "pw-prod").read_text().strip(), "prod"))
    vault.install(vault.Keyring.from_sources([], ids))
    ours = load_inventory(path)
    theirs = _ansible_vars(path, ids)
    for name, host in ours.hosts.items():
        assert host.vars == theirs[name], name
    web2 = ours.hosts["web2"].vars
    assert web2["app_pass"] == "hosts-file-secret" and isinstance(web2["app_pass"], Secret)
    assert isinstance(web2["app_port"], Secret)
    assert not any(isinstance(g, Secret) for g in ours.hosts["web2"].groups)


def test_missing_or_wrong_password_is_an_error_naming_file_line_and_id(inventory):
    path, ids = inventory
    with pytest.raises(InventoryError) as e:
        load_inventory(path)
    assert "no vault password was given" in str(e.value)
    # only the default password: the first value of id prod (group_vars/web.yml line 10) stops the load
    vault.install(vault.Keyring.from_sources([], ids[:1]))
    (path / "group_vars" / "all.yml").unlink()
    with pytest.raises(InventoryError) as e:
        load_inventory(path)
    assert str(e.value).startswith(f"{path / 'group_vars' / 'web.yml'}:10: cannot decrypt vault data with vault id "
                                   "'prod'"), str(e.value)


@pytest.mark.parametrize("text", ["all:\n  hosts:\n    web1:\n", "[web]\nweb1\n"])
def test_encrypted_hosts_file_without_yaml_extension_is_never_read_as_hex_hosts(tmp_path, text):
    """Read as text, vault data looks like an INI list of hosts named by its hex lines. Until the
    loader decrypts such a file first (then it must give web1), it is a clear error."""
    (tmp_path / "inv").mkdir()
    (tmp_path / "inv" / "hosts").write_text(vault.encrypt(text, "pw"))
    vault.install(vault.Keyring((vault.VaultSecret("default", b"pw", "test"),)))
    try:
        hosts = list(load_inventory(tmp_path / "inv").hosts)
    except InventoryError as e:
        assert str(e).startswith(f"{tmp_path / 'inv' / 'hosts'}:1: this file is vault-encrypted as a whole"), str(e)
    else:
        assert hosts == ["web1"]
