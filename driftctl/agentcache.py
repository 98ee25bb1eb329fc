"""What the controller knows of each host's agent cache, so that a probe need not resend the program.

The agent launcher keeps the compiled agent programs it ran in a private cache on the host (see
``LAUNCHER`` in driftctl/ship.py) and says so in its answer. The controller remembers that here, one
small file per host and login in ``<state_dir>/agent-programs/``, and the next round trip to that host
sends only the program's name: ~24 KB less on the wire and no compile on the host. The memory is only a
hint: a host whose cache lost the program answers need_program and is sent it again.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from driftctl.fileio import FileWriteError, write_atomic
from driftctl.model import Host

KEEP = 16  # as many as the launcher keeps on the host


class HostPrograms:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._known: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def login(host: Host) -> str:
        """Whose cache: the host, the login, and the user the agent runs as (become changes it)."""
        c = host.connection
        runs_as = c.become_user if c.become else c.user or ""
        return f"{host.name}|{c.transport}|{c.address}|{c.port}|{c.user or ''}|{runs_as}"

    def _file(self, login: str) -> Path:
        return self.directory / hashlib.sha256(login.encode("utf-8")).hexdigest()[:32]

    def _programs(self, login: str) -> list[str]:
        known = self._known.get(login)
        if known is None:
            try:
                known = self._file(login).read_text(encoding="ascii").split()
            except (OSError, UnicodeDecodeError):
                known = []
            self._known[login] = known
        return known

    def has(self, host: Host, program: str) -> bool:
        with self._lock:
            return program in self._programs(self.login(host))

    def remember(self, host: Host, program: str) -> None:
        """Record that ``host`` holds ``program``; a store that cannot be written only costs bytes."""
        login = self.login(host)
        with self._lock:
            known = [*[p for p in self._programs(login) if p != program][-(KEEP - 1):], program]
            self._known[login] = known
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_atomic(self._file(login), "\n".join(known) + "\n", mode=0o600)
        except (OSError, FileWriteError):
            pass
