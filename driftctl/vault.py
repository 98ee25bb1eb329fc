"""Ansible Vault: decrypting (and encrypting) vault format 1.1 and 1.2, and the vault passwords.

The format, as ``ansible-vault`` writes it (ansible-core ``lib/ansible/parsing/vault``)::

    $ANSIBLE_VAULT;1.1;AES256              (1.2 adds a fourth field, the vault id: ;AES256;prod)
    <hex, 80 columns>                      hex of: hex(salt) \\n hex(hmac) \\n hex(ciphertext)

PBKDF2-HMAC-SHA256 (10,000 iterations) of the password and the 32-byte salt gives 80 bytes: the
AES-256 key, the HMAC-SHA256 key and the 16-byte CTR nonce. The plaintext is PKCS#7-padded and
encrypted with AES-256-CTR; the HMAC covers the ciphertext and is checked (in constant time, by
``cryptography``) before anything is decrypted. Every primitive here is ``cryptography``'s.

Passwords come as Ansible takes them: ``--vault-password-file F`` (the file's content, or, when F is
executable, what it prints; a ``*-client`` script is asked ``--vault-id LABEL``) and ``--vault-id
LABEL@SOURCE`` (SOURCE: such a file or ``prompt``). A 1.2 envelope's label picks its secret first,
then every other secret is tried (Ansible tries all in the order given: the same one opens, only the
HMAC of the right password matches; the label is not authenticated: a hint only).

Vault text is met deep in YAML loading, so the keyring is process-wide, as Ansible's DataLoader
holds its secrets: ``install(keyring)`` / ``current()``; the CLI calls ``install_from(settings)``.
"""

from __future__ import annotations

import binascii
import functools
import getpass
import os
import stat
import subprocess
import types
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from driftctl.errors import ConfigError, InputError

HEADER = "$ANSIBLE_VAULT"
DEFAULT_ID = "default"  # Ansible's DEFAULT_VAULT_IDENTITY: 1.1 envelopes and --vault-password-file
CIPHER = "AES256"
VERSIONS = ("1.1", "1.2")
ITERATIONS = 10000
KEY_BYTES, IV_BYTES, SALT_BYTES = 32, 16, 32
CLIENT_UNKNOWN_ID_RC = 2  # a *-client script's exit status for "no secret for this vault id"


class VaultError(InputError):
    """Vault data that cannot be decrypted. The message names the vault id; the caller adds the
    file and line (``yamlsrc`` re-raises it as the loader's error class at the value's line)."""


class VaultFormatError(VaultError):
    """Not a vault envelope, or a damaged one (bad header, not hexadecimal, parts missing)."""


class VaultPasswordError(VaultError):
    """No vault password given, or none of those given opens the data (HMAC mismatch)."""


@dataclass(frozen=True)
class Envelope:
    version: str
    cipher: str
    vault_id: str  # the 1.2 label, else DEFAULT_ID
    salt: bytes
    hmac: bytes
    ciphertext: bytes


def is_vault(text: str | bytes) -> bool:
    """Whether ``text`` starts as vault data does (``$ANSIBLE_VAULT;``)."""
    if isinstance(text, bytes):
        return text.lstrip().startswith(HEADER.encode() + b";")
    return text.lstrip().startswith(HEADER + ";")


def _unhex(data: bytes, what: str) -> bytes:
    try:
        return binascii.unhexlify(data)
    except (binascii.Error, ValueError):
        raise VaultFormatError(f"damaged vault data: the {what} is not hexadecimal",
                               hint="the value was cut or edited; encrypt it again") from None


def parse(text: str | bytes) -> Envelope:
    """The parts of a vault envelope; VaultFormatError says what is wrong with it."""
    raw = text.encode("utf-8", "replace") if isinstance(text, str) else text
    lines = [ln.strip() for ln in raw.strip().splitlines()]
    if not lines or not lines[0].startswith(HEADER.encode() + b";"):
        raise VaultFormatError(f"not Ansible Vault data: the first line must be {HEADER};1.1;{CIPHER} "
                               f"or {HEADER};1.2;{CIPHER};LABEL")
    fields = [f.strip().decode("utf-8", "replace") for f in lines[0].split(b";")]
    if len(fields) < 3 or len(fields) > 4:
        raise VaultFormatError(f"bad vault header {lines[0].decode('utf-8', 'replace')!r}: expected "
                               f"{HEADER};1.1;{CIPHER} or {HEADER};1.2;{CIPHER};LABEL")
    version, cipher = fields[1], fields[2]
    vault_id = fields[3] if len(fields) == 4 and fields[3] else DEFAULT_ID
    if version not in VERSIONS:
        raise VaultFormatError(f"vault format version {version!r} is not supported (1.1 and 1.2 are)")
    if cipher != CIPHER:
        raise VaultFormatError(f"vault cipher {cipher!r} is not supported (only {CIPHER}, as Ansible writes it)")
    body = b"".join(lines[1:])
    if not body:
        raise VaultFormatError(f"damaged vault data (vault id {vault_id!r}): nothing after the header")
    inner = _unhex(body, "envelope")
    parts = inner.split(b"\n", 2)
    if len(parts) != 3:
        raise VaultFormatError(f"damaged vault data (vault id {vault_id!r}): salt, HMAC or ciphertext missing")
    salt, mac, ciphertext = _unhex(parts[0], "salt"), _unhex(parts[1], "HMAC"), _unhex(parts[2], "ciphertext")
    if not salt or len(mac) != 32 or not ciphertext or len(ciphertext) % 16:
        raise VaultFormatError(f"damaged vault data (vault id {vault_id!r}): wrong length of salt, HMAC or "
                               "ciphertext")
    return Envelope(version, cipher, vault_id, salt, mac, ciphertext)


def _crypto() -> Any:
    """The ``cryptography`` primitives, imported when vault data is first met: a host running
    ``driftctl pull`` without python3-cryptography works until a vaulted value is actually read."""
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes, padding
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        from cryptography.hazmat.primitives.hmac import HMAC
        from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
    except ImportError as e:
        raise VaultError(f"Ansible Vault data needs the Python library cryptography, which this python cannot "
                         f"import ({e}); install it (Debian: apt install python3-cryptography)") from None
    return types.SimpleNamespace(InvalidSignature=InvalidSignature, hashes=hashes, padding=padding, Cipher=Cipher,
                                 algorithms=algorithms, modes=modes, HMAC=HMAC, PBKDF2HMAC=PBKDF2HMAC)


@functools.lru_cache(maxsize=256)
def _keys(password: bytes, salt: bytes) -> tuple[bytes, bytes, bytes]:
    """(AES key, HMAC key, CTR nonce); cached: the same value may be tried or met again."""
    c = _crypto()
    kdf = c.PBKDF2HMAC(algorithm=c.hashes.SHA256(), length=2 * KEY_BYTES + IV_BYTES, salt=salt, iterations=ITERATIONS)
    derived = kdf.derive(password)
    return derived[:KEY_BYTES], derived[KEY_BYTES:2 * KEY_BYTES], derived[2 * KEY_BYTES:]


def decrypt_with(envelope: Envelope, password: bytes) -> bytes | None:
    """The plaintext, or None when the HMAC does not match (a wrong password, or changed data)."""
    key, mac_key, nonce = _keys(password, envelope.salt)
    c = _crypto()
    mac = c.HMAC(mac_key, c.hashes.SHA256())
    mac.update(envelope.ciphertext)
    try:
        mac.verify(envelope.hmac)  # constant time
    except c.InvalidSignature:
        return None
    decryptor = c.Cipher(c.algorithms.AES(key), c.modes.CTR(nonce)).decryptor()
    padded = decryptor.update(envelope.ciphertext) + decryptor.finalize()
    unpadder = c.padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise VaultFormatError(f"damaged vault data (vault id {envelope.vault_id!r}): the HMAC matches but the "
                               "padding is wrong (not written by ansible-vault)") from None


def encrypt(plaintext: str | bytes, password: str | bytes, vault_id: str | None = None,
            salt: bytes | None = None) -> str:
    """Vault text as ``ansible-vault encrypt`` writes it: 1.1, or 1.2 with ``vault_id`` (not ``default``)."""
    data = plaintext.encode("utf-8") if isinstance(plaintext, str) else plaintext
    secret = password.encode("utf-8") if isinstance(password, str) else password
    if not secret:
        raise VaultPasswordError("an empty vault password cannot encrypt")
    if is_vault(data):
        raise VaultFormatError("the input is vault data already")
    if vault_id is not None and (";" in vault_id or "\n" in vault_id or not vault_id.strip()):
        raise VaultError(f"vault id {vault_id!r} cannot be written in a header (no ';', no newline)")
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    key, mac_key, nonce = _keys(secret, salt)
    c = _crypto()
    padder = c.padding.PKCS7(128).padder()
    encryptor = c.Cipher(c.algorithms.AES(key), c.modes.CTR(nonce)).encryptor()
    ciphertext = encryptor.update(padder.update(data) + padder.finalize()) + encryptor.finalize()
    mac = c.HMAC(mac_key, c.hashes.SHA256())
    mac.update(ciphertext)
    inner = b"\n".join([binascii.hexlify(salt), binascii.hexlify(mac.finalize()), binascii.hexlify(ciphertext)])
    body = binascii.hexlify(inner).decode("ascii")
    header = f"{HEADER};1.1;{CIPHER}"
    if vault_id and vault_id != DEFAULT_ID:
        header = f"{HEADER};1.2;{CIPHER};{vault_id}"
    return "\n".join([header, *(body[i:i + 80] for i in range(0, len(body), 80))]) + "\n"


def encrypt_string(name: str, value: str, password: str | bytes, vault_id: str | None = None) -> str:
    """``name: !vault |`` and the indented vault text, as ``ansible-vault encrypt_string --name`` prints."""
    text = encrypt(value, password, vault_id)
    return f"{name}: !vault |\n" + "".join(f"          {line}\n" for line in text.splitlines())


# --- passwords ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VaultSecret:
    """One password and the vault id it is for. ``source`` says where it came from (for messages);
    the repr never shows the password."""

    vault_id: str
    password: bytes
    source: str

    def __repr__(self) -> str:
        return f"VaultSecret(vault_id={self.vault_id!r}, source={self.source!r})"


def _is_executable(st: os.stat_result) -> bool:
    return bool(st.st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH))


def _untrusted(path: Path, st: os.stat_result) -> str | None:
    """Why a password file must not be used, or None (the rule of untrusted settings files: an
    executable another user can change runs as you; a file they can replace chooses your secrets)."""
    if st.st_mode & stat.S_IWOTH:
        return f"writable by every user (mode {stat.S_IMODE(st.st_mode):04o}); chmod o-w it"
    if st.st_uid not in (os.geteuid(), 0):
        return f"owned by another user (uid {st.st_uid}), not by you or root"
    # whoever can write its directory (or a symlink's) can put another file, or script, in its place;
    # a sticky directory (/tmp) lets them replace only their own files
    try:
        if path.is_symlink() and path.lstat().st_uid not in (os.geteuid(), 0):
            return f"a symlink owned by another user (uid {path.lstat().st_uid}), who can point it elsewhere"
        for folder in dict.fromkeys((path.absolute().parent, path.resolve().parent)):
            dst = folder.stat()
            if dst.st_mode & stat.S_IWOTH and not dst.st_mode & stat.S_ISVTX:
                return (f"in directory {folder}, which every user may write (mode {stat.S_IMODE(dst.st_mode):04o}) "
                        "and so replace the file; chmod o-w that directory")
    except OSError as e:
        return f"not checkable: {e.strerror}"
    return None


def is_client_script(path: str) -> bool:
    """Ansible's rule: a script named ``*-client`` (any extension) is asked for ``--vault-id LABEL``."""
    return os.path.splitext(os.path.basename(path))[0].endswith("-client")


def _what(label: str | None, source: str) -> str:
    return f"vault id {label!r} ({source})" if label else f"vault password file {source}"


def read_password_file(source: str, label: str | None, client_id: str | None = None) -> bytes:
    """A password file's content (surrounding whitespace stripped, as Ansible does) or, when it is
    executable, its standard output (line breaks stripped); a ``*-client`` script gets ``--vault-id``."""
    path = Path(source).expanduser()
    what = _what(label, source)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{what}: the password file does not exist") from None
    except OSError as e:
        raise ConfigError(f"{what}: cannot read the password file: {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{what}: is a directory, not a password file")
    why = _untrusted(path, st)
    if why is not None:
        raise ConfigError(f"{what}: refused: the password file is {why}")
    if _is_executable(st):
        argv = [os.path.realpath(path)]  # as Ansible runs it: './get-pass' or 'get-pass' is not looked up in PATH
        client = is_client_script(source)
        asked = label or client_id
        if client and asked:
            argv += ["--vault-id", asked]
        try:
            # a plain script's stderr stays on the terminal (it may ask something there), as in Ansible;
            # a client script's is captured for the message, as Ansible does
            r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE if client else None, check=False)
        except OSError as e:
            raise ConfigError(f"{what}: cannot run the password script: {e.strerror} "
                              "(if it is not a script, remove its executable bit)") from None
        err = (r.stderr or b"").decode("utf-8", "replace").strip()
        if client and r.returncode == CLIENT_UNKNOWN_ID_RC:
            raise ConfigError(f"{what}: the client script has no secret for vault id {asked!r}"
                              + (f": {err}" if err else ""))
        if r.returncode != 0:
            raise ConfigError(f"{what}: the password script exited with status {r.returncode}"
                              + (f": {err}" if err else ""))
        password = r.stdout.strip(b"\r\n")
        if not password:
            raise ConfigError(f"{what}: the password script printed an empty password")
        return password
    try:
        password = path.read_bytes().strip()
    except OSError as e:
        raise ConfigError(f"{what}: cannot read the password file: {e.strerror}") from None
    if not password:
        raise ConfigError(f"{what}: the password file is empty")
    if is_vault(password):
        raise ConfigError(f"{what}: the password file is itself vault-encrypted (not supported)")
    return password


def prompt_password(label: str) -> bytes:
    """Ask on the terminal (getpass); an error when there is no terminal to ask on."""
    try:
        with open("/dev/tty", "rb"):
            pass
    except OSError:
        raise ConfigError(f"vault id {label!r}@prompt: there is no terminal to ask for the password on",
                          hint="use a password file or script: --vault-id LABEL@FILE") from None
    try:
        text = getpass.getpass(f"Vault password ({label}): ")
    except (EOFError, KeyboardInterrupt):
        raise ConfigError(f"vault id {label!r}@prompt: no password entered") from None
    if not text:
        raise ConfigError(f"vault id {label!r}@prompt: the password is empty")
    return text.encode("utf-8")


def split_vault_id(text: str) -> tuple[str | None, str]:
    """``LABEL@SOURCE`` -> (LABEL, SOURCE); a bare SOURCE has no label (Ansible's split_vault_id)."""
    if "@" not in text:
        return None, text
    label, source = text.split("@", 1)
    return label, source


@dataclass(frozen=True)
class Keyring:
    """The vault secrets of a run, in the order given: ``--vault-id``s first, then password files."""

    secrets: tuple[VaultSecret, ...]

    @classmethod
    def from_sources(cls, password_files: Sequence[str], vault_ids: Sequence[str]) -> Keyring:
        """Read every source now (Ansible does too): ConfigError names a missing, unreadable,
        untrusted or failing source. ``vault_ids`` are ``LABEL@SOURCE`` (SOURCE a file, an
        executable or ``prompt``); each password file is ``default@FILE``."""
        found: list[VaultSecret] = []
        for slug in vault_ids:
            if not isinstance(slug, str) or not slug.strip():
                raise ConfigError(f"vault id {slug!r}: empty (expected LABEL@SOURCE or a password file)")
            label, source = split_vault_id(slug)
            label = label or None  # '@SOURCE' is the default id, as in Ansible
            if label is not None and (";" in label or label != label.strip()):
                raise ConfigError(f"vault id {slug!r}: the label before '@' must be a name without ';' or spaces")
            if not source:
                raise ConfigError(f"vault id {slug!r}: nothing after '@' (a password file, a script or 'prompt')")
            name = label or DEFAULT_ID
            if source == "prompt":
                found.append(VaultSecret(name, prompt_password(name), "prompt"))
            else:
                found.append(VaultSecret(name, read_password_file(source, label), source))
        for source in password_files:
            if not isinstance(source, str) or not source.strip():
                raise ConfigError(f"vault password file {source!r}: empty name")
            # Ansible makes each one 'default@FILE': a *-client script is asked for --vault-id default
            found.append(VaultSecret(DEFAULT_ID, read_password_file(source, None, DEFAULT_ID), source))
        return cls(tuple(found))

    @property
    def ids(self) -> list[str]:
        return [s.vault_id for s in self.secrets]

    def decrypt(self, text: str | bytes) -> tuple[bytes, str]:
        """(plaintext, the id of the secret that opened it). The envelope's own label is tried
        first, then every other secret. VaultFormatError / VaultPasswordError say why not."""
        envelope = parse(text)
        ordered = [s for s in self.secrets if s.vault_id == envelope.vault_id]
        ordered += [s for s in self.secrets if s.vault_id != envelope.vault_id]
        for secret in ordered:
            plain = decrypt_with(envelope, secret.password)
            if plain is not None:
                return plain, secret.vault_id
        tried = ", ".join(f"{s.vault_id!r} ({s.source})" for s in self.secrets)
        raise VaultPasswordError(
            f"cannot decrypt vault data with vault id {envelope.vault_id!r}: the HMAC does not match with any "
            f"password given (tried {tried}): a wrong password, or the data was changed",
            hint=f"give the password of vault id {envelope.vault_id!r}: --vault-id {envelope.vault_id}@FILE",
        )

    def encrypt(self, plaintext: str | bytes, vault_id: str | None = None) -> str:
        """Encrypt with the secret of ``vault_id`` (else the first secret), labelled with its id."""
        if not self.secrets:
            raise VaultPasswordError("no vault password to encrypt with")
        secret = self.secrets[0]
        if vault_id is not None:
            match = [s for s in self.secrets if s.vault_id == vault_id]
            if not match:
                raise VaultPasswordError(f"no vault password for vault id {vault_id!r} (given: {', '.join(self.ids)})")
            secret = match[0]
        return encrypt(plaintext, secret.password, secret.vault_id)


# --- the process-wide keyring -------------------------------------------------------------------

_current: Keyring | None = None


def install(keyring: Keyring | None) -> None:
    """Make ``keyring`` the one YAML loading uses (None: no vault passwords)."""
    global _current
    _current = keyring


def current() -> Keyring | None:
    return _current


def install_from(settings: Any) -> Keyring | None:
    """The keyring of ``settings.vault_password_file`` and ``settings.vault_ids`` (None when both are
    empty), installed and returned. Raises ConfigError naming a bad source."""
    files = tuple(getattr(settings, "vault_password_file", ()) or ())
    ids = tuple(getattr(settings, "vault_ids", ()) or ())
    keyring = Keyring.from_sources(files, ids) if files or ids else None
    install(keyring)
    return keyring


def decrypt(text: str | bytes) -> tuple[bytes, str]:
    """Decrypt with the installed keyring; VaultPasswordError when none is installed."""
    keyring = _current
    if keyring is None or not keyring.secrets:
        vault_id = parse(text).vault_id  # a damaged envelope says so first
        raise VaultPasswordError(
            f"vault-encrypted data (vault id {vault_id!r}) but no vault password was given",
            hint="give --vault-password-file FILE or --vault-id LABEL@SOURCE, or the settings vault_password_file "
                 "or vault_ids",
        )
    return keyring.decrypt(text)
