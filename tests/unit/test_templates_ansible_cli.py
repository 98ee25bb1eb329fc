"""Template mistakes as a user meets them: ``driftctl plan`` exits 1 with the file and line, before any
host is contacted (the inventory's host is 127.0.0.1 on a closed port: trying it would exit 8)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def plan(tmp_path: Path, resources: str, template: str) -> tuple[int, str, Path]:
    inv = tmp_path / "inventory"
    inv.mkdir()
    (inv / "hosts.yaml").write_text(
        f"all:\n  hosts:\n    web1:\n      ansible_host: 127.0.0.1\n      ansible_port: {closed_port()}\n")
    tree = tmp_path / "m"
    (tree / "roles" / "r" / "templates").mkdir(parents=True)
    (tree / "site.yaml").write_text("- hosts: all\n  roles: [r]\n")
    (tree / "roles" / "r" / "resources.yaml").write_text(resources)
    (tree / "roles" / "r" / "templates" / "t.j2").write_text(template)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTCTL_")}
    env.update({"DRIFTCTL_STATE_DIR": str(tmp_path / "state"), "NO_COLOR": "1"})
    r = subprocess.run([sys.executable, "-m", "driftctl", "plan", str(inv), "-m", str(tree), "--connect-timeout", "5"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    return r.returncode, r.stderr, tree


FILE = "resources:\n  - file: /etc/app.conf\n    template: t.j2\n"


def test_a_filter_driftctl_does_not_provide(tmp_path: Path) -> None:
    rc, err, tree = plan(tmp_path, FILE, "user: app\npassword: {{ 'pw' | password_hash('sha512') }}\n")
    assert rc == 1, err
    assert (f"{tree}/roles/r/templates/t.j2:2: filter 'password_hash' is an Ansible filter driftctl does "
            "not provide") in err


def test_a_bad_jinja2_header(tmp_path: Path) -> None:
    rc, err, tree = plan(tmp_path, FILE, "#jinja2: trim_blocks: yes\nx\n")
    assert rc == 1, err
    assert f"{tree}/roles/r/templates/t.j2:1: #jinja2: header: trim_blocks: 'yes' is not a Python literal" in err


def test_a_bad_template_option(tmp_path: Path) -> None:
    rc, err, tree = plan(tmp_path, FILE + "    newline_sequence: CRLF\n", "x\n")
    assert rc == 1, err
    assert f"{tree}/roles/r/resources.yaml:4: file: newline_sequence must be one of" in err
