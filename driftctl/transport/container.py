"""Podman transport: commands in a running container (``driftctl_transport: podman``, address = its name).

Each command is one ``podman exec -i``. ``become`` needs no sudo here: podman runs the command as the
become user directly (``--user``). A timeout kills the local podman process and, because killing the
client does not stop what it started in the container, every process of that command in the container
too: each command carries a unique ``DRIFTCTL_RUN`` environment value that its children inherit.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable

from driftctl.errors import CommandTimeout, ConnectError
from driftctl.transport.base import CommandResult, Feed, Transport
from driftctl.transport.local import MARK_VAR, kill_marked, new_mark, run_process, stream_process

PODMAN = "podman"
INSPECT_TIMEOUT = 30.0


class PodmanTransport(Transport):
    """``podman exec -i`` into the container named by the host's address."""

    name = "podman"

    @property
    def container(self) -> str:
        return self.host.connection.address

    def connect(self) -> None:
        """Check that podman is there and the container runs (so an absent host is unreachable, rc 8)."""
        if shutil.which(PODMAN) is None:
            raise ConnectError(self.host.name, "podman is not installed on the controller")
        r = run_process(
            self.host.name,
            [PODMAN, "container", "inspect", "--format", "{{.State.Running}}", self.container],
            b"",
            INSPECT_TIMEOUT,
        )
        if r.rc != 0:
            reason = r.stderr_text.strip().splitlines()[-1:] or [f"exit {r.rc}"]
            raise ConnectError(self.host.name, f"no container {self.container}: {reason[0]}")
        if r.stdout_text.strip() != "true":
            raise ConnectError(self.host.name, f"container {self.container} is not running")

    def close(self) -> None:
        """Nothing to close: every command is its own podman exec."""

    def _command(self, argv: list[str], become_user: str | None, token: str) -> list[str]:
        user = self.host.connection.user if become_user is None else become_user
        cmd = [PODMAN, "exec", "-i", "--env", f"{MARK_VAR}={token}"]
        if user:
            cmd += ["--user", user]
        return [*cmd, self.container, *argv]

    def _reap(self, token: str) -> None:
        run_process(self.host.name, [PODMAN, "exec", "--user", "root", self.container, *kill_marked(token)], b"",
                    INSPECT_TIMEOUT)

    def _stream(self, argv: list[str], feed: Feed, on_output: Callable[[bytes], None], timeout: float,
                become_user: str | None) -> CommandResult:
        token = new_mark()
        return self._checked(stream_process(self.host.name, self._command(argv, become_user, token), feed, on_output,
                                            timeout, lambda: self._reap(token)))

    def _run(self, argv: list[str], stdin: bytes, timeout: float, become_user: str | None) -> CommandResult:
        token = new_mark()
        try:
            result = run_process(self.host.name, self._command(argv, become_user, token), stdin, timeout)
        except CommandTimeout:
            self._reap(token)
            raise
        return self._checked(result)

    def _checked(self, result: CommandResult) -> CommandResult:
        if result.rc in (125, 255) and _container_gone(result.stderr_text):
            raise ConnectError(self.host.name, f"container {self.container}: {result.stderr_text.strip()[-300:]}")
        return result


def _container_gone(stderr: str) -> bool:
    text = stderr.lower()
    return "no such container" in text or "not running" in text or "container state improper" in text
