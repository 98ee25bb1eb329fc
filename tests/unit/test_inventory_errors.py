"""Every inventory mistake is an InventoryError naming the exact file and line (fixtures in data/inventory/errors/)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml as _yaml

from driftctl.errors import ExitCode, InventoryError
from driftctl.inventory import load_inventory

YAML_FLOW_ERROR = (
    "invalid YAML: did not find expected ',' or ']'" if _yaml.__with_libyaml__
    else "invalid YAML: expected ',' or ']', but got '<stream end>'"
)

ERRORS = Path(__file__).parent / "data" / "inventory" / "errors"


@pytest.mark.parametrize(
    ("fixture", "where", "message"),
    [
        # libyaml and PyYAML's own parser word this one differently; the place is the same
        ("bad_yaml.yaml", "bad_yaml.yaml:7", YAML_FLOW_ERROR),
        ("duplicate_host.yaml", "duplicate_host.yaml:7", "duplicate key 'web1' (first defined at line 5)"),
        (
            "host_not_mapping.yaml", "host_not_mapping.yaml:6",
            "host 'web2' in group 'web' must be a mapping of variables or empty, not the string '10.0.0.2' "
            "(write 'host:' alone, or 'host: {var: value}')",
        ),
        (
            "unknown_group_key.yaml", "unknown_group_key.yaml:4",
            "unknown key 'host' in group 'web' (did you mean 'hosts'?)",
        ),
        ("cycle.yaml", "cycle.yaml:7", "group 'a' as a child of 'b' makes a cycle: b -> a -> b"),
        ("cycle.ini", "cycle.ini:5", "group 'a' as a child of 'b' makes a cycle: b -> a -> b"),
        (
            "children_undefined.ini", "children_undefined.ini:6",
            "section [prod:children] names group 'db', which is not defined "
            "(define it with a [db] or [db:children] section)",
        ),
        (
            "vars_undefined.ini", "vars_undefined.ini:4",
            "section [db:vars] is for group 'db', which is not defined "
            "(define it with a [db] or [db:children] section)",
        ),
        ("ini_bad_host_var.ini", "ini_bad_host_var.ini:2", "expected key=value after host 'web1', got 'ansible_port'"),
        (
            "ini_unknown_section.ini", "ini_unknown_section.ini:3",
            "section [web:host] has an unknown type 'host' (use [group], [group:vars] or [group:children])",
        ),
        ("backwards_range.yaml", "backwards_range.yaml:5", "host range [3:1] in 'web[3:1]' runs backwards"),
        ("bad_port.yaml", "bad_port.yaml:6", "ansible_port for host 'web1': 'abc' is not a port number (1-65535)"),
        (
            "group_is_list.yaml", "group_is_list.yaml:3",
            "group 'web' must be a mapping of hosts/children/vars, not a list",
        ),
        (
            "plugin.yaml", "plugin.yaml:1",
            "this is an inventory plugin configuration (plugin: ...); driftctl reads static inventories only",
        ),
        (
            "script", "script:1",
            "this is a dynamic inventory script, but it is not executable "
            "(chmod +x it to have it run with --list, as Ansible runs executable scripts)",
        ),
        (
            "bad_priority.yaml", "bad_priority.yaml:5",
            "ansible_group_priority of group 'web' must be an integer, not 'high'",
        ),
        (
            "bad_connection.yaml", "bad_connection.yaml:4",
            "ansible_connection for host 'web1': 'winrm' is not a supported connection (ssh, local or podman)",
        ),
        (
            "bad_timeout.yaml", "bad_timeout.yaml:4",
            "driftctl_connect_timeout for host 'web1': 'soon' is not a number of seconds",
        ),
        (
            "vars_not_mapping", "vars_not_mapping/group_vars/web.yaml:2",
            "a variables file must be a mapping of names to values, not a list",
        ),
        (
            "become_maybe", "become_maybe/group_vars/web.yml:2",
            "ansible_become for host 'web1': 'maybe' is not a boolean (true/false, yes/no)",
        ),
    ],
)
def test_error_names_file_and_line(fixture, where, message):
    with pytest.raises(InventoryError) as e:
        load_inventory(ERRORS / fixture)
    assert str(e.value) == f"{ERRORS}/{where}: {message}"
    assert e.value.exit_code == ExitCode.INPUT


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            "all:\n  children:\n    web:\n      hosts: [web1, web2]\n", 4,
            "hosts of group 'web' must be a mapping, not a list",
        ),
        ("all:\n  children:\n    web:\n      vars: [a]\n", 4, "vars of group 'web' must be a mapping, not a list"),
        (
            "all:\n  children:\n    web:\n      children: [a]\n", 4,
            "children of group 'web' must be a mapping, not a list",
        ),
        ("- all\n", 1, "a YAML inventory must be a mapping of groups (all: ...), not a list"),
        ("all:\n  hosts:\n    [a, b]:\n", 3, "a mapping key must be a plain value"),
        ("all:\n  hosts:\n    h1:\n      1: x\n", 4, "variable name 1 must be a non-empty string"),
        ("all:\n  children:\n    web:\n      children:\n        all:\n", 5,
         "group 'all' cannot be a child of 'web': every group is already under it"),
        ("all:\n  children:\n    web:\n      children:\n        web:\n", 5,
         "group 'web' as a child of 'web' makes a cycle: web -> web"),
        ("all:\n  hosts:\n    'web[01:3]':\n", 3,
         "host range [01:3] in 'web[01:3]': begin and end must have the same width when zero-padded"),
        ("all:\n  hosts:\n    db:99999:\n", 3, "invalid port 99999 in host definition 'db:99999'"),
        ("all:\n  hosts:\n    db:ssh:\n", 3, "invalid host definition 'db:ssh': expected NAME or NAME:PORT"),
        ("all:\n  hosts:\n    h: {x: !vault abc}\n", 3,
         "not Ansible Vault data: the first line must be $ANSIBLE_VAULT;1.1;AES256 or "
         "$ANSIBLE_VAULT;1.2;AES256;LABEL"),
    ],
)
def test_yaml_structure_errors(tmp_path, text, line, message):
    f = tmp_path / "hosts.yaml"
    f.write_text(text)
    with pytest.raises(InventoryError) as e:
        load_inventory(f)
    assert str(e.value) == f"{f}:{line}: {message}"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("[web]\nw1\n[web:vars]\njust-a-word\n", 4, "expected key=value in [web:vars], got 'just-a-word'"),
        ("[web]\nw1\n[prod:children]\nweb extra\n", 4, "expected a group name in [prod:children], got 'web extra'"),
        ("[web]\nw1 motd='unclosed\n", 2, "cannot parse host line \"w1 motd='unclosed\": No closing quotation"),
        ("[web ]\nw1\n", 1,
         "invalid section header '[web ]' (a header is [name], [name:vars] or [name:children], with no spaces)"),
        ("[web]\nw[a:3]\n", 2, "host range [a:3] in 'w[a:3]' must be numbers ([01:10]) or single letters ([a:f])"),
        ("[web]\nw[1:3:0]\n", 2, "host range [1:3:0] in 'w[1:3:0]': the step must be a positive integer"),
    ],
)
def test_ini_errors(tmp_path, text, line, message):
    f = tmp_path / "hosts.ini"
    f.write_text(text)
    with pytest.raises(InventoryError) as e:
        load_inventory(f)
    assert str(e.value) == f"{f}:{line}: {message}"


def test_host_vars_file_not_a_mapping(tmp_path):
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "hosts").write_text("w1\n")
    (tmp_path / "host_vars" / "w1.yml").write_text("just text\n")
    with pytest.raises(InventoryError) as e:
        load_inventory(tmp_path)
    assert str(e.value) == (
        f"{tmp_path / 'host_vars' / 'w1.yml'}:1: a variables file must be a mapping of names to values, not a string"
    )


def test_duplicate_key_in_group_vars_directory_file(tmp_path):
    (tmp_path / "group_vars" / "all").mkdir(parents=True)
    (tmp_path / "hosts").write_text("w1\n")
    (tmp_path / "group_vars" / "all" / "main.yml").write_text("a: 1\nb: 2\na: 3\n")
    with pytest.raises(InventoryError) as e:
        load_inventory(tmp_path)
    assert str(e.value) == (
        f"{tmp_path / 'group_vars' / 'all' / 'main.yml'}:3: duplicate key 'a' (first defined at line 1)"
    )


def test_errors_are_value_errors_too():
    with pytest.raises(ValueError, match="cycle"):
        load_inventory(ERRORS / "cycle.yaml")


@pytest.mark.parametrize("name", ["hosts", "hosts.yaml", "group_vars/all.yaml"])
def test_not_utf8_names_line_and_byte(tmp_path, name):
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "hosts.yaml").write_text("all:\n  hosts:\n    web1:\n")
    (tmp_path / name).write_bytes(b"all:\n  vars:\n    motd: caf\xe9\n  hosts:\n    web1:\n")
    with pytest.raises(InventoryError) as info:
        load_inventory(tmp_path)
    assert str(info.value).startswith(f"{tmp_path / name}:3: not UTF-8 (byte 0xe9 at offset 26)")
