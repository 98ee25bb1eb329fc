"""The sealed envelope every task and result travels in: Fernet (AES-128-CBC + HMAC-SHA256, from
``cryptography``) under one key the controller and its workers share.

The broker and the result backend see only tokens: the catalog (file contents, rendered secrets),
the host's connection (passwords) and the results never cross them in clear. A token made with
another key, or altered on the way, fails its HMAC and is refused before anything is unpickled:
pickle (the engine's own dataclasses, as they are) is used only inside a verified envelope, so only
a holder of the key can make a worker unpickle anything.

The key file is made by ``driftctl worker --new-key FILE`` (mode 0600) and must not be readable by
others: a key another user can read is refused.
"""

from __future__ import annotations

import os
import pickle
import stat
import time
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from driftctl.distributed import EnvelopeError
from driftctl.errors import ConfigError, Location

# the format of what is inside: a worker refuses a version it does not know
VERSION = 1


def new_key(path: Path) -> Path:
    """Write a new random key to ``path`` (0600, refused if it exists: a key is never overwritten)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} exists: a worker key is never overwritten",
                          hint="remove it first if you mean to replace it (every worker needs the new one)") from None
    except OSError as e:
        raise ConfigError(f"cannot create the worker key {path}: {e.strerror or e}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(Fernet.generate_key() + b"\n")
    return path


def load_key(path: str | os.PathLike[str]) -> Fernet:
    """The key in ``path``; a ConfigError (exit 1, before any host) when it is missing, readable by
    others, or not a key."""
    p = Path(path)
    where = Location(str(p))
    try:
        st = p.stat()
        data = p.read_bytes().strip()
    except OSError as e:
        raise ConfigError(f"cannot read the worker key: {e.strerror or e}", where,
                          hint="make one with `driftctl worker --new-key FILE`") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"the worker key is readable by others (mode {stat.S_IMODE(st.st_mode):04o})", where,
                          hint=f"chmod 600 {p}")
    try:
        return Fernet(data)
    except ValueError:
        raise ConfigError("not a worker key (32 url-safe base64-encoded bytes)", where,
                          hint="make one with `driftctl worker --new-key FILE`") from None


def seal(key: Fernet, kind: str, body: dict[str, Any]) -> str:
    """``body`` as a token of ``kind`` ("task" or "result")."""
    return key.encrypt(pickle.dumps({"v": VERSION, "kind": kind, **body}, protocol=pickle.HIGHEST_PROTOCOL)).decode()


def open_sealed(key: Fernet, kind: str, token: object, max_age: float | None = None) -> dict[str, Any]:
    """The body of a token of ``kind``; EnvelopeError when it does not verify with ``key``, or when it
    was sealed more than ``max_age`` seconds ago (a task replayed from a copy of the broker's traffic)."""
    if not isinstance(token, str):
        raise EnvelopeError(f"not a sealed {kind}: a {type(token).__name__}")
    try:
        raw = key.decrypt(token.encode())
    except (InvalidToken, ValueError):
        raise EnvelopeError(f"a {kind} that does not verify with this key (another key, or altered)") from None
    if max_age is not None:
        age = time.time() - key.extract_timestamp(token.encode())
        if age > max_age:
            raise EnvelopeError(f"a {kind} sealed {age:.0f}s ago, older than {max_age:g}s: refused (a replay?)")
    body = pickle.loads(raw)  # noqa: S301 - only after the HMAC proved a key holder made it
    if not isinstance(body, dict) or body.get("kind") != kind or body.get("v") != VERSION:
        raise EnvelopeError(f"not a driftctl {kind} of format {VERSION}")
    return body
