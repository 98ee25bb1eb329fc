"""Accepted-but-wrong input, as a user types the command: exit 1 with file:line before any host is
contacted (the inventory's host is 127.0.0.1 on a closed port: trying it would exit 8), or a warning."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from e2ehelp import driftctl


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def inventory(tmp_path: Path, *names: str, port: int | None = None) -> Path:
    inv = tmp_path / "inventory" / "prod"
    inv.mkdir(parents=True)
    port = port or closed_port()
    lines = ["all:", "  hosts:" + ("" if names else " {}")]
    for name in names:
        lines += [f"    {name}:", "      ansible_host: 127.0.0.1", f"      ansible_port: {port}"]
    (inv / "hosts.yaml").write_text("\n".join(lines) + "\n")
    return inv


def manifests(root: Path, resources: str, **files: bytes) -> Path:
    (root / "roles" / "r" / "templates").mkdir(parents=True)
    (root / "site.yaml").write_text("- hosts: all\n  roles: [r]\n")
    (root / "roles" / "r" / "resources.yaml").write_text(resources)
    for name, data in files.items():
        (root / "roles" / "r" / "templates" / name).write_bytes(data)
    return root


def plan(tmp_path: Path, inv: Path, tree: Path | None, *args: str, cwd: Path | None = None) -> tuple[int, str]:
    extra = ["-m", str(tree)] if tree is not None else []
    r = driftctl("plan", inv, *extra, *args, "--connect-timeout", "5", state_dir=tmp_path / "state",
                 **({"cwd": cwd} if cwd else {}))
    return r.rc, r.stderr


def test_yaml_number_for_a_version(tmp_path: Path) -> None:
    tree = manifests(tmp_path / "m", "resources:\n  - package: nginx\n    ensure: 1.10\n")
    rc, err = plan(tmp_path, inventory(tmp_path, "web1"), tree)
    assert rc == 1
    assert (f'{tree}/roles/r/resources.yaml:3: package:nginx ensure: 1.10 is a YAML number (read as 1.1): '
            'quote it: ensure: "1.10"') in err


def test_empty_inventory_is_never_success(tmp_path: Path) -> None:
    tree = manifests(tmp_path / "m", "resources: []\n")
    inv = inventory(tmp_path)
    rc, err = plan(tmp_path, inv, tree)
    assert rc == 1 and f"error: {inv} selects no hosts" in err
    r = driftctl("drift", inv, "-m", tree, state_dir=tmp_path / "state")
    assert r.rc == 1 and f"{inv} selects no hosts" in r.stderr


def test_limit_selecting_nobody_names_the_pattern(tmp_path: Path) -> None:
    tree = manifests(tmp_path / "m", "resources: []\n")
    inv = inventory(tmp_path, "web1", "db1")
    rc, err = plan(tmp_path, inv, tree, "--limit", "web1:&db1")
    assert rc == 1 and f"error: {inv}: host pattern 'web1:&db1' selects no host" in err


def test_template_not_utf8(tmp_path: Path) -> None:
    tree = manifests(tmp_path / "m", "resources:\n  - file: /etc/t\n    template: t.j2\n",
                     **{"t.j2": b"a = 1\nb = 2\nc = caf\xff\n"})
    rc, err = plan(tmp_path, inventory(tmp_path, "web1"), tree)
    assert rc == 1 and f"{tree}/roles/r/templates/t.j2:3: not UTF-8 (byte 0xff at offset 19)" in err


def test_two_hosts_one_address_is_a_warning(tmp_path: Path) -> None:
    tree = manifests(tmp_path / "m", "resources:\n  - package: nginx\n    ensure: 1.10\n")
    inv = inventory(tmp_path, "web1", "web1-alias")
    rc, err = plan(tmp_path, inv, tree)
    assert rc == 1  # the manifest's mistake: still nothing contacted
    assert (f"warning: hosts web1 ({inv}/hosts.yaml:3) and web1-alias ({inv}/hosts.yaml:6) both connect to "
            "127.0.0.1 port") in err


def test_a_huge_render_is_refused_before_it_is_built(tmp_path: Path) -> None:
    tree = manifests(tmp_path / "m", "resources:\n  - file: /etc/big\n    content: \"{{ 'x' * 10**9 }}\"\n")
    rc, err = plan(tmp_path, inventory(tmp_path, "web1"), tree)
    assert rc == 1
    assert (f"{tree}/roles/r/resources.yaml:3: content: too large: '*' (str of 1 times 1000000000) would make "
            "1000000000 bytes or more, over max_render_bytes (67108864)") in err


@pytest.mark.slow
def test_a_huge_template_file_is_stopped_at_the_cap(tmp_path: Path) -> None:
    tree = manifests(tmp_path / "m", "resources:\n  - file: /etc/big\n    template: big.j2\n",
                     **{"big.j2": b"head\n{% for i in range(100000) %}{{ 'x' * 10000 }}\n{% endfor %}\n"})
    rc, err = plan(tmp_path, inventory(tmp_path, "web1"), tree)
    assert rc == 1
    assert f"{tree}/roles/r/templates/big.j2:2: too large: the rendered file would make" in err


def test_settings_in_a_world_writable_directory_are_ignored(tmp_path: Path) -> None:
    cwd = tmp_path / "shared"
    cwd.mkdir()
    # read, this would point at a tree that does not exist; ignored, the default manifests/ is used
    (cwd / "driftctl.yaml").write_text("manifests: /nonexistent\n")
    manifests(cwd / "manifests", "resources:\n  - package: nginx\n    ensure: 1.10\n")
    (cwd / "manifests" / "roles" / "r").chmod(0o777)
    cwd.chmod(0o1777)
    rc, err = plan(tmp_path, inventory(tmp_path, "web1"), None, cwd=cwd)
    assert rc == 1 and "ensure: 1.10 is a YAML number" in err
    assert (f"warning: {cwd}/driftctl.yaml: ignored: its directory {cwd} is writable by every user (mode 1777), "
            "so anyone could have put it there") in err.replace("\n", "")
    assert ("warning: manifests/roles/r: writable by users other than its owner (mode 0777), in the manifest "
            "tree manifests") in err.replace("\n", "")
