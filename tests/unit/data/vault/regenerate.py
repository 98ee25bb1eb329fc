"""How the vault test data here was made: by the real ``ansible-vault`` (ansible-core), once.

    .venv/bin/python tests/unit/data/vault/regenerate.py

Writes the password files, single encrypted values, and an inventory whose group_vars and host_vars
hold ``!vault`` values and whole encrypted files. Every ciphertext comes from ``ansible-vault`` (a
random salt each time, so running it again changes the files; the tests do not depend on the bytes).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
BIN = Path(sys.executable).parent
PASSWORDS = {"default": "correct horse battery staple", "prod": "pr0d-Passw0rd!"}
# values with what makes encodings go wrong: a newline, quotes, non-ASCII, a 16-byte multiple
VALUES = {
    "db_password": ("default", "s3cret-db-pass"),
    "api_token": ("prod", "tok_0123456789abcdef"),
    "multiline_key": ("prod", "-----BEGIN KEY-----\nAAAA\nBBBB\n-----END KEY-----\n"),
    "unicode_secret": ("default", "pässwörd \"quoted\" 'x' ✓"),
    "block16": ("default", "0123456789abcdef"),
}


def vault(*args: str, stdin: str | None = None) -> str:
    env = {**os.environ, "ANSIBLE_HOME": tempfile.mkdtemp(prefix="ah-"), "PYTHONWARNINGS": "ignore"}
    r = subprocess.run([str(BIN / "ansible-vault"), *args], input=stdin, capture_output=True, text=True,
                       env=env, cwd=HERE, check=True)
    return r.stdout


def ids(*names: str) -> list[str]:
    out = []
    for n in names:
        out += ["--vault-id", f"{n}@pw-{n}"]
    return out


def encrypt_string(name: str, label: str, value: str) -> str:
    args = ["encrypt_string", *ids(label), "--stdin-name", name]
    if label != "default":
        args += ["--encrypt-vault-id", label]
    return vault(*args, stdin=value)


def encrypt_file(path: Path, label: str) -> None:
    args = ["encrypt", *ids(label), str(path)]
    if label != "default":
        args += ["--encrypt-vault-id", label]
    vault(*args)


def main() -> None:
    for label, pw in PASSWORDS.items():
        p = HERE / f"pw-{label}"
        p.write_text(pw + "\n")
        p.chmod(0o600)
    plain = "the plaintext\nof two lines\n"
    for label in PASSWORDS:
        f = HERE / f"file-{label}.vault"
        f.write_text(plain)
        encrypt_file(f, label)
    (HERE / "file.plain").write_text(plain)

    inv = HERE / "inventory"
    shutil.rmtree(inv, ignore_errors=True)
    (inv / "group_vars").mkdir(parents=True)
    (inv / "host_vars" / "web1").mkdir(parents=True)
    (inv / "hosts.yml").write_text(
        "all:\n  children:\n    web:\n      hosts:\n        web1:\n        web2:\n          app_port: 8080\n"
    )
    web = "# !vault values, as `ansible-vault encrypt_string` prints them\nplain_var: hello\n"
    for name, (label, value) in VALUES.items():
        web += encrypt_string(name, label, value)
    web += "nested:\n  user: admin\n  list: [a, b]\n"
    (inv / "group_vars" / "web.yml").write_text(web)
    whole = inv / "group_vars" / "all.yml"
    whole.write_text("ntp_server: ntp.example.com\nsite_secret: all-hosts-secret\nnumbers: [1, 2]\n"
                     "nested:\n  key: inner-secret\n")
    encrypt_file(whole, "default")
    secrets = inv / "host_vars" / "web1" / "secrets.yml"
    secrets.write_text("web1_key: web1-only-secret\nweb1_port: 2222\n")
    encrypt_file(secrets, "prod")
    (inv / "host_vars" / "web1" / "plain.yml").write_text("web1_name: first web server\n")


if __name__ == "__main__":
    main()
