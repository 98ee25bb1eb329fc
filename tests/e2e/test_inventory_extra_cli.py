"""Extra variables, ``--limit @FILE``, dynamic inventory scripts and the vault options, as a user types them.

On a real host: a dynamic inventory script names it, a retry file limits the run to it, and ``-e``
reaches its templates above host_vars (the file on the host is read through podman, not driftctl).
Without a host: every mistake in these inputs exits 1 before any connection (a loopback listener
counts the connections: none), and the vault options unlock values that the real ansible-vault
encrypted, which ``driftctl inventory`` then shows redacted.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2ehelp import driftctl

SECRET = "vaulted-Xq7-not-real"
VAULT_PASSWORD = "correct horse battery"


def _script(path: Path, hosts: dict[str, dict[str, object]]) -> Path:
    """A dynamic inventory printing ``hosts`` (name -> vars) in group ``app``, with _meta."""
    import json

    doc = {"app": {"hosts": list(hosts), "vars": {"greeting": "from the script"}}, "_meta": {"hostvars": hosts}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable}\nimport sys\nif sys.argv[1:] == ['--list']:\n"
                    f"    print({json.dumps(json.dumps(doc))})\n")
    path.chmod(0o755)
    return path


def _manifests(root: Path) -> Path:
    (root / "roles" / "greet").mkdir(parents=True)
    (root / "site.yaml").write_text("- hosts: all\n  roles: [greet]\n")
    (root / "roles" / "greet" / "resources.yaml").write_text(
        "resources:\n  - file: /etc/driftctl-extra-vars\n    content: \"{{ greeting }} {{ replicas }}\\n\"\n"
        "    mode: \"0644\"\n"
    )
    return root


@pytest.mark.fresh_host
def test_dynamic_inventory_retry_file_and_extra_vars_on_a_real_host(fresh_host, tmp_path):
    h = fresh_host
    connection = {"ansible_host": h.address, "ansible_port": h.port, "ansible_user": "root",
                  "ansible_ssh_private_key_file": str(h.key_file), "driftctl_known_hosts": str(h.known_hosts),
                  "greeting": "from host vars"}
    inv = tmp_path / "inv"
    _script(inv / "cloud.py", {h.name: connection, "ghost": {"ansible_host": "192.0.2.1"}})
    (inv / "host_vars").mkdir()
    (inv / "host_vars" / f"{h.name}.yaml").write_text("greeting: from host_vars\nreplicas: 1\n")
    (tmp_path / "extra.yaml").write_text("replicas: 3\n")
    (tmp_path / "site.retry").write_text(f"{h.name}\n")  # ghost (unreachable) stays out of the run
    manifests = _manifests(tmp_path / "manifests")
    args = (inv, "-m", manifests, "--limit", "@site.retry", "-e", "greeting='hello from -e'", "-e", "@extra.yaml")

    shown = driftctl("inventory", inv, "--host", h.name, "-e", "greeting='hello from -e'", "-e", "@extra.yaml",
                     "--json", state_dir=tmp_path / "state", cwd=tmp_path)
    assert shown.rc == 0, shown.output
    doc = shown.json()
    assert doc["vars"]["greeting"] == "hello from -e" and doc["vars"]["replicas"] == 3
    assert doc["sources"]["greeting"] == "-e greeting=********"
    assert doc["sources"]["replicas"] == "extra.yaml:1"

    apply = driftctl("apply", *args, "--json", state_dir=tmp_path / "state", cwd=tmp_path)
    assert apply.rc == 2, apply.output
    assert [x["name"] for x in apply.json()["hosts"]] == [h.name]
    content = h.exec(["cat", "/etc/driftctl-extra-vars"])
    assert content.rc == 0 and content.stdout == b"hello from -e 3\n"

    again = driftctl("check", *args, state_dir=tmp_path / "state", cwd=tmp_path)
    assert again.rc == 0, again.output
    # without -e the host_vars value is wanted again: a pending change, nothing written by check
    plain = driftctl("check", inv, "-m", manifests, "--limit", "@site.retry", state_dir=tmp_path / "state",
                     cwd=tmp_path)
    assert plain.rc == 2, plain.output
    assert h.exec(["cat", "/etc/driftctl-extra-vars"]).stdout == b"hello from -e 3\n"


# -- input errors: exit 1, nothing contacted ----------------------------------------------------------


@pytest.fixture()
def listener() -> Iterator[tuple[int, list[object]]]:
    """A TCP port on loopback that records every connection made to it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[object] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            accepted.append(conn)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join()
    server.close()


@pytest.mark.parametrize(
    ("extra_args", "message"),
    [
        (["-e", "replicas"], "-e replicas: 'replicas' is not a key=value pair"),
        (["-e", "@missing.yaml"], "-e @missing.yaml: extra variables file missing.yaml not found"),
        (["-e", '{"replicas": '], "invalid YAML"),
        (["-e", "@bad.yaml"], "bad.yaml:2: invalid YAML"),
        (["-e", "./extra.yaml"], "looks like a file name"),
        (["--limit", "@missing.retry"], "limit file missing.retry not found"),
        (["--limit", "@typo.retry"], "typo.retry:2: |host pattern 'web2' matches no host or group"),
        (["--vault-password-file", "nope.txt"], "nope.txt"),
        (["--ask-vault-pass", "--vault-password-file", "pw.txt"], "exclude each other"),
        (["--ask-vault-pass"], "vault id 'default'@prompt: there is no terminal to ask for the password on"),
    ],
)
def test_input_errors_exit_1_before_any_connection(tmp_path, listener, extra_args, message):
    port, accepted = listener
    inv = tmp_path / "inv"
    inv.mkdir()
    (inv / "hosts.yaml").write_text(f"all:\n  hosts:\n    web1:\n      ansible_host: 127.0.0.1\n"
                                    f"      ansible_port: {port}\n")
    (tmp_path / "bad.yaml").write_text("a: 1\nb: c: d\nz: 2\n")
    (tmp_path / "typo.retry").write_text("web1\nweb2\n")
    (tmp_path / "pw.txt").write_text("pw\n")
    manifests = _manifests(tmp_path / "manifests")
    for command in ("plan", "apply", "inventory"):
        args = [command, "inv"] + ([] if command == "inventory" else ["-m", manifests])
        r = driftctl(*args, *extra_args, state_dir=tmp_path / "state", cwd=tmp_path)
        assert r.rc == 1, (command, r.output)
        assert all(part in r.stderr for part in message.split("|")), (command, r.stderr)
        assert "Traceback" not in r.stderr
    assert accepted == []


def test_failing_dynamic_inventory_exits_1_before_any_connection(tmp_path, listener):
    port, accepted = listener
    inv = tmp_path / "inv"
    inv.mkdir()
    (inv / "hosts.yaml").write_text(f"all:\n  hosts:\n    web1:\n      ansible_host: 127.0.0.1\n"
                                    f"      ansible_port: {port}\n")
    script = inv / "cloud.sh"
    script.write_text("#!/bin/sh\necho 'cloud API: credentials expired' >&2\nexit 2\n")
    script.chmod(0o755)
    manifests = _manifests(tmp_path / "manifests")
    r = driftctl("plan", inv, "-m", manifests, state_dir=tmp_path / "state", cwd=tmp_path)
    assert r.rc == 1, r.output
    assert f"{script}: the inventory script 'cloud.sh --list' exited with status 2: cloud API: credentials expired" \
        in r.stderr
    assert accepted == []


# -- the vault options ----------------------------------------------------------------------------------


def _encrypt_string(value: str, name: str, password_file: Path, vault_id: str | None, home: Path) -> str:
    exe = shutil.which("ansible-vault", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if exe is None:
        pytest.fail("ansible-vault not found: pip install ansible-core")
    ident = f"{vault_id}@{password_file}" if vault_id else str(password_file)
    env = {**os.environ, "ANSIBLE_HOME": str(home), "ANSIBLE_LOCAL_TEMP": str(home / "tmp"), "PYTHONWARNINGS": "ignore"}
    args = [exe, "encrypt_string", "--vault-id", ident, "--name", name, value]
    if vault_id:
        args[2:2] = ["--encrypt-vault-id", vault_id]
    r = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_vault_options_unlock_the_inventory_and_values_stay_redacted(tmp_path):
    pw = tmp_path / "vault-pass.txt"
    pw.write_text(VAULT_PASSWORD + "\n")
    pw.chmod(0o600)
    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "hosts.yaml").write_text("all:\n  hosts:\n    web1:\n")
    (inv / "group_vars" / "all.yaml").write_text(
        "plain: visible\n" + _encrypt_string(SECRET, "db_password", pw, None, tmp_path / "ah")
    )
    (inv / "group_vars" / "ungrouped.yaml").write_text(
        _encrypt_string(SECRET + "-prod", "api_token", pw, "prod", tmp_path / "ah")
    )
    state = tmp_path / "state"

    for flags in (["--vault-password-file", str(pw), "--vault-id", f"prod@{pw}"],
                  ["--vault-id", f"default@{pw}", "--vault-id", f"prod@{pw}"],
                  ["--vault-pass-file", str(pw)]):
        r = driftctl("inventory", inv, "--host", "web1", "--json", *flags, state_dir=state)
        assert r.rc == 0, (flags, r.output)
        assert SECRET not in r.output
        doc = r.json()
        assert doc["vars"]["plain"] == "visible"
        assert doc["vars"]["db_password"] == "********"
        assert doc["vars"]["api_token"] == "********"

    # the password given as a setting (DRIFTCTL_VAULT_PASSWORD_FILE) works the same
    r = driftctl("inventory", inv, "--json", state_dir=state, env={"DRIFTCTL_VAULT_PASSWORD_FILE": str(pw)})
    assert r.rc == 0, r.output
    assert SECRET not in r.output

    missing = driftctl("inventory", inv, "--host", "web1", state_dir=state)
    assert missing.rc == 1
    assert f"{inv / 'group_vars' / 'all.yaml'}:2" in missing.stderr

    wrong = tmp_path / "wrong.txt"
    wrong.write_text("not it\n")
    bad = driftctl("inventory", inv, "--host", "web1", "--vault-password-file", str(wrong), state_dir=state)
    assert bad.rc == 1
    assert "all.yaml:2" in bad.stderr and SECRET not in bad.output
