"""``-e/--extra-vars``: Ansible's parsing (key=value, @FILE, inline JSON/YAML) and Ansible's highest
precedence, checked against ansible-core itself: its ``parse_kv`` for the key=value syntax, and
``ansible HOST -m debug`` (run on the controller, no connection) for which value wins."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from driftctl.errors import ConfigError, InputError
from driftctl.inventory import extravars, load_inventory

KV_CASES = [
    "a=1", "a=1 b=2", 'a="x y" b=2', "a='x y'", "a=b=c", "a=\\=b=c", 'msg="{{ x | default(1) }}"',
    "msg={{ a b }} c=d", 'a="say \\"hi\\"" b=1', "a=  b=2", "a=x\\ny", "k=\\u00e9t\\x41", 'a="", b=2',
    "a=1\nb=2", "path=C:\\\\dir", "a='it''s'", "a=1  b=2", 'spaces="a  b"', "a=--x", " a=1", "url=http://h/?q=1&r=2",
]


def _ansible_parse_kv():
    if os.environ.get("DRIFTCTL_SKIP_ANSIBLE"):
        pytest.skip("DRIFTCTL_SKIP_ANSIBLE=1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from ansible.parsing.splitter import parse_kv
    return parse_kv


@pytest.mark.parametrize("text", KV_CASES)
def test_key_value_pairs_split_as_ansible_parse_kv(text):
    assert extravars.parse_kv(text) == dict(_ansible_parse_kv()(text))


def _inventory(tmp_path: Path) -> Path:
    inv = tmp_path / "inv"
    (inv / "host_vars").mkdir(parents=True)
    (inv / "group_vars").mkdir()
    (inv / "hosts.yaml").write_text(
        "all:\n  vars: {x: all_inline}\n  children:\n    web:\n      vars: {x: web_inline}\n"
        "      hosts:\n        web1: {x: host_inline, ansible_host: 10.0.0.1}\n        web2:\n"
    )
    (inv / "group_vars" / "web.yaml").write_text("x: group_vars_web\n")
    (inv / "host_vars" / "web1.yaml").write_text("x: host_vars_web1\nansible_user: deploy\n")
    return inv


def test_extra_vars_beat_host_vars_and_every_other_level(tmp_path):
    inv = load_inventory(_inventory(tmp_path), extra_vars=extravars.read(["x=cli"]))
    assert inv.hosts["web1"].vars["x"] == "cli"
    assert inv.hosts["web2"].vars["x"] == "cli"
    assert str(inv.var_source("web1", "x")) == "-e x=********"


def test_extra_vars_set_connection_variables(tmp_path):
    extra = extravars.read(["ansible_host=192.0.2.7 ansible_user=ops ansible_port=2200"])
    host = load_inventory(_inventory(tmp_path), extra_vars=extra).hosts["web1"]
    assert (host.connection.address, host.connection.user, host.connection.port) == ("192.0.2.7", "ops", 2200)


def test_a_later_argument_wins_key_by_key_and_dicts_are_replaced(tmp_path):
    f = tmp_path / "vars.yaml"
    f.write_text("x: from_file\nd: {a: 1, b: 2}\nkeep: yes\n")
    extra = extravars.read(["x=first d=text", f"@{f}", '{"d": {"c": 3}}'])
    assert extra.values == {"x": "from_file", "d": {"c": 3}, "keep": True}
    assert str(extra.sources["x"]) == f"{f}:1"
    assert str(extra.sources["keep"]) == f"{f}:3"
    assert str(extra.sources["d"]) == "-e {'d': ********}"


def test_key_value_values_are_strings_and_json_values_are_typed():
    assert extravars.read(["n=1 b=true"]).values == {"n": "1", "b": "true"}
    assert extravars.read(['{"n": 1, "b": true, "l": [1]}']).values == {"n": 1, "b": True, "l": [1]}
    assert extravars.read(["{n: 1, s: 'x'}"]).values == {"n": 1, "s": "x"}  # inline YAML too


def test_json_file_and_relative_paths_from_cwd(tmp_path):
    (tmp_path / "v.json").write_text('{"region": "eu-west-1"}')
    assert extravars.read(["@v.json"], cwd=tmp_path).values == {"region": "eu-west-1"}


def test_secret_tag_in_an_extra_vars_file_stays_a_secret(tmp_path):
    from driftctl.secret import Secret

    (tmp_path / "s.yaml").write_text("token: !secret s3cr3t-value\n")
    value = extravars.read([f"@{tmp_path / 's.yaml'}"]).values["token"]
    assert isinstance(value, Secret)


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("env", "'env' is not a key=value pair"),
        ("a=1 stray", "'stray' is not a key=value pair"),
        ("=x", "a word has no variable name before its '='"),
        ('a="open', "unclosed \" quote"),
        ("a={{ x", "unclosed Jinja2 block"),
        ('{"a": ', "invalid YAML"),
        ("[1, 2]", "inline extra variables must be a mapping of names to values, not a list"),
        ("/etc/vars.yaml", "looks like a file name"),
        ("./vars.yaml", "looks like a file name"),
        ("@", "'@' names no file"),
    ],
)
def test_bad_arguments_are_config_errors_naming_the_argument(arg, message):
    with pytest.raises(ConfigError) as e:
        extravars.read([arg])
    assert message in str(e.value)
    assert e.value.location is not None and e.value.location.file.startswith("-e ")


def test_missing_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(ConfigError, match=r"extra variables file nope\.yaml not found"):
        extravars.read(["@nope.yaml"], cwd=tmp_path)
    with pytest.raises(ConfigError, match="is a directory"):
        extravars.read([f"@{tmp_path}"])


def test_bad_file_content_names_the_file_and_line(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("a: 1\nb: [1, 2\n")
    with pytest.raises(InputError) as e:
        extravars.read([f"@{f}"])
    assert e.value.location is not None and e.value.location.file == str(f) and e.value.location.line
    f.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a mapping of names to values, not a list") as e:
        extravars.read([f"@{f}"])
    assert str(e.value.location) == f"{f}:1"
    f.write_text("a: 1\na: 2\n")
    with pytest.raises(InputError, match="a") as e:
        extravars.read([f"@{f}"])
    assert e.value.location == type(e.value.location)(str(f), 2)


# -- the oracle: ansible itself ----------------------------------------------------------------------


def _ansible_debug(inv: Path, host: str, var: str, extra: list[str], cwd: Path) -> object:
    if os.environ.get("DRIFTCTL_SKIP_ANSIBLE"):
        pytest.skip("DRIFTCTL_SKIP_ANSIBLE=1")
    exe = shutil.which("ansible", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if exe is None:
        pytest.fail("ansible not found: pip install ansible-core (or set DRIFTCTL_SKIP_ANSIBLE=1)")
    home = cwd / "ansible-home"
    env = {**os.environ, "ANSIBLE_HOME": str(home), "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
           "ANSIBLE_NOCOLOR": "1", "PYTHONWARNINGS": "ignore"}
    args = [exe, "-i", str(inv), host, "-m", "debug", "-a", f"var={var}"]
    for e in extra:
        args += ["-e", e]
    r = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env, cwd=cwd)
    assert r.returncode == 0, r.stdout + r.stderr
    # the default output: "web1 | SUCCESS => {JSON}"
    return json.loads(r.stdout.split("=>", 1)[1])[var]


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra",
    [
        ["x=cli"],
        ["x=first", "@vars.yaml"],
        ["@vars.yaml", "x=last"],
        ['{"x": {"nested": [1, 2]}}'],
        ["@vars.yaml", '{"x": 5}', "y=1"],
        ['x="quoted value" y=2'],
        ["x=a\\tb"],
    ],
)
def test_same_winning_value_as_ansible(tmp_path, extra):
    inv = _inventory(tmp_path)
    (tmp_path / "vars.yaml").write_text("x: from_file\n")
    ours = load_inventory(inv, extra_vars=extravars.read(extra, cwd=tmp_path)).hosts["web1"].vars["x"]
    assert ours == _ansible_debug(inv, "web1", "x", extra, tmp_path)


def _ansible_vault(args: list[str], home: Path) -> None:
    exe = shutil.which("ansible-vault", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if exe is None:
        pytest.fail("ansible-vault not found: pip install ansible-core")
    env = {**os.environ, "ANSIBLE_HOME": str(home), "ANSIBLE_LOCAL_TEMP": str(home / "tmp"), "PYTHONWARNINGS": "ignore"}
    r = subprocess.run([exe, *args], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr


def test_a_vault_encrypted_extra_vars_file_is_decrypted_into_secrets(tmp_path):
    from driftctl import vault
    from driftctl.secret import Secret

    pw = tmp_path / "pw"
    pw.write_text("extra-vars-pass\n")
    pw.chmod(0o600)
    f = tmp_path / "secrets.yml"
    f.write_text("db_password: hunter2-not-real\nport: 5432\n")
    _ansible_vault(["encrypt", "--vault-password-file", str(pw), str(f)], tmp_path / "ah")
    assert f.read_text().startswith("$ANSIBLE_VAULT;1.1;AES256")
    with pytest.raises(InputError, match="vault"):  # no password given: an error naming the file
        vault.install(None)
        extravars.read([f"@{f}"])
    vault.install(vault.Keyring.from_sources([str(pw)], []))
    try:
        extra = extravars.read([f"@{f}"])
    finally:
        vault.install(None)
    value = extra.values["db_password"]
    assert isinstance(value, Secret) and str.__str__(value) == "hunter2-not-real"
    assert str(extra.sources["db_password"]) == f"{f}:1"


def test_recorded_argv_hides_extra_variable_values():
    from driftctl.cli.common import recorded_argv

    argv = ["apply", "inv", "-e", "ansible_become_password=hunter2 release=2.4", "--extra-vars", '{"token": "t0k"}',
            "-etoken=abc", "--extra-vars=pw='x y'", "-e", "@vars.yaml", "--limit", "web", "-e", 'bad="open',
            "-ve", "a=1", "-vJea=2", "-v", "-l", "e"]
    assert recorded_argv(argv) == [
        "apply", "inv", "-e", "ansible_become_password=******** release=********", "--extra-vars", "{...}",
        "-etoken=********", "--extra-vars=pw=********", "-e", "@vars.yaml", "--limit", "web", "-e", "bad=******** ...",
        "-ve", "a=********", "-vJea=********", "-v", "-l", "e",
    ]
