"""SSH authentication (paramiko), part of connecting (ssh_connect.py).

Tried in order, each key once: the endpoint's identity files (the inventory's key_file, ssh_config's
IdentityFile), ssh-agent keys, the default keys (``~/.ssh/id_ed25519``, ...; agent and default keys
are skipped with ``IdentitiesOnly yes``), then the password, as ``password`` or through
``keyboard-interactive`` when that is all the server offers. A failure is an AuthError listing what was
tried and why, and the methods the server accepts.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import paramiko

from driftctl.errors import AuthError
from driftctl.transport.sshconfig import DEFAULT_KEYS, Endpoint


def authenticate(t: paramiko.Transport, ep: Endpoint, host: str, *, use_agent: bool, password: str | None) -> None:
    """Log in as ``ep.user``, trying each key once, then ``password``; AuthError lists what was tried."""
    tried: list[str] = []
    allowed: list[str] = []
    seen: set[bytes] = set()

    def offer(key: paramiko.PKey, label: str) -> bool:
        if key.asbytes() in seen:
            return False
        seen.add(key.asbytes())
        return _try(t, ep, host, lambda: t.auth_publickey(ep.user, key), label, tried, allowed)

    for path in ep.identity_files:
        key = _load_key(path, tried, explicit=True)
        if key is not None and offer(key, f"key {path}"):
            return
    if use_agent and not ep.identities_only:
        try:
            agent = paramiko.Agent()
        except (paramiko.SSHException, OSError) as e:  # SSH_AUTH_SOCK points at something broken
            tried.append(f"ssh-agent (unusable: {e})")
        else:
            try:
                for key in agent.get_keys():
                    if offer(key, f"agent key {key.fingerprint}"):
                        return
            finally:
                agent.close()
    if not ep.identities_only:
        for path in DEFAULT_KEYS:
            key = _load_key(os.path.expanduser(path), tried, explicit=False)
            if key is not None and offer(key, f"key {path}"):
                return
    if password:
        secret = password  # narrowed, for the lambdas
        if _try(t, ep, host, lambda: t.auth_password(ep.user, secret), "password", tried, allowed):
            return
        # Servers that take passwords only through PAM's keyboard-interactive: answer every prompt with it.
        if "keyboard-interactive" in allowed and _try(
            t,
            ep,
            host,
            lambda: t.auth_interactive(ep.user, lambda _title, _instr, prompts: [secret] * len(prompts)),
            "password (keyboard-interactive)",
            tried,
            allowed,
        ):
            return
    accepts = f"; the server accepts: {', '.join(allowed)}" if allowed else ""
    raise AuthError(
        host,
        f"authentication as {ep} failed; tried {', '.join(tried) or 'nothing (no key, no agent, no password)'}"
        + accepts,
    )


def _try(
    t: paramiko.Transport,
    ep: Endpoint,
    host: str,
    attempt: Callable[[], object],
    label: str,
    tried: list[str],
    allowed: list[str],
) -> bool:
    try:
        attempt()
    except paramiko.BadAuthenticationType as e:
        allowed[:] = list(e.allowed_types)
        tried.append(f"{label} (method not allowed)")
        return False
    except paramiko.AuthenticationException as e:
        if "timeout" in str(e).lower():
            raise AuthError(host, f"authentication as {ep} timed out") from e
        tried.append(f"{label} (rejected)")
        return False
    except (paramiko.SSHException, OSError, EOFError) as e:
        tried.append(label)
        raise AuthError(
            host,
            f"{ep} closed the connection during authentication after {', '.join(tried)} "
            f"(too many keys offered? MaxAuthTries): {e or type(e).__name__}",
        ) from e
    return t.is_authenticated()


def _load_key(path: str, tried: list[str], explicit: bool) -> paramiko.PKey | None:
    if not os.path.exists(path):
        if explicit:
            tried.append(f"key {path} (file not found)")
        return None
    try:
        return paramiko.PKey.from_path(path)
    except paramiko.PasswordRequiredException:
        tried.append(f"key {path} (encrypted: load it into ssh-agent)")
    except (paramiko.SSHException, OSError, ValueError) as e:
        tried.append(f"key {path} (unreadable: {e})")
    return None
