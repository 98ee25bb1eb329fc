"""``!vault`` in driftctl's own manifests: encrypted secrets need not sit in plain text in the repository.

A vaulted value in a manifest file's ``vars:``, in a resource parameter, in a role's ``defaults.yaml``
encrypted as a whole: each is a secret exactly as a ``!secret`` value is (collected in the catalog's
secrets, the resource sensitive, a title holding it hashed). Errors name the file and line.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_manifest_support import TYPES, inventory, write_tree

from driftctl import vault
from driftctl.errors import ManifestError
from driftctl.manifest import compile_catalog, load_site
from driftctl.resources import all_types
from driftctl.secret import Secret, redact

PASSWORD = "manifest-vault-pass"
TOKEN = "tok-vault-5a1f93c2"
DB = "db-vault-7e0b44d1"


@pytest.fixture(autouse=True)
def keyring(tmp_path: Path) -> Iterator[None]:
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    pw.chmod(0o600)
    vault.install(vault.Keyring.from_sources([str(pw)], []))
    yield
    vault.install(None)


def vaulted(name: str, value: str, indent: int, vault_id: str | None = None, password: str = PASSWORD) -> str:
    return textwrap.indent(vault.encrypt_string(name, value, password, vault_id), " " * indent)


def site(tmp_path: Path, resources: str, types: Any = None, **files: str | bytes) -> Any:
    root = write_tree(tmp_path / "m", {"site.yaml": "- hosts: all\n  roles: [r]\n",
                                       "roles/r/resources.yaml": resources, **files})
    return load_site(root, types=types or TYPES)


def test_vault_values_in_a_manifest_are_secrets(tmp_path: Path) -> None:
    resources = "vars:\n" + vaulted("token", TOKEN, 2) + """resources:
  - file: /etc/app.env
    content: "TOKEN={{ token }}"
  - exec: "curl -H 'Authorization: {{ token }}' https://example.invalid"
  - file: /etc/db.env
""" + vaulted("content", DB, 4)
    s = site(tmp_path, resources, types=all_types())
    assert isinstance(s.files[next(iter(s.files))].vars["token"], Secret)
    inv = inventory()
    cat = compile_catalog(s, inv, inv.hosts["web1"], {"distribution": "debian"}, types=all_types())
    assert {TOKEN, DB} <= cat.secrets
    by_id = cat.by_id()
    assert by_id["file:/etc/app.env"].sensitive and by_id["file:/etc/db.env"].sensitive
    assert by_id["file:/etc/app.env"].params["content"] == f"TOKEN={TOKEN}"
    exec_ids = [i for i in by_id if i.startswith("exec:")]
    assert len(exec_ids) == 1 and exec_ids[0].startswith("exec:secret-")  # the title holds the secret
    assert not any(TOKEN in i or DB in i for i in by_id)
    assert redact(f"x {TOKEN} y {DB}", cat.secrets) == "x ******** y ********"


def test_a_whole_encrypted_role_defaults_file(tmp_path: Path) -> None:
    defaults = vault.encrypt(f"token: {TOKEN}\nport: 8080\n", PASSWORD)
    s = site(tmp_path, "resources:\n  - file: /etc/app.env\n    content: '{{ token }}:{{ port }}'\n",
             **{"roles/r/defaults.yaml": defaults})
    role = s.roles["r"]
    assert role.defaults == {"token": TOKEN, "port": 8080} and isinstance(role.defaults["token"], Secret)
    inv = inventory()
    cat = compile_catalog(s, inv, inv.hosts["web1"], {"distribution": "debian"}, types=TYPES)
    assert TOKEN in cat.secrets and cat.by_id()["file:/etc/app.env"].sensitive


def test_wrong_password_names_the_manifest_file_line_and_vault_id(tmp_path: Path) -> None:
    resources = "vars:\n  plain: 1\n" + vaulted("token", TOKEN, 2, "ops", password="not-the-password")
    resources += "resources: []\n"
    with pytest.raises(ManifestError) as e:
        site(tmp_path, resources)
    assert str(e.value).startswith(f"{tmp_path / 'm' / 'roles/r/resources.yaml'}:3: cannot decrypt vault data "
                                   "with vault id 'ops'"), str(e.value)
    assert TOKEN not in str(e.value) and PASSWORD not in str(e.value)


def test_a_whole_encrypted_manifest_file_is_refused_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as e:
        site(tmp_path, vault.encrypt("resources: []\n", PASSWORD))
    assert "roles/r/resources.yaml:1: this file is vault-encrypted as a whole" in str(e.value)
    assert "!vault" in str(e.value)
