"""bake, bake-verify and compare read the inventory as every other command does: -e and vault passwords."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from driftctl import vault
from driftctl.cli import cli
from driftctl.cli.cmd_bake import prepare
from driftctl.errors import ConfigError


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    assert CliRunner().invoke(cli, ["init", str(tmp_path)]).exit_code == 0
    yield tmp_path
    vault.install(None)


def motd(p: object) -> str:
    return next(r for r in p.catalog.resources if r.id == "file:/etc/motd").params["content"]  # type: ignore[attr-defined]


def test_extra_vars_reach_the_baked_catalog_above_group_vars(site: Path) -> None:
    p = prepare(site / "inventory" / "dev", "web1", site / "manifests", extra_vars=("motd_contact=from-e",))
    assert "contact  from-e" in motd(p)


def test_a_vaulted_group_var_is_unlocked_by_the_password_file(site: Path) -> None:
    password = site / "pass"
    password.write_text("hunter2\n")
    os.chmod(password, 0o600)
    encrypted = vault.encrypt_string("motd_contact", "vaulted-contact", "hunter2")
    (site / "inventory" / "dev" / "group_vars" / "all.yml").write_text(encrypted)
    p = prepare(site / "inventory" / "dev", "web1", site / "manifests", vault_password_file=(str(password),))
    assert "contact  vaulted-contact" in motd(p)
    assert "vaulted-contact" in p.catalog.secrets


@pytest.mark.parametrize("command", [
    ["bake", "--base", "x", "-o", "out"], ["bake-verify"], ["compare", "--image", "x"],
])
def test_a_bad_extra_vars_file_is_an_input_error(site: Path, command: list[str]) -> None:
    args = [command[0], str(site / "inventory" / "dev"), *(["img"] if command[0] == "bake-verify" else []),
            *command[1:], "--host", "web1", "-m", str(site / "manifests"), "-e", "@missing.yaml"]
    result = CliRunner().invoke(cli, args)
    assert isinstance(result.exception, ConfigError), result.output  # main() turns it into exit 1
    assert "missing.yaml not found" in str(result.exception)
