"""Second read of issue 11's vault, inventory scripts, -e and --limit @FILE: the holes found, each a test
that failed before its fix. Decrypted values must reach no error message in clear."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from driftctl import vault
from driftctl.errors import InputError
from driftctl.inventory import dynamic, load_inventory

PASSWORD = "review-pass"
PLAIN = "Hunter2Secret"


@pytest.fixture()
def keyring() -> Iterator[vault.Keyring]:
    ring = vault.Keyring((vault.VaultSecret("default", PASSWORD.encode(), "test"),))
    vault.install(ring)
    yield ring
    vault.install(None)


def _vaulted(name: str, value: str) -> str:
    text = vault.encrypt(value, PASSWORD)
    return f"{name}: !vault |\n" + "".join(f"  {line}\n" for line in text.splitlines())


def _inventory(tmp_path: Path, group_vars: str) -> Path:
    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "hosts.yml").write_text("all:\n  hosts:\n    h1: {ansible_host: 127.0.0.1}\n")
    (inv / "group_vars" / "all.yml").write_text(group_vars)
    return inv


@pytest.mark.parametrize("port", [
    '"{{ vault_pw }}"',            # rendered: a plain str again, shown by repr before the fix
    '"{{ vault_pw }}0"',           # composed
    '"{{ vault_pw + 1 }}"',        # a TypeError in the template: a crash with a traceback before the fix
    '"{{ vault_pw | int + vault_pw }}"',
])
def test_a_vaulted_value_rendered_into_a_bad_connection_setting_is_not_shown(tmp_path, keyring, port):
    inv = _inventory(tmp_path, _vaulted("vault_pw", PLAIN) + f"ansible_port: {port}\n")
    with pytest.raises(InputError) as e:
        load_inventory(inv).hosts["h1"].connection  # noqa: B018
    assert PLAIN not in str(e.value) and PLAIN not in repr(e.value)
    assert "ansible_port for host 'h1'" in str(e.value) and "all.yml" in str(e.value)


@pytest.mark.parametrize(("text", "said"), [
    (f"[web]\nweb1 ansible_password {PLAIN}\n", "expected key=value after host 'web1'"),
    (f"[web]\nweb1\n[web:vars]\ndb_password {PLAIN}\n", "expected key=value in [web:vars]"),
    (f"[web]\nweb1 'a={PLAIN}\n", "cannot parse host line"),
    (f"[web:children]\n{PLAIN} x\n", "expected a group name in [web:children]"),
])
def test_a_bad_line_of_a_vaulted_ini_hosts_file_is_not_quoted(tmp_path, keyring, text, said):
    inv = tmp_path / "inv"
    inv.mkdir()
    (inv / "hosts").write_text(vault.encrypt(text, PASSWORD))
    with pytest.raises(InputError) as e:
        load_inventory(inv)
    assert said in str(e.value) and "not shown (the file is vault-encrypted)" in str(e.value)
    assert PLAIN not in str(e.value)


# --- inventory scripts ---------------------------------------------------------------------------


@pytest.mark.slow
def test_an_inventory_script_whose_daemon_keeps_its_output_open_does_not_hold_driftctl(tmp_path):
    """Ansible waits for the pipe to close, i.e. for the daemon to end; the killed process group does not
    hold a setsid daemon, so driftctl waited too (past its own timeout) before the fix."""
    pidfile = tmp_path / "daemon.pid"
    path = tmp_path / "inv" / "cloud.sh"
    path.parent.mkdir()
    path.write_text(f"#!/bin/sh\nsetsid sh -c 'echo $$ > {pidfile}; exec sleep 40' &\n"
                    "echo '{\"web\": {\"hosts\": [\"w1\"]}, \"_meta\": {\"hostvars\": {}}}'\n")
    path.chmod(0o755)
    try:
        with pytest.raises(InputError, match=r"'cloud\.sh --list' exited, but a process it started still holds "
                                             r"its standard output open"):
            load_inventory(tmp_path / "inv", script_timeout=20)
    finally:
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGKILL)


def test_an_inventory_script_printing_too_much_is_stopped(tmp_path, monkeypatch):
    monkeypatch.setattr(dynamic, "MAX_OUTPUT", 1 << 20, raising=False)
    path = tmp_path / "inv" / "big.py"
    path.parent.mkdir()
    path.write_text(f"#!{sys.executable}\nimport sys\nsys.stdout.write('[' + '1,' * (4 << 20) + '1]')\n")
    path.chmod(0o755)
    with pytest.raises(InputError, match=r"'big\.py --list' printed more than 1 MiB, so it was stopped"):
        load_inventory(tmp_path / "inv")


# --- YAML alias bombs ----------------------------------------------------------------------------


def _laughs(levels: int) -> str:
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_in_extra_vars_and_group_vars_is_refused(tmp_path):
    """Eight levels of nine: 43 million values from 80 written. Loading shares them (cheap); the -e
    file and group_vars were accepted before, and `driftctl inventory --host` then walked all of it
    (ten levels did not finish)."""
    from driftctl.inventory import extravars

    bomb = tmp_path / "bomb.yml"
    bomb.write_text(_laughs(8))
    with pytest.raises(InputError, match=r"bomb\.yml:1: YAML aliases expand this document to [\d,]+ values"):
        extravars.read([f"@{bomb}"])
    inv = _inventory(tmp_path, _laughs(8))
    with pytest.raises(InputError, match=r"all\.yml:1: YAML aliases expand"):
        load_inventory(inv).hosts["h1"].vars  # noqa: B018
    # anchors as inventories use them (a merge per host, a shared list) still load
    hosts = "".join(f"    h{i}: {{<<: *base, n: {i}}}\n" for i in range(3000))
    text = "x-base: &base {port: 22, tags: &t [a, b, c], more: {k: v}}\nall:\n  hosts:\n" + hosts
    from driftctl import yamlsrc

    data = yamlsrc.load_text(text, "hosts.yml")
    assert data["all"]["hosts"]["h2999"]["tags"] == ["a", "b", "c"]


# --- vault password sources ----------------------------------------------------------------------


@pytest.mark.parametrize("executable", [False, True])
def test_a_password_source_in_a_directory_every_user_may_write_is_refused(tmp_path, executable):
    """Another user cannot change the file, but can rename it away and put their own there: their script
    then runs as you, or their password encrypts your next secrets. A sticky directory (/tmp) is fine."""
    shared = tmp_path / "shared"
    shared.mkdir()
    pw = shared / "pw"
    pw.write_text("#!/bin/sh\necho from-script\n" if executable else "from-file\n")
    pw.chmod(0o700 if executable else 0o600)
    shared.chmod(0o777)
    try:
        with pytest.raises(InputError, match=r"refused: the password file is in directory .*shared, which every "
                                             r"user may write \(mode 0777\)"):
            vault.Keyring.from_sources([str(pw)], [])
        # the same through a symlink kept in a safe directory
        link = tmp_path / "pw-link"
        link.symlink_to(pw)
        with pytest.raises(InputError, match=r"which every user may write"):
            vault.Keyring.from_sources([], [f"prod@{link}"])
        shared.chmod(0o1777)  # sticky: others cannot replace your file
        ring = vault.Keyring.from_sources([str(pw)], [])
        assert ring.secrets[0].password == (b"from-script" if executable else b"from-file")
    finally:
        shared.chmod(0o755)


# --- -e values in errors and sources -------------------------------------------------------------


@pytest.mark.parametrize(("arg", "shown"), [
    ('ansible_become_password="Hunter2Secret', "-e ansible_become_password=******** ..."),  # unclosed quote
    ("user=ops =Hunter2Secret", "-e user=******** ********"),                              # no name
    ('{"db_password": "Hunter2Secret", }x', "-e {...}"),                                    # bad inline YAML
])
def test_an_extra_variable_in_error_is_not_shown(arg, shown):
    from driftctl.inventory import extravars

    with pytest.raises(InputError) as e:
        extravars.read([arg])
    assert PLAIN not in str(e.value) and str(e.value).startswith(shown)


def test_the_source_of_an_extra_variable_does_not_show_its_value(tmp_path):
    """`driftctl inventory --host` shows each variable's source: the value column redacts a password
    variable, the source column said `-e ansible_become_password=Hunter2Secret` before the fix."""
    from driftctl.inventory import extravars

    extra = extravars.read([f"ansible_become_password={PLAIN} release=2.4", f'{{"db": "{PLAIN}"}}'])
    assert {k: str(v) for k, v in extra.sources.items()} == {
        "ansible_become_password": "-e ansible_become_password=********",
        "release": "-e release=********",
        "db": "-e {'db': ********}",
    }


@pytest.mark.parametrize(("hostvars", "name", "message"), [
    ({"ansible_host": "10.0.0.1; rm -rf /"}, "web1", r"ansible_host for host 'web1': '10\.0\.0\.1; rm -rf /' is not a "
                                                     r"host name, IP address or container name: it holds ';'"),
    ({"ansible_host": "-oProxyCommand=touch /tmp/x"}, "web1", r"it starts with '-'"),
    ({}, "-l", r"host name '-l' \(its address\): '-l' is not a host name, IP address or container name"),
    ({"ansible_host": "$(id)"}, "web1", r"it holds '\$'"),
])
def test_an_address_from_an_inventory_script_that_is_not_an_address_is_an_error(tmp_path, hostvars, name, message):
    """`podman exec -i ... -l sh` runs on the latest container, `ssh -oProxyCommand=...` runs a command:
    an address reaches argument lists, so it must be an address. Accepted before the fix."""
    import json

    path = tmp_path / "inv" / "cloud.py"
    path.parent.mkdir()
    listing = {"web": {"hosts": [name]}, "_meta": {"hostvars": {name: {"ansible_connection": "podman", **hostvars}}}}
    path.write_text(f"#!{sys.executable}\nprint({json.dumps(json.dumps(listing))})\n")
    path.chmod(0o755)
    with pytest.raises(InputError, match=message):
        load_inventory(tmp_path / "inv").hosts[name].connection  # noqa: B018
    # a local host's address goes nowhere: any name
    listing["_meta"]["hostvars"][name]["ansible_connection"] = "local"  # type: ignore[index]
    path.write_text(f"#!{sys.executable}\nprint({json.dumps(json.dumps(listing))})\n")
    assert load_inventory(tmp_path / "inv").hosts[name].connection.transport == "local"



# --- --limit @FILE ---------------------------------------------------------------------------------


def test_a_comment_in_a_limit_file_is_called_a_comment(tmp_path):
    """Ansible has no comments in limit files (the line is a host name matching nothing, a warning);
    the error said 'one host pattern per line' about '# failed hosts' before the fix."""
    from driftctl.inventory import limit

    retry = tmp_path / "site.retry"
    retry.write_bytes(b"web1\r\n# failed hosts\r\n")
    with pytest.raises(InputError, match=r"site\.retry:2: a limit file has no comments"):
        limit.read(f"@{retry}")
    retry.write_bytes(b"web1\r\n\r\ndb1\r\n")  # CRLF line ends are fine
    assert limit.read(f"@{retry}").parts == ["web1", "db1"]


def test_a_vaulted_ssh_args_value_is_not_quoted_in_the_ignored_options_warning(tmp_path, keyring):
    """ansible_ssh_common_args is vaulted when it holds a password (`sshpass -p ...` in a ProxyCommand);
    the warning about the options driftctl ignores quoted them in clear before the fix."""
    args = f'-o ProxyCommand="sshpass -p {PLAIN} ssh -W %h:%p jump"'
    inv = _inventory(tmp_path, _vaulted("ansible_ssh_common_args", args))
    loaded = load_inventory(inv)
    loaded.hosts["h1"].connection  # noqa: B018
    shown = "\n".join(loaded.warnings)
    assert "ansible_ssh_common_args: driftctl ignores" in shown and PLAIN not in shown


def test_a_password_script_named_relative_to_the_current_directory_runs(tmp_path, monkeypatch):
    """`--vault-password-file get-pass` (a script in the current directory): Ansible runs it by its
    real path; driftctl ran 'get-pass', which the system looked up in PATH: 'No such file' before the fix."""
    script = tmp_path / "get-pass"
    script.write_text("#!/bin/sh\necho from-script\n")
    script.chmod(0o700)
    client = tmp_path / "keys-client"
    client.write_text('#!/bin/sh\necho "for-$2"\n')
    client.chmod(0o700)
    monkeypatch.chdir(tmp_path)
    ring = vault.Keyring.from_sources(["get-pass"], ["prod@keys-client"])
    assert sorted(s.password for s in ring.secrets) == [b"for-prod", b"from-script"]


def test_an_inventory_script_given_by_a_relative_name_runs(tmp_path, monkeypatch):
    """`driftctl inventory cloud.py` in the script's directory: 'No such file or directory' before the fix
    (the name was looked up in PATH)."""
    path = tmp_path / "cloud.py"
    path.write_text(f"#!{sys.executable}\nprint('{{\"web\": {{\"hosts\": [\"w1\"]}}}}')\n")
    path.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    assert list(load_inventory(Path("cloud.py")).hosts) == ["w1"]


@pytest.mark.slow
def test_an_inventory_script_that_closes_its_output_and_goes_on_is_still_stopped(tmp_path):
    path = tmp_path / "inv" / "lingers.sh"
    path.parent.mkdir()
    path.write_text("#!/bin/sh\necho '{\"web\": {\"hosts\": [\"w1\"]}}'\nexec >&- 2>&-\nsleep 30\n")
    path.chmod(0o755)
    with pytest.raises(InputError, match=r"'lingers\.sh --list' did not finish in 2 s, so it was stopped"):
        load_inventory(tmp_path / "inv", script_timeout=2)
