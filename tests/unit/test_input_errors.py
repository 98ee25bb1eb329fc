"""Input that used to be accepted but wrong is an error naming file and line (or a warning), before any
host is contacted: YAML numbers where text is meant, an inventory selecting nobody, non-UTF-8 templates,
two names for one host, renders that grow without bound, files others can write."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from test_manifest_support import write_tree

from driftctl import config
from driftctl.errors import InventoryError, Location, ManifestError, TemplateError
from driftctl.inventory import load_inventory
from driftctl.manifest import compile_catalog, load_site
from driftctl.resources.base import get_type

FACTS = {"distribution": "debian", "cpus": 4, "distribution_like": [], "os_family": "debian"}


def tree(tmp_path: Path, resources: str, **files: str | bytes) -> Path:
    return write_tree(tmp_path / "m", {
        "site.yaml": "- hosts: all\n  roles: [r]\n",
        "roles/r/resources.yaml": resources,
        **files,
    })


def one_host(tmp_path: Path, host_vars: str = "") -> Any:
    inv = tmp_path / "inv"
    inv.mkdir(exist_ok=True)
    (inv / "hosts.yaml").write_text("all:\n  hosts:\n    web1:\n      ansible_host: 127.0.0.1\n" + host_vars)
    return load_inventory(inv)


def compile_error(tmp_path: Path, resources: str, **files: str | bytes) -> ManifestError:
    site = load_site(tree(tmp_path, resources, **files))
    inv = one_host(tmp_path)
    with pytest.raises(ManifestError) as info:
        compile_catalog(site, inv, inv.hosts["web1"], FACTS)
    return info.value


# ---- 1. a YAML number (or boolean, or date) where a parameter takes text


@pytest.mark.parametrize(("line", "message"), [
    ("ensure: 1.10", 'package:nginx ensure: 1.10 is a YAML number (read as 1.1): quote it: ensure: "1.10"'),
    ("ensure: 2", 'package:nginx ensure: 2 is a YAML number (read as 2): quote it: ensure: "2"'),
    ("ensure: 010", 'package:nginx ensure: 010 is a YAML number (read as 8): quote it: ensure: "010"'),
    ("ensure: yes", 'package:nginx ensure: yes is a YAML boolean (read as true): quote it: ensure: "yes"'),
    ("ensure: 2024-01-02", 'package:nginx ensure: 2024-01-02 is a YAML date (read as 2024-01-02): '
                           'quote it: ensure: "2024-01-02"'),
])
def test_yaml_scalar_where_text_is_meant(tmp_path: Path, line: str, message: str) -> None:
    root = tree(tmp_path, f"resources:\n  - package: nginx\n    {line}\n")
    with pytest.raises(ManifestError) as info:
        load_site(root)
    assert info.value.message == message
    assert info.value.location == Location(str(root / "roles/r/resources.yaml"), 3)


def test_yaml_number_as_a_title(tmp_path: Path) -> None:
    root = tree(tmp_path, "resources:\n  - user: deploy\n  - group: 1000\n")
    with pytest.raises(ManifestError) as info:
        load_site(root)
    assert str(info.value).endswith('resources.yaml:3: group: 1000 is a YAML number (read as 1000): '
                                    'quote it: group: "1000"')


def test_numbers_stay_where_the_parameter_takes_them(tmp_path: Path) -> None:
    site = load_site(tree(tmp_path, """
resources:
  - user: deploy
    uid: 1001
  - sysctl: vm.swappiness
    value: 10
  - file: /etc/motd
    content: "1.10"
    owner: 0
"""))
    inv = one_host(tmp_path)
    cat = compile_catalog(site, inv, inv.hosts["web1"], FACTS)
    by_id = {r.id: r for r in cat.resources}
    assert by_id["user:deploy"].params["uid"] == 1001
    assert by_id["sysctl:vm.swappiness"].params["value"] == "10"  # sysctl takes (str, int) and keeps its text
    assert by_id["file:/etc/motd"].params["content"] == "1.10"


def test_a_float_reaching_validation_says_where_to_quote() -> None:
    package = get_type("package")
    assert package is not None
    with pytest.raises(ManifestError) as info:
        package.validate({"name": "nginx", "ensure": 1.1}, Location("m.yaml", 2), {"ensure": Location("m.yaml", 3)})
    assert str(info.value) == ("m.yaml:3: package: ensure must be str, not float (1.1) (a number where text is meant: "
                                "quote the value where it is written (\"1.10\", not 1.10: YAML reads that as 1.1))")


def test_an_expression_giving_a_float_for_text_is_refused(tmp_path: Path) -> None:
    e = compile_error(tmp_path, 'resources:\n  - package: nginx\n    ensure: "{{ 1.10 }}"\n')
    assert "a number where text is meant" in str(e)


# ---- 2. an inventory that selects no hosts (CLI: tests/e2e/test_input_errors_cli.py)


def test_empty_inventory_is_an_error_for_fleet_commands(tmp_path: Path) -> None:
    from driftctl.cli.common import load_context

    inv = tmp_path / "prod"
    inv.mkdir()
    (inv / "hosts.yaml").write_text("all:\n  hosts: {}\n")
    with pytest.raises(InventoryError) as info:
        load_context(inv, state_dir=str(tmp_path / "state"))
    assert str(info.value).startswith(f"{inv} selects no hosts")


def test_limit_selecting_nobody_names_inventory_and_pattern(tmp_path: Path) -> None:
    from driftctl.cli.common import load_context

    inv = tmp_path / "prod"
    inv.mkdir()
    (inv / "hosts.yaml").write_text("all:\n  hosts:\n    a:\n    b:\n")
    with pytest.raises(InventoryError) as info:
        load_context(inv, "a:&b", state_dir=str(tmp_path / "state"))
    assert str(info.value) == f"{inv}: host pattern 'a:&b' selects no host"


# ---- 3. a template that is not UTF-8


def test_template_not_utf8_names_line_and_byte(tmp_path: Path) -> None:
    e = compile_error(tmp_path, "resources:\n  - file: /etc/t\n    template: t.j2\n",
                      **{"roles/r/templates/t.j2": b"one\ntwo\nthr\xffee\n"})
    assert isinstance(e, TemplateError)
    assert e.location is not None and e.location.file.endswith("roles/r/templates/t.j2")
    assert e.location.line == 3
    assert e.message == "not UTF-8 (byte 0xff at offset 11)"


def test_included_template_not_utf8(tmp_path: Path) -> None:
    e = compile_error(tmp_path, "resources:\n  - file: /etc/t\n    template: t.j2\n",
                      **{"roles/r/templates/t.j2": "a\n{% include 'inc.j2' %}\n",
                         "roles/r/templates/inc.j2": b"\xc3\x28"})
    assert str(e.location).endswith("templates/inc.j2:1") and "byte 0xc3 at offset 0" in e.message


def test_yaml_file_not_utf8_names_the_line(tmp_path: Path) -> None:
    root = tree(tmp_path, b"resources:\n  - file: /etc/x\n    content: caf\xe9\n")  # type: ignore[arg-type]
    with pytest.raises(ManifestError) as info:
        load_site(root)
    assert info.value.location is not None and info.value.location.line == 3
    assert info.value.message == "not UTF-8 (byte 0xe9 at offset 44)"


# ---- 4. two inventory hosts with one address and port


def test_two_hosts_one_endpoint_is_a_warning(tmp_path: Path) -> None:
    inv = one_host(tmp_path, "    web1-alias:\n      ansible_host: 127.0.0.1\n"
                             "    web2:\n      ansible_host: 127.0.0.1\n      ansible_port: 2222\n")
    hosts_file = tmp_path / "inv" / "hosts.yaml"
    assert inv.warnings == [
        f"hosts web1 ({hosts_file}:3) and web1-alias ({hosts_file}:5) both connect to 127.0.0.1 port 22: "
        "one machine under several names gets several catalogs applied to it"
    ]


def test_same_address_behind_different_jump_hosts_is_fine(tmp_path: Path) -> None:
    inv = one_host(tmp_path, "      driftctl_proxy_jump: bastion-a\n"
                             "    other:\n      ansible_host: 127.0.0.1\n      driftctl_proxy_jump: bastion-b\n")
    assert not any("connect to" in w for w in inv.warnings)




# ---- 6. settings, manifests and inventories other users could have written


@pytest.fixture
def no_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for name in list(os.environ):
        if name.startswith("DRIFTCTL_"):
            monkeypatch.delenv(name)


def project(tmp_path: Path, dir_mode: int = 0o755, file_mode: int = 0o644) -> Path:
    cwd = tmp_path / "project"
    cwd.mkdir()
    (cwd / "driftctl.yaml").write_text("parallel: 3\n")
    (cwd / "driftctl.yaml").chmod(file_mode)
    cwd.chmod(dir_mode)
    return cwd


@pytest.mark.usefixtures("no_user_config")
def test_project_settings_are_read(tmp_path: Path) -> None:
    warnings: list[str] = []
    assert config.load(cwd=project(tmp_path), warn=warnings.append).parallel == 3 and warnings == []


@pytest.mark.usefixtures("no_user_config")
@pytest.mark.parametrize(("dir_mode", "file_mode", "why"), [
    (0o1777, 0o644, "ignored: its directory {cwd} is writable by every user (mode 1777), so anyone could have "
                    "put it there (Ansible ignores ansible.cfg there too)"),
    (0o755, 0o666, "ignored: writable by every user (mode 0666); chmod o-w it"),
])
def test_project_settings_others_could_write_are_ignored(tmp_path: Path, dir_mode: int, file_mode: int,
                                                          why: str) -> None:
    cwd = project(tmp_path, dir_mode, file_mode)
    warnings: list[str] = []
    assert config.load(cwd=cwd, warn=warnings.append).parallel == 10
    assert warnings == [f"{cwd / 'driftctl.yaml'}: {why.format(cwd=cwd)}"]


@pytest.mark.usefixtures("no_user_config")
@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_project_settings_owned_by_another_user_are_ignored(tmp_path: Path) -> None:
    cwd = project(tmp_path)
    os.chown(cwd / "driftctl.yaml", 65534, 65534)
    warnings: list[str] = []
    assert config.load(cwd=cwd, warn=warnings.append).parallel == 10
    assert warnings == [f"{cwd / 'driftctl.yaml'}: ignored: owned by another user (uid 65534), not by you or root"]


def test_inventory_others_can_write_is_one_warning(tmp_path: Path) -> None:
    inv = tmp_path / "prod"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "hosts.yaml").write_text("all:\n  hosts:\n    web1:\n")
    for name in ("all.yaml", "web.yaml"):
        (inv / "group_vars" / name).write_text("x: 1\n")
        (inv / "group_vars" / name).chmod(0o666)
    warnings = [w for w in load_inventory(inv).warnings if "writable" in w]
    assert warnings == [f"{inv}/group_vars/all.yaml: writable by users other than its owner (mode 0666), "
                        f"in the inventory {inv}: whoever can write it decides what runs on your hosts"]


def test_manifest_tree_others_can_write_is_a_warning(tmp_path: Path) -> None:
    root = tree(tmp_path, "resources: []\n")
    (root / "roles" / "r").chmod(0o777)
    site = load_site(root)
    assert site.warnings == [f"{root}/roles/r: writable by users other than its owner (mode 0777), "
                             f"in the manifest tree {root}: whoever can write it decides what runs on your hosts"]
    assert load_site(tree(tmp_path / "clean", "resources: []\n")).warnings == []
