"""Connection variables: driftctl's names, every Ansible alias, types, templates, ProxyJump."""

from __future__ import annotations

from pathlib import Path

import pytest

from driftctl.errors import InventoryError
from driftctl.inventory import load_inventory
from driftctl.model import ConnectionSpec

DATA = Path(__file__).parent / "data" / "inventory"


@pytest.fixture(scope="module")
def inv():
    return load_inventory(DATA / "aliases.yaml")


def test_defaults_when_nothing_is_set(inv):
    assert inv.hosts["defaults"].connection == ConnectionSpec(address="defaults")


@pytest.mark.parametrize(
    ("host", "field", "expected"),
    [
        ("driftctl_host", "address", "10.0.0.1"),
        ("ansible_host", "address", "10.0.0.2"),
        ("ansible_ssh_host", "address", "10.0.0.3"),
        ("driftctl_port", "port", 2201),
        ("ansible_port", "port", 2202),  # a string of digits is a port
        ("ansible_ssh_port", "port", 2203),
        ("driftctl_user", "user", "alice"),
        ("ansible_user", "user", "bob"),
        ("ansible_ssh_user", "user", "carol"),
        ("driftctl_key_file", "key_file", "/keys/d"),
        ("ansible_ssh_private_key_file", "key_file", "/keys/a"),
        ("driftctl_password", "password", "pw-d"),
        ("ansible_password", "password", "pw-a"),
        ("ansible_ssh_pass", "password", "pw-s"),
        ("driftctl_become", "become", True),
        ("ansible_become", "become", True),  # "yes"
        ("driftctl_become_user", "become_user", "postgres"),
        ("ansible_become_user", "become_user", "www-data"),
        ("driftctl_become_password", "become_password", "sudo-d"),
        ("ansible_become_password", "become_password", "sudo-a"),
        ("ansible_become_pass", "become_password", "sudo-p"),
        ("driftctl_python", "python", "/usr/bin/python3.11"),
        ("ansible_python_interpreter", "python", "/usr/local/bin/python3"),
        ("python_auto", "python", "python3"),  # Ansible's discovery: driftctl's default
        ("driftctl_proxy_jump", "proxy_jump", "jump@bastion:2222"),
        ("common_args_o", "proxy_jump", "ops@bastion"),
        ("common_args_j", "proxy_jump", "ops@bastion2"),
        ("driftctl_known_hosts", "known_hosts", "/etc/driftctl/known_hosts"),
        ("driftctl_transport", "transport", "podman"),
        ("connection_ssh", "transport", "ssh"),
        ("connection_paramiko", "transport", "ssh"),
        ("connection_local", "transport", "local"),
        ("connection_podman", "transport", "podman"),
        ("driftctl_connect_timeout", "connect_timeout", 3.0),
        ("driftctl_command_timeout", "command_timeout", 60.5),
    ],
)
def test_each_variable_sets_its_field(inv, host, field, expected):
    spec = inv.hosts[host].connection
    assert getattr(spec, field) == expected
    default = ConnectionSpec(address=host)
    # and nothing else moved (the address is the host name unless it is the field under test)
    others = {f: getattr(spec, f) for f in vars(default) if f != field}
    assert others == {f: getattr(default, f) for f in vars(default) if f != field}


@pytest.mark.parametrize(
    ("host", "field", "expected"),
    [
        ("both_host", "address", "10.1.0.1"),
        ("both_port", "port", 3000),
        ("both_user", "user", "driftctl"),
        ("both_become", "become", False),
        ("both_transport", "transport", "ssh"),
    ],
)
def test_driftctls_own_name_wins_over_ansibles(inv, host, field, expected):
    assert getattr(inv.hosts[host].connection, field) == expected


def test_templated_values_are_rendered_with_the_hosts_vars(inv):
    assert inv.hosts["templated"].connection.address == "templated.par1.example.com"
    # the variable itself stays as written: the manifest stage renders variables its own way
    assert inv.hosts["templated"].vars["ansible_host"] == "{{ inventory_hostname }}.{{ domain }}"


def test_ignored_ssh_args_are_a_warning_naming_the_line(inv):
    warning = next(w for w in inv.warnings if "StrictHostKeyChecking" in w)
    assert warning.startswith(f"{DATA / 'aliases.yaml'}:31: ansible_ssh_common_args")


def test_host_port_in_the_name_sets_the_port(tmp_path):
    f = tmp_path / "hosts.yaml"
    f.write_text("all:\n  hosts:\n    db1:2222:\n    '[2001:db8::1]:2200':\n    2001:db8::2:\n")
    inv = load_inventory(f)
    assert inv.hosts["db1"].connection.port == 2222
    assert (inv.hosts["2001:db8::1"].connection.address, inv.hosts["2001:db8::1"].connection.port) == (
        "2001:db8::1", 2200
    )
    assert inv.hosts["2001:db8::2"].connection.port == 22


def test_key_file_tilde_is_expanded(tmp_path):
    f = tmp_path / "hosts.yaml"
    f.write_text("all:\n  hosts:\n    h:\n      ansible_ssh_private_key_file: ~/.ssh/id_ed25519\n")
    assert load_inventory(f).hosts["h"].connection.key_file == str(Path.home() / ".ssh" / "id_ed25519")


def test_secret_password_stays_a_secret(tmp_path):
    from driftctl.secret import Secret

    f = tmp_path / "hosts.yaml"
    f.write_text("all:\n  hosts:\n    h:\n      ansible_become_password: !secret s3cret\n")
    spec = load_inventory(f).hosts["h"].connection
    assert spec.become_password == "s3cret" and isinstance(spec.become_password, Secret)
    assert "s3cret" not in repr(spec)


def test_unsupported_become_method_warns(tmp_path):
    f = tmp_path / "hosts.yaml"
    f.write_text("all:\n  hosts:\n    h:\n      ansible_become: true\n      ansible_become_method: su\n")
    inv = load_inventory(f)
    assert inv.warnings == (
        [f"{f}:5: ansible_become_method 'su' is not supported; driftctl becomes another user with sudo"]
    )


def _error(tmp_path, text: str, name: str = "hosts.yaml") -> str:
    f = tmp_path / name
    f.write_text(text)
    with pytest.raises(InventoryError) as e:
        load_inventory(f)
    return str(e.value)


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("ansible_port", "abc", "'abc' is not a port number (1-65535)"),
        ("ansible_port", "70000", "70000 is not a port number (1-65535)"),
        ("driftctl_port", "true", "True is not a port number (1-65535)"),
        ("ansible_become", "maybe", "'maybe' is not a boolean (true/false, yes/no)"),
        ("driftctl_become", "2", "2 is not a boolean (true/false, yes/no)"),
        ("ansible_user", "[a, b]", "['a', 'b'] is not a string"),
        ("ansible_connection", "winrm", "'winrm' is not a supported connection (ssh, local or podman)"),
        ("driftctl_transport", "docker", "'docker' is not a supported connection (ssh, local or podman)"),
        ("driftctl_connect_timeout", "soon", "'soon' is not a number of seconds"),
        ("driftctl_command_timeout", "-1", "-1 is not a positive number of seconds"),
        ("ansible_host", "'{{ nope }}'", "cannot render '{{ nope }}': 'nope' is undefined"),
    ],
)
def test_wrong_types_are_errors_at_the_line_that_set_them(tmp_path, var, value, expected):
    text = f"all:\n  hosts:\n    web1:\n      x: 1\n      {var}: {value}\n"
    message = _error(tmp_path, text)
    assert message == f"{tmp_path / 'hosts.yaml'}:5: {var} for host 'web1': {expected}"


def test_wrong_password_type_does_not_show_the_value(tmp_path):
    message = _error(tmp_path, "all:\n  hosts:\n    h:\n      ansible_password: [hunter2]\n")
    assert message == f"{tmp_path / 'hosts.yaml'}:4: ansible_password for host 'h': ******** is not a string"


def test_wrong_type_in_group_vars_names_the_group_vars_file(tmp_path):
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "hosts.ini").write_text("[web]\nweb1\n")
    (tmp_path / "group_vars" / "web.yaml").write_text("# web servers\nhttp_port: 80\nansible_port: eighty\n")
    with pytest.raises(InventoryError) as e:
        load_inventory(tmp_path)
    assert str(e.value).startswith(f"{tmp_path / 'group_vars' / 'web.yaml'}:3: ansible_port for host 'web1'")


def test_ini_wrong_type_names_the_ini_line(tmp_path):
    message = _error(tmp_path, "[web]\nweb1\nweb2 ansible_port=22x\n", "hosts.ini")
    assert message == f"{tmp_path / 'hosts.ini'}:3: ansible_port for host 'web2': '22x' is not a port number (1-65535)"
