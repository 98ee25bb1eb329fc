"""Privilege escalation through sudo, shared by the SSH and local transports.

The password travels as the first line of stdin (``sudo -S``), never in argv. Two sudo behaviours make
"just prepend the password" unsafe, so a transport first *probes* once per become user:

- a sudoers rule with NOPASSWD (or a cached timestamp) makes sudo skip the password; the command would
  then read the password line as its own input. The probe finds out whether sudo asks at all; if it
  does not, the password is never sent and ``sudo -n`` is used.
- a wrong password makes ``sudo -S`` read *more* lines of stdin as new attempts, eating the payload.
  The probe sends nothing but the password, so a wrong one fails there, cleanly, as an AuthError.

sudo is told to print a prompt unique to this run (``-p``), which is how the probe knows whether it
asked (and how often: twice means the first answer was refused) independently of sudo's language.
``-k`` makes every command ignore cached credentials, so sudo asks exactly when the probe said it would.
A sudoers policy that differs per command (NOPASSWD for some only) defeats the probe: not supported.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from driftctl.errors import AuthError
from driftctl.transport.base import CommandResult

Runner = Callable[[list[str], bytes, float], CommandResult]
PROBE_TIMEOUT = 30.0


@dataclass
class Wrapped:
    """A command as it is really sent: argv with sudo in front, stdin with the password line."""

    argv: list[str]
    stdin: bytes
    prompt: str | None = None


class Become:
    """sudo for one connection: probes each become user once, then wraps commands.

    ``runner(argv, stdin, timeout)`` runs a raw argv on the host (no become) and returns its result.
    """

    def __init__(self, host: str, login_user: str, password: str | None, runner: Runner) -> None:
        self.host = host
        self.login_user = login_user
        self.password = password
        self.runner = runner
        self.prompt = f"[driftctl-sudo-{secrets.token_hex(6)}]"
        self._modes: dict[str, str] = {}  # become user -> "password" | "nopasswd"
        self._lock = threading.Lock()

    def needed(self, user: str) -> bool:
        return user != self.login_user

    def wrap(self, argv: Sequence[str], stdin: bytes, user: str) -> Wrapped:
        """The command to send for ``argv`` run as ``user`` (probing sudo first if not done yet)."""
        mode = self._mode(user)
        if mode == "password":
            assert self.password is not None
            return Wrapped(
                ["sudo", "-k", "-S", "-p", self.prompt, "-u", user, "--", *argv],
                self.password.encode("utf-8") + b"\n" + stdin,
                self.prompt,
            )
        return Wrapped(["sudo", "-n", "-u", user, "--", *argv], stdin)

    def finish(self, wrapped: Wrapped, result: CommandResult, user: str) -> CommandResult:
        """Remove sudo's prompt from stderr; raise AuthError if sudo refused after all."""
        if wrapped.prompt is None:
            if result.rc == 1 and b"sudo:" in result.stderr and b"password is required" in result.stderr:
                raise AuthError(self.host, f"sudo to {user} now asks for a password: set a become password")
            return result
        prompt = wrapped.prompt.encode("utf-8")
        if result.stderr.count(prompt) >= 2 and result.rc != 0:
            raise AuthError(self.host, f"sudo refused the become password (as {self.login_user} -> {user})")
        if result.stderr.startswith(prompt):
            result.stderr = result.stderr[len(prompt):]
        return result

    def _mode(self, user: str) -> str:
        with self._lock:
            if user not in self._modes:
                self._modes[user] = self._probe(user)
            return self._modes[user]

    def _probe(self, user: str) -> str:
        if self.password is None:
            r = self.runner(["sudo", "-n", "-u", user, "--", "true"], b"", PROBE_TIMEOUT)
            if r.rc == 0:
                return "nopasswd"
            raise AuthError(self.host, self._refusal(r, user, "without a password (set a become password?)"))
        r = self.runner(
            ["sudo", "-k", "-S", "-p", self.prompt, "-u", user, "--", "true"],
            self.password.encode("utf-8") + b"\n",
            PROBE_TIMEOUT,
        )
        asked = r.stderr.count(self.prompt.encode("utf-8"))
        if r.rc == 0:
            return "password" if asked else "nopasswd"
        if asked >= 2:
            raise AuthError(self.host, f"sudo refused the become password (as {self.login_user} -> {user})")
        raise AuthError(self.host, self._refusal(r, user, "with the become password"))

    def _refusal(self, r: CommandResult, user: str, how: str) -> str:
        if r.rc == 127:
            return f"cannot become {user}: sudo is not installed"
        text = r.stderr_text.replace(self.prompt, "").strip().splitlines()
        reason = text[-1] if text else f"exit {r.rc}"
        return f"sudo refused to run as {user} {how}, as {self.login_user}: {reason}"
