"""Ansible Vault: the format against files the real ``ansible-vault`` wrote, and the reverse; the
password sources (files, scripts, ``*-client`` scripts, prompt); ``!vault`` and whole encrypted
files in YAML.

The encrypted data in tests/unit/data/vault/ was written by ansible-vault (see regenerate.py there).
"""

from __future__ import annotations

import binascii
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from driftctl import vault, yamlsrc
from driftctl.config import Settings
from driftctl.errors import ConfigError, InputError, InventoryError, ManifestError
from driftctl.secret import Secret

DATA = Path(__file__).parent / "data" / "vault"
PLAIN = (DATA / "file.plain").read_bytes()
PASSWORDS = {"default": "correct horse battery staple", "prod": "pr0d-Passw0rd!"}


@pytest.fixture(autouse=True)
def no_keyring() -> Iterator[None]:
    vault.install(None)
    yield
    vault.install(None)


@pytest.fixture
def pw(tmp_path: Path) -> dict[str, str]:
    """The password files, copied with mode 0600 (a checkout may leave them group- or world-writable)."""
    out = {}
    for label in PASSWORDS:
        p = tmp_path / f"pw-{label}"
        shutil.copy(DATA / f"pw-{label}", p)
        p.chmod(0o600)
        out[label] = str(p)
    return out


def script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o700)
    return str(path)


# --- the format, against ansible-vault's files ------------------------------------------------------


def test_decrypts_format_1_1_written_by_ansible_vault(pw):
    text = (DATA / "file-default.vault").read_text()
    assert text.startswith("$ANSIBLE_VAULT;1.1;AES256\n")
    keyring = vault.Keyring.from_sources([pw["default"]], [])
    assert keyring.decrypt(text) == (PLAIN, "default")


def test_decrypts_format_1_2_by_its_label_first(pw):
    text = (DATA / "file-prod.vault").read_text()
    assert text.startswith("$ANSIBLE_VAULT;1.2;AES256;prod\n")
    keyring = vault.Keyring.from_sources([pw["default"]], [f"prod@{pw['prod']}"])
    assert keyring.decrypt(text) == (PLAIN, "prod")
    assert vault.parse(text).vault_id == "prod"


def test_every_secret_is_tried_whatever_the_label(pw):
    """As Ansible: the label is a hint (it is not authenticated), so a secret under another id opens it."""
    text = (DATA / "file-prod.vault").read_text()
    keyring = vault.Keyring.from_sources([], [f"other@{pw['default']}", f"staging@{pw['prod']}"])
    assert keyring.decrypt(text) == (PLAIN, "staging")


def test_wrong_password_names_the_vault_id_and_the_ids_tried(pw):
    keyring = vault.Keyring.from_sources([pw["default"]], [])
    with pytest.raises(vault.VaultPasswordError) as e:
        keyring.decrypt((DATA / "file-prod.vault").read_text())
    msg = str(e.value)
    assert "vault id 'prod'" in msg and "HMAC does not match" in msg and "'default'" in msg
    assert PASSWORDS["default"] not in msg


def _tamper(text: str, line: int, new_char: str) -> str:
    lines = text.splitlines()
    ln = lines[line]
    lines[line] = ln[:10] + (new_char if ln[10] != new_char else "0") + ln[11:]
    return "\n".join(lines) + "\n"


def test_tampered_ciphertext_fails_the_hmac(pw):
    keyring = vault.Keyring.from_sources([pw["default"]], [])
    env = vault.parse((DATA / "file-default.vault").read_text())
    changed = bytes([env.ciphertext[0] ^ 1]) + env.ciphertext[1:]  # one bit of the ciphertext
    inner = b"\n".join(binascii.hexlify(x) for x in (env.salt, env.hmac, changed))
    text = "$ANSIBLE_VAULT;1.1;AES256\n" + binascii.hexlify(inner).decode() + "\n"
    with pytest.raises(vault.VaultPasswordError, match="HMAC does not match"):
        keyring.decrypt(text)
    assert keyring.decrypt(text.replace(binascii.hexlify(binascii.hexlify(changed)).decode(),
                                        binascii.hexlify(binascii.hexlify(env.ciphertext)).decode()))[0] == PLAIN


def test_bad_envelopes_have_their_own_messages(pw):
    keyring = vault.Keyring.from_sources([pw["default"]], [])
    good = (DATA / "file-default.vault").read_text()
    cases = {
        "not Ansible Vault data": "just text\n",
        "version '1.0' is not supported": good.replace(";1.1;", ";1.0;", 1),
        "cipher 'AES' is not supported": good.replace(";AES256", ";AES", 1),
        "bad vault header": good.replace("AES256", "AES256;a;b", 1),
        "envelope is not hexadecimal": _tamper(good, 2, "z"),
        "nothing after the header": "$ANSIBLE_VAULT;1.1;AES256\n",
        "salt, HMAC or ciphertext missing": "$ANSIBLE_VAULT;1.1;AES256\n" + "61" * 40 + "\n",
    }
    for expected, text in cases.items():
        with pytest.raises(vault.VaultFormatError, match=expected):
            keyring.decrypt(text)


def test_no_password_given_names_the_vault_id():
    with pytest.raises(vault.VaultPasswordError, match=r"vault id 'prod'.*no vault password was given"):
        vault.decrypt((DATA / "file-prod.vault").read_text())


def test_ansible_vault_decrypts_what_driftctl_encrypts(tmp_path, pw):
    """The reverse direction: 1.1 without a label, 1.2 with one, and a !vault value in a vars file."""
    one = tmp_path / "one.vault"
    one.write_text(vault.encrypt("first\nsecond ✓\n", PASSWORDS["default"]))
    two = tmp_path / "two.vault"
    two.write_text(vault.encrypt(b"0123456789abcdef", PASSWORDS["prod"], vault_id="prod"))
    assert one.read_text().startswith("$ANSIBLE_VAULT;1.1;AES256\n")
    assert two.read_text().startswith("$ANSIBLE_VAULT;1.2;AES256;prod\n")
    assert _ansible_vault_view(one, pw) == "first\nsecond ✓\n".encode()
    assert _ansible_vault_view(two, pw) == b"0123456789abcdef"
    # a value as `driftctl` would print for a vars file: Ansible reads it back as the value
    snippet = vault.encrypt_string("token", "t0k3n", PASSWORDS["prod"], vault_id="prod")
    assert snippet.startswith("token: !vault |\n          $ANSIBLE_VAULT;1.2;AES256;prod\n")
    envelope = "".join(line.strip() + "\n" for line in snippet.splitlines()[1:])
    three = tmp_path / "three.vault"
    three.write_text(envelope)
    assert _ansible_vault_view(three, pw) == b"t0k3n"


def _ansible_vault_view(path: Path, pw: dict[str, str]) -> bytes:
    found = shutil.which("ansible-vault", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("ansible-vault not found: pip install ansible-core")
    env = {**os.environ, "ANSIBLE_HOME": tempfile.mkdtemp(prefix="driftctl-ah-"), "PYTHONWARNINGS": "ignore"}
    r = subprocess.run([found, "decrypt", "--vault-id", f"default@{pw['default']}", "--vault-id",
                        f"prod@{pw['prod']}", "--output", "-", str(path)],
                       capture_output=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_encrypt_round_trip_and_padding_of_every_length():
    for n in (0, 1, 15, 16, 17, 31, 32, 33):
        data = bytes(range(n))
        text = vault.encrypt(data, "pw", salt=b"s" * 32)
        assert vault.decrypt_with(vault.parse(text), b"pw") == data
    assert vault.decrypt_with(vault.parse(vault.encrypt("x", "pw")), b"other") is None


# --- password sources ----------------------------------------------------------------------------


def test_password_file_strips_surrounding_whitespace(tmp_path):
    p = tmp_path / "pw"
    p.write_text("  correct horse battery staple \n\n")
    p.chmod(0o600)
    assert vault.Keyring.from_sources([str(p)], []).secrets[0].password == PASSWORDS["default"].encode()


def test_executable_password_file_is_run(tmp_path):
    src = script(tmp_path / "get-pass", f"echo '{PASSWORDS['default']}'\n")
    keyring = vault.Keyring.from_sources([src], [])
    assert keyring.decrypt((DATA / "file-default.vault").read_text()) == (PLAIN, "default")


def test_client_script_is_asked_for_its_vault_id(tmp_path):
    src = script(tmp_path / "keys-client.sh", f"""
if [ "$1" = --vault-id ] && [ "$2" = prod ]; then echo '{PASSWORDS['prod']}'; exit 0; fi
echo "no secret for $2" >&2; exit 2
""")
    keyring = vault.Keyring.from_sources([], [f"prod@{src}"])
    assert keyring.decrypt((DATA / "file-prod.vault").read_text()) == (PLAIN, "prod")
    with pytest.raises(ConfigError, match="client script has no secret for vault id 'dev': no secret for dev"):
        vault.Keyring.from_sources([], [f"dev@{src}"])


def test_failing_or_empty_password_script(tmp_path):
    bad = script(tmp_path / "bad", "echo oops >&2; exit 3\n")
    with pytest.raises(ConfigError, match=r"vault id 'x' \(.*bad\): the password script exited with status 3"):
        vault.Keyring.from_sources([], [f"x@{bad}"])
    empty = script(tmp_path / "empty", "echo\n")
    with pytest.raises(ConfigError, match="printed an empty password"):
        vault.Keyring.from_sources([empty], [])


def test_untrusted_password_files_are_refused(tmp_path):
    p = tmp_path / "pw"
    p.write_text("x\n")
    p.chmod(0o666)
    with pytest.raises(ConfigError, match=r"refused: the password file is writable by every user \(mode 0666\)"):
        vault.Keyring.from_sources([str(p)], [])
    s = script(tmp_path / "s", "echo x\n")
    os.chmod(s, 0o777)
    with pytest.raises(ConfigError, match="refused"):
        vault.Keyring.from_sources([], [f"a@{s}"])


def test_missing_empty_and_directory_sources_name_the_source(tmp_path):
    with pytest.raises(ConfigError, match=r"vault password file .*/nope: the password file does not exist"):
        vault.Keyring.from_sources([str(tmp_path / "nope")], [])
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="the password file is empty"):
        vault.Keyring.from_sources([], [f"e@{tmp_path / 'empty'}"])
    with pytest.raises(ConfigError, match="is a directory"):
        vault.Keyring.from_sources([str(tmp_path)], [])
    for slug in ("a;b@x", "lab@", ""):
        with pytest.raises(ConfigError, match="vault id"):
            vault.Keyring.from_sources([], [slug])


def test_an_empty_label_is_the_default_id(pw):
    assert vault.Keyring.from_sources([], [f"@{pw['default']}", pw["prod"]]).ids == ["default", "default"]


def test_prompt_asks_on_the_terminal():
    """A real pseudo-terminal: the password typed there opens the 1.2 file; the prompt names the id."""
    import pty

    code = ("from driftctl import vault\n"
            f"k = vault.Keyring.from_sources([], ['prod@prompt'])\n"
            f"print('RESULT', k.decrypt(open({str(DATA / 'file-prod.vault')!r}).read()))\n")
    pid, fd = pty.fork()
    if pid == 0:  # the child: its controlling terminal is the pty
        os.execv(sys.executable, [sys.executable, "-c", code])
    out = b""
    try:
        while b"Vault password (prod): " not in out:
            out += os.read(fd, 1024)
        os.write(fd, PASSWORDS["prod"].encode() + b"\n")
        while True:
            try:
                chunk = os.read(fd, 1024)
            except OSError:  # the child is gone: EIO
                break
            if not chunk:
                break
            out += chunk
    finally:
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, out
    assert f"RESULT ({PLAIN!r}, 'prod')".encode() in out, out
    assert PASSWORDS["prod"].encode() not in out  # getpass does not echo it


def test_prompt_without_a_terminal_is_an_error():
    """In a new session there is no controlling terminal: /dev/tty cannot be opened."""
    code = ("from driftctl import vault\n"
            "try:\n    vault.Keyring.from_sources([], ['prod@prompt'])\n"
            "except Exception as e:\n    print(type(e).__name__, e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, start_new_session=True,
                       stdin=subprocess.DEVNULL, timeout=60)
    assert "ConfigError vault id 'prod'@prompt: there is no terminal" in r.stdout, r.stdout + r.stderr


def test_install_from_settings(pw):
    assert vault.install_from(Settings()) is None and vault.current() is None
    keyring = vault.install_from(Settings(vault_password_file=(pw["default"],), vault_ids=(f"prod@{pw['prod']}",)))
    assert keyring is vault.current() and keyring is not None
    assert keyring.ids == ["prod", "default"]  # --vault-id first, as Ansible orders them
    assert "pr0d" not in repr(keyring)


# --- YAML ----------------------------------------------------------------------------------------


def _vault_value(name: str, value: str, password: str, vault_id: str | None = None) -> str:
    return vault.encrypt_string(name, value, password, vault_id)


def test_vault_tag_is_a_secret(pw):
    vault.install(vault.Keyring.from_sources([pw["default"]], [f"prod@{pw['prod']}"]))
    text = "plain: 1\n" + _vault_value("token", "t0k3n ✓", PASSWORDS["prod"], "prod")
    data = yamlsrc.load_text(text, "vars.yml")
    assert data == {"plain": 1, "token": "t0k3n ✓"}
    assert isinstance(data["token"], Secret)
    assert "t0k3n" not in repr(data)
    older = _vault_value("token", "old-tag", PASSWORDS["default"]).replace("!vault", "!vault-encrypted")
    assert yamlsrc.load_text(older, "vars.yml") == {"token": "old-tag"}  # Ansible's older spelling


def test_vault_tag_errors_name_file_line_and_vault_id(pw):
    text = "a: 1\nb: 2\n" + _vault_value("token", "t0k3n", PASSWORDS["prod"], "prod")
    with pytest.raises(InventoryError) as e:
        yamlsrc.load_text(text, "group_vars/web.yml", InventoryError)
    assert str(e.value).startswith("group_vars/web.yml:3: vault-encrypted data (vault id 'prod') but no vault "
                                   "password was given")
    vault.install(vault.Keyring.from_sources([pw["default"]], []))
    with pytest.raises(ManifestError, match=r"^vars.yaml:3: cannot decrypt vault data with vault id 'prod'"):
        yamlsrc.load_text(text, "vars.yaml", ManifestError)
    with pytest.raises(InputError, match=r"^x.yml:2: damaged vault data: the envelope is not hexadecimal"):
        yamlsrc.load_text("a: 1\nb: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  zz\n", "x.yml")
    with pytest.raises(InputError, match=r"^x.yml:1: !vault takes the vault text as a block string"):
        yamlsrc.load_text("b: !vault [1]\n", "x.yml")


def test_whole_vault_file_is_secret_values_with_plain_keys(pw):
    vault.install(vault.Keyring.from_sources([pw["default"]], [f"prod@{pw['prod']}"]))
    path = DATA / "inventory" / "group_vars" / "all.yml"
    data = yamlsrc.load_vars_file(path, InventoryError)
    assert data == {"ntp_server": "ntp.example.com", "site_secret": "all-hosts-secret", "numbers": [1, 2],
                    "nested": {"key": "inner-secret"}}
    assert all(isinstance(k, str) and not isinstance(k, Secret) for k in data)
    assert isinstance(data["site_secret"], Secret) and isinstance(data["nested"]["key"], Secret)
    assert data.loc("numbers").line == 3 and data.loc("numbers").file == str(path)


def test_whole_vault_file_wrong_password_or_not_allowed(pw):
    path = DATA / "inventory" / "host_vars" / "web1" / "secrets.yml"
    vault.install(vault.Keyring.from_sources([pw["default"]], []))
    with pytest.raises(InventoryError, match=rf"^{path}:1: cannot decrypt vault data with vault id 'prod'"):
        yamlsrc.load_vars_file(path, InventoryError)
    with pytest.raises(ManifestError, match=rf"^{path}:1: this file is vault-encrypted as a whole"):
        yamlsrc.load_file(path, ManifestError)


def test_cryptography_is_imported_only_when_vault_data_is_met() -> None:
    """A host running `driftctl pull` without python3-cryptography works until a vaulted value is
    read, and then gets a clear error, not a traceback."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import driftctl.vault as v\n"
        "assert 'cryptography' not in sys.modules, 'imported with the module'\n"
        "sys.modules['cryptography'] = None  # as on a host without it\n"
        "try:\n"
        "    v.encrypt('x', 'pw')\n"
        "except v.VaultError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "needs the Python library cryptography" in out and "python3-cryptography" in out, out
