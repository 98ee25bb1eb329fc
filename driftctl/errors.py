"""One exception root for driftctl.

Input errors (inventory, manifest, template, configuration) also subclass ValueError and carry the
file and line of the mistake, so a user is always pointed at the spot to fix. Errors about hosts carry
the host name and the underlying cause (``raise ... from e`` at the library boundary).
"""

from __future__ import annotations

from dataclasses import dataclass


class ExitCode:
    """Exit codes shared by check, apply and drift. Bits combine: 2|8 = 10."""

    OK = 0
    INPUT = 1  # bad input: no host was changed (and no work started on any)
    CHANGES = 2  # changes made, changes pending, or drift found
    FAILED = 4  # a resource failed
    UNREACHABLE = 8  # a host unreachable or refused (auth, host key), or its connection lost mid-run
    ABORTED = 16  # stopped by SIGINT/SIGTERM: what ran is reported, nothing new started
    NOT_STORED = 32  # the store failed: the run's results were kept locally and go in with the next run
    LOCKED = 75  # EX_TEMPFAIL: another run holds the lock


@dataclass(frozen=True)
class Location:
    """Where something was written by the user: a file and a 1-based line (None if unknown)."""

    file: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


class DriftctlError(Exception):
    """Root of every error driftctl raises on purpose."""

    exit_code: int = ExitCode.INPUT


class InputError(DriftctlError, ValueError):
    """A mistake in something the user wrote. Always raised before any host is contacted."""

    exit_code = ExitCode.INPUT

    def __init__(self, message: str, location: Location | None = None, hint: str | None = None) -> None:
        self.message = message
        self.location = location
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.location}: {self.message}" if self.location else self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


class ConfigError(InputError):
    """Bad settings: config files, DRIFTCTL_* variables, command-line flags."""


class InventoryError(InputError):
    """Bad inventory: YAML/INI syntax, duplicate keys, unknown groups, a --limit matching nothing."""


class ManifestError(InputError):
    """Bad manifest: syntax, unknown keys, wrong types, duplicate resources, cycles."""


class ManifestErrors(ManifestError):
    """Several mistakes found in one pass over the manifests, reported at once as a compiler does:
    each keeps its own file:line (``errors``)."""

    def __init__(self, errors: list[ManifestError], more: int = 0) -> None:
        self.errors = errors
        self.more = more
        lines = [f"{len(errors) + more} errors in the manifests:"]
        lines += [f"  {e}" for e in errors]
        if more:
            lines.append(f"  ... and {more} more (fix these first)")
        super().__init__("\n".join(lines))


class TemplateError(ManifestError):
    """A Jinja2 template failed to render (undefined variable, syntax, sandbox violation)."""


class HostError(DriftctlError):
    """Something went wrong with one host. Carries the host name; never aborts the fleet."""

    exit_code = ExitCode.UNREACHABLE

    def __init__(self, host: str, message: str) -> None:
        self.host = host
        self.message = message
        super().__init__(f"{host}: {message}")


class ConnectError(HostError):
    """The host could not be reached (DNS, refused, timeout) or refused us."""


class HostKeyError(ConnectError):
    """The host key is unknown or changed. Carries the offered key's fingerprint."""

    def __init__(self, host: str, message: str, fingerprint: str | None = None) -> None:
        self.fingerprint = fingerprint
        super().__init__(host, message)


class AuthError(ConnectError):
    """Authentication failed (wrong key, no agent key accepted, sudo password refused)."""


class CommandTimeout(HostError):
    """A remote command ran longer than its timeout and was cut."""

    exit_code = ExitCode.FAILED


class CommandAborted(HostError):
    """The run was aborted (SIGINT/SIGTERM) and the remote command was stopped."""

    exit_code = ExitCode.ABORTED


class ConnectionLost(ConnectError):
    """The connection broke while a command ran: what it reported until then stands, the rest is unknown."""


class AgentError(HostError):
    """The agent could not run on the host or answered something that is not its protocol."""

    exit_code = ExitCode.FAILED


class HostLockedError(AgentError):
    """Another driftctl apply holds the host's own lock (the agent answered ``"locked": true``)."""


class LockedError(DriftctlError):
    """Another run holds the lock. Names the holder."""

    exit_code = ExitCode.LOCKED

    def __init__(self, what: str, holder: str) -> None:
        self.what = what
        self.holder = holder
        super().__init__(f"{what} is locked by {holder}")


class StoreError(DriftctlError):
    """The state store could not be opened, migrated, read or written."""


class BakeError(DriftctlError):
    """An image could not be baked, verified or loaded."""
