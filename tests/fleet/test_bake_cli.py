"""The bake commands as a user types them, end to end: bake a host's manifests onto the Debian base and
load it, boot it with sshd, then `driftctl check` over SSH finds zero changes, `bake-verify` says in
sync, `compare` finds the host and its image the same, until someone changes the host."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_bake_podman import debian_base, podman  # noqa: F401 - debian_base is a fixture

pytestmark = [pytest.mark.fleet, pytest.mark.podman, pytest.mark.slow]

DRIFTCTL = [sys.executable, "-m", "driftctl"]

ROLE = """\
resources:
  - group: app
    gid: 2200
  - user: app
    uid: 2200
    group: app
    shell: /bin/bash
    require: [group:app]
  - directory: /srv
  - directory: /srv/app
    owner: app
    group: app
    mode: "0750"
  - file: /srv/app/app.conf
    content: "listen = {{ app_port }}\\n"
    owner: app
    group: app
    mode: "0640"
  - line: sshd-password-authentication
    path: /etc/ssh/sshd_config
    match: "^#?\\\\s*PasswordAuthentication\\\\s"
    text: PasswordAuthentication no
  - authorized_key: root-ci
    user: root
    key: "{{ ci_key }}"
  - cron: cleanup
    user: app
    hour: "4"
    minute: "5"
    command: /usr/bin/find /tmp -mtime +7 -delete
  - service: ssh
    enabled: true
    running: true
  - package: openssh-server
"""


def driftctl(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DRIFTCTL, *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(cwd), "NO_COLOR": "1"},
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A manifest tree and an inventory with one host, web1 (its address is filled in later)."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "key")], check=True)
    (tmp_path / "manifests" / "roles" / "app").mkdir(parents=True)
    (tmp_path / "manifests" / "site.yaml").write_text("- hosts: all\n  roles: [app]\n")
    (tmp_path / "manifests" / "roles" / "app" / "resources.yaml").write_text(ROLE)
    (tmp_path / "inventory" / "host_vars").mkdir(parents=True)
    public = (tmp_path / "key.pub").read_text().strip()
    (tmp_path / "inventory" / "host_vars" / "web1.yaml").write_text(f"app_port: 8080\nci_key: {json.dumps(public)}\n")
    (tmp_path / "inventory" / "hosts.yaml").write_text("all:\n  hosts:\n    web1:\n      ansible_host: 127.0.0.1\n")
    # the manifests live in git: the image's created time is the last commit's, its revision the commit
    git = ["git", "-C", str(tmp_path / "manifests"), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "app role"], check=True)
    return tmp_path


@pytest.fixture
def booted(project: Path, debian_base: str) -> Iterator[tuple[Path, str]]:  # noqa: F811
    """Bake web1 with the CLI (--load), boot it with sshd, point the inventory at it."""
    suffix = uuid.uuid4().hex[:8]
    image, name = f"localhost/driftctl-bake-e2e-{suffix}:latest", f"driftctl-bake-e2e-{suffix}"
    baked = driftctl(
        "bake",
        "inventory",
        "--host",
        "web1",
        "--base",
        debian_base,
        "-o",
        "out",
        "-m",
        "manifests",
        "--tag",
        image,
        "--load",
        cwd=project,
    )
    assert baked.returncode == 0, baked.stderr
    assert "baked into out (oci-dir)" in baked.stdout and f"loaded   into podman as {image}" in baked.stdout
    try:
        podman(
            "run",
            "-d",
            "--name",
            name,
            "--systemd=always",
            "--runtime",
            "runc",
            "--ulimit",
            "nofile=4096:4096",
            "--ulimit",
            "nproc=4096:4096",
            "-p",
            "127.0.0.1::22",
            image,
            "/bin/sh",
            "-c",
            "rm -f /etc/ssh/ssh_host_*; ssh-keygen -A >/dev/null; exec /sbin/init",
        )
        port = podman("port", name, "22").stdout.decode().strip().rpartition(":")[2]
        deadline = time.monotonic() + 90
        state = b""
        while time.monotonic() < deadline:
            state = podman("exec", name, "systemctl", "is-active", "ssh", check=False).stdout.strip()
            if state == b"active":
                break
            time.sleep(0.5)
        status = podman("exec", name, "systemctl", "status", "ssh", "--no-pager", check=False).stdout.decode()
        assert state == b"active", f"sshd did not start: {status}"
        host_key = podman("exec", name, "cat", "/etc/ssh/ssh_host_ed25519_key.pub").stdout.decode().split()
        (project / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
        (project / "inventory" / "hosts.yaml").write_text(
            textwrap.dedent(f"""\
            all:
              hosts:
                web1:
                  ansible_host: 127.0.0.1
                  ansible_port: {port}
                  ansible_user: root
                  ansible_ssh_private_key_file: {project / "key"}
                  driftctl_known_hosts: {project / "known_hosts"}
            """)
        )
        yield project, name
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)
        podman("rmi", "-f", image, check=False)


def test_check_verify_and_compare_against_the_running_image(booted: tuple[Path, str]) -> None:
    project, container = booted
    check = driftctl("check", "inventory", "-m", "manifests", cwd=project)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "0 to change" in check.stdout

    verified = driftctl("bake-verify", "out", "-i", "inventory", "--host", "web1", "-m", "manifests", cwd=project)
    assert verified.returncode == 0, verified.stdout + verified.stderr

    same = driftctl("compare", "inventory", "--host", "web1", "--image", "out", "-m", "manifests", cwd=project)
    assert same.returncode == 0, same.stdout + same.stderr
    assert "0 of 10 resource(s) differ between the host and the image" in same.stdout

    # someone changes the host by hand: compare names the attribute, both sides; check sees it too
    podman("exec", container, "chmod", "0600", "/srv/app/app.conf")
    drifted = driftctl(
        "compare", "inventory", "--host", "web1", "--image", "out", "-m", "manifests", "--json", cwd=project
    )
    assert drifted.returncode == 2, drifted.stdout + drifted.stderr
    doc = json.loads(drifted.stdout)
    row = next(r for r in doc["resources"] if r["id"] == "file:/srv/app/app.conf")
    assert row["differs"] == ["mode: host 0600, image 0640"]
    assert row["host"] == "1 to change" and row["image"] == "in sync"
    assert 0 <= doc["age_seconds"] < 3600 and doc["manifests_moved"] is False
    assert len(doc["revision"]) == 40
    assert driftctl("check", "inventory", "-m", "manifests", cwd=project).returncode == 2
    # the mutable host against its immutable twin: drift --against reads the image's layers and names
    # exactly that change, as corrective drift (the image is the converged state)
    against = driftctl("drift", "inventory", "-m", "manifests", "--against", "out", "--json",
                       "--state-dir", str(project / "state"), cwd=project)
    assert against.returncode == 2, against.stdout + against.stderr
    found = {(r["id"], r["drift"], tuple(c["field"] for c in r["changes"]))
             for h in json.loads(against.stdout)["hosts"] for r in h["resources"] if r["drift"]}
    assert found == {("file:/srv/app/app.conf", "corrective", ("mode",))}

    # the manifests move on: bake-verify says the image no longer matches (exit 2)
    role = project / "manifests" / "roles" / "app" / "resources.yaml"
    role.write_text(role.read_text().replace('mode: "0640"', 'mode: "0644"'))
    stale = driftctl("bake-verify", "out", "-i", "inventory", "--host", "web1", "-m", "manifests", cwd=project)
    assert stale.returncode == 2, stale.stdout + stale.stderr
    assert "mode 0640 -> 0644" in stale.stdout
